"""`POST /v1/embeddings`, in OpenAI's shape, served by the retrieval service's embedders."""
