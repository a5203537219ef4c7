"""Prometheus metrics of the gateway, served at /metrics."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge, Histogram

from ragway.gateway.core.tables import MICRO

if TYPE_CHECKING:
    from ragway.gateway.accounts.billing import Outcome

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

REQUESTS = Counter("ragway_gateway_requests", "HTTP requests.", ["route", "method", "status"])
LATENCY = Histogram(
    "ragway_gateway_request_seconds", "HTTP request latency (to the last byte).", ["route"], buckets=_BUCKETS
)
TTFT = Histogram(
    "ragway_gateway_ttft_seconds", "Time to first token seen by the gateway.", ["model"], buckets=_BUCKETS
)
GENERATION = Histogram(
    "ragway_gateway_generation_seconds", "Generation latency.", ["model", "status"], buckets=_BUCKETS
)
TOKENS = Counter("ragway_gateway_tokens", "Tokens metered.", ["model", "kind"])
SPEND = Counter("ragway_gateway_spend", "Credits charged.", ["model"])
ACTIVE_STREAMS = Gauge("ragway_gateway_active_streams", "Open streaming responses.")
REJECTIONS = Counter("ragway_gateway_rejections", "Requests refused before generation.", ["reason"])
MODEL_RETRIES = Counter(
    "ragway_gateway_model_retries",
    "Calls handed to another replica of the same model before their first token.",
    ["model", "reason"],
)
MODEL_FALLBACKS = Counter(
    "ragway_gateway_model_fallbacks",
    "Requests another model took because every replica of the one asked for was overloaded.",
    ["model", "fallback"],
)
ROUTED = Counter(
    "ragway_gateway_routed",
    "Generations sent by routing key: to the replica the key lives on (affinity), to one that held "
    "more of the prompt (prefix), or past it because that replica was loaded beyond the bound or "
    "down (overflow).",
    ["model", "decision"],
)
MODEL_RUNNING = Gauge(
    "ragway_gateway_model_running_requests",
    "Requests in the engines' running batches, summed over a model's replicas.",
    ["model"],
)
MODEL_WAITING = Gauge(
    "ragway_gateway_model_waiting_requests",
    "Requests queued for a batch slot, summed over a model's replicas: the queue depth to scale on.",
    ["model"],
)
MODEL_KV_CACHE_USAGE = Gauge(
    "ragway_gateway_model_kv_cache_usage_ratio",
    "KV-cache use (0-1), averaged over a model's replicas.",
    ["model"],
)
MODEL_PREFIX_CACHE_HIT_RATE = Gauge(
    "ragway_gateway_model_prefix_cache_hit_rate",
    "Prompt tokens found in the prefix cache over those looked up, a model's replicas together, "
    "over the last poll window.",
    ["model"],
)
REPLICAS = Gauge(
    "ragway_gateway_replicas",
    "Replicas the gateway knows of a model: its fixed addresses plus those its DNS names resolve to.",
    ["model"],
)
REPLICAS_SERVING = Gauge(
    "ragway_gateway_replicas_serving", "Replicas of a model whose health reports SERVING.", ["model"]
)


def observe_generation(model: str, outcome: Outcome, cost_micro: int, started: float) -> None:
    if outcome.ttft_ms is not None:
        TTFT.labels(model).observe(outcome.ttft_ms / 1000)
    GENERATION.labels(model, outcome.status).observe(time.monotonic() - started)
    TOKENS.labels(model, "prompt").inc(outcome.prompt_tokens)
    TOKENS.labels(model, "completion").inc(outcome.completion_tokens)
    SPEND.labels(model).inc(cost_micro / MICRO)
