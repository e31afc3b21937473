"""Embeddings of reconciliation exceptions: texts, storage with a cache, search and suggestions.

- `texts`: one readable text per exception (type, severity, description, both records'
  fields, the differences) and one per reconciliation (its counts);
- `store`: `embed_reconciliation` embeds them with the packaged sentence model, reusing the
  `embedding_cache` (a text is never sent to the model twice), logging every model call in
  `pipeline_run_logs` and upserting `document_embeddings`;
- `search`: `search_exceptions`, hybrid (HNSW cosine + full text, reciprocal rank fusion)
  search inside one organization;
- `suggest`: `suggest_resolutions`, the resolution of the closest resolved precedents of the
  same organization and type, stored in `reconciliation_exceptions.suggestion`.
"""
