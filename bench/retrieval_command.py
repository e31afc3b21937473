"""The whole `recon embed` command, timed on the retrieval corpus (>= 4,000 exceptions).

    .venv/bin/python bench/retrieval_command.py [--count 4200] [--repeat 3] \\
        [--embedder minilm minilm-dense minilm-int8 static docfit minilm-int8@1] [--paired]

Plants `bench/retrieval_corpus.py`'s exceptions as one COMPLETED reconciliation in a scratch
database (`embed_bench_<hex>`, on the configured server as `bench/embed_bench.py` makes it;
dropped at the end), then per embedder and repeat truncates `embedding_cache` and
`document_embeddings` (nothing is served from the cache, the indexes start empty) and runs
`recon embed ID` in a new process (`RECON_DATABASE_URL` the scratch database, `RECON_HOME` a
scratch directory for Dagster's own storage), timed from process start to exit: CLI start-up,
migrations check, the Dagster run, texts, model calls, cache and document writes, suggested
resolutions. `recon embed` uses the definitions' `EmbedderResource()`; to time another
configuration the child process makes `EmbedderResource.embedder()` return that
configuration's embedder before the CLI starts (what changing the resource's default would
do). `name@N` runs that configuration with N torch threads (`torch.set_num_threads` in the
child before the model loads; default: torch's own choice). `--paired` interleaves the
configurations in every repeat (round 1: each in turn, round 2: ...), so each run of a
configuration is timed next to one of the first configuration, and prints per configuration
the median of its per-round speed ratios against the first (a busy machine's load changes
within minutes; a ratio of neighbouring runs is steadier than the rates). Prints
exceptions/s (the median of `--repeat`) per embedder with the 1-minute load average before
and after each run (two shared cores: other work shows in the rates); the last stdout line
is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MINILM = {"implementation": "sentence-transformers"}
CONFIGS: dict[str, dict[str, Any]] = {
    "minilm": MINILM,
    "minilm-dense": {**MINILM, "dense_texts": True},
    "minilm-int8": {**MINILM, "dense_texts": True, "quantized": True},
    "static": {"implementation": "static"},
    "docfit": {"implementation": "docfit"},  # the resource's default since 2026-12-03
}


def plant(url: str, count: int, seed: int) -> int:
    """The corpus as one COMPLETED reconciliation of a new organization; its id."""
    from bench.embed_bench import create_reconciliation
    from bench.retrieval_corpus import generate
    from resources.database import copy_rows, engine_for

    engine = engine_for(url)
    org, rid = create_reconciliation(engine, "Retrieval Bench")
    columns = ["reconciliation_id", "organization_id", "type", "severity", "status"]
    columns += ["description", "source_data", "target_data", "diff"]
    rows = (
        (rid, org, e["type"], e["severity"], "OPEN", e["description"], e["source_data"],
         e["target_data"], e["diff"])
        for e in generate(count, seed).exceptions
    )  # fmt: skip
    with engine.begin() as conn:
        copy_rows(conn, "reconciliation_exceptions", columns, rows)
    return rid


def forget(url: str) -> None:
    """Nothing embedded, nothing cached (every text goes to the model again), empty indexes.

    TRUNCATE, not DELETE: deleted rows stay in the HNSW graphs until a vacuum, and pgvector
    files a re-inserted identical vector under the existing element instead of linking a new
    one, so every repeat after the first timed a fraction of the real index upkeep."""
    from resources.database import engine_for

    with engine_for(url).begin() as conn:
        conn.execute(sa.text("TRUNCATE document_embeddings, embedding_cache"))


def split_config(spec: str) -> tuple[str, int]:
    """`name` or `name@threads` -> (name, threads; 0: torch's default)."""
    name, _, threads = spec.partition("@")
    if name not in CONFIGS or (threads and not threads.isdigit()):
        raise SystemExit(f"unknown embedder {spec!r}; use one of {', '.join(CONFIGS)}[@threads]")
    return name, int(threads or 0)


def child(config: str, rid: int) -> None:
    """In the child process: `recon embed RID --org 'Retrieval Bench'` with `config`."""
    from resources.embedder import EmbedderResource

    name, threads = split_config(config)
    if threads:
        import torch

        torch.set_num_threads(threads)
    chosen = EmbedderResource(**CONFIGS[name]).embedder()
    EmbedderResource.embedder = lambda self: chosen  # type: ignore[method-assign]
    from recon.cli import app

    app(["embed", str(rid), "--org", "Retrieval Bench"], standalone_mode=False)


def timed_command(url: str, home: str, config: str, rid: int) -> float:
    """Seconds for one `recon embed` from process start to exit."""
    env = {**os.environ, "RECON_DATABASE_URL": url, "RECON_HOME": home}
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, __file__, "--child", config, "--rid", str(rid)],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def _one_run(url: str, home: str, config: str, rid: int, count: int) -> tuple[float, tuple]:
    forget(url)
    before = os.getloadavg()[0]
    rate = count / timed_command(url, home, config, rid)
    return rate, (round(before, 2), round(os.getloadavg()[0], 2))


