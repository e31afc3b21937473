"""`recon land`: one file or one landing-zone pass, and what the zone refuses to read.

The commands run as a user runs them (the installed `recon`), each test with a RECON_HOME of
its own (so its own landing zone) on the session's embedded database. The refusal rules and
the checked descriptor are also tested directly, without a database.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from helpers import run_recon

from pipelines.ingest import landing, zone
from resources.database import engine_for
from resources.file_store import copy_into_store

BANK_CSV = (
    "txn_id,booking_date,amount,description\n"
    "TX0001,15/01/2024,1500.00,Payment received\n"
    "TX0002,16/01/2024,-2300.50,Invoice payment\n"
    "TX0003,17/01/2024,750.25,Refund processed\n"
    "TX0004,31/01/2024,12.00,Monthly fee\n"
)

ORG_JOIN = "JOIN organizations o ON o.id = f.organization_id"


@pytest.fixture()
def home(tmp_path: Path, database_url: str) -> dict[str, str]:
    """Environment for `recon`: a RECON_HOME (and landing zone) of this test's own."""
    return {"RECON_HOME": str(tmp_path / "home"), "RECON_DATABASE_URL": database_url}


def _land(env: dict[str, str], *args: str) -> tuple[int, dict, str]:
    code, out, err = run_recon("land", *args, env=env, timeout=300)
    assert out.strip(), err
    return code, json.loads(out.strip().splitlines()[-1]), err


def _rows(url: str, query: str, **params: object) -> list[sa.Row]:
    with engine_for(url).connect() as conn:
        return list(conn.execute(sa.text(query), params))


def _refusal_rows(url: str, org: str) -> list[sa.Row]:
    return _rows(
        url,
        "SELECT s.organization_id, s.data_source_id, s.uploaded_file_id, s.status, "
        "s.error_message, o.name AS organization FROM sync_logs s "
        "JOIN organizations o ON o.id = s.organization_id "
        "WHERE s.error_message LIKE :p ORDER BY s.id",
        p=f"landing zone entry '{org}/%",
    )


