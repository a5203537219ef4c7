"""The model service as the gateway sees it: one served model, over the replicas that serve it.

`ModelReplica` is one model-service address (one channel). `ModelClient` is one model of the model
table: each call goes to the replica `ReplicaSet` picks, and a call that fails as UNAVAILABLE or is
refused as overloaded (RESOURCE_EXHAUSTED) is tried once more on another replica — for a generation
only while no token has come back, because from the first token on the client may already hold
part of the answer and a second run would write a different one. Health comes from each replica's
grpc.health.v1 Watch stream, so a killed replica leaves rotation at once, not at its next call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2

from ragway.core.errors import Unavailable
from ragway.gateway import metrics
from ragway.gateway.clients.base import ServiceClient, metadata, translate
from ragway.gateway.clients.replicas import Replica, ReplicaSet
from ragway.gateway.errors import Overloaded
from ragway.v1 import model_pb2, model_pb2_grpc

log = logging.getLogger(__name__)

T = TypeVar("T")
# How long a replica's health watch waits before asking again after the replica could not be
# reached (the channel's own reconnect backoff, at most 5 s, comes on top).
WATCH_RETRY_SECONDS = 1.0


@dataclass(frozen=True)
class PromptSize:
    """How many tokens a rendered chat prompt takes, in total and per message (they sum to total)."""

    total: int
    per_message: list[int]


class ModelReplica(ServiceClient):
    """One model-service address."""

    service = "model"

    def __init__(self, address: str, rpc_timeout: float, interceptors: list[Any] | None = None) -> None:
        super().__init__(address, rpc_timeout, interceptors)
        self.stub = model_pb2_grpc.ModelServiceStub(self.channel)

    async def info(self) -> model_pb2.ModelInfo:
        reply: model_pb2.ModelInfo = await self.unary(self.stub.GetModelInfo, model_pb2.GetModelInfoRequest())
        return reply

    async def measure_chat(self, messages: Sequence[model_pb2.ChatMessage]) -> PromptSize:
        """Tokens of the chat prompt as Generate would render it, with each message's share."""
        reply = await self.unary(
            self.stub.Tokenize, model_pb2.TokenizeRequest(chat=model_pb2.ChatInput(messages=messages))
        )
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

    async def generate(
        self, request: model_pb2.GenerateRequest, timeout: float
    ) -> AsyncGenerator[model_pb2.GenerateResponse, None]:
        """Stream a generation. Closing this iterator (or cancelling its task) cancels the call,
        and the model service aborts the request in the engine."""
        call = self.stub.Generate(request, timeout=timeout, metadata=metadata())
        try:
            async for message in call:
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


def _has_output(message: model_pb2.GenerateResponse) -> bool:
    """Whether a message carries anything of the answer (the admission message carries none)."""
    return any(d.token_ids or d.text or d.tool_calls or d.finish_reason for d in message.choices)


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
    ) -> None:
        self.replicas: ReplicaSet[ModelReplica] = ReplicaSet(replicas, backoff, backoff_max)
        self.name = name  # the table's name; None: the model service's own
        self.info_ttl = info_ttl
        self._info: model_pb2.ModelInfo | None = None
        self._info_at = 0.0
        self._watches: list[asyncio.Task[None]] = []

    @property
    def label(self) -> str:
        """The model's name for logs, metrics and /readyz, even before its service ever answered."""
        if self.name is not None:
            return self.name
        return self._info.name if self._info is not None else self.replicas.replicas[0].client.address

    def start(self) -> None:
        """Watch every replica's health (needs the running event loop)."""
        self._watches = [asyncio.create_task(self._watch(r)) for r in self.replicas.replicas]

    async def close(self) -> None:
        for task in self._watches:
            task.cancel()
        await asyncio.gather(*self._watches, return_exceptions=True)
        for replica in self.replicas.replicas:
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
        metrics.REPLICAS_SERVING.labels(self.label).set(self.replicas.serving)

    def _pick(
        self, exclude: Sequence[Replica[ModelReplica]] = (), rotate: bool = True
    ) -> Replica[ModelReplica]:
        replica = self.replicas.pick(exclude, rotate)
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

    async def _call(self, method: Callable[[ModelReplica], Awaitable[T]]) -> T:
        """A unary call on a picked replica, once more on another if that one is down or full."""
        replica = self._pick(rotate=False)
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

    async def info(self) -> model_pb2.ModelInfo:
        """The served model, cached for `info_ttl` seconds (it only changes when a service restarts)."""
        if self._info is None or time.monotonic() - self._info_at > self.info_ttl:
            self._info = await self._call(lambda r: r.info())
            self._info_at = time.monotonic()
        return self._info

    async def measure_chat(self, messages: Sequence[model_pb2.ChatMessage]) -> PromptSize:
        """Tokens of the chat prompt as Generate would render it, with each message's share."""
        return await self._call(lambda r: r.measure_chat(messages))

    async def count_text_tokens(self, text: str) -> int:
        return await self._call(lambda r: r.count_text_tokens(text))

    async def tokenize(self, request: model_pb2.TokenizeRequest) -> model_pb2.TokenizeResponse:
        """Token ids of text or of a chat prompt, exactly as Generate would see them."""
        return await self._call(lambda r: r.tokenize(request))

    async def detokenize(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        """The text of these token ids."""
        return await self._call(lambda r: r.detokenize(ids, skip_special_tokens))

    async def generate(
        self, request: model_pb2.GenerateRequest, timeout: float
    ) -> AsyncGenerator[model_pb2.GenerateResponse, None]:
        """Stream a generation from a picked replica; before its first token, a replica that is down
        or full hands the request to another once. Closing this iterator cancels the call (and the
        engine aborts the request)."""
        replica = self._pick()
        for attempt in (1, 2):
            current = replica
            current.in_flight += 1
            messages = current.client.generate(request, timeout)
            answered = streamed = False
            try:
                async for message in messages:
                    if not answered:
                        answered = True
                        self.replicas.succeeded(current)
                    streamed = streamed or _has_output(message)
                    yield message
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
