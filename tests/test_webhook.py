"""`recon serve`: WEBHOOK deliveries over real HTTP, landed as `recon land` lands a file.

One `recon serve` process (its own RECON_HOME, the session's embedded database, a 4,096-byte
body limit) receives real requests on a loopback port from httpx. A WEBHOOK source is added
with `recon sources add` and its secret set with `recon secrets set`, as a user does. Each
refusal (404, 401, 413, 415, 400) is checked to land nothing: no `uploaded_files` or
`sync_logs` row, no file left in the zone (temporary ones included), processed or quarantined.
The signing, the batch conversion and the confined writer are also tested without a server.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import polars as pl
import pytest
import sqlalchemy as sa
from helpers import free_port, run_recon, stop_process_group

from recon.webhook_zone import BatchError, ZoneDrop, file_name, records_to_jsonl
from resources.database import engine_for
from resources.webhook_auth import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Signature,
    WebhookAuthError,
    check_timestamp,
    parse_signature,
    sign,
    signed_headers,
)

SECRET = "s3cret-for-tests-" + "x" * 16
MAX_BYTES = 4096
BANK_CSV = (
    "txn_id,booking_date,amount,description\n"
    "TX0001,15/01/2024,1500.00,Payment received\n"
    "TX0002,16/01/2024,-2300.50,Invoice payment\n"
    "TX0003,17/01/2024,750.25,Refund processed\n"
    "TX0004,31/01/2024,12.00,Monthly fee\n"
)


class Server:
    """A running `recon serve` and what the tests need to reach and inspect it."""

    def __init__(self, home: Path, url: str, port: int, org: str, other: str) -> None:
        self.home, self.url, self.org, self.other = home, url, org, other
        self.env = {"RECON_HOME": str(home), "RECON_DATABASE_URL": url}
        self.base = f"http://127.0.0.1:{port}"

    def post(
        self,
        body: bytes,
        content_type: str = "text/csv",
        *,
        source: str = "hook",
        org: str | None = None,
        secret: str = SECRET,
        timestamp: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        sent = {"Content-Type": content_type, **signed_headers(secret, body, timestamp)}
        return httpx.post(
            f"{self.base}/webhooks/{org or self.org}/{source}",
            content=body,
            headers={**sent, **(headers or {})},
            timeout=120,
        )

    def rows(self, query: str, **params: object) -> list[sa.Row]:
        with engine_for(self.url).connect() as conn:
            return list(conn.execute(sa.text(query), {"org": self.org, **params}))

    def landed(self) -> tuple[int, int, list[str]]:
        """(uploaded_files rows, sync_logs rows, every file under the org's folders)."""
        files = self.rows(
            "SELECT count(*) FROM uploaded_files f JOIN organizations o "
            "ON o.id = f.organization_id WHERE o.name = :org"
        )[0][0]
        logs = self.rows(
            "SELECT count(*) FROM sync_logs s JOIN organizations o "
            "ON o.id = s.organization_id WHERE o.name = :org"
        )[0][0]
        found = sorted(
            str(p.relative_to(self.home))
            for kind in ("landing", "processed", "quarantine")
            for p in (self.home / kind / self.org).rglob("*")
            if p.is_file()
        )
        return files, logs, found


def _recon_with_input(env: dict[str, str], stdin: str, *args: str) -> None:
    recon = Path(sys.executable).with_name("recon")
    done = subprocess.run(
        [str(recon), *args], env={**os.environ, **env}, input=stdin, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("webhook") / "home"
    env = {"RECON_HOME": str(home), "RECON_DATABASE_URL": database_url}
    org = f"org-{uuid.uuid4().hex[:8]}"
    code, out, err = run_recon("sources", "add", "hook", "--type", "WEBHOOK", "--org", org, env=env)
    assert code == 0 and "added" in out, err
    _recon_with_input(env, SECRET, "secrets", "set", "webhook_secret", "--data-source", "hook",
                      "--org", org)  # fmt: skip
    # a FILE source (no webhook) and a WEBHOOK source of another organization, same secret
    code, _out, err = run_recon("sources", "add", "plain", "--type", "FILE", "--org", org, env=env)
    assert code == 0, err
    other = f"other-{uuid.uuid4().hex[:8]}"
    assert run_recon("sources", "add", "hook", "--org", other, env=env)[0] == 0
    _recon_with_input(env, SECRET, "secrets", "set", "webhook_secret", "--data-source", "hook",
                      "--org", other)  # fmt: skip
    port = free_port()
    log = (home / "serve.log").open("w")
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("recon")), "serve", "--port", str(port),
         "--max-bytes", str(MAX_BYTES), "--workers", "1"],
        env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, (home / "serve.log").read_text()
            assert time.monotonic() < deadline, (home / "serve.log").read_text()
            time.sleep(0.5)
        yield Server(home, database_url, port, org, other)
    finally:
        stop_process_group(proc)
        log.close()


