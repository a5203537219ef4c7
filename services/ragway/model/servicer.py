"""ragway.v1.ModelService on top of the Engine: validation, admission, streaming, metrics."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc

from ragway.core.errors import InvalidArgument, Unavailable
from ragway.model import metrics
from ragway.model.admission import Admission
from ragway.model.convert import choice_delta, load_reply, model_info, score_reply
from ragway.model.engine import BaseEngine
from ragway.model.liveness import EngineWatch
from ragway.model.renders import ChatRenders
from ragway.model.sampling import build_sampling_params
from ragway.model.structured import constraint_field
from ragway.model.tools import ToolCalling, ToolSession
from ragway.v1 import model_pb2, model_pb2_grpc

log = logging.getLogger(__name__)


class ModelServicer(model_pb2_grpc.ModelServiceServicer):
    def __init__(self, engine: BaseEngine, admission: Admission, watch: EngineWatch) -> None:
        self.engine = engine
        self.admission = admission
        self.watch = watch
        self.renders = ChatRenders()

    def _prompt_ids(self, request: model_pb2.GenerateRequest) -> list[int]:
        kind = request.WhichOneof("input")
        if kind == "text":
            if not request.text:
                raise InvalidArgument("text must not be empty", field="text")
            return self.engine.encode_text(request.text, add_special_tokens=True)
        if kind == "token_ids":
            if not request.token_ids.ids:
                raise InvalidArgument("token_ids must not be empty", field="token_ids")
            return list(request.token_ids.ids)
        if kind == "chat":
            return self._encode_chat(request.chat)
        raise InvalidArgument("one of text, token_ids or chat is required", field="input")

    def _tool_calling(self) -> ToolCalling:
        if self.engine.tools is None:
            raise Unavailable("the engine is still starting")
        return self.engine.tools

    def _encode_chat(self, chat: model_pb2.ChatInput) -> list[int]:
        """The chat as prompt ids: tools, tool calls and tool results rendered by a tool-aware template."""
        tools = self._tool_calling()
        self.engine.check()  # a remembered render is no answer from an engine that cannot serve

        def render() -> list[int]:
            prompt = tools.prompt(chat)
            return self.engine.encode_chat(prompt.messages, prompt.tools, prompt.template)

        return self.renders.ids(chat, render)

    def _choice(self, completion: Any, tools: ToolSession | None) -> model_pb2.ChoiceDelta:
        if tools is None:
            return choice_delta(completion, self.engine.token_text)
        stream = tools.stream(completion.index)
        content, calls = stream.feed(
            completion.text, list(completion.token_ids), finished=completion.finish_reason is not None
        )
        return choice_delta(
            completion,
            self.engine.token_text,
            content=content,
            tool_calls=calls,
            ended_with_tool_calls=stream.ends_with_tool_calls(completion.finish_reason),
        )

    async def Generate(
        self, request: model_pb2.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[model_pb2.GenerateResponse]:
        arrival = time.monotonic()
        prompt_ids = self._prompt_ids(request)
        params = build_sampling_params(
            request.sampling, len(prompt_ids), self.engine.max_model_len, self.engine.vocab_size
        )
        tools = None
        constraint = constraint_field(request.sampling)
        if request.WhichOneof("input") == "chat":
            tools = self._tool_calling().session(request.chat, params, prompt_ids)
            if tools is not None and params.structured_outputs is not None:
                if params.structured_outputs.structural_tag is not None:
                    constraint = "tools"  # the tools' schemas are what the backend compiles
        self.engine.verify(params, constraint)
        request_id = request.request_id or uuid.uuid4().hex
        with self.admission.admit(params.n):
            # The prompt size first: a caller that disconnects before any token can still meter it.
            yield model_pb2.GenerateResponse(request_id=request_id, prompt_tokens=len(prompt_ids))
            completion_tokens = 0
            first_token_at: float | None = None
            last_at = arrival
            queue_seconds = 0.0
            cached = 0
            finished = False
            try:
                async for output in self.engine.generate(prompt_ids, params, request_id):
                    self.watch.progress()
                    now = time.monotonic()
                    new_tokens = sum(len(c.token_ids) for c in output.outputs)
                    if new_tokens:
                        if first_token_at is None:
                            first_token_at = now
                            metrics.TTFT.observe(now - arrival)
                        else:
                            metrics.INTER_TOKEN.observe((now - last_at) / new_tokens)
                        last_at = now
                    completion_tokens += new_tokens
                    cached = output.num_cached_tokens or cached
                    if output.metrics is not None and output.metrics.scheduled_ts:
                        queue_seconds = max(0.0, output.metrics.scheduled_ts - output.metrics.queued_ts)
                    message = model_pb2.GenerateResponse(
                        request_id=request_id,
                        choices=[self._choice(c, tools) for c in output.outputs],
                    )
                    if output.finished:
                        finished = True
                        end = time.monotonic()
                        message.usage.CopyFrom(
                            model_pb2.Usage(
                                prompt_tokens=len(prompt_ids),
                                completion_tokens=completion_tokens,
                                cached_prompt_tokens=cached,
                            )
                        )
                        message.timings.CopyFrom(
                            model_pb2.Timings(
                                queue_seconds=queue_seconds,
                                ttft_seconds=(first_token_at or end) - arrival,
                                total_seconds=end - arrival,
                            )
                        )
                        metrics.E2E.observe(end - arrival)
                        metrics.QUEUE.observe(queue_seconds)
                    yield message
            except Exception as exc:
                if type(exc).__name__ == "EngineDeadError":
                    why = self.engine.failure or "it died"
                    raise Unavailable(
                        f"the inference engine failed ({why}); the service is restarting, "
                        "retry on another replica"
                    ) from exc
                raise
            finally:
                metrics.PROMPT_TOKENS.inc(len(prompt_ids))
                metrics.GENERATION_TOKENS.inc(completion_tokens)
                metrics.CACHED_TOKENS.inc(cached)
                if not finished:
                    metrics.ABORTS.inc()
                    log.info("request %s aborted after %d tokens", request_id, completion_tokens)

    async def Tokenize(
        self, request: model_pb2.TokenizeRequest, context: grpc.aio.ServicerContext
    ) -> model_pb2.TokenizeResponse:
        kind = request.WhichOneof("input")
        per_message: list[int] = []
        if kind == "text":
            ids = self.engine.encode_text(request.text, add_special_tokens=request.add_special_tokens)
        elif kind == "chat":
            ids = self._encode_chat(request.chat)
            per_message = self.engine.message_tokens([m.content for m in request.chat.messages], len(ids))
        else:
            raise InvalidArgument("one of text or chat is required", field="input")
        return model_pb2.TokenizeResponse(
            ids=ids, count=len(ids), max_model_len=self.engine.max_model_len, message_tokens=per_message
        )

    async def Detokenize(
        self, request: model_pb2.DetokenizeRequest, context: grpc.aio.ServicerContext
    ) -> model_pb2.DetokenizeResponse:
        text = self.engine.decode(request.ids, skip_special_tokens=request.skip_special_tokens)
        return model_pb2.DetokenizeResponse(text=text)

    async def GetModelInfo(
        self, request: model_pb2.GetModelInfoRequest, context: grpc.aio.ServicerContext
    ) -> model_pb2.ModelInfo:
        if self.engine.info is None:
            raise Unavailable("the engine is still starting")
        return model_info(self.engine.info)

    async def GetLoad(
        self, request: model_pb2.GetLoadRequest, context: grpc.aio.ServicerContext
    ) -> model_pb2.Load:
        admission = self.admission
        return load_reply(
            self.engine.load(), admission.max_running, admission.in_flight, admission.max_waiting
        )

    async def Score(
        self, request: model_pb2.ScoreRequest, context: grpc.aio.ServicerContext
    ) -> model_pb2.ScoreResponse:
        """The LLM reranker's scores (ragway.model.scoring). The call holds at most one batch of
        admission slots: its prompts beyond a batch wait inside the engine, in order."""
        request_id = request.request_id or uuid.uuid4().hex
        with self.admission.admit(max(1, min(len(request.passages), self.admission.max_running))):
            try:
                result = await self.engine.score(
                    request.query, list(request.passages), request.max_passage_tokens, request_id
                )
            except Exception as exc:
                if type(exc).__name__ == "EngineDeadError":
                    raise Unavailable(
                        f"the inference engine failed ({self.engine.failure or 'it died'}); the service "
                        "is restarting, retry on another replica"
                    ) from exc
                raise
        self.watch.progress()
        metrics.PROMPT_TOKENS.inc(result.prompt_tokens)
        metrics.CACHED_TOKENS.inc(result.cached_tokens)
        return score_reply(result)
