"""Model service settings (env prefix RAGWAY_MODEL_)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ModelSettings(BaseSettings):
    """Everything that decides which model runs and how; the same service runs SmolLM2 on 2 CPU
    cores or a 70B model on 8 GPUs."""

    model_config = SettingsConfigDict(env_prefix="RAGWAY_MODEL_", extra="ignore")

    engine: Literal["vllm", "sim"] = Field(
        "vllm",
        description="vllm: the real engine. sim: a simulated engine (ragway.model.sim) with the real "
        "tokenizer and chat template and a timing model in place of the forward pass; for "
        "benchmarks and routing tests only.",
    )
    host: str = "127.0.0.1"
    port: int = 50051
    metrics_port: int = Field(9101, description="Prometheus /metrics port; 0 disables it.")
    name: str = Field("", description="Local HF folder or hub id; empty = bundled SmolLM2-135M-Instruct.")
    served_name: str = Field("", description="Model name clients pass; default: derived from `name`.")
    cache: Path = Field(
        Path("~/.cache/ragway").expanduser(), description="Where the bundled model is converted."
    )
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = Field(
        "auto",
        description="auto: on the CPU the fastest dtype whose output matches float32, measured once "
        "per CPU and model (ragway.model.dtype); on GPUs vLLM's choice. An explicit value wins.",
    )
    max_model_len: int | None = Field(4096, description="Context length; None = the model's own.")
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    max_num_seqs: int = Field(64, description="Requests the engine runs at once.")
    max_waiting: int = Field(
        256, description="Requests that may wait beyond max_num_seqs; more get RESOURCE_EXHAUSTED."
    )
    enforce_eager: bool = Field(False, description="Skip torch.compile: faster start, slower decode.")
    kv_cache_gib: int = Field(2, description="CPU KV cache size (VLLM_CPU_KVCACHE_SPACE), GiB.")
    enable_prefix_caching: bool = True
    structured_outputs_backend: Literal["xgrammar", "guidance", "outlines"] = Field(
        "xgrammar",
        description="Structured-output backend (vllm serve --structured-outputs-config.backend). "
        "xgrammar is the fastest on the CPU build and the one that compiles the structural tags "
        "tool calls use. Not vLLM's 'auto': its per-request fallback can pick a backend other than "
        "the one the engine already built, and vLLM V1 runs only one per engine.",
    )
    tool_call_parser: str = Field(
        "hermes",
        description="vLLM tool parser for tool_choice auto (vllm serve --tool-call-parser); "
        "empty disables tool calling.",
    )
    tool_strict_level: Literal["auto", "function", "parameter"] = Field(
        "parameter",
        description="vllm serve --tool-strict-level: parameter constrains every call's arguments "
        "to its schema; auto only those of tools marked strict.",
    )
    tool_chat_template: Path | None = Field(
        None,
        description="Jinja chat template for requests with tools; default: the model's own if it "
        "renders tools, else a Hermes-style ChatML template.",
    )
    drain_seconds: float = Field(
        30.0, description="On SIGTERM, how long in-flight streams may take to finish."
    )
    step_timeout_seconds: float = Field(
        300.0,
        gt=0,
        description="An engine with requests in flight and no output for this long is stalled: the "
        "service fails its calls UNAVAILABLE and exits to be restarted (vLLM's "
        "VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS, which only its multiprocess executor applies).",
    )
    stream_interval: int = Field(
        1,
        ge=1,
        le=64,
        description="Tokens per streamed message (vLLM's --stream-interval): 1 sends each token as it "
        "is made; more send fewer, larger messages, for deployments whose token rate the relay cannot "
        "carry one by one. The first token and the last always go at once.",
    )
    sim_ttft_base_ms: float = Field(
        10.0,
        ge=0,
        description="Simulated engine: time to the first token of a prompt its prefix cache holds.",
    )
    sim_prefill_ms_per_1k_tokens: float = Field(
        50.0,
        ge=0,
        description="Simulated engine: prefill time per 1,000 prompt tokens not in its prefix cache.",
    )
    sim_itl_ms: float = Field(
        10.0,
        gt=0,
        description="Simulated engine: inter-token latency, one batch step, every running request.",
    )
    sim_output_tokens: int = Field(
        256,
        ge=1,
        description="Simulated engine: answer length when max_tokens allows more (then it ends with EOS, "
        "finish reason stop; at least min_tokens; ignore_eos runs to max_tokens).",
    )
    sim_cache_blocks: int = Field(
        16384,
        ge=1,
        description="Simulated engine: prefix-cache and KV capacity in 16-token blocks; the least "
        "recently used blocks are evicted beyond it.",
    )
    score_max_passages: int = Field(
        100, ge=1, description="Score (the LLM reranker): most passages one call may score."
    )
    score_passage_tokens: int = Field(
        128,
        ge=1,
        description="Score: tokens of each passage kept by default (its head; ~4 characters a token); "
        "a request may ask for another budget.",
    )
    log_level: str = "INFO"


def get_settings() -> ModelSettings:
    return ModelSettings()
