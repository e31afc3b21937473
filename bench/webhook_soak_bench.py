"""Benchmark: a soak of signed webhook deliveries on loopback, nothing lost, nothing landed twice.

Starts the embedded database under a fresh RECON_HOME and one `recon serve` (its default
landing workers: `max_concurrent_runs`, 2), adds one WEBHOOK source per repeat (`recon
sources add` + `recon secrets set webhook_secret`, by their functions), then per repeat:

1. soak: `--posts` (1,000) signed CSV deliveries of distinct content (5 rows each) from
   `--clients` (4) concurrent httpx clients; each answer's status and latency kept;
2. replays: the last `--replays` (50) answered sent again as they were (same timestamp and
   signature, still inside the replay window: answered from memory, `replayed`), then signed
   again (new timestamp: the content hash says `duplicate_of`);
3. check: every delivery answered 201 with its own uploaded_file_id, one `uploaded_files`
   row per content SHA-256 sent, all PROCESSED, none extra, the landing zone empty;
4. baseline: `--baseline-files` (200) other files of the same shape landed by `recon land`'s
   function (`recon.land.land_path`, copy into the zone + the partition's run) in as many
   worker processes as the server has: the same landing without HTTP, signing or the server.

Prints each repeat's figures (throughput, p50/p95/max latency, the baseline's throughput and
per-file time) and the median over the repeats.

    .venv/bin/python bench/webhook_soak_bench.py [--posts 1000] [--clients 4] [--repeat 3]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SECRET = "soak-" + uuid.uuid4().hex
_LOCAL = threading.local()
_WORKER: dict[str, Any] = {}


def payload(tag: str) -> bytes:
    """A small bank-export CSV whose content is unique to `tag`."""
    rows = [
        f"{tag}-{j},{1 + j:02d}/01/2024,{random.randint(-99999, 99999) / 100:.2f},memo {tag} {j}"
        for j in range(5)
    ]
    return ("txn_id,booking_date,amount,description\n" + "\n".join(rows) + "\n").encode()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def _client() -> Any:
    import httpx

    if not hasattr(_LOCAL, "client"):
        _LOCAL.client = httpx.Client(timeout=600)
    return _LOCAL.client


def post(base: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any], float]:
    started = time.perf_counter()
    response = _client().post(base, content=body, headers={"Content-Type": "text/csv", **headers})
    return response.status_code, response.json(), time.perf_counter() - started


def soak(args: argparse.Namespace, base: str, url: str, org: str, home: Path) -> dict[str, Any]:
    """Steps 1-3 of the module docstring for one organization's source."""
    import sqlalchemy as sa

    from resources.database import engine_for
    from resources.webhook_auth import signed_headers

    endpoint = f"{base}/webhooks/{org}/hook"
    bodies = [payload(f"{org}-{i}") for i in range(args.posts)]
    sent: dict[int, dict[str, str]] = {}
    finished: list[int] = []  # indices in the order their answers came

    def deliver(i: int) -> tuple[int, dict[str, Any], float]:
        sent[i] = signed_headers(SECRET, bodies[i])  # signed as it is sent
        answer = post(endpoint, bodies[i], sent[i])
        finished.append(i)
        return answer

    started = time.perf_counter()
    with ThreadPoolExecutor(args.clients) as pool:
        answers = list(pool.map(deliver, range(args.posts)))
    elapsed = time.perf_counter() - started
    latencies = [a[2] for a in answers]
    statuses = Counter(a[0] for a in answers)
    ids = [a[1].get("uploaded_file_id") for a in answers]
    picked = finished[-args.replays :] if args.replays else []  # the latest: inside the window
    replayed = [post(endpoint, bodies[i], sent[i]) for i in picked]
    resigned = [post(endpoint, bodies[i], signed_headers(SECRET, bodies[i])) for i in picked]
    with engine_for(url).connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT f.id, f.content_sha256, f.status FROM uploaded_files f "
                "JOIN organizations o ON o.id = f.organization_id WHERE o.name = :o"
            ),
            {"o": org},
        ).all()
    by_sha = Counter(r.content_sha256 for r in rows)
    wanted = {hashlib.sha256(body).hexdigest() for body in bodies}
    left = [p for p in (home / "landing" / org).rglob("*") if p.is_file()]
    return {
        "posts": args.posts,
        "clients": args.clients,
        "seconds": elapsed,
        "posts_per_second": args.posts / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p95_ms": 1000 * percentile(latencies, 0.95),
        "max_ms": 1000 * max(latencies),
        "statuses": dict(statuses),
        "distinct_ids": len(set(ids) - {None}),
        "rows": len(rows),
        "lost": len(wanted - set(by_sha)),
        "landed_twice": sum(1 for n in by_sha.values() if n > 1),
        "extra_rows": len(set(by_sha) - wanted),
        "not_processed": sum(1 for r in rows if r.status != "PROCESSED"),
        "replays_answered_from_memory": sum(
            1 for s, b, _ in replayed if s == 200 and b.get("replayed") and b["uploaded_file_id"]
        ),
        "resigned_found_duplicate": sum(
            1 for s, b, _ in resigned if s == 200 and b.get("duplicate_of") is not None
        ),
        "replays": len(picked),
        "left_in_zone": len(left),
    }