def test_scan_refuses_links_and_special_files_and_moves_nothing(
    home: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    org = f"org-{uuid.uuid4().hex[:8]}"
    zone_dir = Path(home["RECON_HOME"]) / "landing"
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.csv"
    secret.write_text(BANK_CSV)
    other = outside / "other.csv"
    other.write_text(BANK_CSV.replace("TX", "HL"))
    bank = zone_dir / org / "bank"
    bank.mkdir(parents=True)
    (bank / "x.csv").symlink_to(secret)  # a symlink to a file outside the zone
    (zone_dir / org / "linked").symlink_to(outside)  # a symlinked data-source folder
    os.link(other, bank / "hard.csv")  # a hard link to a file outside the zone
    os.mkfifo(bank / "pipe.csv")  # a FIFO would block a reader for ever

    code, outcome, err = _land(home, "--scan", "--org", org)
    assert code == 0, err
    assert outcome["landed"] == [] and outcome["failed"] == []
    refused = {r["path"]: r["reason"] for r in outcome["refused"]}
    assert set(refused) == {f"{org}/bank/x.csv", f"{org}/linked", f"{org}/bank/hard.csv"} | {
        f"{org}/bank/pipe.csv"
    }
    assert "symbolic link" in refused[f"{org}/bank/x.csv"]
    assert "symbolic link" in refused[f"{org}/linked"]
    assert "hard link" in refused[f"{org}/bank/hard.csv"]
    assert "copy the file" in refused[f"{org}/bank/hard.csv"]
    assert "FIFO" in refused[f"{org}/bank/pipe.csv"]
    assert all(r["new"] for r in outcome["refused"])
    # nothing read, moved or written: the outside files and the links are as they were
    assert secret.read_text() == BANK_CSV and other.read_text() == BANK_CSV.replace("TX", "HL")
    assert (bank / "x.csv").is_symlink() and (zone_dir / org / "linked").is_symlink()
    assert (bank / "hard.csv").stat().st_nlink == 2
    assert not (Path(home["RECON_HOME"]) / "processed").exists()
    assert not (Path(home["RECON_HOME"]) / "store" / "originals").exists()
    assert (
        _rows(
            database_url, "SELECT 1 FROM uploaded_files WHERE partition_key LIKE :p", p=f"{org}/%"
        )
        == []
    )
    # one FAILED row each, in the default organization (the folder names none that exists)
    rows = _refusal_rows(database_url, org)
    assert len(rows) == 4
    assert {r.status for r in rows} == {"FAILED"}
    assert {r.organization for r in rows} == {"Default Organization"}
    assert all(r.uploaded_file_id is None and r.data_source_id is None for r in rows)
    assert any(
        f"'{org}/bank/x.csv'" in r.error_message and "symbolic link" in r.error_message
        for r in rows
    )
    assert _rows(database_url, "SELECT 1 FROM organizations WHERE name = :n", n=org) == []

    # again: the same entries, unchanged, are listed but not recorded twice ...
    code, again, err = _land(home, "--scan", "--org", org)
    assert code == 0, err
    assert len(again["refused"]) == 4 and not any(r["new"] for r in again["refused"])
    assert len(_refusal_rows(database_url, org)) == 4
    # ... and a changed one (another mtime) is recorded once more
    stat = os.stat(bank / "pipe.csv")
    os.utime(bank / "pipe.csv", ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    code, third, err = _land(home, "--scan", "--org", org)
    assert code == 0, err
    assert [r["path"] for r in third["refused"] if r["new"]] == [f"{org}/bank/pipe.csv"]
    assert len(_refusal_rows(database_url, org)) == 5


def test_land_a_file_its_duplicate_and_a_bad_file(
    home: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    org = f"org-{uuid.uuid4().hex[:8]}"
    good = tmp_path / "in" / "bank.csv"
    good.parent.mkdir()
    good.write_text(BANK_CSV)

    code, first, err = _land(home, str(good), "--org", org, "--data-source", "bank")
    assert code == 0, err
    assert first["status"] == "PROCESSED" and first["format"] == "csv"
    assert first["row_count"] == 4 and first["processing_error"] is None
    assert first["duplicate_of"] is None and isinstance(first["uploaded_file_id"], int)
    assert good.read_text() == BANK_CSV  # the original stays where it was

    code, again, err = _land(home, str(good), "--org", org, "--data-source", "bank")
    assert code == 0, err
    assert again["duplicate_of"] == first["uploaded_file_id"] == again["uploaded_file_id"]
    assert again["status"] == "PROCESSED" and again["row_count"] == 4
    files = _rows(
        database_url,
        f"SELECT f.id FROM uploaded_files f {ORG_JOIN} WHERE o.name = :n",
        n=org,
    )
    assert len(files) == 1

    blob = tmp_path / "in" / "blob.csv"
    data = bytes(range(256)) * 64
    blob.write_bytes(data)
    code, bad, err = _land(home, str(blob), "--org", org, "--data-source", "bank")
    assert code == 1
    assert bad["status"] == "FAILED" and bad["processing_error"]
    assert "recon: error:" in err
    assert blob.read_bytes() == data  # the original kept
    [row] = _rows(
        database_url,
        "SELECT status, processing_error FROM uploaded_files WHERE id = :i",
        i=bad["uploaded_file_id"],
    )
    assert row.status == "FAILED" and row.processing_error == bad["processing_error"]
    assert _rows(
        database_url,
        "SELECT 1 FROM sync_logs WHERE uploaded_file_id = :i AND status = 'FAILED'",
        i=bad["uploaded_file_id"],
    )
    quarantined = list((Path(home["RECON_HOME"]) / "quarantine" / org / "bank").iterdir())
    assert [p.read_bytes() for p in quarantined] == [data]

    # a refusal under folders naming an existing organization and data source is theirs
    os.mkfifo(Path(home["RECON_HOME"]) / "landing" / org / "bank" / "pipe.csv")
    code, scanned, err = _land(home, "--scan", "--org", org)
    assert code == 0, err
    [refusal] = _refusal_rows(database_url, org)
    assert refusal.organization == org and refusal.data_source_id is not None


def test_scan_lands_each_new_file_once(home: dict[str, str], database_url: str) -> None:
    org = f"org-{uuid.uuid4().hex[:8]}"
    folder = Path(home["RECON_HOME"]) / "landing" / org / "ledger"
    folder.mkdir(parents=True)
    (folder / "a.csv").write_text(BANK_CSV)
    (folder / "b.csv").write_text(BANK_CSV.replace("TX", "LX"))

    code, first, err = _land(home, "--scan", "--org", org)
    assert code == 0, err
    assert sorted(r["path"] for r in first["landed"]) == [
        f"{org}/ledger/a.csv",
        f"{org}/ledger/b.csv",
    ]
    assert {r["status"] for r in first["landed"]} == {"PROCESSED"}
    assert {r["row_count"] for r in first["landed"]} == {4}
    assert first["refused"] == [] and first["failed"] == []
    assert list(folder.iterdir()) == []  # moved to processed/

    code, second, err = _land(home, "--scan", "--org", org)
    assert code == 0, err
    assert second == {"landed": [], "refused": [], "failed": [], "in_progress": []}
    count = _rows(
        database_url,
        f"SELECT count(*) AS n FROM uploaded_files f {ORG_JOIN} WHERE o.name = :n",
        n=org,
    )
    assert count[0].n == 2


def test_land_needs_a_file_or_scan_and_a_folder_name(home: dict[str, str]) -> None:
    code, out, err = run_recon("land", env=home)
    assert code == 1 and "FILE or --scan" in err
    code, out, err = run_recon("land", "--scan", "--org", "../x", env=home)
    assert code == 1 and "cannot name a landing-zone folder" in err
    assert out == ""


# the zone's rules, without a database


def test_refusal_names_hard_links_fifos_sockets_and_folders(tmp_path: Path) -> None:
    folder = tmp_path / "z" / "org" / "src"
    folder.mkdir(parents=True)
    plain = folder / "plain.csv"
    plain.write_text(BANK_CSV)
    assert zone.refusal(tmp_path / "z", plain) is None
    os.link(plain, tmp_path / "elsewhere.csv")
    assert "hard link" in zone.refusal(tmp_path / "z", plain)
    os.mkfifo(folder / "fifo")
    assert "FIFO" in zone.refusal(tmp_path / "z", folder / "fifo")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(folder / "s"))
        assert "socket" in zone.refusal(tmp_path / "z", folder / "s")
    (folder / "sub").mkdir()
    assert "folder" in zone.refusal(tmp_path / "z", folder / "sub")
    assert zone.refusal(tmp_path / "z", tmp_path / "elsewhere.csv") == "not inside the landing zone"


def test_open_in_zone_refuses_what_changed_since_the_scan(tmp_path: Path) -> None:
    root = tmp_path / "z"
    folder = root / "org" / "src"
    folder.mkdir(parents=True)
    path = folder / "a.csv"
    path.write_text(BANK_CSV)
    scanned = path.lstat()
    fd = zone.open_in_zone(root, path, scanned)
    try:
        assert landing.sha256_of(fd) == landing.sha256_of(path)
    finally:
        os.close(fd)
    # replaced by another file after the scan
    path.unlink()
    path.write_text(BANK_CSV)
    with pytest.raises(landing.LandingRefused, match="replaced or changed"):
        zone.open_in_zone(root, path, scanned)
    # replaced by a symlink to a file outside
    secret = tmp_path / "secret"
    secret.write_text("root:x:0:0\n")
    path.unlink()
    path.symlink_to(secret)
    with pytest.raises(landing.LandingRefused, match="symbolic link"):
        zone.open_in_zone(root, path, scanned)


def test_the_store_gets_a_copy_never_a_link(tmp_path: Path) -> None:
    source = tmp_path / "zone.csv"
    source.write_text(BANK_CSV)
    target = tmp_path / "store" / "originals" / "x.csv"
    fd = os.open(source, os.O_RDONLY)
    try:
        assert copy_into_store(fd, target) == len(BANK_CSV)
    finally:
        os.close(fd)
    assert source.stat().st_nlink == 1 and target.stat().st_ino != source.stat().st_ino
    source.write_text("changed through the zone\n")
    assert target.read_text() == BANK_CSV
    assert [p.name for p in target.parent.iterdir()] == ["x.csv"]  # no temporary left
