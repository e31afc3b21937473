"""Regenerate `resources/static_model/minilm_static.npz` from the packaged all-MiniLM-L6-v2.

    .venv/bin/python -m resources.distill_static [--out resources/static_model/minilm_static.npz]

Offline (the packaged model's files, `local_files_only`), about a minute on two cores, and
deterministic up to float rounding. The recipe is model2vec's (static embeddings distilled
from a sentence transformer), written here so it needs only torch and transformers, which the
project already has:
1. every word piece of the vocabulary is run through MiniLM alone (`[CLS] piece [SEP]`) and
   mean-pooled over those three positions, as MiniLM pools a sentence;
2. the vectors are centred (the mean over the real word pieces removed: otherwise the
   direction every text shares dominates each mean);
3. each piece is weighted by `SIF / (SIF + p)`, `p` its Zipf probability by vocabulary rank
   (BERT's vocabulary lists word pieces roughly by frequency), so frequent pieces ("the",
   ".", "##s") count less in a text's mean;
4. rows are stored int8 with one float32 scale each (max |value| / 127): ~12 MB.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from resources.static_embedder import STATIC_MODEL_FILE

SIF = 1e-3
BATCH = 2048


def piece_vectors(model_dir: Path) -> np.ndarray:
    """MiniLM's mean-pooled output for every word piece alone, float32 (vocab, 384)."""
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModel

    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    size = tokenizer.get_vocab_size()
    model = AutoModel.from_pretrained(str(model_dir), local_files_only=True)
    model.eval()
    out = np.zeros((size, model.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, size, BATCH):
            ids = torch.arange(start, min(start + BATCH, size))
            batch = torch.stack([torch.full_like(ids, cls), ids, torch.full_like(ids, sep)], dim=1)
            hidden = model(input_ids=batch, attention_mask=torch.ones_like(batch))
            out[start : start + len(ids)] = hidden.last_hidden_state.mean(dim=1).numpy()
    return out


def real_pieces(model_dir: Path) -> np.ndarray:
    """Mask of the word pieces that occur in text (not `[unused..]`, `[PAD]`, `[CLS]`...)."""
    from tokenizers import Tokenizer

    vocab = Tokenizer.from_file(str(model_dir / "tokenizer.json")).get_vocab()
    mask = np.zeros(len(vocab), dtype=bool)
    for piece, index in vocab.items():
        mask[index] = not (piece.startswith("[") and piece.endswith("]"))
    return mask


def distill(model_dir: Path, sif: float = SIF) -> np.ndarray:
    """The static table: centred, frequency-weighted piece vectors, float32 (vocab, 384)."""
    vectors = piece_vectors(model_dir)
    mask = real_pieces(model_dir)
    vectors -= vectors[mask].mean(axis=0)
    rank = np.arange(len(vectors), dtype=np.float64) + 2.0
    probability = (1.0 / rank) / (1.0 / rank).sum()
    weights = sif / (sif + probability)
    vectors *= weights[:, None].astype(np.float32)
    vectors[~mask] = 0.0
    return vectors


def quantize(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int8 rows, float32 scale per row) with rows * scale ~ table."""
    scales = np.abs(table).max(axis=1) / 127.0
    scales[scales == 0] = 1.0
    rows = np.round(table / scales[:, None]).clip(-127, 127).astype(np.int8)
    return rows, scales.astype(np.float32)


def main() -> None:
    from resources.embedder import packaged_model_path

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=STATIC_MODEL_FILE)
    parser.add_argument("--sif", type=float, default=SIF)
    args = parser.parse_args()
    rows, scales = quantize(distill(packaged_model_path(), args.sif))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, rows=rows, scales=scales)
    print(f"{args.out}: {rows.shape[0]} x {rows.shape[1]} ({args.out.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