def _start_baseline_worker(url: str) -> None:
    import logging

    from recon.lifecycle import instance_for

    logging.getLogger("dagster").setLevel(logging.WARNING)
    _WORKER["url"], _WORKER["instance"] = url, instance_for(url)


def _land_directly(path: str, org: str) -> tuple[str, float]:
    from recon.land import land_path

    started = time.perf_counter()
    summary = land_path(_WORKER["url"], _WORKER["instance"], Path(path), org, "hook")
    return summary["status"], time.perf_counter() - started


def _ready() -> bool:
    return "instance" in _WORKER


def baseline(args: argparse.Namespace, url: str, org: str, work: Path) -> dict[str, Any]:
    """Step 4: the same shape of files landed by `recon land`'s function, no HTTP."""
    folder = work / f"baseline-{org}"
    folder.mkdir()
    paths = []
    for i in range(args.baseline_files):
        path = folder / f"f{i}.csv"
        path.write_bytes(payload(f"{org}-base-{i}"))
        paths.append(str(path))
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        args.workers, mp_context=context, initializer=_start_baseline_worker, initargs=(url,)
    ) as pool:
        ready = [pool.submit(_ready) for _ in range(args.workers)]  # workers up first
        assert all(f.result() for f in ready)
        started = time.perf_counter()
        done = list(pool.map(_land_directly, paths, [org] * len(paths)))
        elapsed = time.perf_counter() - started
    latencies = [seconds for _status, seconds in done]
    return {
        "files": len(paths),
        "seconds": elapsed,
        "files_per_second": len(paths) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p95_ms": 1000 * percentile(latencies, 0.95),
        "statuses": dict(Counter(status for status, _ in done)),
    }


def start_server(home: Path, url: str, workers: int) -> tuple[subprocess.Popen, str]:
    import httpx

    sys.path.insert(0, str(ROOT / "tests"))
    from helpers import free_port

    port = free_port()
    log = (home / "serve.log").open("w")
    env = {**os.environ, "RECON_HOME": str(home), "RECON_DATABASE_URL": url}
    command = [str(Path(sys.executable).with_name("recon")), "serve", "--port", str(port)]
    command += ["--workers", str(workers)]
    proc = subprocess.Popen(
        command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while True:
        try:
            if httpx.get(f"{base}/health", timeout=5).status_code == 200:
                return proc, base
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"recon serve did not start: {(home / 'serve.log').read_text()}")
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--replays", type=int, default=50)
    parser.add_argument("--baseline-files", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2, help="landing workers (both sides)")
    parser.add_argument("--keep", action="store_true", help="keep the RECON_HOME")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="bench-webhook-", dir="/tmp"))
    os.environ["RECON_HOME"] = str(home)
    os.environ.pop("RECON_DATABASE_URL", None)
    from recon.cli_secrets import set_secret
    from recon.cli_sources import add_source
    from resources import migrations
    from resources.database import engine_for, resolve_database_url
    from resources.embedded import stop_embedded_server

    sys.path.insert(0, str(ROOT / "tests"))
    from helpers import stop_process_group

    proc = None
    try:
        url = resolve_database_url()
        migrations.migrate(url)
        engine = engine_for(url)
        orgs = [f"soak-{r}-{uuid.uuid4().hex[:6]}" for r in range(args.repeat)]
        for org in orgs:
            add_source(engine, org, "hook", "WEBHOOK")
            set_secret(engine, org, "hook", "webhook_secret", SECRET)
        proc, base = start_server(home, url, args.workers)
        print(f"load average before: {os.getloadavg()}", flush=True)
        results = []
        for r, org in enumerate(orgs):
            soaked = soak(args, base, url, org, home)
            print(f"repeat {r + 1} soak: {json.dumps(soaked)}", flush=True)
            base_line = baseline(args, url, f"{org}-direct", home)
            print(f"repeat {r + 1} baseline (land_path): {json.dumps(base_line)}", flush=True)
            results.append((soaked, base_line))
        print(f"load average after: {os.getloadavg()}")
        med = {
            key: statistics.median(s[key] for s, _ in results)
            for key in ("posts_per_second", "p50_ms", "p95_ms", "max_ms")
        }
        med["baseline_files_per_second"] = statistics.median(
            b["files_per_second"] for _, b in results
        )
        med["baseline_p50_ms"] = statistics.median(b["p50_ms"] for _, b in results)
        faults = sum(
            s["lost"] + s["landed_twice"] + s["extra_rows"] + s["not_processed"]
            + s["left_in_zone"] + (s["posts"] - s["statuses"].get(201, 0))
            + (s["replays"] - s["replays_answered_from_memory"])
            + (s["replays"] - s["resigned_found_duplicate"])
            for s, _ in results
        )  # fmt: skip
        print(f"median of {args.repeat}: {json.dumps({k: round(v, 2) for k, v in med.items()})}")
        print(f"faults (lost, twice, extra, not processed, not 201, replays): {faults}")
        if faults:
            sys.exit(1)
    finally:
        if proc is not None:
            stop_process_group(proc)
        stop_embedded_server(home)
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
