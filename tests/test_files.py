"""Landing, reading, detection and validation as Dagster assets, and the landing-zone sensor.

Runs the real assets against the embedded database with real files in a landing zone of the
test's own; each test uses its own organization so counts never mix.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path

import polars as pl
import psycopg
import pytest
from dagster import DagsterInstance, build_sensor_context, materialize

from pipelines.files import (
    LANDING_PATH_TAG,
    canonical_file,
    landed_files,
    landing_zone_sensor,
    uploaded_file,
)
from pipelines.ingest import landing
from resources.database import DatabaseResource, engine_for
from resources.file_store import FileStoreResource

BANK_CSV = (
    "txn_id,booking_date,amount,description,is_fee\n"
    'TX0001,15/01/2024,"$1,500.00",Payment received,N\n'
    'TX0002,16/01/2024,"(2,300.50)",Invoice payment,N\n'
    "TX0003,17/01/2024,$750.25,Refund processed,Y\n"
    "TX0004,31/01/2024,$12.00,Monthly fee,Y\n"
)


@pytest.fixture()
def zone(tmp_path: Path) -> tuple[Path, str, FileStoreResource]:
    org = f"org-{uuid.uuid4().hex[:8]}"
    resource = FileStoreResource(root=str(tmp_path / "home"))
    resource.store().landing.mkdir(parents=True)
    return resource.store().landing, org, resource


def _drop(zone: Path, org: str, source: str, name: str, data: bytes | str) -> Path:
    folder = zone / org / source
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def _tick(instance: DagsterInstance, store: FileStoreResource, cursor: str | None = None):
    context = build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={"file_store": store, "database": DatabaseResource()},
    )
    return landing_zone_sensor(context)


def _run(
    instance: DagsterInstance,
    store: FileStoreResource,
    key: str,
    tags: dict[str, str] | None = None,
):
    if not instance.has_dynamic_partition(landed_files.name, key):
        instance.add_dynamic_partitions(landed_files.name, [key])
    return materialize(
        [uploaded_file, canonical_file],
        partition_key=key,
        instance=instance,
        resources={"database": DatabaseResource(), "file_store": store},
        raise_on_error=False,
        tags=tags,
    )


def _files(database_url: str, org: str) -> list[tuple]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT f.original_filename, f.status, f.row_count, f.processing_error, "
            "f.invalid_row_count, f.detected_schema, f.stored_filename, f.id "
            "FROM uploaded_files f JOIN organizations o ON o.id = f.organization_id "
            "WHERE o.name = %s ORDER BY f.id",
            (org,),
        ).fetchall()


def test_landing_a_bank_file_end_to_end(database_url: str, zone) -> None:
    landing, org, store = zone
    _drop(landing, org, "bank", "statement.csv", BANK_CSV)
    instance = DagsterInstance.ephemeral()
    [request] = _tick(instance, store).run_requests
    result = _run(instance, store, request.partition_key)
    assert result.success

    [(name, status, rows, error, invalid, schema, stored, file_id)] = _files(database_url, org)
    assert (name, status, rows, error, invalid) == ("statement.csv", "PROCESSED", 4, None, 0)
    types = {c["name"]: (c["dataType"], c.get("format")) for c in schema}
    assert types["booking_date"] == ("DATE", "dd/MM/yyyy")
    assert types["amount"][0] == "DECIMAL"
    assert types["txn_id"][0] == "STRING"
    assert stored != "statement.csv" and uuid.UUID(stored.split(".")[0])

    home = Path(store.root)
    canonical = pl.read_parquet(home / "store" / "canonical" / f"{file_id}.parquet")
    assert canonical.get_column("_row_number").to_list() == [1, 2, 3, 4]
    assert canonical.get_column("amount").to_list() == [1500.0, -2300.5, 750.25, 12.0]
    # the zone copy moved to processed/ only after the rows were committed; the original is kept
    assert not (landing / org / "bank" / "statement.csv").exists()
    assert (home / "processed" / org / "bank" / f"{file_id}-statement.csv").read_text() == BANK_CSV
    assert (home / "store" / "originals" / stored).read_text() == BANK_CSV

    [mat] = result.asset_materializations_for_node("canonical_file")
    assert mat.metadata["dagster/row_count"].value == 4
    stages = mat.metadata["stage_seconds"].value
    assert list(stages) == [
        "read",
        "detect schema",
        "convert types",
        "validate",
        "write parquet",
        "record",
    ]
    assert all(seconds >= 0 for seconds in stages.values())
    assert mat.metadata["rows_per_second"].value > 0
    logged = [
        event.message
        for event in instance.all_logs(result.run_id)
        if "statement.csv: convert types done in" in (event.message or "")
    ]
    assert len(logged) == 1
    # a re-run of the partition (backfill) processes the stored original again: no new rows
    assert _run(instance, store, request.partition_key).success
    assert [f[1:3] for f in _files(database_url, org)] == [("PROCESSED", 4)]
    with psycopg.connect(database_url) as conn:
        sync = conn.execute(
            "SELECT status, records_processed FROM sync_logs WHERE uploaded_file_id = %s",
            (file_id,),
        ).fetchall()
    assert sync == [("SUCCESS", 4), ("SUCCESS", 4)]


def test_identical_content_is_not_processed_twice(database_url: str, zone) -> None:
    landing, org, store = zone
    instance = DagsterInstance.ephemeral()
    _drop(landing, org, "bank", "a.csv", BANK_CSV)
    [first] = _tick(instance, store).run_requests
    assert _run(instance, store, first.partition_key, first.tags).success
    _drop(landing, org, "bank", "a-copy.csv", BANK_CSV)
    [second] = _tick(instance, store).run_requests
    assert _run(instance, store, second.partition_key, second.tags).success
    files = _files(database_url, org)
    assert len(files) == 1
    with psycopg.connect(database_url) as conn:
        statuses = conn.execute(
            "SELECT status FROM sync_logs WHERE uploaded_file_id = %s ORDER BY id", (files[0][7],)
        ).fetchall()
    assert statuses == [("SUCCESS",), ("SKIPPED",)]


def test_row_level_failures_flow_on_and_file_level_failures_block(database_url: str, zone) -> None:
    landing, org, store = zone
    instance = DagsterInstance.ephemeral()
    # 100 rows, one with a date that does not parse: the column stays DATE (98% rule)
    rows = [f"TX{i:04},{(i % 28) + 1:02}/01/2024,$1{i}.00,Row {i},N" for i in range(1, 101)]
    rows[41] = "TX0042,not a date,$142.00,Row 42,N"
    _drop(
        landing, org, "bank", "one-bad-row.csv", BANK_CSV.splitlines()[0] + "\n" + "\n".join(rows)
    )
    _drop(landing, org, "bank", "empty.csv", b"")
    requests = _tick(instance, store).run_requests
    results = {
        r.tags["recon/landing_path"].split("/")[-1]: _run(instance, store, r.partition_key)
        for r in requests
    }
    assert results["one-bad-row.csv"].success
    [check] = [
        c
        for c in results["one-bad-row.csv"].get_asset_check_evaluations()
        if c.check_name == "rows_pass_validation"
    ]
    assert check.passed is False
    assert check.metadata["failing_rows"].value == 1
    [example] = check.metadata["examples"].value
    assert example["row_number"] == 42 and example["column"] == "booking_date"
    assert example["value"] == "not a date"

    assert not results["empty.csv"].success
    by_name = {f[0]: f for f in _files(database_url, org)}
    assert by_name["one-bad-row.csv"][1:3] == ("PROCESSED", 100)
    assert by_name["one-bad-row.csv"][4] == 1
    assert by_name["empty.csv"][1] == "FAILED"
    assert "empty.csv" in by_name["empty.csv"][3] and "empty" in by_name["empty.csv"][3]
    quarantined = list((Path(store.root) / "quarantine" / org / "bank").glob("*-empty.csv"))
    assert len(quarantined) == 1


def test_a_tick_with_a_hundred_files_and_a_restarted_sensor(database_url: str, zone) -> None:
    landing, org, store = zone
    instance = DagsterInstance.ephemeral()
    for i in range(100):
        _drop(landing, org, "ledger", f"part-{i:03}.csv", f"ref,amount\nR{i},{i}.50\n")
    first = _tick(instance, store)
    keys = [r.run_key for r in first.run_requests]
    assert len(keys) == 100 and len(set(keys)) == 100
    assert keys == [r.partition_key for r in first.run_requests]
    [add] = first.dynamic_partitions_requests
    assert sorted(add.partition_keys) == sorted(keys)
    instance.add_dynamic_partitions(landed_files.name, keys)

    # 40 runs complete, then the sensor restarts from its last committed cursor (or none):
    for key in keys[:40]:
        assert _run(instance, store, key).success
    for cursor in (first.cursor, None):
        again = _tick(instance, store, cursor)
        # no file skipped, none repeated: exactly the 60 waiting files, under the same run keys
        assert [r.run_key for r in again.run_requests] == keys[40:]
        assert again.dynamic_partitions_requests == []
    for key in keys[40:]:
        assert _run(instance, store, key).success
    assert _tick(instance, store).run_requests == []
    files = _files(database_url, org)
    assert len(files) == 100 and {f[1] for f in files} == {"PROCESSED"}
    assert json.loads(_tick(instance, store).cursor) == {}


def _sha_and_stored(database_url: str, org: str) -> list[tuple[str, str]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT f.content_sha256, f.stored_filename FROM uploaded_files f "
            "JOIN organizations o ON o.id = f.organization_id WHERE o.name = %s ORDER BY f.id",
            (org,),
        ).fetchall()


def _count_hashing(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    hashed: list[Path] = []
    real = landing.sha256_of

    def counting(path: Path | int) -> str:
        # landing hashes through the descriptor it checked: count the file it is open on
        hashed.append(Path(os.readlink(f"/proc/self/fd/{path}")) if isinstance(path, int) else path)
        return real(path)

    monkeypatch.setattr(landing, "sha256_of", counting)
    return hashed


def test_the_run_trusts_the_sensors_hash_only_for_the_unchanged_file(
    database_url: str, zone, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sensor's hash reaches the run in tags; landing hashes again only a changed file."""
    landing_zone, org, store = zone
    instance = DagsterInstance.ephemeral()
    path = _drop(landing_zone, org, "bank", "statement.csv", BANK_CSV)
    hashed = _count_hashing(monkeypatch)
    [request] = _tick(instance, store).run_requests
    assert hashed == [path]  # the sensor hashed it once, for the partition key
    sha = hashlib.sha256(BANK_CSV.encode()).hexdigest()
    assert request.tags[landing.SHA256_TAG] == sha
    assert request.tags[landing.SIZE_TAG] == str(len(BANK_CSV))
    assert request.tags[landing.MTIME_NS_TAG] == str(path.stat().st_mtime_ns)
    assert request.partition_key.endswith("#" + sha[:12])
    assert _run(instance, store, request.partition_key, request.tags).success
    assert hashed == [path]  # ...and the run did not hash it again
    assert _sha_and_stored(database_url, org)[0][0] == sha

    # a file rewritten after the tick (same size, other bytes, new mtime) is hashed again
    changed = BANK_CSV.replace("TX0001", "TX9999")
    other = _drop(landing_zone, org, "bank", "other.csv", BANK_CSV.replace("TX0002", "TX8888"))
    [request] = [r for r in _tick(instance, store).run_requests if "other.csv" in r.run_key]
    hashed.clear()
    other.write_text(changed)
    stat = other.stat()
    os.utime(other, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert _run(instance, store, request.partition_key, request.tags).success
    assert hashed == [other]
    [_, (recorded, stored)] = _sha_and_stored(database_url, org)
    assert recorded == hashlib.sha256(changed.encode()).hexdigest() != request.tags["recon/sha256"]
    assert (Path(store.root) / "store" / "originals" / stored).read_text() == changed


def test_a_fingerprint_for_another_file_or_key_is_not_trusted(
    database_url: str, zone, monkeypatch: pytest.MonkeyPatch
) -> None:
    landing_zone, org, store = zone
    instance = DagsterInstance.ephemeral()
    _drop(landing_zone, org, "bank", "a.csv", BANK_CSV)
    _drop(landing_zone, org, "bank", "b.csv", BANK_CSV.replace("TX0003", "TX7777"))
    requests = {
        r.tags["recon/landing_path"].split("/")[-1]: r for r in _tick(instance, store).run_requests
    }
    hashed = _count_hashing(monkeypatch)
    # b's fingerprint on a's run (same size and, say, mtime): the path tag gives it away
    tags = {
        **requests["b.csv"].tags,
        "recon/landing_path": requests["a.csv"].tags["recon/landing_path"],
    }
    tags[landing.MTIME_NS_TAG] = requests["a.csv"].tags[landing.MTIME_NS_TAG]
    assert _run(instance, store, requests["a.csv"].partition_key, tags).success
    assert len(hashed) == 1
    [(recorded, _)] = _sha_and_stored(database_url, org)
    assert recorded == hashlib.sha256(BANK_CSV.encode()).hexdigest()
    # a malformed fingerprint is ignored too
    bad = {**requests["b.csv"].tags, landing.SHA256_TAG: "not-a-hash"}
    assert _run(instance, store, requests["b.csv"].partition_key, bad).success
    assert len(hashed) == 2


def test_a_cursor_from_before_full_hashes_still_works(database_url: str, zone) -> None:
    """Cursors used to map files to partition keys; such a cursor only costs a re-hash."""
    landing_zone, org, store = zone
    instance = DagsterInstance.ephemeral()
    _drop(landing_zone, org, "bank", "a.csv", BANK_CSV)
    first = _tick(instance, store)
    old_cursor = json.dumps(
        {marker: first.run_requests[0].partition_key for marker in json.loads(first.cursor)}
    )
    again = _tick(instance, store, old_cursor)
    assert [r.run_key for r in again.run_requests] == [first.run_requests[0].run_key]
    assert again.run_requests[0].tags == first.run_requests[0].tags
    assert json.loads(again.cursor) == json.loads(first.cursor)


def _truncated_parquet(tmp: Path) -> bytes:
    path = tmp / "full.parquet"
    pl.DataFrame(
        {"ref": [f"R{i}" for i in range(2000)], "amount": list(range(2000))}
    ).write_parquet(path)
    data = path.read_bytes()
    return data[: len(data) // 2]


def test_bad_input_corpus_through_the_sensor_and_assets(
    database_url: str, zone, tmp_path: Path
) -> None:
    """Each bad file ends FAILED with an actionable error or as row errors; bytes are kept;
    the good file dropped beside them is processed all the same."""
    landing, org, store = zone
    instance = DagsterInstance.ephemeral()
    corpus: dict[str, bytes] = {
        "empty.csv": b"",
        "header-only.csv": b"ref,amount\n",
        "garbage.csv": bytes(range(256)) * 40,
        "ragged.csv": b"ref,amount,date\nR1,10,2024-01-01\nR2,20\nR3,30,2024-01-03\n",
        "quotes.csv": b'ref,memo\nR1,"never closed\nR2,fine\n',
        "dupe-columns.csv": b"ref,amount,ref\nR1,1,R1\n",
        "one-huge-line.csv": b"x" * 3_000_000,
        "truncated.parquet": _truncated_parquet(tmp_path),
        "bad\x07name...csv": b"ref,amount\nR1,1\n",
        "formulas.csv": b"ref,note\nR1,=SUM(A1:A3)\nR2,=cmd|' /C calc'!A0\n",
        "latin1.csv": "ref,payee\nR1,Caf\xe9 \xa3\n".encode("cp1252"),
        "zz-good.csv": BANK_CSV.encode(),
    }
    for name, data in corpus.items():
        _drop(landing, org, "mixed", name, data)
    requests = _tick(instance, store).run_requests
    assert len(requests) == len(corpus)
    for request in requests:  # one run per file, whatever happened to the previous one
        _run(instance, store, request.partition_key)

    files = {f[0]: f for f in _files(database_url, org)}
    failed = {n: f[3] for n, f in files.items() if f[1] == "FAILED"}
    expected_failures = {
        "empty.csv": "empty",
        "header-only.csv": "no data rows",
        "garbage.csv": "is not a text table",
        "ragged.csv": "data row 2",
        "quotes.csv": "quote",
        "dupe-columns.csv": "ref",
        "one-huge-line.csv": "",
        "truncated.parquet": "Parquet",
    }
    for name, fragment in expected_failures.items():
        assert name in failed, f"{name} should have failed: {files.get(name)}"
        assert name in failed[name] and fragment in failed[name], failed[name]
    processed = {n for n, f in files.items() if f[1] == "PROCESSED"}
    assert {"formulas.csv", "latin1.csv", "zz-good.csv", "bad\\x07name...csv"} <= processed
    # the original bytes of every file are kept, failed ones in quarantine
    home = Path(store.root)
    for name, f in files.items():
        assert (home / "store" / "originals" / f[6]).read_bytes() == corpus[
            name.replace("\\x07", "\x07")
        ]
    assert len(list((home / "quarantine" / org / "mixed").iterdir())) == len(expected_failures)
    assert list((landing / org / "mixed").iterdir()) == []
    # formulas are text, never evaluated; Latin-1 decoded
    formulas = pl.read_parquet(home / "store" / "canonical" / f"{files['formulas.csv'][7]}.parquet")
    assert formulas.get_column("note").to_list() == ["=SUM(A1:A3)", "=cmd|' /C calc'!A0"]
    latin = pl.read_parquet(home / "store" / "canonical" / f"{files['latin1.csv'][7]}.parquet")
    assert latin.get_column("payee").to_list() == ["Café £"]


def test_symlinks_and_special_files_in_the_zone_are_refused_and_left_alone(
    database_url: str, zone, tmp_path: Path
) -> None:
    landing_zone, org, store = zone
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "passwd"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n", encoding="utf-8")
    (outside / "more.csv").write_text(BANK_CSV, encoding="utf-8")
    folder = landing_zone / org / "bank"
    folder.mkdir(parents=True)
    (folder / "x.csv").symlink_to(secret)  # a file symlink
    (landing_zone / org / "linked").symlink_to(outside)  # a symlinked data-source folder
    (landing_zone / "other-org").symlink_to(outside.parent)  # a symlinked organization
    os.mkfifo(folder / "pipe.csv")  # a FIFO would block a reader for ever
    _drop(landing_zone, org, "bank", "real.csv", BANK_CSV)
    with DagsterInstance.ephemeral() as instance:
        result = _tick(instance, store)
    landed = [r.tags[LANDING_PATH_TAG] for r in result.run_requests]
    assert landed == [f"{org}/bank/real.csv"]
    refused = dict(
        (str(item.relative), reason)
        for item, reason in landing.scan_with_refusals(landing_zone)
        if reason
    )
    assert "symbolic link" in refused[f"{org}/bank/x.csv"]
    assert "symbolic link" in refused[f"{org}/linked"]
    assert "symbolic link" in refused["other-org"]
    assert "not a regular file" in refused[f"{org}/bank/pipe.csv"]
    # landing it directly is refused too, before anything is read, written or moved
    item = landing.LandingPath(folder / "x.csv", Path(org, "bank", "x.csv"), org, "bank")
    with pytest.raises(landing.LandingRefused, match="symbolic link"):
        landing.land_file(engine_for(database_url), store.store(), item)
    assert secret.read_text(encoding="utf-8").startswith("root:")  # not moved, not touched
    assert (outside / "more.csv").exists()
    assert _files(database_url, org) == []
