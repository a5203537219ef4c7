"""`/v1/rerank`, `/v2/rerank` (Cohere's and Jina's clients) and `/v1/score` (vLLM's), served by the
LLM reranker in `rag.rerank`.
"""
