"""A simulated engine (RAGWAY_MODEL_ENGINE=sim) for benchmarks and routing tests only.

In the spirit of llm-d's inference simulator: everything around the forward pass is real — the
model's tokenizer and chat template, the gRPC API, admission, abort, metrics, tool-call parsing —
and the forward pass is a timing model, so one process stands in for a GPU replica:

- a per-replica prefix cache of prompt blocks, hashed as vLLM hashes them (16-token blocks, each
  hash chained to its parent's), least recently used blocks evicted beyond `sim_cache_blocks`;
  a prompt's cached tokens are its leading full blocks found there, within all but its last token
  (vLLM always computes the last prompt token), reported as `num_cached_tokens`;
- a batch of `max_num_seqs` sequences: requests beyond it wait, first come first served;
- time to first token = `sim_ttft_base_ms` + `sim_prefill_ms_per_1k_tokens` per 1,000 prompt
  tokens NOT in the cache, after the wait for a batch slot. Prefills run side by side and do not
  slow the decoding batch (no chunked-prefill interference is modelled);
- then one token per running sequence every `sim_itl_ms`: one asyncio task steps the whole batch
  on a wall-clock timer (not a sleep per token per request; steps a busy process missed run
  together), and a consumer that falls behind gets the tokens merged into one delta, as vLLM's
  output collector merges them;
- deterministic text: tokens drawn from the model's own whole-word tokens by a generator seeded
  with the prompt, so the same prompt gives the same text. An answer is `sim_output_tokens` long
  and ends with EOS (finish "stop") when max_tokens allows that many (and min_tokens no more),
  else it runs to max_tokens (finish "length"); `ignore_eos` always runs to max_tokens. Stop
  strings and stop token ids end it early ("stop"). Decoding constraints (structured outputs,
  forced tool calls) are accepted and not applied: the text is never a model's.

It says what it is: a WARNING at start, and `engine: "sim"`, `engine_version: "ragway-sim"`,
`device: "sim"` in GetModelInfo (hence in the gateway's /v1/models).
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ragway.core.errors import Unavailable
from ragway.model import metrics
from ragway.model.config import ModelSettings
from ragway.model.dtype import DtypeChoice
from ragway.model.engine import BaseEngine, EngineInfo, EngineLoad
from ragway.model.scoring import ScorePrompt, overlap_score
from ragway.model.tools import ToolCalling
from ragway.model.weights import resolve_model, served_model_name

log = logging.getLogger(__name__)

BLOCK_SIZE = 16  # vLLM's default KV block size, the unit its prefix cache hashes
ENGINE_NAME = "sim"
ENGINE_VERSION = "ragway-sim"
_POOL_SIZE = 4096  # whole-word tokens the text is drawn from
_WORD = re.compile(r"^ [a-z]{2,12}$")
_ROOT_HASH = 0x5EED  # the parent of a prompt's first block
# Missed steps made up at once at most; beyond it (a process stopped for seconds) time is lost.
MAX_CATCH_UP_STEPS = 100


def block_hashes(token_ids: Sequence[int]) -> list[int]:
    """One hash per full block of `token_ids`, each chained to the previous one, so a block's hash
    names its whole prefix (vLLM's hash_block_tokens, with Python's deterministic tuple hash)."""
    hashes: list[int] = []
    parent = _ROOT_HASH
    for start in range(0, len(token_ids) - BLOCK_SIZE + 1, BLOCK_SIZE):
        parent = hash((parent, *token_ids[start : start + BLOCK_SIZE]))
        hashes.append(parent)
    return hashes


class PrefixCache:
    """Block hashes the replica has computed, least recently used first; at most `capacity`."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._blocks: OrderedDict[int, None] = OrderedDict()
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._blocks)

    def __contains__(self, block_hash: int) -> bool:
        return block_hash in self._blocks

    def match(self, hashes: Sequence[int]) -> int:
        """How many of `hashes`, from the first, are cached; those become the most recently used."""
        found = 0
        for block_hash in hashes:
            if block_hash not in self._blocks:
                break
            self._blocks.move_to_end(block_hash)
            found += 1
        return found

    def insert(self, hashes: Sequence[int]) -> None:
        for block_hash in hashes:
            self._blocks[block_hash] = None
            self._blocks.move_to_end(block_hash)
        while len(self._blocks) > self.capacity:
            self._blocks.popitem(last=False)
            self.evictions += 1


