"""Serving chat and text completions: from a validated OpenAI request to a metered stream.

The shape of every request is the same: *prepare* (model check, limits, history, RAG sources,
token budget, credit reservation), *run* (stream from the model service), *finish* (settle the
bill, write the usage record and the history, all in one transaction). `finish` runs whatever
happened in between — a normal end, a model-service failure, or the client walking away.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ragway.core.errors import InvalidArgument, RagwayError, Unavailable
from ragway.gateway import billing, history, metrics
from ragway.gateway.auth import Principal
from ragway.gateway.billing import Outcome, Reservation
from ragway.gateway.clients import ModelClient
from ragway.gateway.config import GatewaySettings
from ragway.gateway.errors import ModelNotFound, error_payload
from ragway.gateway.limiter import Limiter
from ragway.gateway.protocol import ChatCompletionRequest, CompletionRequest, SamplingFields
from ragway.gateway.rag import Sources
from ragway.v1 import model_pb2

log = logging.getLogger(__name__)

FINISH = {
    model_pb2.FINISH_REASON_STOP: "stop",
    model_pb2.FINISH_REASON_LENGTH: "length",
    model_pb2.FINISH_REASON_ABORT: "abort",
}


@dataclass
class Generation:
    """Everything decided before the model runs."""

    id: str
    kind: str  # "chat.completion" | "text_completion"
    principal: Principal
    model: str
    request: model_pb2.GenerateRequest
    prompt_tokens: int
    n: int
    stream: bool
    include_usage: bool
    logprobs: bool
    reservation: Reservation
    conversation_id: str | None = None
    new_turns: list[tuple[str, str]] = field(default_factory=list)
    sources: Sources | None = None
    created: int = field(default_factory=lambda: int(time.time()))


@dataclass
class Choice:
    text: list[str] = field(default_factory=list)
    tokens: int = 0
    finish_reason: str | None = None
    logprobs: list[model_pb2.TokenLogprob] = field(default_factory=list)


@dataclass
class Progress:
    """What has come back so far; becomes the bill and the history entry."""

    choices: list[Choice]
    prompt_tokens: int = 0
    cached_tokens: int = 0
    started: float = field(default_factory=time.monotonic)
    first_token_at: float | None = None
    status: str = "aborted"  # until the model says it finished
    error: RagwayError | None = None

    def add(self, message: model_pb2.GenerateResponse) -> None:
        if message.prompt_tokens:
            self.prompt_tokens = message.prompt_tokens
        for delta in message.choices:
            choice = self.choices[delta.index]
            if delta.token_ids and self.first_token_at is None:
                self.first_token_at = time.monotonic()
            choice.text.append(delta.text)
            choice.tokens += len(delta.token_ids)
            choice.logprobs.extend(delta.logprobs)
            if delta.finish_reason:
                choice.finish_reason = FINISH[delta.finish_reason]
        if message.HasField("usage"):
            self.prompt_tokens = message.usage.prompt_tokens
            self.cached_tokens = message.usage.cached_prompt_tokens
            self.status = "ok"

    @property
    def completion_tokens(self) -> int:
        return sum(c.tokens for c in self.choices)

    def usage(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
        }


def _sampling(req: SamplingFields, max_tokens: int, logprobs: int | None) -> model_pb2.SamplingParams:
    params = model_pb2.SamplingParams(max_tokens=max_tokens, n=req.n, stop=req.stop or [])
    for name in ("temperature", "top_p", "seed", "presence_penalty", "frequency_penalty"):
        value = getattr(req, name)
        if value is not None:
            setattr(params, name, value)
    if logprobs is not None:
        params.logprobs = logprobs
    return params


def sse(payload: dict[str, Any] | str) -> str:
    data = (
        payload
        if isinstance(payload, str)
        else json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    )
    return f"data: {data}\n\n"


def _chat_logprobs(items: list[model_pb2.TokenLogprob]) -> dict[str, Any]:
    def entry(token: str, logprob: float) -> dict[str, Any]:
        return {"token": token, "logprob": logprob, "bytes": list(token.encode())}

    return {
        "content": [
            {**entry(i.token, i.logprob), "top_logprobs": [entry(t.token, t.logprob) for t in i.top]}
            for i in items
        ]
    }


def _text_logprobs(items: list[model_pb2.TokenLogprob]) -> dict[str, Any]:
    return {
        "tokens": [i.token for i in items],
        "token_logprobs": [i.logprob for i in items],
        "top_logprobs": [{t.token: t.logprob for t in i.top} for i in items],
        "text_offset": [],
    }


class GenerationService:
    """Chat and text completions for one gateway process."""

    def __init__(
        self,
        settings: GatewaySettings,
        sessions: async_sessionmaker[AsyncSession],
        model: ModelClient,
        limiter: Limiter,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.model = model
        self.limiter = limiter
        # Settlements run as tasks of their own so a disconnect cannot cancel them; kept here so
        # shutdown can wait for them.
        self.pending: set[asyncio.Task[None]] = set()

    async def _served_model(self, requested: str) -> model_pb2.ModelInfo:
        info = await self.model.info()
        if requested != info.name:
            raise ModelNotFound(
                f"the model {requested!r} does not exist; this gateway serves {info.name!r}", field="model"
            )
        return info

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
        model: str,
        endpoint: str,
        prompt_tokens: int,
        completion: int,
    ) -> Reservation:
        async with self.sessions() as session:
            return await billing.reserve(
                session,
                principal,
                request_id=gen_id,
                model=model,
                endpoint=endpoint,
                price=self.settings.price(model),
                prompt_tokens=prompt_tokens,
                max_completion_tokens=completion,
            )

    async def prepare_chat(
        self, principal: Principal, req: ChatCompletionRequest, sources: Sources | None = None
    ) -> Generation:
        info = await self._served_model(req.model)
        await billing.check_rate_limits(self.limiter, principal)
        earlier: list[tuple[str, str]] = []
        conversation_id = req.conversation_id
        if conversation_id:
            async with self.sessions() as session:
                await history.get_conversation(session, principal.user_id, conversation_id)
                earlier = [
                    (m.role, m.content)
                    for m in await history.get_messages(session, conversation_id)
                    if m.status != "failed"
                ]
        elif req.store:
            conversation_id = history.new_conversation_id()
        system = [
            (m.role if m.role != "developer" else "system", m.text())
            for m in req.messages
            if m.role in ("system", "developer")
        ]
        new_turns = [(m.role, m.text()) for m in req.messages if m.role not in ("system", "developer")]
        if not new_turns:
            raise InvalidArgument("messages must include a user message", field="messages")
        # Make room for the answer: drop the oldest history turns first, then the weakest sources.
        wanted = min(req.token_limit or self.settings.default_max_tokens, info.max_model_len // 4)
        while True:
            prompt_turns = list(new_turns)
            if sources is not None:
                prompt_turns[-1] = (prompt_turns[-1][0], sources.wrap_question(prompt_turns[-1][1]))
            messages = [*system, *earlier, *prompt_turns]
            prompt_tokens = await self.model.count_chat_tokens(messages)
            if prompt_tokens + wanted <= info.max_model_len:
                break
            if earlier:
                earlier = earlier[2:]
            elif sources is not None and sources.items:
                sources.items.pop()
            else:
                break
        max_tokens = self._max_tokens(req.token_limit, prompt_tokens, info.max_model_len)
        gen_id = f"chatcmpl-{uuid.uuid4().hex}"
        chat = model_pb2.ChatInput(messages=[model_pb2.ChatMessage(role=r, content=c) for r, c in messages])
        request = model_pb2.GenerateRequest(
            request_id=gen_id,
            chat=chat,
            sampling=_sampling(req, max_tokens, req.top_logprobs or 0 if req.logprobs else None),
        )
        reservation = await self._reserve(
            principal, gen_id, info.name, "chat.completions", prompt_tokens, max_tokens * req.n
        )
        return Generation(
            id=gen_id,
            kind="chat.completion",
            principal=principal,
            model=info.name,
            request=request,
            prompt_tokens=prompt_tokens,
            n=req.n,
            stream=req.stream,
            include_usage=req.include_usage,
            logprobs=req.logprobs,
            reservation=reservation,
            conversation_id=conversation_id if req.store else None,
            new_turns=new_turns,
            sources=sources,
        )

    async def prepare_completion(self, principal: Principal, req: CompletionRequest) -> Generation:
        info = await self._served_model(req.model)
        await billing.check_rate_limits(self.limiter, principal)
        if isinstance(req.prompt, str):
            prompt_tokens = await self.model.count_text_tokens(req.prompt)
            request = model_pb2.GenerateRequest(text=req.prompt)
        else:
            prompt_tokens = len(req.prompt)
            request = model_pb2.GenerateRequest(token_ids=model_pb2.TokenIds(ids=req.prompt))
        max_tokens = self._max_tokens(req.max_tokens or 16, prompt_tokens, info.max_model_len)
        gen_id = f"cmpl-{uuid.uuid4().hex}"
        request.request_id = gen_id
        request.sampling.CopyFrom(_sampling(req, max_tokens, req.logprobs))
        reservation = await self._reserve(
            principal, gen_id, info.name, "completions", prompt_tokens, max_tokens * req.n
        )
        return Generation(
            id=gen_id,
            kind="text_completion",
            principal=principal,
            model=info.name,
            request=request,
            prompt_tokens=prompt_tokens,
            n=req.n,
            stream=req.stream,
            include_usage=req.include_usage,
            logprobs=req.logprobs is not None,
            reservation=reservation,
        )

    # -- running -------------------------------------------------------------------------------

    async def complete(self, gen: Generation) -> dict[str, Any]:
        """Run to the end and answer in one body (non-streaming)."""
        progress = Progress([Choice() for _ in range(gen.n)])
        try:
            async for message in self.model.generate(gen.request, self.settings.model_timeout_seconds):
                progress.add(message)
        except RagwayError as exc:
            progress.status, progress.error = "failed", exc
            raise
        finally:
            await self._finish_detached(gen, progress)
        return self._body(gen, progress)

    async def stream(self, gen: Generation) -> AsyncGenerator[str, None]:
        """Server-sent events exactly as OpenAI sends them, ending with [DONE].

        The model call starts before the first event is yielded: the model service answers
        admission with its first message, so a refusal (at capacity, shutting down, down) raises
        out of the first `anext` — before the HTTP response has started — and the client gets
        its status and Retry-After at once instead of an error event inside a 200 stream.
        """
        progress = Progress([Choice() for _ in range(gen.n)])
        messages = self.model.generate(gen.request, self.settings.model_timeout_seconds)
        metrics.ACTIVE_STREAMS.inc()
        admitted = settled = False
        try:
            progress.add(await anext(messages))
            admitted = True
            if gen.kind == "chat.completion":
                for index in range(gen.n):
                    yield sse(
                        self._chunk(
                            gen,
                            [
                                {
                                    "index": index,
                                    "delta": {"role": "assistant", "content": ""},
                                    "logprobs": None,
                                    "finish_reason": None,
                                }
                            ],
                        )
                    )
            async for message in messages:
                progress.add(message)
                choices = [
                    self._delta(gen, d) for d in message.choices if d.text or d.finish_reason or d.token_ids
                ]
                if choices:
                    yield sse(self._chunk(gen, choices))
            # Recorded before [DONE]: a client that reads its history on [DONE] finds this exchange.
            await self._finish_detached(gen, progress)
            settled = True
            if gen.sources is not None:
                yield sse(self._chunk(gen, [], citations=gen.sources.citations()))
            if gen.include_usage:
                yield sse(self._chunk(gen, [], usage=progress.usage()))
            yield sse("[DONE]")
        except StopAsyncIteration:
            # The model service closed the call without a word: as unavailable as a refusal.
            progress.status = "failed"
            raise Unavailable("the model service ended the call without answering") from None
        except RagwayError as exc:
            progress.status, progress.error = "failed", exc
            if not admitted:
                raise
            await self._finish_detached(gen, progress)
            settled = True
            _, body = error_payload(exc)
            yield sse(body)
        finally:
            metrics.ACTIVE_STREAMS.dec()
            await messages.aclose()  # cancels the gRPC call (the engine aborts) if it still runs
            if not settled:  # the client went away, or the call was refused before the response
                await self._finish_detached(gen, progress)

    def _delta(self, gen: Generation, delta: model_pb2.ChoiceDelta) -> dict[str, Any]:
        finish = FINISH.get(delta.finish_reason) if delta.finish_reason else None
        if gen.kind == "chat.completion":
            return {
                "index": delta.index,
                "delta": {"content": delta.text} if delta.text else {},
                "logprobs": _chat_logprobs(list(delta.logprobs)) if gen.logprobs else None,
                "finish_reason": finish,
            }
        return {
            "index": delta.index,
            "text": delta.text,
            "logprobs": _text_logprobs(list(delta.logprobs)) if gen.logprobs else None,
            "finish_reason": finish,
        }

    def _chunk(self, gen: Generation, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": gen.id,
            "object": "chat.completion.chunk" if gen.kind == "chat.completion" else "text_completion",
            "created": gen.created,
            "model": gen.model,
            "choices": choices,
        }
        if gen.include_usage:
            chunk["usage"] = None
        if gen.conversation_id:
            chunk["conversation_id"] = gen.conversation_id
        chunk.update(extra)
        return chunk

    def _body(self, gen: Generation, progress: Progress) -> dict[str, Any]:
        choices: list[dict[str, Any]] = []
        for index, choice in enumerate(progress.choices):
            text = "".join(choice.text)
            if gen.kind == "chat.completion":
                choices.append(
                    {
                        "index": index,
                        "message": {"role": "assistant", "content": text},
                        "logprobs": _chat_logprobs(choice.logprobs) if gen.logprobs else None,
                        "finish_reason": choice.finish_reason,
                    }
                )
            else:
                choices.append(
                    {
                        "index": index,
                        "text": text,
                        "logprobs": _text_logprobs(choice.logprobs) if gen.logprobs else None,
                        "finish_reason": choice.finish_reason,
                    }
                )
        body: dict[str, Any] = {
            "id": gen.id,
            "object": gen.kind,
            "created": gen.created,
            "model": gen.model,
            "choices": choices,
            "usage": progress.usage(),
        }
        if gen.conversation_id:
            body["conversation_id"] = gen.conversation_id
        if gen.sources is not None:
            body["citations"] = gen.sources.citations()
        return body

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
                usage = await billing.settle(session, gen.reservation, outcome)
                if gen.conversation_id:
                    await history.record_exchange(
                        session,
                        user_id=gen.principal.user_id,
                        conversation_id=gen.conversation_id,
                        model=gen.model,
                        prompt=gen.new_turns,
                        answer="".join(first.text),
                        status=progress.status,
                        finish_reason=outcome.finish_reason,
                        citations=gen.sources.citations() if gen.sources is not None else None,
                        usage=progress.usage(),
                        request_id=gen.id,
                    )
                await session.commit()
        except Exception:
            log.exception("could not record request %s; its reservation stays held", gen.id)
            raise
        await billing.count_tokens(
            self.limiter, gen.principal, outcome.prompt_tokens + outcome.completion_tokens
        )
        metrics.observe_generation(gen.model, outcome, usage.cost, progress.started)
