"""What to search for on turn N of a conversation.

A follow-up ("and how do I undo that?") names nothing the documents contain; the turn before it
does. The search query is the newest question plus the one before it, so lexical and semantic
search both see the subject the conversation established. With `rewrite_query`, the served model
first rewrites the follow-up into a standalone question (OpenAI's vector-store search option),
billed to the caller like any generation.
"""

from __future__ import annotations

from ragway.gateway.accounts.auth import Principal
from ragway.gateway.catalog.model_router import Route
from ragway.gateway.generation.service import GenerationService

REWRITE_INSTRUCTIONS = (
    "Rewrite the last question of the conversation as one standalone search query that names its "
    "subject. Answer with the query only."
)
REWRITE_MAX_TOKENS = 48


def follow_up_query(asked: list[str]) -> str:
    """The search query for the newest of the user's questions `asked` (oldest first)."""
    recent = [q.strip() for q in asked[-2:] if q.strip()]
    return "\n".join(recent)


async def rewrite_query(
    service: GenerationService, principal: Principal, route: Route, asked: list[str]
) -> str:
    """A standalone query written by `route`'s model; the plain follow-up query if it says nothing."""
    conversation = "\n".join(f"Question {n}: {q}" for n, q in enumerate(asked[-4:], start=1))
    text = await service.complete(
        principal, route, REWRITE_INSTRUCTIONS, conversation, REWRITE_MAX_TOKENS, endpoint="query_rewrite"
    )
    rewritten = text.strip().splitlines()[0].strip() if text.strip() else ""
    return rewritten or follow_up_query(asked)
