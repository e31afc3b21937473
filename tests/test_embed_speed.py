"""The faster embedding path's parts, without a database: every kind gets a dense text (its
wording: tests/test_embedding_text.py), length batches, the static model distilled from
MiniLM, and the embedder options that keep vectors apart by name.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_embedding_text import FEE_SHORT

from pipelines.embed.store import encode_batches, length_batches
from pipelines.embed.texts import embedding_text
from resources.embedder import (
    MODEL_NAME,
    EmbedderResource,
    HashingEmbedder,
    SentenceTransformerEmbedder,
)
from resources.static_embedder import STATIC_MODEL_FILE, STATIC_MODEL_NAME, StaticEmbedder


def test_length_batches_cover_every_text_once_shortest_first() -> None:
    texts = ["a" * n for n in (5, 1, 9, 3, 7)]
    batches = length_batches(texts, 2)
    assert batches == [[1, 3], [0, 4], [2]]
    fake = HashingEmbedder()
    out = dict(
        (i, v)
        for positions, vectors in encode_batches(fake, texts, 2)
        for i, v in zip(positions, vectors, strict=True)
    )
    assert sorted(out) == list(range(5))
    assert np.allclose(out[2], fake.encode([texts[2]])[0])


def test_the_static_model_is_small_offline_and_normalised() -> None:
    assert STATIC_MODEL_FILE.stat().st_size < 20_000_000
    model = StaticEmbedder()
    vectors = model.encode(["bank fee charged monthly", "monthly bank service charge", "zebra", ""])
    assert vectors.shape == (4, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert float(vectors[0] @ vectors[1]) > float(vectors[0] @ vectors[2])
    assert np.array_equal(model.encode(["bank fee charged monthly"])[0], vectors[0])
    assert model.model_name == STATIC_MODEL_NAME != MODEL_NAME and model.dense_texts
    assert model.encode([]).shape == (0, 384)


def test_embedders_keep_their_vectors_apart_by_model_name() -> None:
    assert EmbedderResource(implementation="static").embedder().model_name == STATIC_MODEL_NAME
    minilm = EmbedderResource(implementation="sentence-transformers").embedder()
    assert isinstance(minilm, SentenceTransformerEmbedder)
    assert minilm.model_name == MODEL_NAME and not minilm.dense_texts
    quantized = EmbedderResource(
        implementation="sentence-transformers", quantized=True, dense_texts=True
    ).embedder()
    assert isinstance(quantized, SentenceTransformerEmbedder)
    assert quantized.model_name == MODEL_NAME + "-int8" and quantized.dense_texts


@pytest.mark.parametrize("kind", ["MISSING_IN_TARGET", "DUPLICATE_FOUND", "VALIDATION_ERROR"])
def test_every_kind_gets_a_dense_text(kind: str) -> None:
    text = embedding_text({**FEE_SHORT, "type": kind, "diff": "[]", "target_data": None})
    assert text and "GLOBEX CORP" in text and "BK000000417" not in text