def test_a_signed_file_is_landed_as_recon_land_lands_it(server: Server) -> None:
    response = server.post(BANK_CSV.encode(), "text/csv; charset=utf-8")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "PROCESSED" and body["format"] == "csv" and body["row_count"] == 4
    assert body["organization"] == server.org and body["data_source"] == "hook"
    assert body["duplicate_of"] is None and body["replayed"] is False
    [row] = server.rows(
        "SELECT f.status, f.content_sha256, f.file_path, d.type, o.name FROM uploaded_files f "
        "JOIN data_sources d ON d.id = f.data_source_id "
        "JOIN organizations o ON o.id = f.organization_id WHERE f.id = :i",
        i=body["uploaded_file_id"],
    )
    assert row.status == "PROCESSED" and row.type == "WEBHOOK" and row.name == server.org
    assert row.content_sha256 == hashlib.sha256(BANK_CSV.encode()).hexdigest()
    assert Path(row.file_path).read_bytes() == BANK_CSV.encode()  # the stored original
    canonical = server.home / "store" / "canonical" / f"{body['uploaded_file_id']}.parquet"
    assert pl.read_parquet(canonical)["txn_id"].to_list() == [
        "TX0001",
        "TX0002",
        "TX0003",
        "TX0004",
    ]
    # written into the zone under the source's folder, then moved to processed/ by landing
    [moved] = (server.home / "processed" / server.org / "hook").glob(
        f"{body['uploaded_file_id']}-*"
    )
    assert moved.read_bytes() == BANK_CSV.encode()
    assert not list((server.home / "landing" / server.org / "hook").iterdir())


def test_refused_deliveries_land_nothing(server: Server) -> None:
    body = BANK_CSV.replace("TX", "RF").encode()
    before = server.landed()
    now = int(time.time())
    cases = {
        "bad signature": server.post(body, secret="not-the-secret"),
        "signature of another body": server.post(
            body, headers={SIGNATURE_HEADER: sign(SECRET, now, body + b"x")}
        ),
        "stale timestamp": server.post(body, timestamp=now - 301),
        "future timestamp": server.post(body, timestamp=now + 400),
        "no signature": httpx.post(
            f"{server.base}/webhooks/{server.org}/hook",
            content=body,
            headers={"Content-Type": "text/csv", TIMESTAMP_HEADER: str(now)},
        ),
        "too large": server.post(b"a,b\n" + b"1,2\n" * MAX_BYTES),
        "wrong type": server.post(body, "text/html"),
        "multipart": server.post(body, "multipart/form-data; boundary=x"),
        "unknown source": server.post(body, source="nope"),
        "FILE source": server.post(body, source="plain"),
        "unknown organization": server.post(body, org="no-such-org"),
        "bad batch": server.post(b'{"not": "an array"}', "application/json"),
    }
    # a body streamed without Content-Length is cut off as soon as it passes the limit
    chunks = [b"a,b\n" + b"1,2\n" * 255] * 3  # 1,024 bytes each: the fifth passes 4,096
    timestamp = str(now)
    joined = b"".join(chunks * 2)
    cases["too large, streamed"] = httpx.post(
        f"{server.base}/webhooks/{server.org}/hook",
        content=iter(chunks * 2),
        headers={
            "Content-Type": "text/csv",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(SECRET, timestamp, joined),
        },
    )
    expected = {
        "bad signature": 401,
        "signature of another body": 401,
        "stale timestamp": 401,
        "future timestamp": 401,
        "no signature": 401,
        "too large": 413,
        "too large, streamed": 413,
        "wrong type": 415,
        "multipart": 415,
        "unknown source": 404,
        "FILE source": 404,
        "unknown organization": 404,
        "bad batch": 400,
    }
    assert {k: r.status_code for k, r in cases.items()} == expected, {
        k: r.text for k, r in cases.items()
    }
    assert "replay window" in cases["stale timestamp"].json()["error"]
    assert "does not match" in cases["bad signature"].json()["error"]
    assert server.landed() == before  # no row, no log, no file (not even a temporary one)


