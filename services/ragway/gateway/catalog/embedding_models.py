"""Embedding models as the gateway serves them: the retrieval service's embedders, by name.

The retrieval service is the one authority on which embedders exist (DescribeService lists them,
the default first), so the gateway keeps no list of its own: `/v1/embeddings` resolves the name a
caller sends against it, and `/v1/models` shows each as a model whose `mode` is "embedding".
"""

from __future__ import annotations

import logging

from ragway.core.errors import InvalidArgument, Unavailable
from ragway.gateway.catalog.protocol import ModelCard
from ragway.gateway.clients.retrieval import EmbeddingModel, RetrievalClient
from ragway.gateway.core.errors import ModelNotFound

log = logging.getLogger(__name__)

# sentence-transformers models are published on the Hugging Face hub under this organisation; a
# client that names the bundled embedder by its hub id means the same model.
HUB_ORGANISATION = "sentence-transformers/"


async def resolve_embedding_model(retrieval: RetrievalClient, requested: str) -> EmbeddingModel:
    """The embedder called `requested` (or by its hub id); 404 model_not_found naming those served."""
    models = (await retrieval.describe_service()).embedders
    name = requested.removeprefix(HUB_ORGANISATION)
    for model in models:
        if model.name == name:
            return model
    served = ", ".join(m.name for m in models) or "none"
    raise ModelNotFound(
        f"the embedding model {requested!r} does not exist; embedding models served: {served}", field="model"
    )


def check_embedding_model(requested: str | None, collection: str, built_with: str) -> None:
    """A 400 naming `embedding_model` unless the caller means the embedder the collection was built
    with: another one's query vectors would be compared with these, and silently rank noise."""
    if requested is None or requested.removeprefix(HUB_ORGANISATION) == built_with:
        return
    raise InvalidArgument(
        f"collection {collection!r} was built with the embedding model {built_with!r}, not "
        f"{requested!r}; search it with {built_with!r} (or leave embedding_model out)",
        field="embedding_model",
    )


async def embedding_model_cards(retrieval: RetrievalClient) -> list[ModelCard]:
    """One card per embedder; none while the retrieval service is down (the chat models are still
    worth listing)."""
    try:
        models = (await retrieval.describe_service()).embedders
    except Unavailable:
        log.warning("the retrieval service is unavailable: /v1/models lists no embedding models")
        return []
    return [
        ModelCard(
            id=m.name,
            created=0,
            root=m.name,
            max_model_len=m.max_tokens,
            mode="embedding",
            dimensions=m.dimension,
        )
        for m in models
    ]
