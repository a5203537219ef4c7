"""Fitting a chat prompt into the model's context — a pure function over measured token counts.

The caller measures the whole candidate prompt once (one Tokenize call gives every message's share)
and `fit` decides what to leave out: first the oldest history, then the weakest sources. History
is cut in one large step — down to half of the room it may use — rather than one exchange per turn,
so the cut (and with it the cached prefix) stays put for many turns after it moved.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Fit:
    """What to send: history from `history_start` on, the best `sources` sources."""

    history_start: int  # index into the history given to `fit`
    sources: int
    prompt_tokens: int  # measured, less the estimated size of what was left out


def fit(
    sizes: list[int],
    *,
    system: int,
    history_roles: list[str],
    source_shares: list[float],
    budget: int,
) -> Fit:
    """Plan a prompt of `budget` tokens at most.

    `sizes` are the tokens of each message of the candidate prompt: `system` system messages, then
    the history (with `history_roles`), then the new turns, the last of which carries every source.
    `source_shares` is the fraction of that last message each source takes, best source first.
    When even the newest turns without any source do not fit, the plan keeps what it can and the
    model service refuses the prompt with a message naming its size.
    """
    total = sum(sizes)
    history = sizes[system : system + len(history_roles)]
    if total <= budget:
        return Fit(0, len(source_shares), total)
    start = 0
    rest = total - sum(history)
    if history:
        room = max(budget - rest, 0) // 2
        kept = sum(history)
        # Drop the oldest turns until the history takes at most half its room, and start on a user
        # turn so the model never sees an answer without its question.
        while start < len(history) and (kept > room or history_roles[start] != "user"):
            kept -= history[start]
            start += 1
        total = rest + kept
    count = len(source_shares)
    last = sizes[-1]
    while total > budget and count > 0:
        count -= 1
        total -= round(last * source_shares[count])
    return Fit(start, count, total)
