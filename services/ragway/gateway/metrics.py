"""Prometheus metrics of the gateway, served at /metrics."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge, Histogram

from ragway.gateway.models import MICRO

if TYPE_CHECKING:
    from ragway.gateway.billing import Outcome

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
