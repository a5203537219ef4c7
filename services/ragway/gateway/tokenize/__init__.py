"""`POST /tokenize` and `POST /detokenize`, as `vllm serve` has them."""
