"""Benchmark: can ONNX Runtime embed 2x faster than torch without losing retrieval quality?

    pip install --target /tmp/onnxpkgs onnxruntime==1.31.1 onnx==1.23.2   # once, outside .venv
    PYTHONPATH=/tmp/onnxpkgs .venv/bin/python bench/onnx_bench.py [--corpus 3000] [--rounds 3]

The product embeds with sentence-transformers on torch. Its own ONNX backend needs
`optimum-onnx`, which requires transformers < 4.58 (the product pins 5.x), so this bench
exports the packaged all-MiniLM-L6-v2 itself, offline: the legacy `torch.onnx.export` of the
BERT encoder (eager attention, opset 17, dynamic batch and length), then
- `fp32`: the export as it is;
- `fp32 fused`: onnxruntime's transformer optimizer (Attention, SkipLayerNormalization,
  BiasGelu fusions);
- `int8 matmul`: dynamic int8 quantization, per channel, of every dense MatMul of the export
  (the fastest variant a helper found: 2.5x in its probe);
- `int8 ffn-out`: the same for the fused model's feed-forward output MatMuls only (the
  gentlest one).
Encoding is what sentence-transformers does: the model's tokenizer, truncation to its
max_seq_length, padding to the batch's longest text (texts sorted by length first), mean
pooling over the attention mask, L2 normalisation.

Quality, against torch's vectors of the same texts: recall@10 of each variant's exact top 10
for `--queries` queries (short questions, references, perturbed exception texts) over
`--corpus` exception texts, and the mean / lowest cosine to torch's vector of each text.
Speed: 1,000 exception texts at batch 64 on 2 threads, each variant timed right after torch
(paired; the median of `--rounds` ratios), so other load on the two cores affects both.
Nothing here is used by the product; without onnxruntime and onnx it says how to get them.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.embed_bench import PAYEES, synthetic_exception  # noqa: E402
from pipelines.embed.texts import exception_text  # noqa: E402
from resources.embedder import SentenceTransformerEmbedder, packaged_model_path  # noqa: E402

THREADS = 2
BATCH = 64


def export(model_dir: Path, out: Path) -> Path:
    """The encoder's last hidden state as ONNX (inputs input_ids and attention_mask)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    # eager attention: the pattern onnxruntime's BERT fusion recognises (not SDPA's)
    model = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()
    sample = AutoTokenizer.from_pretrained(str(model_dir))(
        ["hello", "a longer sentence for the export"], padding=True, return_tensors="pt"
    )

    class Encoder(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.inner(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    axes = {0: "batch", 1: "tokens"}
    with torch.no_grad():
        torch.onnx.export(
            Encoder(model),
            (sample["input_ids"], sample["attention_mask"]),
            str(out),
            input_names=["input_ids", "attention_mask"],
            output_names=["hidden"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "hidden": axes},
            opset_version=17,
            dynamo=False,
        )
    return out


def fuse(model_dir: Path, source: Path, out: Path) -> Path:
    from onnxruntime.transformers.optimizer import optimize_model

    config = json.loads((model_dir / "config.json").read_text())
    optimized = optimize_model(
        str(source),
        model_type="bert",
        num_heads=config["num_attention_heads"],
        hidden_size=config["hidden_size"],
        opt_level=1,
    )
    optimized.save_model_to_file(str(out))
    return out


def quantize(model_dir: Path, source: Path, out: Path, only_ffn_out: bool) -> Path:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(source)).graph
    weights = {init.name: tuple(init.dims) for init in graph.initializer}
    inner = json.loads((model_dir / "config.json").read_text())["intermediate_size"]
    nodes = [
        node.name
        for node in graph.node
        if node.op_type == "MatMul"
        and len(node.input) > 1
        and node.input[1] in weights
        and (not only_ffn_out or weights[node.input[1]][0] == inner)
    ]
    quantize_dynamic(
        str(source),
        str(out),
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=["MatMul"],
        nodes_to_quantize=nodes,
        # the fused operators are in Microsoft's domain: shape inference cannot type them
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    return out


class OnnxEncoder:
    """sentence-transformers' encoding of all-MiniLM-L6-v2, with ONNX Runtime for the model."""

    def __init__(self, path: Path, model_dir: Path) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads = THREADS
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        settings = json.loads((model_dir / "sentence_bert_config.json").read_text())
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=settings["max_seq_length"])
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to the longest

    def encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), 384), dtype=np.float32)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        for start in range(0, len(texts), BATCH):
            rows = order[start : start + BATCH]
            encoded = self.tokenizer.encode_batch([texts[i] for i in rows])
            ids = np.array([e.ids for e in encoded], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
            hidden = self.session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
            weights = mask[:, :, None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
            out[rows] = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
        return out


def corpus(n: int, seed: int, tag: str) -> list[str]:
    rng = random.Random(seed)
    return [exception_text(synthetic_exception(rng, i, tag)) for i in range(n)]


def queries(texts: list[str], n: int) -> list[str]:
    """Short questions, references and amounts, and exception texts with words dropped."""
    rng = random.Random(11)
    found: list[str] = []
    for i in range(n):
        payee = rng.choice(PAYEES)
        kind = i % 4
        if kind == 0:
            found.append(f"payment to {payee} missing in the ledger")
        elif kind == 1:
            found.append(f"amount differs for {payee} by {rng.uniform(1, 500):.2f}")
        elif kind == 2:
            words = rng.choice(texts).split()
            found.append(" ".join(w for w in words if rng.random() > 0.3))
        else:
            found.append(f"TXNq{rng.randint(0, len(texts)):07d} not booked")
    return found


def recall_at_10(reference: np.ndarray, candidate: np.ndarray, split: int) -> float:
    """Share of torch's exact top 10 (queries = rows from `split` on) the candidate finds."""
    hits = []
    for q in range(split, len(reference)):
        want = set(np.argsort(-(reference[:split] @ reference[q]))[:10])
        got = set(np.argsort(-(candidate[:split] @ candidate[q]))[:10])
        hits.append(len(want & got) / 10)
    return float(np.mean(hits))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=int, default=3000, help="exception texts searched")
    parser.add_argument("--queries", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=3, help="paired speed rounds")
    args = parser.parse_args()
    missing = [m for m in ("onnxruntime", "onnx") if importlib.util.find_spec(m) is None]
    if missing:
        raise SystemExit(
            f"needs {' and '.join(missing)}: pip install --target /tmp/onnxpkgs "
            "onnxruntime==1.31.1 onnx==1.23.2, then run with PYTHONPATH=/tmp/onnxpkgs "
            "(the product does not install them)"
        )
    import torch

    torch.set_num_threads(THREADS)
    model_dir = packaged_model_path()
    work = Path(tempfile.mkdtemp(prefix="onnx-bench-"))
    started = time.perf_counter()
    raw = export(model_dir, work / "fp32.onnx")
    exported = time.perf_counter() - started
    fused = fuse(model_dir, raw, work / "fused.onnx")
    variants = {
        "fp32": raw,
        "fp32 fused": fused,
        "int8 matmul": quantize(model_dir, raw, work / "int8.onnx", only_ffn_out=False),
        "int8 ffn-out": quantize(model_dir, fused, work / "int8-ffn.onnx", only_ffn_out=True),
    }
    print(f"export {exported:.1f}s, all variants {time.perf_counter() - started:.1f}s ({work})")
    torch_model = SentenceTransformerEmbedder(batch_size=BATCH)
    texts = corpus(args.corpus, 3, "c")
    searched = texts + queries(texts, args.queries)
    reference = torch_model.encode(searched)
    timed = corpus(1000, 5, "s")
    torch_model.encode(timed[:64])
    summary: dict[str, Any] = {"export_seconds": round(exported, 1)}
    print(f"{'variant':<14} {'texts/s':>8} {'torch':>8} {'ratio':>6} {'recall@10':>10} cosine")
    for name, path in variants.items():
        encoder = OnnxEncoder(path, model_dir)
        vectors = encoder.encode(searched)
        cosines = (vectors * reference).sum(axis=1)
        recall = recall_at_10(reference, vectors, len(texts))
        encoder.encode(timed[:64])
        ratios, rates, torch_rates = [], [], []
        for _ in range(max(1, args.rounds)):
            t = time.perf_counter()
            torch_model.encode(timed)
            torch_rates.append(len(timed) / (time.perf_counter() - t))
            t = time.perf_counter()
            encoder.encode(timed)
            rates.append(len(timed) / (time.perf_counter() - t))
            ratios.append(rates[-1] / torch_rates[-1])
        ratio = statistics.median(ratios)
        print(
            f"{name:<14} {statistics.median(rates):8.1f} {statistics.median(torch_rates):8.1f} "
            f"{ratio:5.2f}x {recall:10.3f} mean {cosines.mean():.4f} lowest {cosines.min():.4f}"
        )
        summary[name] = {
            "texts_per_second": round(statistics.median(rates), 1),
            "torch_texts_per_second": round(statistics.median(torch_rates), 1),
            "ratio": round(ratio, 2),
            "recall_at_10": round(recall, 3),
            "cosine_mean": round(float(cosines.mean()), 5),
            "cosine_lowest": round(float(cosines.min()), 5),
        }
    good = [n for n, s in summary.items() if isinstance(s, dict) and s["recall_at_10"] >= 0.98]
    fast = [n for n in good if summary[n]["ratio"] >= 2]
    print(
        f"target: >= 2x torch with recall@10 >= 0.98 against torch: "
        f"{'met by ' + ', '.join(fast) if fast else 'not met'} "
        f"(quality kept by: {', '.join(good) or 'none'})"
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
