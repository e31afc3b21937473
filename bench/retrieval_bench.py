"""Task-level retrieval benchmark: do a reconciler's queries find the breaks they should?

    .venv/bin/python bench/retrieval_bench.py                      # minilm (today) vs static
    .venv/bin/python bench/retrieval_bench.py --embedder minilm minilm-sorted minilm-int8 \\
        static static:product --repeat 3 [--sample 420] [--cache /tmp/rb_cache] \\
        [--count 4200] [--seed 21] [--json out.json]

The corpus is `bench/retrieval_corpus.py` (seeded, >= 4,000 exceptions as the engine stores
them) and the queries `bench/retrieval_queries.py` (>= 100, seven classes, graded relevance
from the generator's truth). Each embedder encodes every exception's text - the product's
(`pipelines.embed.texts.exception_text`, or its dense `embedding_text`, of the row as the
database returns it: `as_stored`, jsonb's key order) - and the queries;
queries are scored by cosine against all exceptions (exact, numpy, no database). Printed per
embedder: nDCG@10 (gain 2^grade - 1) and recall@10 (relevant found in the top 10 / min(10,
relevant)) per query class and overall, and encoding throughput, exceptions/s (the median of
`--repeat` runs over the whole corpus, or every n-th text with `--sample`, in batches of the
store's size, texts built beforehand), then a comparison table. `--cache DIR` keeps the corpus
vectors for quality by model and texts (MiniLM takes minutes for the corpus on two busy cores);
throughput is always measured.

Embedders (`name[:texts]`, texts `product` or `dense`: the product's `exception_text`, what
it stores and embeds by default, or its `embedding_text`):
- `minilm`: today's path, the packaged MiniLM on torch (`SentenceTransformerEmbedder`, its
  batch of 64), exceptions in id order in batches of 256; texts `product` by default;
- `minilm-sorted`: the same model, the store's batching (`store.encode_batches`: texts sorted
  by length); texts `dense` by default;
- `minilm-int8`: as `minilm-sorted`, MiniLM's linear layers in int8 (torch dynamic
  quantization); texts `dense` by default;
- `static`: the static model distilled from MiniLM (`resources.static_embedder`); texts
  `dense` by default;
- `docfit`: exceptions by the static table fitted to MiniLM's vectors of exception texts
  (`resources/fit_static.py`), queries by MiniLM (`DocumentFitEmbedder`); texts `dense`.
The last stdout line is a JSON summary.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.retrieval_corpus import generate  # noqa: E402
from bench.retrieval_queries import CLASSES, Query, labelled_queries  # noqa: E402
from pipelines.embed.store import DEFAULT_BATCH_SIZE, encode_batches  # noqa: E402
from pipelines.embed.texts import embedding_text  # noqa: E402
from pipelines.embed.texts import exception_text as product_text  # noqa: E402
from resources.embedder import Embedder, encode_queries  # noqa: E402

K = 10
TEXTS: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "product": product_text,
    "dense": embedding_text,
}
DEFAULT_TEXTS = {
    "minilm": "product",
    "minilm-sorted": "dense",
    "minilm-int8": "dense",
    "static": "dense",
    "docfit": "dense",
}


def _jsonb_order(value: Any) -> Any:
    """`value` with every object's keys in jsonb's order (shorter first, then bytewise)."""
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: (len(k.encode()), k.encode()))
        return {k: _jsonb_order(value[k]) for k in keys}
    if isinstance(value, list):
        return [_jsonb_order(v) for v in value]
    return value


def as_stored(exception: Mapping[str, Any]) -> dict[str, Any]:
    """The exception as the store reads it back: JSON columns parsed, keys in jsonb's order
    (the product's texts list a record's fields in that order, not the generator's)."""
    row = dict(exception)
    for column in ("source_data", "target_data", "diff"):
        if isinstance(row.get(column), str):
            row[column] = _jsonb_order(json.loads(row[column]))
    return row


def dcg(gains: Sequence[int]) -> float:
    """Discounted cumulative gain of grades in rank order (gain 2^grade - 1)."""
    return sum((2**g - 1) / math.log2(rank + 2) for rank, g in enumerate(gains))


def ndcg_at(ranked: Sequence[int], relevant: Mapping[int, int], k: int = K) -> float:
    """nDCG@k of a ranking against graded relevance (ids missing from `relevant`: grade 0)."""
    ideal = dcg(sorted(relevant.values(), reverse=True)[:k])
    return dcg([relevant.get(i, 0) for i in ranked[:k]]) / ideal if ideal else 0.0


def recall_at(ranked: Sequence[int], relevant: Mapping[int, int], k: int = K) -> float:
    """Relevant ids (grade > 0) in the top k over min(k, relevant ids): 1.0 when it is full."""
    wanted = {i for i, g in relevant.items() if g > 0}
    if not wanted:
        return 0.0
    return len(wanted.intersection(ranked[:k])) / min(k, len(wanted))


def top_k(queries: np.ndarray, corpus: np.ndarray, ids: Sequence[int], k: int = K) -> list:
    """Exact cosine top k per query (vectors normalised), ties by id."""
    scores = queries @ corpus.T
    ids_array = np.asarray(ids)
    out = []
    for row in scores:
        order = np.lexsort((ids_array, -row))[:k]
        out.append([int(ids_array[j]) for j in order])
    return out


def make_embedder(name: str) -> Embedder:
    """The embedder a bench name stands for."""
    if name in ("minilm", "minilm-sorted", "minilm-int8"):
        from resources.embedder import SentenceTransformerEmbedder

        return SentenceTransformerEmbedder(quantized=name == "minilm-int8")
    if name == "static":
        from resources.static_embedder import StaticEmbedder

        return StaticEmbedder()
    if name == "docfit":
        from resources.static_embedder import DocumentFitEmbedder

        return DocumentFitEmbedder()
    raise SystemExit(f"unknown embedder {name!r}; use {', '.join(DEFAULT_TEXTS)}")


def encode_corpus(name: str, embedder: Embedder, texts: list[str]) -> np.ndarray:
    """All texts' vectors in input order, batched as that path batches them."""
    if name == "minilm":  # today's store: id order, 256 a call
        parts = [
            np.asarray(embedder.encode(texts[i : i + DEFAULT_BATCH_SIZE]), np.float32)
            for i in range(0, len(texts), DEFAULT_BATCH_SIZE)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, embedder.dimensions))
    out = np.zeros((len(texts), embedder.dimensions), dtype=np.float32)
    for positions, vectors in encode_batches(embedder, texts, DEFAULT_BATCH_SIZE):
        out[positions] = vectors
    return out


