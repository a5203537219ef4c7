"""Typed clients of the model and retrieval services: the only gateway code that speaks protobuf
to the retrieval service. Routes and RAG code call methods that take and return domain types."""

from ragway.gateway.clients.base import ServiceClient, translate
from ragway.gateway.clients.model import ModelClient
from ragway.gateway.clients.retrieval import RetrievalClient

__all__ = ["ModelClient", "RetrievalClient", "ServiceClient", "translate"]
