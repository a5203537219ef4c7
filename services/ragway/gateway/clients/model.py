"""The model service as the gateway sees it: one served model, over the replicas that serve it.

`ModelReplica` is one model-service address (one channel). `ModelClient` is one model of the model
table: each call goes to the replica `ReplicaSet` picks, and a call that fails as UNAVAILABLE or is
refused as overloaded (RESOURCE_EXHAUSTED) is tried once more on another replica — for a generation
only while no token has come back, because from the first token on the client may already hold
part of the answer and a second run would write a different one. Health comes from each replica's
grpc.health.v1 Watch stream, so a killed replica leaves rotation at once, not at its next call.
A `dns:` address is a set of replicas that changes: every address the name resolves to is one
(clients/discovery.py), so each pod of a Kubernetes Deployment is a replica of its own.

This module is the only gateway code that builds or reads model-service protobufs: `ModelReplica`
speaks the wire (and is what in-process tests fake), `ModelClient` takes and returns the typed
values below, so generation and the APIs never depend on the transport.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import grpc
from grpc_health.v1 import health_pb2

from ragway.core.errors import RagwayError, Unavailable
from ragway.gateway.clients.base import ServiceClient, metadata, translate
from ragway.gateway.clients.coalescing import coalesced
from ragway.gateway.clients.discovery import DnsTarget
from ragway.gateway.clients.replicas import PREFIX_KEY, Replica, ReplicaSet, prompt_blocks
from ragway.gateway.conversations.history import Turn
from ragway.gateway.core import metrics
from ragway.gateway.core.errors import Overloaded
from ragway.v1 import model_pb2, model_pb2_grpc

log = logging.getLogger(__name__)

T = TypeVar("T")
# How long a replica's health watch waits before asking again after the replica could not be
# reached (the channel's own reconnect backoff, at most 5 s, comes on top).
WATCH_RETRY_SECONDS = 1.0
# How often each replica's engine load is read, and how long one read may take: the per-model
# sums an autoscaler or an operator watches (queue depth, running, KV cache, prefix-cache hits).
LOAD_POLL_SECONDS = 2.0
LOAD_TIMEOUT = 1.0
# The longest a replica that left DNS keeps its channel open for the calls still running on it.
RETIRE_MAX_SECONDS = 600.0

TOOL_CHOICE = {
    "none": model_pb2.TOOL_CHOICE_MODE_NONE,
    "auto": model_pb2.TOOL_CHOICE_MODE_AUTO,
    "required": model_pb2.TOOL_CHOICE_MODE_REQUIRED,
    "named": model_pb2.TOOL_CHOICE_MODE_NAMED,
}
FINISH = {
    model_pb2.FINISH_REASON_STOP: "stop",
    model_pb2.FINISH_REASON_LENGTH: "length",
    model_pb2.FINISH_REASON_ABORT: "abort",
    model_pb2.FINISH_REASON_TOOL_CALLS: "tool_calls",
}
# Sampling parameters sent only when set: unset, the engine's default applies.
OPTIONAL_SAMPLING = (
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "repetition_penalty",
    "n",
    "logprobs",
)


@dataclass(frozen=True)
class ModelInfo:
    """The served model as its model service reports it (GetModelInfo)."""

    name: str
    max_model_len: int
    dtype: str
    engine: str
    device: str  # "cpu", "cuda", ...: where its engine runs


@dataclass(frozen=True)
class Tool:
    """A function the model may call; `parameters` is its JSON schema (None: any arguments)."""

    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool = False


@dataclass(frozen=True)
class ToolChoice:
    """Whether the model may, must or must not call a tool; "named": it must call `name`."""

    mode: Literal["none", "auto", "required", "named"]
    name: str = ""


@dataclass(frozen=True)
class Chat:
    """A chat prompt, rendered by the model service with the model's own template."""

    messages: Sequence[Turn]
    tools: Sequence[Tool] = ()
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None  # None: the model's default


