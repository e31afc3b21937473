-- Rolls back 0007: the half-precision HNSW index for search goes.
DROP INDEX IF EXISTS idx_embeddings_halfvec;