def _cache_file(cache: Path | None, model_name: str, texts: list[str]) -> Path | None:
    if cache is None:
        return None
    digest = hashlib.sha256("\n".join([model_name, *texts]).encode()).hexdigest()[:16]
    return cache / f"{model_name}-{digest}.npy"


def evaluate(
    spec: str,
    exceptions: list[dict],
    queries: list[Query],
    repeat: int,
    *,
    sample: int = 0,
    cache: Path | None = None,
    product: Any = None,
) -> dict:
    """Quality per class and overall, and the median throughput of `repeat` encodings (of
    every `len / sample`-th text when `sample`; of all of them otherwise). With `cache`, the
    corpus vectors for quality are kept there by model and texts (throughput is always
    measured). With `product` (a `bench.retrieval_product.ProductBench`), the same queries
    through the product's `search_exceptions` too (`product`: its quality per class)."""
    name, _, texts_kind = spec.partition(":")
    texts_kind = texts_kind or DEFAULT_TEXTS.get(name, "product")
    embedder = make_embedder(name)
    started = time.perf_counter()
    embedder.encode(["warm up the model"] * 4)
    load_seconds = time.perf_counter() - started
    started = time.perf_counter()
    texts = [TEXTS[texts_kind](as_stored(e)) for e in exceptions]
    text_seconds = time.perf_counter() - started
    timed = texts[:: max(1, len(texts) // sample)] if sample else texts
    rates = []
    vectors = None
    for _ in range(repeat):
        started = time.perf_counter()
        encoded = encode_corpus(name, embedder, timed)
        rates.append(len(timed) / (time.perf_counter() - started))
        if timed is texts:
            vectors = encoded
    kept = _cache_file(cache, embedder.model_name, texts)
    if vectors is None and kept is not None and kept.exists():
        vectors = np.load(kept)
    if vectors is None:
        vectors = encode_corpus(name, embedder, texts)
    if kept is not None and not kept.exists():
        kept.parent.mkdir(parents=True, exist_ok=True)
        np.save(kept, vectors)
    query_vectors = encode_queries(embedder, [q.text for q in queries])
    ranked = top_k(query_vectors, vectors, [e["id"] for e in exceptions])
    per_query = [
        {
            "qid": q.qid,
            "cls": q.cls,
            "ndcg": ndcg_at(r, q.relevant),
            "recall": recall_at(r, q.relevant),
        }
        for q, r in zip(queries, ranked, strict=True)
    ]
    classes = {}
    for cls in [*CLASSES, "overall"]:
        rows = [p for p in per_query if cls in ("overall", p["cls"])]
        classes[cls] = {
            "queries": len(rows),
            "ndcg@10": round(statistics.mean(p["ndcg"] for p in rows), 4),
            "recall@10": round(statistics.mean(p["recall"] for p in rows), 4),
        }
    searched = (
        product.score(embedder, queries, dense=texts_kind == "dense", vectors=vectors)
        if product is not None
        else None
    )
    return {
        "embedder": spec if ":" in spec else f"{name}:{texts_kind}",
        "model_name": embedder.model_name,
        "texts": texts_kind,
        "mean_text_chars": round(statistics.mean(len(t) for t in texts), 1),
        "texts_per_second_built": round(len(texts) / text_seconds, 1),
        "load_seconds": round(load_seconds, 2),
        "exceptions_per_second": round(statistics.median(rates), 1),
        "runs": [round(r, 1) for r in rates],
        "timed_texts": len(timed),
        "classes": classes,
        "per_query": per_query,
        "product": searched,
    }


def print_result(result: dict) -> None:
    """One embedder's table: per class nDCG@10 and recall@10."""
    print(
        f"\n== {result['embedder']} ({result['model_name']}): "
        f"{result['exceptions_per_second']} exceptions/s (runs {result['runs']} on "
        f"{result['timed_texts']} texts), "
        f"texts {result['mean_text_chars']} chars on average"
    )
    product = result.get("product")
    print(
        f"{'class':<12}{'queries':>8}{'nDCG@10':>10}{'recall@10':>11}"
        + ("   product search: nDCG@10 recall@10" if product else "  (exact cosine)")
    )
    for cls, row in result["classes"].items():
        line = f"{cls:<12}{row['queries']:>8}{row['ndcg@10']:>10.3f}{row['recall@10']:>11.3f}"
        if product and cls in product["classes"]:
            found = product["classes"][cls]
            line += f"{found['ndcg@10']:>24.3f}{found['recall@10']:>10.3f}"
        print(line)
    if product:
        print(
            f"product search: {product['search_ms_median']} ms median, "
            f"{product['search_ms_p95']} ms p95 per query; hits by {product['hit_methods']}; "
            f"store: {product['cache_hits']} cached, {product['embedded']} embedded, "
            f"{product['documents_written']} written in {product['embed_seconds']} s"
        )


def print_comparison(results: list[dict]) -> None:
    """All embedders side by side, the first one the baseline."""
    base = results[0]
    print(
        f"\n{'embedder':<24}{'exc/s':>9}{'x':>7}{'nDCG@10':>9}{'diff':>8}{'rec@10':>8}  "
        + " ".join(f"{c[:8]:>8}" for c in CLASSES)
        + "   (exact cosine)"
    )
    for r in results:
        overall = r["classes"]["overall"]
        speed = r["exceptions_per_second"] / base["exceptions_per_second"]
        diff = overall["ndcg@10"] - base["classes"]["overall"]["ndcg@10"]
        per_class = " ".join(f"{r['classes'][c]['ndcg@10']:>8.3f}" for c in CLASSES)
        print(
            f"{r['embedder']:<24}{r['exceptions_per_second']:>9.1f}{speed:>7.1f}"
            f"{overall['ndcg@10']:>9.3f}{diff:>+8.3f}{overall['recall@10']:>8.3f}  {per_class}"
        )
    searched = [r for r in results if r.get("product")]
    if not searched:
        return
    head = f"\n{'product search':<24}{'nDCG@10':>9}{'diff':>8}{'rec@10':>8}  "
    print(head + " ".join(f"{c[:8]:>8}" for c in CLASSES))
    first = searched[0]["product"]["classes"]["overall"]["ndcg@10"]
    for r in searched:
        classes = r["product"]["classes"]
        overall = classes["overall"]
        per_class = " ".join(f"{classes[c]['ndcg@10']:>8.3f}" for c in CLASSES if c in classes)
        print(
            f"{r['embedder']:<24}{overall['ndcg@10']:>9.3f}{overall['ndcg@10'] - first:>+8.3f}"
            f"{overall['recall@10']:>8.3f}  {per_class}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embedder", nargs="+", default=["minilm", "static"])
    parser.add_argument("--count", type=int, default=4200)
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument(
        "--sample", type=int, default=0, help="time encoding on about this many texts (0: all)"
    )
    parser.add_argument(
        "--cache", type=Path, default=None, help="keep corpus vectors for quality here"
    )
    parser.add_argument(
        "--no-product",
        action="store_true",
        help="exact cosine only: skip the product's search (no scratch database)",
    )
    args = parser.parse_args()
    corpus = generate(args.count, args.seed)
    queries = labelled_queries(corpus)
    print(f"{len(corpus.exceptions)} exceptions, {len(queries)} queries (seed {args.seed})")
    results = []
    with contextlib.ExitStack() as stack:
        product = None
        if not args.no_product:
            from bench.retrieval_product import ProductBench

            product = stack.enter_context(ProductBench(corpus.exceptions))
        for spec in args.embedder:
            result = evaluate(
                spec,
                corpus.exceptions,
                queries,
                args.repeat,
                sample=args.sample,
                cache=args.cache,
                product=product,
            )
            print_result(result)
            sys.stdout.flush()
            results.append(result)
    print_comparison(results)
    summary = [
        {
            **{k: v for k, v in r.items() if k not in ("per_query", "product")},
            "product": {k: v for k, v in (r["product"] or {}).items() if k != "per_query"},
        }
        for r in results
    ]
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