@dataclass(frozen=True)
class Sampling:
    """How to sample. None (and the empty defaults) leave a parameter to the engine's default, so
    an unset parameter is never sent as a value."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repetition_penalty: float | None = None
    n: int | None = None
    logprobs: int | None = None  # how many alternatives per token; None: no logprobs
    stop: Sequence[str] = ()
    ignore_eos: bool = False
    logit_bias: dict[int, float] = field(default_factory=dict)
    json_schema: dict[str, Any] | None = None  # the answer is JSON of this schema
    json_object: bool = False  # the answer is some JSON object


@dataclass(frozen=True)
class GenerationRequest:
    """One generation: a plain-text prompt, token ids (no template) or a chat."""

    id: str
    prompt: str | list[int] | Chat
    sampling: Sampling


@dataclass(frozen=True, slots=True)
class TokenCandidate:
    """One of the likeliest tokens at a position, with its log-probability."""

    token: str
    logprob: float


@dataclass(frozen=True, slots=True)
class SampledToken:
    """A generated token's log-probability and the likeliest alternatives at its position."""

    token: str
    logprob: float
    top: list[TokenCandidate]


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of the tool call with this `index`: its id and name come once, its arguments in
    fragments."""

    index: int
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class ChoiceDelta:
    """What one choice of a generation added since the last message."""

    index: int
    text: str = ""
    tokens: int = 0  # how many tokens this delta carries
    logprobs: list[SampledToken] = field(default_factory=list)
    finish_reason: str | None = None  # "stop", "length", "abort", "tool_calls"; None: not yet
    tool_calls: list[ToolCallDelta] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """The prompt's tokens as the engine counted them when the generation finished."""

    prompt_tokens: int
    cached_tokens: int


@dataclass(frozen=True, slots=True)
class GenerationChunk:
    """One message of a generation's stream. The first (on admission) carries the prompt's size
    and no choices; the last carries `usage`, and only the last does."""

    choices: list[ChoiceDelta]
    prompt_tokens: int = 0
    usage: TokenUsage | None = None


@dataclass(frozen=True)
class Tokens:
    """A prompt's token ids, as Generate would see them."""

    ids: list[int]
    count: int
    max_model_len: int  # 0: the replica did not say


@dataclass(frozen=True)
class PromptSize:
    """How many tokens a rendered chat prompt takes, in total and per message (they sum to total)."""

    total: int
    per_message: list[int]


@dataclass(frozen=True)
class PassageScores:
    """The LLM reranker's answer (the model service's Score): one mean query log-probability per
    passage, in order, and the prompt tokens it took."""

    scores: list[float]
    prompt_tokens: int
    cached_tokens: int


