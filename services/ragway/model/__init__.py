"""The model service: one vLLM engine behind the ragway.v1.ModelService gRPC API."""
