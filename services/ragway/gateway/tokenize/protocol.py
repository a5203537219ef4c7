"""`POST /tokenize` and `POST /detokenize` bodies, shaped like `vllm serve`'s."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

from ragway.gateway.chat_completion.protocol import ChatMessage, FunctionTool
from ragway.gateway.core.wire import StrictModel


class TokenizeRequest(StrictModel):
    """vLLM's TokenizeCompletionRequest (`prompt`) or TokenizeChatRequest (`messages`)."""

    model: str | None = Field(None, max_length=256)
    prompt: str | None = Field(None, description="Plain text, tokenized as is.")
    messages: list[ChatMessage] | None = Field(
        None, max_length=1000, description="Chat messages, rendered with the model's chat template."
    )
    tools: list[FunctionTool] | None = Field(None, max_length=128, description="Chat: tools in the prompt.")
    add_special_tokens: bool | None = Field(
        None, description="Text: add the tokenizer's special tokens (default true). Chat: only false."
    )
    add_generation_prompt: Literal[True] = Field(
        True, description="The model service always appends the assistant prefix."
    )
    continue_final_message: Literal[False] = Field(
        False, description="The model service always starts a new assistant turn."
    )
    return_token_strs: Literal[False] | None = Field(
        None, description="Token strings are not returned; detokenize the ids you need."
    )

    @model_validator(mode="after")
    def _one_input(self) -> TokenizeRequest:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("send either prompt (text) or messages (chat)")
        if self.messages is not None and self.add_special_tokens:
            raise ValueError(
                "add_special_tokens: the chat template places the special tokens itself; only false"
            )
        if self.tools is not None and self.messages is None:
            raise ValueError("tools go with messages")
        return self


class TokenizeResponse(BaseModel):
    count: int
    max_model_len: int
    tokens: list[int]
    token_strs: list[str] | None = None


class DetokenizeRequest(StrictModel):
    model: str | None = Field(None, max_length=256)
    tokens: list[int] = Field(max_length=1_000_000)

    @model_validator(mode="after")
    def _ids(self) -> DetokenizeRequest:
        if any(t < 0 or t >= 2**32 for t in self.tokens):
            raise ValueError("tokens are non-negative token ids")
        return self


class DetokenizeResponse(BaseModel):
    prompt: str
