"""Generation, whatever API asked for it: from a plan to a metered, recorded run of the model.

Every request goes the same way: *check* (the model exists, the caller is under its limits),
*prepare* (history, sources, prompt fitting, credit reservation), *run* (stream from the model
service), *finish* (settle the bill, write the usage record and the history, in one transaction).
`run` owns running and finishing: finishing happens whatever happened in between — a normal end, a
model-service failure, or the client walking away. Chat completions (`chat_completion/serving.py`) and the
Responses API render their wire formats from the same run.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ragway.core.errors import InvalidArgument, RagwayError
from ragway.gateway.accounts import metering
from ragway.gateway.accounts.auth import Principal
from ragway.gateway.accounts.billing import Outcome, Reservation
from ragway.gateway.accounts.limiter import Limiter
from ragway.gateway.catalog.model_router import ModelRouter, Route, admit
from ragway.gateway.catalog.model_table import Price
from ragway.gateway.clients.model import (
    Chat,
    GenerationChunk,
    GenerationRequest,
    SampledToken,
    Sampling,
    Tool,
    ToolChoice,
)
from ragway.gateway.clients.replicas import PREFIX_KEY
from ragway.gateway.completion.protocol import PromptTokensDetails, Usage
from ragway.gateway.conversations import history
from ragway.gateway.conversations.history import ToolCall, Turn
from ragway.gateway.core import metrics
from ragway.gateway.core.config import GatewaySettings
from ragway.gateway.generation import prompt
from ragway.gateway.generation.grounding import Sources

log = logging.getLogger(__name__)

# How much of a completion's prompt names its routing key: enough to tell prompts apart.
LEADING_CHARS = 4096


@dataclass
class ChatPlan:
    """A chat generation as the caller asked for it, in no API's wire format."""

    id: str
    endpoint: str  # the billing and usage label: "chat.completions", "responses"
    system: list[Turn]  # never trimmed, never stored
    turns: list[Turn]  # the new turns; the last one is the question sources are added to
    sampling: Sampling  # all but max_tokens, which prepare() fits to the context
    token_limit: int | None = None
    n: int = 1
    tools: list[Tool] = field(default_factory=list)
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    conversation_id: str | None = None  # continue this stored conversation
    history_until: int | None = None  # ...read only up to this message (an unstored branch)
    store: bool = False
    metadata: dict[str, str] | None = None
    response: dict[str, Any] | None = None  # the Responses API's own fields, kept with the answer
    cache_key: str | None = None  # the client's prompt_cache_key


@dataclass
class Generation:
    """Everything decided before the model runs."""

    id: str
    endpoint: str
    principal: Principal
    model: str  # the served name; a fallback's once one took the request
    request: GenerationRequest
    prompt_tokens: int
    n: int
    reservation: Reservation
    routes: tuple[Route, ...] = ()  # the model asked for, then the fallbacks that may take it
    conversation_id: str | None = None  # set when the exchange is stored
    new_turns: list[Turn] = field(default_factory=list)
    context_start: int | None = None  # the conversation's new context start, when trimming moved it
    sources: Sources | None = None
    metadata: dict[str, str] | None = None
    response: dict[str, Any] | None = None
    created: int = field(default_factory=lambda: int(time.time()))
    routing_key: str | None = None  # which replica's prefix cache the prompt belongs to


@dataclass
class ToolCallProgress:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)

    def done(self) -> ToolCall:
        return ToolCall(self.id, self.name, "".join(self.arguments))


@dataclass
class Choice:
    text: list[str] = field(default_factory=list)
    tokens: int = 0
    finish_reason: str | None = None
    logprobs: list[SampledToken] = field(default_factory=list)
    tool_calls: list[ToolCallProgress] = field(default_factory=list)

    def turn(self) -> Turn:
        """This choice as an assistant turn of the conversation."""
        return Turn("assistant", "".join(self.text), tool_calls=tuple(c.done() for c in self.tool_calls))


