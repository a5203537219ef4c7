"""What the gateway serves: the model table (names, aliases, where, at what price, to whom), which
model a request goes to (`model_router`), the retrieval service's embedders, and `GET /v1/models`.
"""