@dataclass(slots=True)
class SimCompletion:
    """vLLM's CompletionOutput, as much of it as the servicer reads (delta mode)."""

    index: int
    text: str
    token_ids: list[int]
    finish_reason: str | None = None
    stop_reason: int | str | None = None
    logprobs: list[dict[int, Any]] | None = None


@dataclass(slots=True)
class SimMetrics:
    """vLLM's RequestStateStats timestamps the servicer reads (monotonic seconds)."""

    queued_ts: float
    scheduled_ts: float = 0.0


@dataclass(slots=True)
class SimOutput:
    """vLLM's RequestOutput, as much of it as the servicer reads."""

    request_id: str
    outputs: list[SimCompletion]
    finished: bool
    num_cached_tokens: int
    metrics: SimMetrics


@dataclass(slots=True)
class _Choice:
    index: int
    rng: random.Random
    tokens: list[int] = field(default_factory=list)  # every generated id
    text: str = ""  # every generated character (for stop strings)
    new_ids: list[int] = field(default_factory=list)  # not yet taken by the consumer
    new_text: list[str] = field(default_factory=list)
    new_logprobs: list[dict[int, Any]] = field(default_factory=list)
    finish_reason: str | None = None
    stop_reason: int | str | None = None
    reported: bool = False  # its finish has been taken


class _Request:
    """One request's place in the simulated scheduler and its not-yet-taken output."""

    def __init__(self, request_id: str, prompt: list[int], params: Any, seed: int) -> None:
        self.id = request_id
        self.prompt = prompt
        self.params = params
        self.n = int(params.n or 1)
        self.metrics = SimMetrics(queued_ts=time.monotonic())
        self.cached = 0
        self.length = 0  # tokens per choice, decided at scheduling
        self.natural_stop = False  # the last token is EOS
        self.choices = [_Choice(i, random.Random(seed + i)) for i in range(self.n)]
        self.decoding = False
        self.done = False
        self.timer: asyncio.TimerHandle | None = None
        self.error: BaseException | None = None
        self.ready = asyncio.Event()

    @property
    def generated(self) -> int:
        return len(self.choices[0].tokens)

    def take(self) -> SimOutput:
        """Everything generated since the last take, as one delta."""
        self.ready.clear()
        outputs: list[SimCompletion] = []
        for choice in self.choices:
            if not choice.new_ids and (choice.finish_reason is None or choice.reported):
                continue
            outputs.append(
                SimCompletion(
                    choice.index,
                    "".join(choice.new_text),
                    choice.new_ids,
                    choice.finish_reason,
                    choice.stop_reason,
                    choice.new_logprobs or None,
                )
            )
            choice.new_ids, choice.new_text, choice.new_logprobs = [], [], []
            choice.reported = choice.finish_reason is not None
        finished = all(choice.reported for choice in self.choices)
        return SimOutput(self.id, outputs, finished, self.cached, self.metrics)


