"""Typed clients of the model and retrieval services: the only gateway code that speaks protobuf.
Routes, generation and RAG code call methods that take and return domain types."""
