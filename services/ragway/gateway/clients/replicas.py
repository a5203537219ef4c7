"""Which replica of a model takes the next call: healthy ones first, the least busy, in turn.

Pure bookkeeping (no I/O), so the rules are tested without processes: a replica whose health says
NOT_SERVING is never picked; one that failed a call is left out for a backoff that doubles while it
keeps failing (capped), and is back as soon as it succeeds or its health turns SERVING again (a
restart); among the rest the one with the fewest calls in flight wins, ties taken in turn.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(eq=False)
class Replica(Generic[T]):
    """One address of a model and what the gateway knows of it."""

    client: T
    serving: bool | None = None  # None: no health report yet; tried until one says otherwise
    in_flight: int = 0
    failures: int = 0  # calls failed in a row
    out_until: float = 0.0  # left out of rotation until then (monotonic seconds)


class ReplicaSet(Generic[T]):
    """The replicas of one model and the rules for choosing among them."""

    def __init__(
        self,
        clients: Sequence[T],
        backoff: float,
        backoff_max: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.replicas = [Replica(client) for client in clients]
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.clock = clock
        self._turn = 0

    def pick(self, exclude: Iterable[Replica[T]] = (), rotate: bool = True) -> Replica[T] | None:
        """The replica for the next call, or None when every one (but `exclude`) is down.

        `rotate=False` leaves the turn where it is: the short calls around a generation (tokenize,
        model info) then do not decide which replica the next generation lands on."""
        excluded = set(map(id, exclude))
        candidates = [r for r in self.replicas if id(r) not in excluded and r.serving is not False]
        now = self.clock()
        ready = [r for r in candidates if r.out_until <= now]
        if not ready:
            # Every live replica is backing off: the one back soonest, rather than refusing the call
            # (with a single replica there is nowhere else to go).
            return min(candidates, key=lambda r: r.out_until, default=None)
        turn, count = self._turn, len(self.replicas)
        self._turn += rotate
        return min(ready, key=lambda r: (r.in_flight, (self.replicas.index(r) - turn) % count))

    def failed(self, replica: Replica[T]) -> None:
        """A call found the replica unreachable: out for a backoff that doubles per failure in a row."""
        replica.failures += 1
        delay = min(self.backoff * 2 ** (replica.failures - 1), self.backoff_max)
        replica.out_until = self.clock() + delay

    def succeeded(self, replica: Replica[T]) -> None:
        replica.failures = 0
        replica.out_until = 0.0

    def reported(self, replica: Replica[T], serving: bool) -> None:
        """A health report. Turning SERVING (a restart, an engine loaded) ends any backoff."""
        if serving and replica.serving is not True:
            self.succeeded(replica)
        replica.serving = serving

    @property
    def serving(self) -> int:
        """How many replicas report SERVING."""
        return sum(r.serving is True for r in self.replicas)
