"""A static (per-token) embedding model distilled from the packaged all-MiniLM-L6-v2.

`StaticEmbedder` embeds a text as the normalised mean of its word pieces' vectors: one table
lookup per word piece, no transformer, so thousands of texts a second on one core. The table
(`static_model/minilm_static.npz`: int8 rows, one float32 scale per row, 30,522 x 384,
~12 MB) was distilled offline from the packaged MiniLM by `resources/distill_static.py` (each
word piece run through MiniLM alone, mean-pooled as MiniLM pools, centred, and weighted down
the more frequent it is: the recipe of model2vec), never at run time and never from the
network; the word pieces come from the packaged model's own `tokenizer.json`, so the table
and the tokenizer cannot disagree. Vectors are 384 floats like MiniLM's but mean something
else: the embedder's `model_name` (`STATIC_MODEL_NAME`) keeps them apart in
`embedding_cache` and `document_embeddings`, and a search must encode its query with it.
all-MiniLM-L6-v2 is Apache-2.0; the distilled table is a derivative shipped under the same
licence (`static_model/NOTICE`).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

STATIC_MODEL_NAME = "all-MiniLM-L6-v2-static-v1"
STATIC_MODEL_FILE = Path(__file__).resolve().parent / "static_model" / "minilm_static.npz"
# texts are cut to this many word pieces (MiniLM reads at most 256; a static model reads all,
# but an exception text longer than this is a data dump, not a note)
MAX_PIECES = 512

_LOCK = threading.Lock()
_TABLES: dict[str, tuple[Any, np.ndarray]] = {}


def load_table(path: str | Path | None = None) -> tuple[Any, np.ndarray]:
    """(tokenizer, float32 table) for the static model at `path`, loaded once per process."""
    from tokenizers import Tokenizer

    from resources.embedder import packaged_model_path

    file = Path(path or STATIC_MODEL_FILE)
    key = str(file)
    with _LOCK:
        found = _TABLES.get(key)
        if found is None:
            with np.load(file) as data:
                table = data["rows"].astype(np.float32) * data["scales"][:, None]
            tokenizer = Tokenizer.from_file(str(packaged_model_path() / "tokenizer.json"))
            tokenizer.no_padding()
            tokenizer.enable_truncation(MAX_PIECES)
            if tokenizer.get_vocab_size() != table.shape[0]:
                raise ValueError(
                    f"{file}: {table.shape[0]} rows for a vocabulary of "
                    f"{tokenizer.get_vocab_size()} word pieces; regenerate it with "
                    "resources/distill_static.py"
                )
            found = (tokenizer, table)
            _TABLES[key] = found
    return found


class StaticEmbedder:
    """The distilled static model: normalised mean of word-piece vectors, float32 (n, 384)."""

    def __init__(
        self, model_file: str | Path | None = None, *, model_name: str = STATIC_MODEL_NAME
    ) -> None:
        self.model_file = model_file
        self.model_name = model_name
        self.dimensions = 384
        # the store embeds exceptions by `pipelines.embed.texts.embedding_text`
        self.dense_texts = True

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Normalised float32 embeddings, shape (len(texts), 384); an empty text gets e_0."""
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        if len(texts) == 0:
            return out
        tokenizer, table = load_table(self.model_file)
        if table.shape[1] != self.dimensions:
            raise ValueError(f"static model has {table.shape[1]} dimensions, expected 384")
        encodings = tokenizer.encode_batch(list(texts), add_special_tokens=False)
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(texts))
        ids = np.fromiter(
            (i for e in encodings for i in e.ids), dtype=np.int64, count=int(lengths.sum())
        )
        filled = lengths > 0
        if ids.size:
            starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))[filled]
            out[filled] = np.add.reduceat(table[ids], starts, axis=0)
        norms = np.linalg.norm(out, axis=1)
        empty = norms == 0
        out[~empty] /= norms[~empty, None]
        out[empty, 0] = 1.0
        return out


DOCFIT_MODEL_NAME = "all-MiniLM-L6-v2-docfit-v1"
DOCFIT_MODEL_FILE = STATIC_MODEL_FILE.with_name("minilm_docfit.npz")


class DocumentFitEmbedder:
    """Exceptions by the static table fitted to MiniLM's vectors of exception texts
    (`resources/fit_static.py`), queries by MiniLM itself: both in MiniLM's space.

    `encode` (what the store calls for the texts it keeps) is table lookups, thousands of
    texts a second; `encode_queries` (what search and the rule proposal call for the words a
    person types) is the packaged MiniLM, one call per query. Stored under `model_name`
    (`DOCFIT_MODEL_NAME`), apart from MiniLM's own vectors of the same texts.
    """

    def __init__(
        self,
        model_file: str | Path | None = None,
        *,
        model_name: str = DOCFIT_MODEL_NAME,
        queries: Any = None,
    ) -> None:
        self.documents = StaticEmbedder(model_file or DOCFIT_MODEL_FILE, model_name=model_name)
        self._queries = queries
        self.model_name = model_name
        self.dimensions = 384
        self.dense_texts = True

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """The fitted table's vectors of stored texts (exceptions), float32 (n, 384)."""
        return self.documents.encode(texts)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """MiniLM's vectors of the words a person types (a search, field names)."""
        if self._queries is None:
            from resources.embedder import SentenceTransformerEmbedder

            self._queries = SentenceTransformerEmbedder()
        return self._queries.encode(texts)
