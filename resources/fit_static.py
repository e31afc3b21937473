"""Fit a static document encoder to MiniLM's own vectors of exception texts (offline).

    .venv/bin/python -m resources.fit_static [--rows 100000] [--seeds 11 12 13] \\
        [--out resources/static_model/minilm_docfit.npz]

The distilled static model (`resources/distill_static.py`) reads each word piece alone, so
its vectors live in a space of their own: a query must be encoded by it too, and it answers
a reconciler's questions much worse than MiniLM (`bench/retrieval_bench.py`). This fits the
same kind of table (a text's vector = the normalised sum of its word pieces' rows, exactly
`StaticEmbedder.encode`) so that it reproduces MiniLM's vector of each *exception text*: the
recipe of model2vec's tokenlearn (regress static vectors on a sentence transformer's outputs
over a corpus). Queries are then encoded by MiniLM itself and meet the fitted documents in
MiniLM's space (`resources.static_embedder.DocumentFitEmbedder`): the thousands of texts a
reconciliation raises cost table lookups, the one query a person types costs one MiniLM call.

The corpus is the product's own output on data that is not the retrieval benchmark's:
`bench/bankgen.py` files (`--rows` ledger entries per seed) conformed by `bench/rules/
bankgen.yaml`, linked and turned into exceptions by the engine's functions (as
`bench/engine_bench.py` does), each exception's dense text (`pipelines.embed.texts.
embedding_text`, what the store embeds for this embedder) as the database returns the row.
Targets are the packaged MiniLM's normalised vectors of those texts (float, torch). The
table starts from the distilled one and is fitted by Adam on 1 - cosine (a tenth of the texts
held out: the printed cosine to MiniLM on them is the fit's measure); it is stored as the
distilled one is (int8 rows, one scale each). Runs in a clone (it reads `bench/`), never at
run time, no network: a few minutes on two cores.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from resources.distill_static import quantize
from resources.static_embedder import DOCFIT_MODEL_FILE, MAX_PIECES, load_table

ROOT = Path(__file__).resolve().parent.parent


def corpus_texts(rows: int, seeds: list[int], folder: Path) -> list[str]:
    """The distinct dense texts of the exceptions the engine raises on bankgen data."""
    for path in (ROOT / "bench", ROOT):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
    from engine_bench import bankgen_case, link_with
    from retrieval_bench import as_stored

    from pipelines.embed.texts import embedding_text

    texts: dict[str, None] = {}
    for seed in seeds:
        case = bankgen_case(rows, folder, seed)
        _, found = link_with(case, "duckdb")
        for row in found.to_dicts():
            texts[embedding_text(as_stored(row))] = None
        print(f"seed {seed}: {found.height} exceptions, {len(texts)} distinct texts so far")
    return list(texts)


def piece_ids(texts: list[str]) -> list[list[int]]:
    """Each text's word pieces as `StaticEmbedder` reads them (no special tokens, cut)."""
    tokenizer, _ = load_table()
    return [e.ids[:MAX_PIECES] for e in tokenizer.encode_batch(texts, add_special_tokens=False)]


def fit(
    ids: list[list[int]],
    targets: np.ndarray,
    table: np.ndarray,
    *,
    epochs: int = 40,
    batch: int = 256,
    rate: float = 3e-3,
    seed: int = 0,
) -> np.ndarray:
    """The table after Adam on 1 - cos(normalised sum of the pieces' rows, target)."""
    import torch

    torch.manual_seed(seed)
    weights = torch.nn.Parameter(torch.from_numpy(table.copy()))
    optimiser = torch.optim.Adam([weights], lr=rate)
    target = torch.from_numpy(targets)
    order = np.random.default_rng(seed).permutation(len(ids))
    for epoch in range(epochs):
        total = 0.0
        for start in range(0, len(order), batch):
            chosen = order[start : start + batch]
            flat = torch.tensor([i for j in chosen for i in ids[j]], dtype=torch.long)
            offsets = torch.tensor(
                np.concatenate(([0], np.cumsum([len(ids[j]) for j in chosen])[:-1])),
                dtype=torch.long,
            )
            summed = torch.nn.functional.embedding_bag(flat, weights, offsets, mode="sum")
            cosine = torch.nn.functional.cosine_similarity(summed, target[chosen], dim=1)
            loss = (1.0 - cosine).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(chosen)
        order = np.random.default_rng(seed + epoch + 1).permutation(len(ids))
        if epoch % 10 == 9 or epoch == epochs - 1:
            print(f"  epoch {epoch + 1}: mean cosine to MiniLM {1 - total / len(ids):.4f}")
    return weights.detach().numpy()


def mean_cosine(ids: list[list[int]], targets: np.ndarray, table: np.ndarray) -> float:
    """Mean cosine between the table's vectors of the texts and MiniLM's."""
    vectors = np.stack([table[i].sum(axis=0) if i else np.zeros(table.shape[1]) for i in ids])
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return float((vectors * targets).sum(axis=1).mean())


def main() -> None:
    from resources.embedder import SentenceTransformerEmbedder

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[11, 12, 13])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--out", type=Path, default=DOCFIT_MODEL_FILE)
    parser.add_argument("--data", type=Path, default=None, help="bankgen files (default: temp)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        texts = corpus_texts(args.rows, args.seeds, args.data or Path(scratch))
    started = time.perf_counter()
    targets = SentenceTransformerEmbedder().encode(texts)
    print(f"{len(texts)} texts encoded by MiniLM in {time.perf_counter() - started:.0f} s")
    ids = piece_ids(texts)
    held = np.zeros(len(texts), dtype=bool)
    held[np.random.default_rng(1).permutation(len(texts))[: len(texts) // 10]] = True
    train = [ids[i] for i in np.flatnonzero(~held)]
    test = [ids[i] for i in np.flatnonzero(held)]
    _, table = load_table()
    before = mean_cosine(test, targets[held], table)
    table = fit(train, targets[~held], table, epochs=args.epochs)
    after = mean_cosine(test, targets[held], table)
    print(f"held-out texts: mean cosine to MiniLM {before:.4f} distilled -> {after:.4f} fitted")
    rows, scales = quantize(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, rows=rows, scales=scales)
    print(f"{args.out}: {rows.shape[0]} x {rows.shape[1]} ({args.out.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