class SimEngine(BaseEngine):
    """The real tokenizer and chat template over a timing model; see the module docstring."""

    def __init__(self, settings: ModelSettings) -> None:
        super().__init__(settings)
        self.cache = PrefixCache(settings.sim_cache_blocks)
        self._vocab_size = 0
        self._pool: list[int] = []
        self._pool_text: dict[int, str] = {}
        self._eos: int | None = None
        self._waiting: deque[_Request] = deque()
        self._running: list[_Request] = []  # scheduled: prefilling or decoding
        self._decoding: list[_Request] = []
        self._slots = 0  # sequences of the running requests
        self._stepper: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._queries = 0
        self._hits = 0
        self._started = False

    # -- lifetime --------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._started and self.info is not None

    def fail(self, reason: str) -> None:
        from vllm.v1.engine.exceptions import EngineDeadError

        self.failure = reason
        for request in [*self._waiting, *self._running]:
            request.error = EngineDeadError()
            request.ready.set()

    async def start(self) -> None:
        log.warning("simulated engine: timing model, no forward pass; for benchmarks and routing tests only")
        s = self.settings
        source = await asyncio.to_thread(resolve_model, s)
        tokenizer, config = await asyncio.to_thread(_load_tokenizer, source)
        self._tokenizer = tokenizer
        self._vocab_size = int(config.vocab_size)
        self._eos = tokenizer.eos_token_id
        self._pool, self._pool_text = _word_pool(tokenizer)
        self.tools = ToolCalling(tokenizer, s.tool_call_parser, s.tool_strict_level, s.tool_chat_template)
        context = s.max_model_len or int(getattr(config, "max_position_embeddings", 0) or 4096)
        self.info = EngineInfo(
            name=served_model_name(s),
            source=source,
            max_model_len=context,
            dtype="none",
            engine_version=ENGINE_VERSION,
            device=ENGINE_NAME,
            tensor_parallel_size=1,
            dtype_choice=DtypeChoice("none", ENGINE_NAME, "simulated engine: no weights are loaded"),
            engine=ENGINE_NAME,
        )
        self._stepper = asyncio.create_task(self._step_forever(), name="sim-engine-steps")
        self._started = True
        log.info(
            "simulated engine ready: %s, context %d, batch %d, TTFT %.1f ms + %.1f ms per 1k uncached "
            "tokens, ITL %.1f ms, answers of %d tokens, prefix cache of %d blocks of %d tokens",
            self.info.name,
            context,
            s.max_num_seqs,
            s.sim_ttft_base_ms,
            s.sim_prefill_ms_per_1k_tokens,
            s.sim_itl_ms,
            s.sim_output_tokens,
            s.sim_cache_blocks,
            BLOCK_SIZE,
        )

    def shutdown(self) -> None:
        self._started = False
        if self._stepper is not None:
            self._stepper.cancel()
            self._stepper = None
        for request in [*self._waiting, *self._running]:
            if request.timer is not None:
                request.timer.cancel()

    # -- what the servicer asks ------------------------------------------------------------------

    def num_unfinished_requests(self) -> int:
        return len(self._waiting) + len(self._running)

    def load(self) -> EngineLoad:
        held = sum(-(-(len(r.prompt) + r.generated) // BLOCK_SIZE) * r.n for r in self._running if not r.done)
        return EngineLoad(
            running=self._slots,
            waiting=sum(r.n for r in self._waiting),
            kv_cache_usage=min(1.0, held / self.cache.capacity),
            prefix_cache_queries=self._queries,
            prefix_cache_hits=self._hits,
        )

    @property
    def vocab_size(self) -> int:
        self.check()
        return self._vocab_size

    def verify(self, params: Any, constraint: str | None) -> None:
        # ragway's own validation (sampling.py) has run; there is no grammar backend to compile
        # a constraint with, and the simulated text does not follow one.
        self.check()

    def generate(self, prompt_ids: list[int], params: Any, request_id: str) -> AsyncIterator[Any]:
        self.check()
        self._check_prompt(prompt_ids)
        seed = hash((tuple(prompt_ids), params.seed or 0))
        return self._stream(_Request(request_id, prompt_ids, params, seed))

    async def score_prompts(self, prompts: Sequence[ScorePrompt], request_id: str) -> tuple[list[float], int]:
        """Each prompt runs through the timing model as a one-token request (queueing, prefill and
        the prefix cache as for any prompt); the score is `scoring.overlap_score`, a deterministic
        stand-in for the model's log-probabilities (there is no model here), so routing and
        benchmarks see real-shaped calls and rankings that favour the query's own words."""
        from vllm import SamplingParams

        async def one(i: int, prompt: ScorePrompt) -> int:
            cached = 0
            params = SamplingParams(max_tokens=1, temperature=0.0)
            async for output in self.generate(prompt.ids, params, f"{request_id}-{i}"):
                cached = output.num_cached_tokens or cached
            return cached

        cached = await asyncio.gather(*(one(i, p) for i, p in enumerate(prompts)))
        return [overlap_score(p) for p in prompts], sum(cached)

    async def _stream(self, request: _Request) -> AsyncIterator[SimOutput]:
        # Queued on the first read, inside the try: whatever ends the iteration frees its place.
        try:
            self._waiting.append(request)
            self._schedule()
            while True:
                await request.ready.wait()
                if request.error is not None:
                    raise request.error
                output = request.take()
                yield output
                if output.finished:
                    return
        finally:
            self._release(request)

    # -- the timing model ------------------------------------------------------------------------

    def _schedule(self) -> None:
        """Move waiting requests into the batch while it has room, oldest first."""
        s = self.settings
        loop = asyncio.get_running_loop()
        # A request of more choices than the batch holds runs alone (vLLM would run its choices as
        # separate sequences) rather than waiting forever.
        while self._waiting and (self._slots + self._waiting[0].n <= s.max_num_seqs or not self._slots):
            request = self._waiting.popleft()
            request.metrics.scheduled_ts = time.monotonic()
            self._slots += request.n
            self._running.append(request)
            prompt = request.prompt
            # As vLLM: the last prompt token is always computed, so a hit stops a block short of it.
            usable = (len(prompt) - 1) // BLOCK_SIZE
            request.cached = self.cache.match(block_hashes(prompt[: usable * BLOCK_SIZE])) * BLOCK_SIZE
            self._queries += len(prompt)
            self._hits += request.cached
            metrics.PREFIX_CACHE_QUERIES.inc(len(prompt))
            metrics.PREFIX_CACHE_HITS.inc(request.cached)
            self._plan_length(request)
            uncached = len(prompt) - request.cached
            prefill = (s.sim_ttft_base_ms + s.sim_prefill_ms_per_1k_tokens * uncached / 1000) / 1000
            request.timer = loop.call_later(prefill, self._first_token, request)

    def _plan_length(self, request: _Request) -> None:
        params = request.params
        max_tokens = int(params.max_tokens or 16)  # vLLM's default when unset
        natural = max(self.settings.sim_output_tokens, int(params.min_tokens or 0))
        if params.ignore_eos or self._eos is None or natural >= max_tokens:
            request.length, request.natural_stop = max_tokens, False
        else:
            request.length, request.natural_stop = natural, True

    def _first_token(self, request: _Request) -> None:
        request.timer = None
        if request.done:
            return
        self.cache.insert(block_hashes(request.prompt))  # its prefill is done: its blocks are cached
        request.decoding = True
        self._decoding.append(request)
        self._emit(request)
        self._wake.set()

    async def _step_forever(self) -> None:
        """One batch step every ITL: a token for every decoding sequence.

        The clock is the wall's: when the process falls behind (a busy event loop, a starved CPU),
        the steps it missed run together and their tokens reach each stream merged into one delta,
        as a GPU keeps stepping while its frontend is busy. So the token rate is the timing
        model's and only the number of messages bends to what the process can send."""
        itl = self.settings.sim_itl_ms / 1000
        loop = asyncio.get_running_loop()
        next_step = loop.time()
        while True:
            if not self._decoding:
                self._wake.clear()
                await self._wake.wait()
                next_step = loop.time() + itl
            await asyncio.sleep(max(0.0, next_step - loop.time()))
            now = loop.time()
            steps = 1 + min(int((now - next_step) / itl), MAX_CATCH_UP_STEPS)
            next_step = max(next_step + steps * itl, now)
            for request in self._decoding:
                for _ in range(steps):
                    if request.done:  # finished, or cancelled since the last step
                        break
                    self._emit(request)
            if any(r.done for r in self._decoding):
                self._decoding = [r for r in self._decoding if not r.done]

    def _emit(self, request: _Request) -> None:
        """The next token of every unfinished choice."""
        params = request.params
        last = request.generated + 1 >= request.length
        for choice in request.choices:
            if choice.finish_reason is not None:
                continue
            if last and request.natural_stop:
                token, text = self._eos, ""
            else:
                token = choice.rng.choice(self._pool)
                text = self._pool_text[token]
            assert token is not None
            choice.tokens.append(token)
            choice.new_ids.append(token)
            if params.logprobs is not None:
                choice.new_logprobs.append(self._logprobs(token, text, params.logprobs))
            if params.stop_token_ids and token in params.stop_token_ids:
                choice.finish_reason, choice.stop_reason = "stop", token
            elif params.stop and text:
                self._stop_strings(choice, text, params.stop)
            if choice.finish_reason is None:
                choice.text += text
                choice.new_text.append(text)
                if last:
                    choice.finish_reason = "stop" if request.natural_stop else "length"
        if all(choice.finish_reason is not None for choice in request.choices):
            self._finish(request)
        # As vLLM's stream_interval: the first token at once, then every `stream_interval` tokens,
        # and the end whenever it comes.
        waiting = max(len(choice.new_ids) for choice in request.choices)
        ended = any(choice.finish_reason is not None and not choice.reported for choice in request.choices)
        if request.done or ended or request.generated == 1 or waiting >= self.settings.stream_interval:
            request.ready.set()

    def _stop_strings(self, choice: _Choice, text: str, stops: Sequence[str]) -> None:
        """End the choice before the first stop string its text now contains (the stop string and
        what follows it are left out, as vLLM does; one that began in text already sent ends the
        choice there)."""
        before = len(choice.text)
        whole = choice.text + text
        hits = [
            (at, stop) for stop in stops if (at := whole.find(stop, max(0, before - len(stop) + 1))) != -1
        ]
        if not hits:
            return
        at, stop = min(hits)
        kept = whole[before:at] if at > before else ""
        choice.text += kept
        choice.new_text.append(kept)
        choice.finish_reason, choice.stop_reason = "stop", stop

    def _logprobs(self, token: int, text: str, k: int) -> dict[int, Any]:
        """The sampled token first (rank 1), then `k` alternatives from the pool: made-up numbers
        of the right shape."""
        from vllm.logprobs import Logprob

        ranked = {token: Logprob(logprob=-0.1, rank=1, decoded_token=text)}
        at = self._pool.index(token) if token in self._pool_text else 0
        for rank in range(2, k + 2):
            alternative = self._pool[(at + rank) % len(self._pool)]
            ranked.setdefault(
                alternative,
                Logprob(logprob=-float(rank), rank=rank, decoded_token=self._pool_text[alternative]),
            )
        return ranked

    def _finish(self, request: _Request) -> None:
        if request.done:
            return
        request.done = True
        if request.timer is not None:
            request.timer.cancel()
            request.timer = None
        if request in self._running:
            self._running.remove(request)
            self._slots -= request.n
            if request.decoding:
                # What it computed stays cached, its answer included, as vLLM keeps finished blocks.
                for choice in request.choices:
                    self.cache.insert(block_hashes(request.prompt + choice.tokens))
        self._schedule()

    def _release(self, request: _Request) -> None:
        """The consumer is gone (finished, cancelled or closed): free its place."""
        if request in self._waiting:
            self._waiting.remove(request)
            request.done = True
        else:
            self._finish(request)


def _load_tokenizer(source: str) -> tuple[Any, Any]:
    """The tokenizer the real engine would serve with (vLLM's loader: transformers' AutoTokenizer,
    with vLLM's cached properties) and the model's config, without loading any weights."""
    from transformers import AutoConfig
    from vllm.tokenizers import get_tokenizer

    return get_tokenizer(source), AutoConfig.from_pretrained(source)


def _word_pool(tokenizer: Any) -> tuple[list[int], dict[int, str]]:
    """Token ids that decode to one lower-case word after a space: any sequence of them decodes to
    the concatenation of their texts, so each token's text can be sent as it is drawn."""
    candidates = sorted(
        token_id
        for piece, token_id in tokenizer.get_vocab().items()
        if len(piece) >= 3 and piece[1:].isascii() and piece[1:].isalpha() and piece[1:].islower()
    )
    texts: dict[int, str] = {}
    for token_id in candidates:
        text = tokenizer.decode([token_id])
        if _WORD.match(text):
            texts[token_id] = text
            if len(texts) == _POOL_SIZE:
                break
    if not texts:
        raise Unavailable("the simulated engine found no whole-word tokens in the tokenizer's vocabulary")
    return list(texts), texts
