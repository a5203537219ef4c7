"""ragway: an LLM serving stack with RAG (gateway, model service, retrieval service)."""

__version__ = "0.1.0"