class ModelReplica(ServiceClient):
    """One model-service address."""

    service = "model"

    def __init__(self, address: str, rpc_timeout: float, interceptors: list[Any] | None = None) -> None:
        super().__init__(address, rpc_timeout, interceptors)
        self.stub = model_pb2_grpc.ModelServiceStub(self.channel)

    async def info(self) -> model_pb2.ModelInfo:
        reply: model_pb2.ModelInfo = await self.unary(self.stub.GetModelInfo, model_pb2.GetModelInfoRequest())
        return reply

    async def load(self) -> model_pb2.Load:
        """The replica's engine load: running, waiting, KV-cache use, prefix-cache counters."""
        reply: model_pb2.Load = await self.unary(self.stub.GetLoad, model_pb2.GetLoadRequest(), LOAD_TIMEOUT)
        return reply

    async def measure_chat(self, chat: model_pb2.ChatInput) -> PromptSize:
        """Tokens of the chat prompt as Generate would render it, with each message's share."""
        reply = await self.unary(self.stub.Tokenize, model_pb2.TokenizeRequest(chat=chat))
        return PromptSize(total=int(reply.count), per_message=[int(n) for n in reply.message_tokens])

    async def count_text_tokens(self, text: str) -> int:
        reply = await self.unary(
            self.stub.Tokenize, model_pb2.TokenizeRequest(text=text, add_special_tokens=True)
        )
        return int(reply.count)

    async def tokenize(self, request: model_pb2.TokenizeRequest) -> model_pb2.TokenizeResponse:
        """Token ids of text or of a chat prompt, exactly as Generate would see them."""
        reply: model_pb2.TokenizeResponse = await self.unary(self.stub.Tokenize, request)
        return reply

    async def detokenize(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        """The text of these token ids."""
        reply = await self.unary(
            self.stub.Detokenize,
            model_pb2.DetokenizeRequest(ids=ids, skip_special_tokens=skip_special_tokens),
        )
        return str(reply.text)

    async def score(
        self, query: str, passages: Sequence[str], max_passage_tokens: int, timeout: float | None
    ) -> PassageScores:
        """Score passages against a query with the served model (the LLM reranker)."""
        reply = await self.unary(
            self.stub.Score,
            model_pb2.ScoreRequest(query=query, passages=passages, max_passage_tokens=max_passage_tokens),
            timeout,
        )
        return PassageScores(
            [s.score for s in reply.scores],
            int(reply.usage.prompt_tokens),
            int(reply.usage.cached_prompt_tokens),
        )

    async def generate(
        self, request: model_pb2.GenerateRequest, timeout: float
    ) -> AsyncGenerator[model_pb2.GenerateResponse, None]:
        """Stream a generation. Closing this iterator (or cancelling its task) cancels the call,
        and the model service aborts the request in the engine."""
        call = self.stub.Generate(request, timeout=timeout, metadata=metadata())
        try:
            # Read as fast as the replica sends; what queues behind a busy gateway goes on merged.
            async for message in coalesced(call):
                yield message
        except grpc.aio.AioRpcError as exc:
            raise translate(exc, self.service) from exc
        finally:
            # No await here: this runs inside a cancelled task when the HTTP client went away.
            call.cancel()

    async def watch(self) -> AsyncIterator[bool]:
        """Whether the replica is SERVING, each time that changes; ends when it cannot be reached."""
        call = self._health.Watch(health_pb2.HealthCheckRequest(service=""))
        try:
            async for reply in call:
                yield reply.status == health_pb2.HealthCheckResponse.SERVING
        except grpc.aio.AioRpcError:
            return
        finally:
            call.cancel()


def publish_load(model: str, loads: Sequence[model_pb2.Load], before: dict[str, float]) -> dict[str, float]:
    """Set a model's load gauges from its replicas' reports: requests running and waiting summed,
    KV-cache use averaged, and the prefix-cache hit rate over the tokens looked up since `before`
    (the counters' totals last time, returned for next time)."""
    if not loads:
        return before
    metrics.MODEL_RUNNING.labels(model).set(sum(load.running_requests for load in loads))
    metrics.MODEL_WAITING.labels(model).set(sum(load.waiting_requests for load in loads))
    metrics.MODEL_KV_CACHE_USAGE.labels(model).set(sum(load.kv_cache_usage for load in loads) / len(loads))
    totals = {
        "queries": float(sum(load.prefix_cache_queries for load in loads)),
        "hits": float(sum(load.prefix_cache_hits for load in loads)),
    }
    queried = totals["queries"] - before.get("queries", 0.0)
    if queried > 0:  # a replica that restarted resets its counters: then wait for the next window
        metrics.MODEL_PREFIX_CACHE_HIT_RATE.labels(model).set(
            (totals["hits"] - before.get("hits", 0.0)) / queried
        )
    return totals


def _prompt_text(prompt: str | list[int] | Chat) -> str:
    """The prompt as text for the prefix picture: each chat message's role and content in order
    (what the chat template renders, minus its markup), or the text prompt (token ids: none)."""
    if isinstance(prompt, Chat):
        return "".join(f"\x1e{m.role}\x1f{m.sent}" for m in prompt.messages)
    return prompt if isinstance(prompt, str) else ""


def _has_output(chunk: GenerationChunk) -> bool:
    """Whether a message carries anything of the answer (the admission message carries none)."""
    return any(d.tokens or d.text or d.tool_calls or d.finish_reason for d in chunk.choices)


# -- the typed values as the model service's messages, and back ----------------------------------


def _chat_message(turn: Turn) -> model_pb2.ChatMessage:
    """A turn as the model service renders it: what the model is shown, plus tool calls as data."""
    return model_pb2.ChatMessage(
        role=turn.role,
        content=turn.sent,
        tool_calls=[model_pb2.ToolCall(id=c.id, name=c.name, arguments=c.arguments) for c in turn.tool_calls],
        tool_call_id=turn.tool_call_id or "",
    )


def _chat_input(chat: Chat) -> model_pb2.ChatInput:
    message = model_pb2.ChatInput(
        messages=[_chat_message(t) for t in chat.messages],
        tools=[
            model_pb2.Tool(
                name=t.name,
                description=t.description or "",
                parameters=json.dumps(t.parameters) if t.parameters is not None else "",
                strict=t.strict,
            )
            for t in chat.tools
        ],
    )
    if chat.tool_choice is not None:
        choice = chat.tool_choice
        message.tool_choice.CopyFrom(model_pb2.ToolChoice(mode=TOOL_CHOICE[choice.mode], name=choice.name))
    if chat.parallel_tool_calls is not None:
        message.parallel_tool_calls = chat.parallel_tool_calls
    return message


def _sampling_params(sampling: Sampling) -> model_pb2.SamplingParams:
    params = model_pb2.SamplingParams(
        stop=sampling.stop, ignore_eos=sampling.ignore_eos, logit_bias=sampling.logit_bias
    )
    for name in OPTIONAL_SAMPLING:
        value = getattr(sampling, name)
        if value is not None:
            setattr(params, name, value)
    if sampling.json_schema is not None:
        params.json_schema = json.dumps(sampling.json_schema)
    elif sampling.json_object:
        params.json_object = True
    return params


def _generate_request(request: GenerationRequest) -> model_pb2.GenerateRequest:
    message = model_pb2.GenerateRequest(request_id=request.id, sampling=_sampling_params(request.sampling))
    if isinstance(request.prompt, Chat):
        message.chat.CopyFrom(_chat_input(request.prompt))
    elif isinstance(request.prompt, str):
        message.text = request.prompt
    else:
        message.token_ids.CopyFrom(model_pb2.TokenIds(ids=request.prompt))
    return message


def _chunk(message: model_pb2.GenerateResponse) -> GenerationChunk:
    usage = message.usage if message.HasField("usage") else None
    return GenerationChunk(
        choices=[
            ChoiceDelta(
                index=d.index,
                text=d.text,
                tokens=len(d.token_ids),
                logprobs=[
                    SampledToken(p.token, p.logprob, [TokenCandidate(t.token, t.logprob) for t in p.top])
                    for p in d.logprobs
                ],
                finish_reason=FINISH.get(d.finish_reason),
                tool_calls=[ToolCallDelta(c.index, c.id, c.name, c.arguments) for c in d.tool_calls],
            )
            for d in message.choices
        ],
        prompt_tokens=message.prompt_tokens,
        usage=None if usage is None else TokenUsage(usage.prompt_tokens, usage.cached_prompt_tokens),
    )


class ModelClient:
    """One model of the model table over its replicas (see the module docstring)."""

    def __init__(
        self,
        replicas: Sequence[ModelReplica],
        *,
        name: str | None = None,
        info_ttl: float = 60.0,
        backoff: float = 1.0,
        backoff_max: float = 30.0,
        discover: Sequence[DnsTarget] = (),
        connect: Callable[[str], ModelReplica] | None = None,
        dns_refresh: float = 5.0,
    ) -> None:
        """`replicas` are fixed addresses; each of `discover` adds one replica per address its
        name resolves to, reached through `connect`, and is resolved again every `dns_refresh` s."""
        if discover and connect is None:
            raise ValueError("discovering replicas in DNS needs a connect function")
        self.replicas: ReplicaSet[ModelReplica] = ReplicaSet(replicas, backoff, backoff_max)
        self.name = name  # the table's name; None: the model service's own
        self.info_ttl = info_ttl
        self.discover = tuple(discover)
        self.connect = connect
        self.dns_refresh = dns_refresh
        self._info: ModelInfo | None = None
        self._info_at = 0.0
        self._watches: dict[Replica[ModelReplica], asyncio.Task[None]] = {}
        self._found: dict[DnsTarget, dict[str, Replica[ModelReplica]]] = {t: {} for t in self.discover}
        self._tasks: set[asyncio.Task[None]] = set()  # DNS refreshes and retiring replicas
        self._published: str | None = None  # the label the replica gauges were last set under

    @property
    def label(self) -> str:
        """The model's name for logs, metrics and /readyz, even before its service ever answered."""
        if self.name is not None:
            return self.name
        if self._info is not None:
            return self._info.name
        if self.replicas.replicas:
            return self.replicas.replicas[0].client.address
        return str(self.discover[0]) if self.discover else "model"

    def start(self) -> None:
        """Watch every replica's health and keep the DNS names resolved (needs the running loop)."""
        for replica in self.replicas.replicas:
            self._watches[replica] = asyncio.create_task(self._watch(replica))
        for target in self.discover:
            self._spawn(self._refresh(target))
        self._spawn(self._poll_loads())

    async def _poll_loads(self) -> None:
        """Read every serving replica's load and publish the model's sums (metrics.MODEL_*)."""
        totals: dict[str, float] = {}
        while True:
            await asyncio.sleep(LOAD_POLL_SECONDS)
            serving = [r for r in self.replicas.replicas if r.serving]
            loads = await asyncio.gather(*(r.client.load() for r in serving), return_exceptions=True)
            read = [load for load in loads if isinstance(load, model_pb2.Load)]
            totals = publish_load(self.label, read, totals)

    async def close(self) -> None:
        tasks = [*self._watches.values(), *self._tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for replica in self.replicas.replicas:
            await replica.client.close()

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _refresh(self, target: DnsTarget) -> None:
        while True:
            addresses = await target.resolve()
            if addresses is not None:
                self._sync(target, addresses)
            await asyncio.sleep(self.dns_refresh)

    def _sync(self, target: DnsTarget, addresses: Sequence[str]) -> None:
        """Make `target`'s replicas the ones at `addresses`: new ones join (with a health watch of
        their own), the ones gone leave rotation and close once their calls in flight are done."""
        assert self.connect is not None
        found = self._found[target]
        for address in addresses:
            if address not in found:
                replica = self.replicas.add(self.connect(address))
                found[address] = replica
                self._watches[replica] = asyncio.create_task(self._watch(replica))
                log.info("model %s: replica %s found in %s", self.label, address, target)
        for address in [a for a in found if a not in addresses]:
            replica = found.pop(address)
            self.replicas.remove(replica)
            self._watches.pop(replica).cancel()
            self._spawn(self._retire(replica))
            log.info("model %s: replica %s left %s", self.label, address, target)
        self._publish()

    def _publish(self) -> None:
        """The replica gauges under the model's label. A nameless model is labelled by an address
        until its service first says its name; the series under the old label goes then."""
        label = self.label
        if self._published not in (None, label):
            for gauge in (metrics.REPLICAS, metrics.REPLICAS_SERVING):
                try:
                    gauge.remove(self._published)
                except KeyError:
                    pass
        self._published = label
        metrics.REPLICAS.labels(label).set(len(self.replicas.replicas))
        metrics.REPLICAS_SERVING.labels(label).set(self.replicas.serving)

    async def _retire(self, replica: Replica[ModelReplica]) -> None:
        """Close a departed replica's channel once no call is left on it (a pod leaving DNS is
        draining: its streams finish), or after the longest a generation may take."""
        for _ in range(int(RETIRE_MAX_SECONDS)):
            if not replica.in_flight:
                break
            await asyncio.sleep(1.0)
        await replica.client.close()

    async def _watch(self, replica: Replica[ModelReplica]) -> None:
        while True:
            async for serving in replica.client.watch():
                self._report(replica, serving)
            self._report(replica, False)
            await asyncio.sleep(WATCH_RETRY_SECONDS)

    def _report(self, replica: Replica[ModelReplica], serving: bool) -> None:
        if serving != replica.serving:
            log.info(
                "model %s replica %s is %s",
                self.label,
                replica.client.address,
                "SERVING" if serving else "down",
            )
        self.replicas.reported(replica, serving)
        self._publish()
        if serving and self.name is None and self._info is None:
            self._spawn(self._learn_name())

    async def _learn_name(self) -> None:
        """A nameless model's name, from the first replica that serves: metrics and /readyz then
        say it without waiting for a request."""
        try:
            await self.info()
        except RagwayError as exc:
            log.info("model %s: no model info yet (%s)", self.label, exc.message)

    def _pick(
        self,
        exclude: Sequence[Replica[ModelReplica]] = (),
        rotate: bool = True,
        key: str | None = None,
        blocks: Sequence[int] = (),
    ) -> Replica[ModelReplica]:
        replica = self.replicas.pick(exclude, rotate, key, blocks)
        if replica is None:
            raise Unavailable(
                f"the model service of {self.label!r} has no healthy replica; try again shortly"
            )
        return replica

    def _retry_on(
        self, failed: Replica[ModelReplica], exc: Unavailable | Overloaded
    ) -> Replica[ModelReplica] | None:
        """Book the failure; the replica to try instead, if there is one."""
        if isinstance(exc, Unavailable):
            self.replicas.failed(failed)
        other = self.replicas.pick([failed])
        if other is not None:
            reason = "unavailable" if isinstance(exc, Unavailable) else "overloaded"
            metrics.MODEL_RETRIES.labels(self.label, reason).inc()
            log.warning(
                "model %s: %s was %s; retrying on %s",
                self.label,
                failed.client.address,
                reason,
                other.client.address,
            )
        return other

    async def _call(
        self,
        method: Callable[[ModelReplica], Awaitable[T]],
        key: str | None = None,
        blocks: Sequence[int] = (),
    ) -> T:
        """A unary call on a picked replica (the one a generation with routing `key` and prompt
        `blocks` would go to), once more on another if that one is down or full."""
        replica = self._pick(rotate=False, key=key, blocks=blocks)
        try:
            result = await method(replica.client)
        except (Unavailable, Overloaded) as exc:
            other = self._retry_on(replica, exc)
            if other is None:
                raise
            result = await method(other.client)
            replica = other
        self.replicas.succeeded(replica)
        return result

    async def info(self) -> ModelInfo:
        """The served model, cached for `info_ttl` seconds (it only changes when a service restarts)."""
        if self._info is None or time.monotonic() - self._info_at > self.info_ttl:
            reply = await self._call(lambda r: r.info())
            self._info = ModelInfo(reply.name, reply.max_model_len, reply.dtype, reply.engine, reply.device)
            self._info_at = time.monotonic()
            self._publish()
        return self._info

    async def measure_chat(self, chat: Chat, key: str | None = None) -> PromptSize:
        """Tokens of the chat prompt as Generate would render it (tools included), with each
        message's share. Measured on the replica the chat's generation with routing `key` will go
        to: that replica keeps the render, so its Generate does not render and tokenize again."""
        sent = _chat_input(chat)
        weighed = key is not None and key.startswith(PREFIX_KEY)  # the only keys blocks move
        blocks = prompt_blocks(_prompt_text(chat)) if weighed else ()
        return await self._call(lambda r: r.measure_chat(sent), key, blocks)

    async def count_text_tokens(self, text: str) -> int:
        return await self._call(lambda r: r.count_text_tokens(text))

    async def tokenize(self, prompt: str | Chat, add_special_tokens: bool = True) -> Tokens:
        """Token ids of text or of a chat prompt, exactly as Generate would see them.
        `add_special_tokens` is for text: a chat template places its own."""
        request = (
            model_pb2.TokenizeRequest(chat=_chat_input(prompt))
            if isinstance(prompt, Chat)
            else model_pb2.TokenizeRequest(text=prompt, add_special_tokens=add_special_tokens)
        )
        reply = await self._call(lambda r: r.tokenize(request))
        return Tokens([int(i) for i in reply.ids], int(reply.count), int(reply.max_model_len))

    async def detokenize(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        """The text of these token ids."""
        return await self._call(lambda r: r.detokenize(ids, skip_special_tokens))

    async def score(
        self, query: str, passages: Sequence[str], max_passage_tokens: int = 0, timeout: float | None = None
    ) -> PassageScores:
        """Score passages against a query (the LLM reranker); `timeout` bounds the whole call."""
        return await self._call(lambda r: r.score(query, passages, max_passage_tokens, timeout))

    async def generate(
        self, request: GenerationRequest, timeout: float, key: str | None = None
    ) -> AsyncGenerator[GenerationChunk, None]:
        """Stream a generation from the replica its routing `key` lives on (the least busy without
        one); before its first token, a replica that is down or full hands the request to another
        once. Closing this iterator cancels the call (and the engine aborts the request)."""
        blocks = prompt_blocks(_prompt_text(request.prompt))
        sent = _generate_request(request)
        prefix_key = key is not None and key.startswith(PREFIX_KEY)
        replica = self._pick(key=key, blocks=blocks)
        replica.remember(blocks)
        if key is not None:
            owner = self.replicas.owner(key)
            reason = "affinity" if replica is owner else "overflow"
            if prefix_key and owner is not None and replica.holds(blocks) > owner.holds(blocks):
                reason = "prefix"
            metrics.ROUTED.labels(self.label, reason).inc()
        for attempt in (1, 2):
            current = replica
            current.in_flight += 1
            messages = current.client.generate(sent, timeout)
            answered = streamed = False
            try:
                async for message in messages:
                    if not answered:
                        answered = True
                        self.replicas.succeeded(current)
                    chunk = _chunk(message)
                    streamed = streamed or _has_output(chunk)
                    yield chunk
                return
            except (Unavailable, Overloaded) as exc:
                if streamed or attempt == 2:
                    if isinstance(exc, Unavailable):
                        self.replicas.failed(current)
                    raise
                other = self._retry_on(current, exc)
                if other is None:
                    raise
                replica = other
            finally:
                current.in_flight -= 1
                await messages.aclose()
