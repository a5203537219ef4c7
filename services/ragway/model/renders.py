"""Recently rendered chats and message sizes, so one request does not pay for its prompt twice.

The gateway asks `Tokenize` for a chat's size (to fit history and sources into the context) and
then `Generate`s from the very same chat; turn N of a conversation repeats turns 1..N-1. Rendering
a 2.8k-token chat with the model's template and tokenizing it costs ~9 ms, and sizing each message
another ~7 ms, on this project's CPU, on the model service's event loop, where every stream of the
replica waits for it. Keyed by a digest of the content, so a cache entry never holds the text.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Callable, Sequence

from cachetools import LRUCache

from ragway.v1 import model_pb2

# A rendered prompt is kept as 4-byte ids: 256 chats of 4k tokens are 4 MiB.
CHATS = 256
MESSAGES = 16_384


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


class ChatRenders:
    """A chat's prompt ids by the chat's wire bytes (messages, tools, template choice)."""

    def __init__(self, size: int = CHATS) -> None:
        self._ids: LRUCache[bytes, array[int]] = LRUCache(maxsize=size)

    def ids(self, chat: model_pb2.ChatInput, render: Callable[[], list[int]]) -> list[int]:
        key = _digest(chat.SerializeToString(deterministic=True))
        hit = self._ids.get(key)
        if hit is not None:
            return hit.tolist()
        ids = render()
        self._ids[key] = array("i", ids)
        return ids


class MessageSizes:
    """Each message content's own token count, counting only the contents not seen lately."""

    def __init__(self, size: int = MESSAGES) -> None:
        self._counts: LRUCache[bytes, int] = LRUCache(maxsize=size)

    def counts(self, contents: Sequence[str], count: Callable[[list[str]], list[int]]) -> list[int]:
        keys = [_digest(c.encode()) for c in contents]
        missing = {k: c for k, c in zip(keys, contents, strict=True) if k not in self._counts}
        if missing:
            for key, n in zip(missing, count(list(missing.values())), strict=True):
                self._counts[key] = n
        return [self._counts[k] for k in keys]