def _report(config: str, runs: list[float], loads: list[tuple]) -> dict[str, Any]:
    rate = statistics.median(runs)
    row = {"exceptions_per_second": round(rate, 1), "runs": [round(r, 1) for r in runs],
           "load": loads}  # fmt: skip
    print(f"{config:<16} {rate:8.1f} exceptions/s  runs {row['runs']}  load before/after {loads}")
    sys.stdout.flush()
    return row


def timed_runs(
    url: str, home: str, configs: list[str], rid: int, count: int, repeat: int
) -> dict[str, Any]:
    """`repeat` runs of each configuration in turn: exceptions/s, the median, loads."""
    out = {}
    for config in configs:
        results = [_one_run(url, home, config, rid, count) for _ in range(repeat)]
        out[config] = _report(config, [r for r, _ in results], [load for _, load in results])
    return out


def paired(
    url: str, home: str, configs: list[str], rid: int, count: int, repeat: int
) -> dict[str, Any]:
    """`repeat` rounds, each running every configuration once in turn; per configuration its
    rates and the median of its per-round ratios against the first configuration."""
    rates: dict[str, list[float]] = {c: [] for c in configs}
    loads: dict[str, list[tuple]] = {c: [] for c in configs}
    for number in range(1, repeat + 1):
        for config in configs:
            rate, load = _one_run(url, home, config, rid, count)
            rates[config].append(rate)
            loads[config].append(load)
            print(f"round {number} {config:<16} {rate:8.1f} exceptions/s  load {load}")
            sys.stdout.flush()
    out = {}
    base = rates[configs[0]]
    for config in configs:
        row = _report(config, rates[config], loads[config])
        ratios = [r / b for r, b in zip(rates[config], base, strict=True)]
        row["ratios"] = [round(x, 2) for x in ratios]
        row["median_ratio"] = round(statistics.median(ratios), 2)
        print(f"{'':<16} x{row['median_ratio']} against {configs[0]} (rounds {row['ratios']})")
        out[config] = row
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embedder", nargs="+", default=list(CONFIGS), help="name[@threads]")
    parser.add_argument("--count", type=int, default=4200)
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--paired", action="store_true", help="interleave the embedders in every repeat"
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--rid", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    for spec in args.embedder:
        split_config(spec)
    if args.child:
        child(args.child, args.rid)
        return
    from bench.embed_bench import drop_database, scratch_database
    from resources.database import resolve_database_url

    base = resolve_database_url()
    url, name = scratch_database(base)
    summary: dict[str, Any] = {"exceptions": args.count}
    try:
        rid = plant(url, args.count, args.seed)
        with tempfile.TemporaryDirectory(prefix="retrieval_command_") as home:
            if args.paired:
                summary.update(paired(url, home, args.embedder, rid, args.count, args.repeat))
            else:
                for config in args.embedder:
                    summary[config] = timed_runs(url, home, [config], rid, args.count,
                                                 args.repeat)[config]  # fmt: skip
    finally:
        drop_database(base, name)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
