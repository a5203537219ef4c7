"""The one metering path: every request that spends tokens goes through here, and nothing else
holds, reserves or settles.

A metered request is *admitted* (`admit`: counted against its key's requests per minute, refused
early when its RPM or TPM window is spent), then *reserved* (`reserve`: its most tokens held against
the key's TPM window in the limiter, its most cost held against the user's credits and the key's
budget in SQL), runs, and is *settled* (`settle`: the bill becomes the real cost with its one usage
record, the TPM hold becomes the real token count) however it ended. `billing` keeps the money
itself (ledger, usage records, top-ups); the limiter keeps the counters.

How each kind of request uses it:

- a unary call (embeddings, rerank, score, ingestion, a search's query embedding): `metered`, one
  async context manager around the work; `embedding` is `metered` for texts embedded by the
  bundled embedder, counted with its own tokenizer (a search query, which the retrieval service
  embeds without reporting a count);
- a generation (chat completions, completions, Responses): `reserve` before the run and `settle`
  in its detached finish, where the bill is written in one transaction with the history;
- a request that spends no tokens but costs the model service work (`/tokenize`): `admit` only.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncSession

from ragway.core.errors import Unavailable
from ragway.gateway.accounts import billing
from ragway.gateway.accounts.auth import Principal
from ragway.gateway.accounts.billing import Outcome, Reservation
from ragway.gateway.accounts.limiter import Hold, Limiter
from ragway.gateway.catalog.model_table import Price
from ragway.gateway.core.errors import RateLimited
from ragway.gateway.core.tables import UsageRecord
from ragway.gateway.rag.tokens import embedding_tokens

log = logging.getLogger(__name__)

# The embedder whose tokenizer `rag.tokens` counts with (the retrieval service's default).
BUNDLED_EMBEDDER = "all-MiniLM-L6-v2"


def rpm_counter(principal_or_key: Principal | str) -> str:
    """The limiter's name for a key's requests-per-minute counter."""
    key = principal_or_key if isinstance(principal_or_key, str) else principal_or_key.key_id
    return f"{key}:rpm"


def tpm_counter(principal_or_key: Principal | str) -> str:
    """The limiter's name for a key's tokens-per-minute counter."""
    key = principal_or_key if isinstance(principal_or_key, str) else principal_or_key.key_id
    return f"{key}:tpm"


async def admit(limiter: Limiter, principal: Principal) -> None:
    """Count this request against the key's RPM and refuse when RPM or TPM is spent — a cheap early
    refusal before anything costs; the TPM limit itself is enforced by `reserve`'s hold."""
    if principal.rpm_limit is not None:
        used, retry = await limiter.add(rpm_counter(principal), 1)
        if used > principal.rpm_limit:
            raise RateLimited(
                f"rate limit reached: {principal.rpm_limit} requests per minute for this key",
                retry_after=retry,
            )
    if principal.tpm_limit is not None:
        used, retry = await limiter.add(tpm_counter(principal), 0)
        if used >= principal.tpm_limit:
            raise RateLimited(
                f"rate limit reached: {principal.tpm_limit} tokens per minute for this key", retry_after=retry
            )


async def _hold_tokens(limiter: Limiter, principal: Principal, tokens: int) -> Hold | None:
    """Reserve the request's most tokens against the key's TPM window, atomically across gateways;
    RateLimited when they do not fit. None when the key has no TPM limit."""
    if principal.tpm_limit is None:
        return None
    taken = await limiter.reserve(tpm_counter(principal), tokens, principal.tpm_limit)
    if isinstance(taken, Hold):
        return taken
    if tokens > principal.tpm_limit:
        # No minute will ever have room: waiting does not help, a smaller request does.
        raise RateLimited(
            f"this request may use up to {tokens} tokens (prompt plus max_tokens), more than this key's "
            f"limit of {principal.tpm_limit} tokens per minute; lower max_tokens or shorten the prompt"
        )
    raise RateLimited(
        f"rate limit reached: {principal.tpm_limit} tokens per minute for this key; {taken.used} are used or "
        f"reserved this minute and this request may use up to {tokens}",
        retry_after=taken.retry_after,
    )