def test_a_replayed_delivery_is_not_landed_twice(server: Server) -> None:
    body = BANK_CSV.replace("TX", "RP").encode()
    stamp = int(time.time())
    first = server.post(body, timestamp=stamp)
    assert first.status_code == 201, first.text
    after_first = server.landed()
    again = server.post(body, timestamp=stamp)  # the very same delivery
    assert again.status_code == 200 and again.json()["replayed"] is True
    assert again.json()["uploaded_file_id"] == first.json()["uploaded_file_id"]
    assert server.landed() == after_first  # not written, not landed, not logged
    later = server.post(body, timestamp=stamp + 1)  # same content, signed again
    assert later.status_code == 200, later.text
    assert later.json()["duplicate_of"] == first.json()["uploaded_file_id"]
    sha = hashlib.sha256(body).hexdigest()
    assert len(server.rows("SELECT id FROM uploaded_files WHERE content_sha256 = :s", s=sha)) == 1


def test_a_json_batch_lands_its_records(server: Server) -> None:
    records = [
        {"id": "B1", "amount": "10.50", "memo": "first"},
        {"id": "B2", "amount": "-3.25", "memo": "zweite €"},
        {"id": "B3", "amount": "7", "memo": None},
    ]
    body = json.dumps(records).encode()
    response = server.post(body, "application/json", headers={"X-Recon-Filename": "batch.json"})
    assert response.status_code == 201, response.text
    answer = response.json()
    assert answer["status"] == "PROCESSED" and answer["format"] == "jsonl"
    assert answer["row_count"] == 3 and answer["records"] == 3
    assert answer["original_filename"] == "batch.jsonl"
    frame = pl.read_parquet(
        server.home / "store" / "canonical" / f"{answer['uploaded_file_id']}.parquet"
    )
    assert frame["id"].to_list() == ["B1", "B2", "B3"]
    assert frame["memo"].to_list() == ["first", "zweite €", None]


def test_sources_are_listed_isolated_by_organization_and_removed(server: Server) -> None:
    code, out, err = run_recon("sources", "list", "--json", "--org", server.org, env=server.env)
    assert code == 0, err
    listed = {r["name"]: r for r in json.loads(out)}
    assert listed["hook"]["type"] == "WEBHOOK" and listed["hook"]["webhook_secret"] is True
    assert listed["plain"]["type"] == "FILE" and listed["plain"]["webhook_secret"] is False
    assert {r["organization"] for r in listed.values()} == {server.org}
    # a FILE source may become a WEBHOOK one; a WEBHOOK one is not turned into anything else
    code, out, err = run_recon("sources", "add", "plain", "--org", server.org, env=server.env)
    assert code == 0 and "was FILE" in out, err
    code, _out, err = run_recon(
        "sources", "add", "plain", "--type", "FILE", "--org", server.org, env=server.env
    )
    assert code == 1 and "is a WEBHOOK data source" in err and len(err.splitlines()) == 1
    # the other organization's source of the same name lands under that organization only
    body = BANK_CSV.replace("TX", "OT").encode()
    response = server.post(body, org=server.other)
    assert response.status_code == 201, response.text
    assert response.json()["organization"] == server.other
    assert (server.home / "processed" / server.other / "hook").is_dir()
    assert not server.rows(
        "SELECT 1 FROM uploaded_files f JOIN organizations o ON o.id = f.organization_id "
        "WHERE o.name = :org AND f.content_sha256 = :s",
        s=hashlib.sha256(body).hexdigest(),
    )
    code, out, err = run_recon("sources", "remove", "hook", "--org", server.other, env=server.env)
    assert code == 0 and "deactivated" in out, err
    assert server.post(BANK_CSV.replace("TX", "GN").encode(), org=server.other).status_code == 404


