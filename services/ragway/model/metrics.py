"""Prometheus metrics of the model service (served on RAGWAY_MODEL_METRICS_PORT).

Names mirror vLLM's own (`vllm:time_to_first_token_seconds`, ...) under a `ragway_model_` prefix,
measured at the gRPC boundary so they include what a caller actually waits for.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Fine below 100 ms, where a GPU's times to first token and a prefix cache's savings lie.
_LATENCY_BUCKETS = (
    0.005,
    0.01,
    0.015,
    0.02,
    0.03,
    0.04,
    0.05,
    0.075,
    0.1,
    0.15,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    120,
)

RUNNING = Gauge("ragway_model_running_requests", "Requests the service is streaming.")
WAITING = Gauge("ragway_model_waiting_requests", "Admitted requests beyond the engine's batch size.")
TTFT = Histogram("ragway_model_ttft_seconds", "Time to first token.", buckets=_LATENCY_BUCKETS)
INTER_TOKEN = Histogram(
    "ragway_model_inter_token_latency_seconds",
    "Time between streamed messages, per token.",
    buckets=(0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1),
)
E2E = Histogram(
    "ragway_model_e2e_latency_seconds", "Request latency, arrival to last token.", buckets=_LATENCY_BUCKETS
)
QUEUE = Histogram("ragway_model_queue_seconds", "Time waiting for the scheduler.", buckets=_LATENCY_BUCKETS)
PROMPT_TOKENS = Counter("ragway_model_prompt_tokens", "Prompt tokens processed.")
GENERATION_TOKENS = Counter("ragway_model_generation_tokens", "Tokens generated.")
CACHED_TOKENS = Counter("ragway_model_cached_prompt_tokens", "Prompt tokens served from the prefix cache.")
ABORTS = Counter("ragway_model_aborts", "Requests aborted (caller cancelled, deadline or shutdown).")
REJECTIONS = Counter("ragway_model_rejections", "Requests refused by admission control.")
ENGINE_UNFINISHED = Gauge(
    "ragway_model_engine_unfinished_requests",
    "Requests held inside the vLLM engine (running or waiting); drops to 0 once aborts land.",
)

# The signals to route and scale on, as the engine's scheduler sees them: vLLM's own SchedulerStats
# (the same values as its `vllm:num_requests_running`, `vllm:num_requests_waiting`,
# `vllm:kv_cache_usage_perc`, `vllm:prefix_cache_queries` and `vllm:prefix_cache_hits`, which this
# endpoint also serves) or the simulated engine's model of them, under one set of names. GetLoad
# answers the same values over gRPC.
ENGINE_RUNNING = Gauge(
    "ragway_model_engine_running_requests",
    "Requests in the engine's running batch (vllm:num_requests_running).",
)
ENGINE_WAITING = Gauge(
    "ragway_model_engine_waiting_requests",
    "Requests queued in the engine for a batch slot (vllm:num_requests_waiting): the queue depth "
    "to scale on.",
)
KV_CACHE_USAGE = Gauge(
    "ragway_model_kv_cache_usage_ratio",
    "Fraction of the KV cache held by running requests, 0 to 1 (vllm:kv_cache_usage_perc).",
)
PREFIX_CACHE_QUERIES = Counter(
    "ragway_model_prefix_cache_queries",
    "Prompt tokens looked up in the prefix cache (vllm:prefix_cache_queries); hits / queries is "
    "the hit rate.",
)
PREFIX_CACHE_HITS = Counter(
    "ragway_model_prefix_cache_hits", "Prompt tokens found in the prefix cache (vllm:prefix_cache_hits)."
)