@dataclass
class Progress:
    """What has come back so far; becomes the bill and the history entry."""

    choices: list[Choice]
    prompt_tokens: int = 0
    cached_tokens: int = 0
    started: float = field(default_factory=time.monotonic)
    first_token_at: float | None = None
    status: str = "aborted"  # until the model says it finished

    @classmethod
    def of(cls, gen: Generation) -> Progress:
        return cls([Choice() for _ in range(gen.n)])

    def add(self, message: GenerationChunk) -> None:
        if message.prompt_tokens:
            self.prompt_tokens = message.prompt_tokens
        for delta in message.choices:
            choice = self.choices[delta.index]
            if delta.tokens and self.first_token_at is None:
                self.first_token_at = time.monotonic()
            choice.text.append(delta.text)
            choice.tokens += delta.tokens
            choice.logprobs.extend(delta.logprobs)
            for call in delta.tool_calls:
                while len(choice.tool_calls) <= call.index:
                    choice.tool_calls.append(ToolCallProgress())
                entry = choice.tool_calls[call.index]
                entry.id = call.id or entry.id
                entry.name = call.name or entry.name
                entry.arguments.append(call.arguments)
            if delta.finish_reason:
                choice.finish_reason = delta.finish_reason
        if message.usage is not None:
            self.prompt_tokens = message.usage.prompt_tokens
            self.cached_tokens = message.usage.cached_tokens
            self.status = "ok"

    @property
    def completion_tokens(self) -> int:
        return sum(c.tokens for c in self.choices)

    def usage(self) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            total_tokens=self.prompt_tokens + self.completion_tokens,
            prompt_tokens_details=PromptTokensDetails(cached_tokens=self.cached_tokens),
        )


def routing_key(plan: ChatPlan, messages: Sequence[Turn]) -> str:
    """Where a chat's prompt is likely cached: the client's `prompt_cache_key`, else its stored
    conversation, else its leading part — the system prompt and the whole first turn after it,
    which every later turn of the conversation repeats, so a conversation stays where its history
    is cached. Not the system prompt alone (shared by everyone, it would send all traffic to one
    replica), nor a first turn cut short (RAG puts shared sources first: every conversation over
    the same sources would share one key and pile onto one replica)."""
    if plan.cache_key is not None:
        return f"key:{plan.cache_key}"
    if plan.conversation_id is not None:
        return f"conversation:{plan.conversation_id}"
    leading = hashlib.blake2b(digest_size=16)
    for message in messages:
        leading.update(f"{message.role}\x00{message.sent}\x00".encode())
        if message.role != "system":
            break
    return f"{PREFIX_KEY}{leading.hexdigest()}"


def text_routing_key(prompt_input: str | list[int]) -> str:
    """Where a completion's prompt is likely cached: its leading part."""
    head = prompt_input[:LEADING_CHARS] if isinstance(prompt_input, str) else str(prompt_input[:256])
    return f"{PREFIX_KEY}{hashlib.blake2b(head.encode(), digest_size=16).hexdigest()}"