# --- without a server -------------------------------------------------------------------------


def test_signature_checks() -> None:
    body = b"id,amount\n1,2\n"
    header = sign(SECRET, 1700000000, body)
    digest = parse_signature(header)
    check = Signature(SECRET.encode(), "1700000000")
    for piece in (body[:3], body[3:]):
        check.update(piece)
    check.verify(digest)  # chunked equals whole
    wrong = Signature(b"other", "1700000000")
    wrong.update(body)
    with pytest.raises(WebhookAuthError, match="does not match"):
        wrong.verify(digest)
    assert check_timestamp("1700000000", 1700000300.0) == "1700000000"
    for value, message in (
        ("1699999699", "old"),
        ("1700000301", "future"),
        ("17e8", "unix seconds"),
        (None, "missing"),
    ):
        with pytest.raises(WebhookAuthError, match=message):
            check_timestamp(value, 1700000000.0)
    for bad in (None, "md5=" + "0" * 64, "sha256=" + "g" * 64, "sha256=abc"):
        with pytest.raises(WebhookAuthError):
            parse_signature(bad)


def test_batches_and_names() -> None:
    data, count = records_to_jsonl(b'[{"a": 1, "b": {"c": 2}}, {"b": "x"}]')
    assert count == 2 and data == b'{"a":1,"b":{"c":2}}\n{"b":"x"}\n'
    for bad in (b"[]", b"{}", b"[1]", b"[{}]", b"not json", b"\xff"):
        with pytest.raises(BatchError):
            records_to_jsonl(bad)
    assert file_name(None, ".csv", "17", "ab" * 32) == "webhook-17-abababababab.csv"
    assert file_name("../../etc/passwd", "", "1", "0" * 64) == "passwd"
    assert file_name(".hidden.tmp", "", "1", "0" * 64) == "hidden.tmp.dat"


def test_zone_drop_is_atomic_and_stays_in_the_zone(tmp_path: Path) -> None:
    zone = tmp_path / "landing"
    drop = ZoneDrop(zone, "Org", "src")
    drop.write(b"id\n1\n")
    assert drop.read() == b"id\n1\n"  # a batch is read back before it is converted
    folder = zone / "Org" / "src"
    [temporary] = list(folder.iterdir())
    assert temporary.name.startswith(".") and temporary.suffix == ".tmp"  # never scanned
    item = drop.commit("a.csv")
    assert item.relative == Path("Org/src/a.csv") and item.path.read_bytes() == b"id\n1\n"
    second = ZoneDrop(zone, "Org", "src")
    second.write(b"id\n2\n")
    other = second.commit("a.csv")  # a name already taken gets a prefix, never overwrites
    assert other.path.name.endswith("-a.csv") and item.path.read_bytes() == b"id\n1\n"
    refused = ZoneDrop(zone, "Org", "src")
    refused.discard()
    assert sorted(p.name for p in folder.iterdir()) == sorted(["a.csv", other.path.name])
    outside = tmp_path / "outside"
    outside.mkdir()
    (zone / "Org" / "linked").symlink_to(outside)
    with pytest.raises(OSError):
        ZoneDrop(zone, "Org", "linked")
    assert not list(outside.iterdir())