async def _settle_tokens(limiter: Limiter, hold: Hold | None, tokens: int) -> None:
    """Make a TPM hold the request's real token count, giving back what it did not use. Never
    raises: it runs on the way out of a request whose bill must still be written, and a hold that
    cannot be settled (Redis unavailable) only over-counts its window until the window ends."""
    if hold is None:
        return
    try:
        await limiter.settle(hold, tokens)
    except Unavailable as exc:
        log.warning("TPM hold of %d tokens left as held: %s", hold.amount, exc.message)


async def reserve(
    session: AsyncSession,
    limiter: Limiter,
    principal: Principal,
    *,
    request_id: str,
    model: str,
    endpoint: str,
    price: Price,
    prompt_tokens: int,
    max_completion_tokens: int = 0,
    window_hold: bool = False,
) -> Reservation:
    """Hold the request's most tokens against the key's TPM window, then its most cost against
    the user's credits and the key's budget (committed). A request refused for either holds
    neither. `window_hold`: hold at most one window's limit — for ingestion, whose worst case
    (counted from bytes) is far above what it embeds, so a large file waits for an empty window
    instead of being refused forever; its real count still settles in full."""
    tokens = prompt_tokens + max_completion_tokens
    if window_hold and principal.tpm_limit is not None:
        tokens = min(tokens, principal.tpm_limit)
    hold = await _hold_tokens(limiter, principal, tokens)
    try:
        reservation = await billing.reserve(
            session,
            principal,
            request_id=request_id,
            model=model,
            endpoint=endpoint,
            price=price,
            prompt_tokens=prompt_tokens,
            max_completion_tokens=max_completion_tokens,
        )
    except BaseException:
        await _settle_tokens(limiter, hold, 0)
        raise
    reservation.tokens = hold
    return reservation


async def settle(
    session: AsyncSession, limiter: Limiter, reservation: Reservation, outcome: Outcome
) -> UsageRecord:
    """Settle both holds to what `outcome` says: the credits (the unused part refunded, the one
    usage record staged — the caller commits, with whatever else describes the request) and the
    TPM hold, which becomes the real token count whatever happens to the bill."""
    # Redis first: the bill's UPDATEs lock the user's row until the caller commits.
    await _settle_tokens(limiter, reservation.tokens, outcome.prompt_tokens + outcome.completion_tokens)
    return await billing.settle(session, reservation, outcome)


@asynccontextmanager
async def metered(
    session: AsyncSession,
    limiter: Limiter,
    principal: Principal,
    *,
    request_id: str,
    model: str,
    endpoint: str,
    price: Price,
    prompt_tokens: int,
    max_completion_tokens: int = 0,
    window_hold: bool = False,
) -> AsyncIterator[Outcome]:
    """One unary request metered end to end: `reserve`d, then — however the body ends — settled
    to what the yielded Outcome says and committed. The body fills the outcome in (counts, status
    "ok"); an exception leaves it "failed" with no tokens, so a refused call costs nothing."""
    reservation = await reserve(
        session,
        limiter,
        principal,
        request_id=request_id,
        model=model,
        endpoint=endpoint,
        price=price,
        prompt_tokens=prompt_tokens,
        max_completion_tokens=max_completion_tokens,
        window_hold=window_hold,
    )
    outcome = Outcome(status="failed")
    try:
        yield outcome
    finally:
        await settle(session, limiter, reservation, outcome)
        await session.commit()


@asynccontextmanager
async def embedding(
    session: AsyncSession,
    limiter: Limiter,
    principal: Principal,
    texts: Sequence[str],
    *,
    endpoint: str,
    price: Price,
    model: str = BUNDLED_EMBEDDER,
    request_id: str | None = None,
) -> AsyncIterator[int]:
    """Texts the retrieval service embeds without reporting a count (a search's queries), billed
    like /v1/embeddings: counted with the bundled embedder's tokenizer, reserved before the body,
    billed when it ends normally and free when it raises. Yields the token count.

        async with metering.embedding(session, limiter, principal, queries,
                                      endpoint="collections.search", price=settings.price(model)):
            found = await retrieval.search(...)
    """
    tokens = embedding_tokens().count(texts)
    async with metered(
        session,
        limiter,
        principal,
        request_id=request_id or f"qry-{uuid.uuid4().hex}",
        model=model,
        endpoint=endpoint,
        price=price,
        prompt_tokens=tokens,
    ) as outcome:
        yield tokens
        outcome.prompt_tokens, outcome.status = tokens, "ok"
