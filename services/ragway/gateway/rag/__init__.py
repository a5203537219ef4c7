"""RAG in the gateway: who may use which collection (`access`), what to search for (`query`),
finding chunks (`search`, the one search path every API shares, with `filters`, the one filter
language, and `rerank`, the LLM reranker) and the search options every search API takes
(`protocol`). Putting the chunks in front of the model is generation's (`generation.grounding`).
"""