class GenerationService:
    """Generation for one gateway process."""

    def __init__(
        self,
        settings: GatewaySettings,
        sessions: async_sessionmaker[AsyncSession],
        models: ModelRouter,
        limiter: Limiter,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.models = models
        self.limiter = limiter
        # Settlements run as tasks of their own so a disconnect cannot cancel them; kept here so
        # shutdown can wait for them.
        self.pending: set[asyncio.Task[None]] = set()

    async def check(self, principal: Principal, requested: str) -> Route:
        """The model `requested` names (404 when unknown or not the caller's), once the caller is
        known to be under its limits. Runs before anything that costs (an embedding, a search, a
        reservation)."""
        route = await self.models.resolve(principal, requested)
        await metering.admit(self.limiter, principal)
        return route

    def _routed(self, key: str | None) -> str | None:
        """The routing key replicas are picked by: none when routing is by load alone."""
        return key if self.settings.routing == "cache" else None

    async def _routes(self, principal: Principal, route: Route, needed_tokens: int) -> tuple[Route, ...]:
        return (route, *await self.models.fallbacks(principal, route, needed_tokens))

    def _max_tokens(self, requested: int | None, prompt_tokens: int, max_model_len: int) -> int:
        room = max_model_len - prompt_tokens
        if room < 1:
            raise InvalidArgument(
                f"the prompt has {prompt_tokens} tokens but the model's context is {max_model_len} tokens",
                field="messages",
            )
        return min(requested or self.settings.default_max_tokens, room)

    async def _reserve(
        self,
        principal: Principal,
        gen_id: str,
        routes: tuple[Route, ...],
        endpoint: str,
        prompt_tokens: int,
        completion: int,
    ) -> Reservation:
        """Hold the most the request may use: tokens against the key's TPM, then credits at the
        dearest price of the models that may take it (`run` settles at the price of the one that
        did). `_finish` settles both; a request refused here holds neither."""
        async with self.sessions() as session:
            return await metering.reserve(
                session,
                self.limiter,
                principal,
                request_id=gen_id,
                model=routes[0].name,
                endpoint=endpoint,
                price=Price(
                    prompt=max(r.price.prompt for r in routes),
                    completion=max(r.price.completion for r in routes),
                ),
                prompt_tokens=prompt_tokens,
                max_completion_tokens=completion,
            )

    async def history(
        self, principal: Principal, conversation_id: str, until: int | None = None
    ) -> list[tuple[int, Turn]]:
        """The caller's stored conversation as it is sent to the model; NotFound for anyone else's."""
        async with self.sessions() as session:
            conversation = await history.get_conversation(session, principal.user_id, conversation_id)
            return await history.context(session, conversation, until)

    async def prepare(
        self, principal: Principal, plan: ChatPlan, route: Route, sources: Sources | None = None
    ) -> Generation:
        """History, sources and the new turns as one prompt that leaves room for the answer."""
        info = route.info
        earlier = (
            await self.history(principal, plan.conversation_id, plan.history_until)
            if plan.conversation_id
            else []
        )
        if not plan.turns:
            raise InvalidArgument("messages must include a user message", field="messages")

        def with_sources(chosen: Sources | None) -> list[Turn]:
            if chosen is None:
                return plan.turns
            q = plan.turns[-1]
            return [*plan.turns[:-1], Turn(q.role, q.content, chosen.wrap_question(q.content))]

        def as_chat(messages: list[Turn]) -> Chat:
            return Chat(messages, plan.tools, plan.tool_choice, plan.parallel_tool_calls)

        candidate = [*plan.system, *(t for _, t in earlier), *with_sources(sources)]
        # Measured as Generate will send it, on the replica it will go to (which keeps the render).
        size = await route.client.measure_chat(as_chat(candidate), self._routed(routing_key(plan, candidate)))
        shares: list[float] = []
        if sources is not None and sources.chunks:
            wrapped = candidate[-1].sent
            shares = [len(sources.entry(n)) / len(wrapped) for n in range(1, len(sources.chunks) + 1)]
        # Leave room for the answer: what the client asked for, up to a quarter of the context.
        wanted = min(plan.token_limit or self.settings.default_max_tokens, info.max_model_len // 4)
        fitted = prompt.fit(
            size.per_message or [size.total],
            system=len(plan.system),
            history_roles=[t.role for _, t in earlier],
            source_shares=shares,
            budget=info.max_model_len - wanted,
        )
        context_start = None
        if fitted.history_start:
            kept = earlier[fitted.history_start :]
            context_start = kept[0][0] if kept else earlier[-1][0] + 1
            earlier = kept
        if sources is not None and fitted.sources < len(sources.chunks):
            sources = sources.first(fitted.sources)
        new_turns = with_sources(sources)
        messages = [*plan.system, *(t for _, t in earlier), *new_turns]
        max_tokens = self._max_tokens(plan.token_limit, fitted.prompt_tokens, info.max_model_len)
        chat = as_chat(messages)
        sampling = replace(plan.sampling, max_tokens=max_tokens, n=plan.n)
        request = GenerationRequest(plan.id, chat, sampling)
        routes = await self._routes(principal, route, fitted.prompt_tokens + max_tokens)
        reservation = await self._reserve(
            principal, plan.id, routes, plan.endpoint, fitted.prompt_tokens, max_tokens * plan.n
        )
        conversation_id = plan.conversation_id or (history.new_conversation_id() if plan.store else None)
        return Generation(
            id=plan.id,
            endpoint=plan.endpoint,
            principal=principal,
            model=route.name,
            request=request,
            prompt_tokens=fitted.prompt_tokens,
            n=plan.n,
            reservation=reservation,
            routes=routes,
            conversation_id=conversation_id if plan.store else None,
            new_turns=new_turns,
            context_start=context_start,
            sources=sources,
            metadata=plan.metadata,
            response=plan.response,
            routing_key=routing_key(plan, messages),
        )

    async def prepare_text(
        self,
        principal: Principal,
        gen_id: str,
        model: str,
        prompt_input: str | list[int],
        sampling: Sampling,
        token_limit: int,
    ) -> Generation:
        """A plain-text completion: no template, no history."""
        route = await self.check(principal, model)
        info = route.info
        if isinstance(prompt_input, str):
            prompt_tokens = await route.client.count_text_tokens(prompt_input)
        else:
            prompt_tokens = len(prompt_input)
        max_tokens = self._max_tokens(token_limit, prompt_tokens, info.max_model_len)
        request = GenerationRequest(gen_id, prompt_input, replace(sampling, max_tokens=max_tokens))
        n = sampling.n or 1
        routes = await self._routes(principal, route, prompt_tokens + max_tokens)
        reservation = await self._reserve(
            principal, gen_id, routes, "completions", prompt_tokens, max_tokens * n
        )
        return Generation(
            id=gen_id,
            endpoint="completions",
            principal=principal,
            model=route.name,
            request=request,
            prompt_tokens=prompt_tokens,
            n=n,
            reservation=reservation,
            routes=routes,
            routing_key=text_routing_key(prompt_input),
        )

    # -- running -------------------------------------------------------------------------------

    async def run(self, gen: Generation, progress: Progress) -> AsyncGenerator[GenerationChunk | None, None]:
        """The model's messages for `gen`, settled exactly once however the run ends.

        Yields None once a model service admitted the request (its first message), then every
        later message. A refusal (at capacity, shutting down, down) raises out of the first step,
        once every replica and fallback that may take the request has refused it.
        The bill and the history are written before the last message is handed on, so a client
        that reads its history when the stream ends finds this exchange.
        """
        metrics.ACTIVE_STREAMS.inc()
        settled = False
        messages = None
        try:
            key = self._routed(gen.routing_key)
            admission = await admit(gen.routes, gen.request, self.settings.model_timeout_seconds, key)
            messages = admission.messages
            # Billed at the price of the model that took it (a fallback's, when one did), not the
            # dearest price the reservation held.
            gen.model = gen.reservation.model = admission.route.name
            gen.reservation.price = admission.route.price
            progress.add(admission.first)
            yield None
            async for message in messages:
                progress.add(message)
                if progress.status == "ok":  # the last message: settle before handing it on
                    await self._finish_detached(gen, progress)
                    settled = True
                yield message
        except RagwayError:
            progress.status = "failed"
            raise
        finally:
            metrics.ACTIVE_STREAMS.dec()
            if messages is not None:
                await messages.aclose()  # cancels the gRPC call (the engine aborts) if it still runs
            if not settled:  # failed, refused, or the client went away
                await self._finish_detached(gen, progress)

    async def complete(
        self, principal: Principal, route: Route, instructions: str, text: str, max_tokens: int, endpoint: str
    ) -> str:
        """A short greedy answer the gateway asks `route`'s model for on the caller's behalf (a
        search query rewrite): reserved, billed and metered under `endpoint` like the caller's own
        requests, so it is never free work a key over its budget could ask for."""
        plan = ChatPlan(
            id=f"{endpoint}-{uuid.uuid4().hex}",
            endpoint=endpoint,
            system=[Turn("system", instructions)],
            turns=[Turn("user", text)],
            sampling=Sampling(temperature=0.0),
            token_limit=max_tokens,
        )
        progress = await self.run_to_end(await self.prepare(principal, plan, route))
        return "".join(progress.choices[0].text)

    async def run_to_end(self, gen: Generation) -> Progress:
        """Run without streaming; the finished progress."""
        progress = Progress.of(gen)
        run = self.run(gen, progress)
        try:
            async for _ in run:
                pass
        finally:
            await run.aclose()
        return progress

    # -- finishing -----------------------------------------------------------------------------

    async def _finish_detached(self, gen: Generation, progress: Progress) -> None:
        """Settle in a task of its own: when the client disconnected, this coroutine is being
        cancelled, and the bill must still be written."""
        task = asyncio.get_running_loop().create_task(self._finish(gen, progress))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)
        await asyncio.shield(task)

    async def _finish(self, gen: Generation, progress: Progress) -> None:
        first = progress.choices[0]
        outcome = Outcome(
            # Counted from the model service's first message, sent on admission: a request it
            # refused (or never reached) processed no prompt and costs nothing.
            prompt_tokens=progress.prompt_tokens,
            completion_tokens=progress.completion_tokens,
            cached_tokens=progress.cached_tokens,
            status=progress.status,
            finish_reason=first.finish_reason or ("abort" if progress.status == "aborted" else None),
            ttft_ms=int((progress.first_token_at - progress.started) * 1000)
            if progress.first_token_at
            else None,
            conversation_id=gen.conversation_id,
        )
        try:
            async with self.sessions() as session:
                if gen.conversation_id:
                    await history.record_exchange(
                        session,
                        user_id=gen.principal.user_id,
                        conversation_id=gen.conversation_id,
                        model=gen.model,
                        prompt=gen.new_turns,
                        answer=first.turn(),
                        status=progress.status,
                        finish_reason=outcome.finish_reason,
                        citations=None if gen.sources is None else gen.sources.citations("".join(first.text)),
                        usage=progress.usage().model_dump(),
                        request_id=gen.id,
                        context_start=gen.context_start,
                        metadata=gen.metadata,
                        response=gen.response,
                    )
                # Last before the commit: settling locks the user's row (billing.reserve says why).
                # The TPM hold becomes the real count whatever happens to the bill.
                cost = await metering.settle(session, self.limiter, gen.reservation, outcome)
                await session.commit()
        except Exception:
            log.exception("could not record request %s; its reservation stays held", gen.id)
            raise
        metrics.observe_generation(gen.model, outcome, cost.cost, progress.started)
