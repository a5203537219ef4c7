"""Which replica of a model takes the next call: healthy ones first, then by routing key or load.

Pure bookkeeping (no I/O), so the rules are tested without processes: a replica whose health says
NOT_SERVING is never picked; one that failed a call is left out for a backoff that doubles while it
keeps failing (capped), and is back as soon as it succeeds or its health turns SERVING again (a
restart). Among the rest:

- a call with a routing key (a conversation, a `prompt_cache_key`, a prompt's leading part) goes
  where the key lives, by **consistent hashing with bounded loads** (Mirrokni, Thorup, Zadimoghaddam
  2018): each replica holds points on a hash ring, a key takes the first replica clockwise from its
  hash whose calls in flight stay within `load_bound` times the mean; a full one passes the key on
  to the next. So the turns of a conversation, and questions over the same prefix, land where the
  engine's prefix cache already holds them, while no replica carries more than 1.25x the mean
  (below a floor of a few calls, where imbalance costs a batching engine nothing).
  The ring needs no state beyond the replica list: every gateway replica computes the same ring
  and sends a key to the same model replica, and a replica that joins or leaves moves only its own
  share of keys;
- a key taken from the prompt's leading part (not a client's key or a conversation) may go past
  its owner to a replica that already holds more of the prompt: each replica remembers the chained
  hashes of the text blocks of the prompts it was sent (SGLang's router keeps the same
  approximate picture of each engine's prefix cache, as a radix tree), and a replica within the
  load bound holding at least `PREFIX_GAIN_BLOCKS` more leading blocks than the owner takes the
  call. That is what a conversation's first turn over shared sources needs: its key is new, its
  sources are not. Each gateway process knows only what it sent, so with several the ring stays
  the common rule and this the local improvement;
- a call without one goes to the replica with the fewest calls in flight, ties taken in turn.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
# Points per replica on the hash ring: enough that keys spread evenly over a few replicas.
RING_POINTS = 64
# A replica takes a key while its calls in flight stay within this factor of the mean (with the
# new call counted): the bound on max/mean load, and how far a hot key's traffic can pile up.
LOAD_BOUND = 1.25
# ...but a replica with fewer calls than this in flight always takes its own keys: a batching
# engine serves a few at the cost of one, and at low load the bound alone would scatter keys.
AFFINITY_FLOOR = 4
# Routing keys drawn from the prompt itself (not a client's key or a conversation) start so.
PREFIX_KEY = "prefix:"
# The prefix picture: prompts cut into blocks of this many characters (~32 tokens), each block's
# hash chained to all before it, so equal hashes mean equal text up to there...
BLOCK_CHARS = 128
# ...at most this many blocks per prompt (the head is what caches share)...
PROMPT_BLOCKS = 512
# ...and per replica, the most recently sent blocks kept (about 4M characters of prompts).
REPLICA_BLOCKS = 32_768
# A replica holding this many more of a prompt's leading blocks than the key's owner (~128
# tokens) takes the call from the owner, within the load bound.
PREFIX_GAIN_BLOCKS = 4


def ring_hash(text: str) -> int:
    """A stable 64-bit hash: the same on every gateway replica and across restarts."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def prompt_blocks(text: str) -> list[int]:
    """The chained hashes of `text`'s leading full blocks (see BLOCK_CHARS)."""
    blocks: list[int] = []
    digest = b""
    for start in range(0, min(len(text) // BLOCK_CHARS, PROMPT_BLOCKS) * BLOCK_CHARS, BLOCK_CHARS):
        digest = hashlib.blake2b(digest + text[start : start + BLOCK_CHARS].encode(), digest_size=8).digest()
        blocks.append(int.from_bytes(digest, "big"))
    return blocks


def address_of(client: object) -> str:
    """Where a replica lives: what places it on the ring, the same in every gateway process."""
    return str(getattr(client, "address", client))


@dataclass(eq=False)
class Replica(Generic[T]):
    """One address of a model and what the gateway knows of it."""

    client: T
    serving: bool | None = None  # None: no health report yet; tried until one says otherwise
    in_flight: int = 0
    failures: int = 0  # calls failed in a row
    out_until: float = 0.0  # left out of rotation until then (monotonic seconds)
    # Prompt blocks sent here, least recently sent first: what its prefix cache likely holds.
    sent: OrderedDict[int, None] = field(default_factory=OrderedDict)

    def holds(self, blocks: Sequence[int]) -> int:
        """How many of a prompt's leading blocks were sent here (and are likely cached)."""
        count = 0
        for block in blocks:
            if block not in self.sent:
                break
            count += 1
        return count

    def remember(self, blocks: Sequence[int]) -> None:
        """A prompt sent here: its blocks are the most recent, the oldest beyond the cap forgotten."""
        for block in blocks:
            self.sent[block] = None
            self.sent.move_to_end(block)
        while len(self.sent) > REPLICA_BLOCKS:
            self.sent.popitem(last=False)


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
        self.load_bound = LOAD_BOUND
        self._turn = 0
        self._ring: list[tuple[int, Replica[T]]] | None = None  # built on first use, after changes

    def pick(
        self,
        exclude: Iterable[Replica[T]] = (),
        rotate: bool = True,
        key: str | None = None,
        blocks: Sequence[int] = (),
    ) -> Replica[T] | None:
        """The replica for the next call, or None when every one (but `exclude`) is down.

        `key`: the call's routing key, and `blocks` the prompt's (`prompt_blocks`): with a key drawn
        from the prompt, a replica that holds more of it may take the key from its owner (see the
        module docstring); a client's key or a conversation stays with its owner.
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
        if key is not None:
            return self._by_key(key, ready, blocks if key.startswith(PREFIX_KEY) else ())
        turn, count = self._turn, len(self.replicas)
        self._turn += rotate
        return min(ready, key=lambda r: (r.in_flight, (self.replicas.index(r) - turn) % count))

    def owner(self, key: str) -> Replica[T] | None:
        """The replica a key lives on when load does not matter (its first point clockwise)."""
        ring = self._points()
        if not ring:
            return None
        return ring[bisect.bisect(ring, (ring_hash(key),)) % len(ring)][1]

    def _by_key(self, key: str, ready: list[Replica[T]], blocks: Sequence[int]) -> Replica[T]:
        ring = self._points()
        mean = (sum(r.in_flight for r in ready) + 1) / len(ready)
        cap = max(math.ceil(self.load_bound * mean), AFFINITY_FLOOR)
        within = [r for r in ready if r.in_flight + 1 <= cap]  # never empty: one is at or below the mean
        allowed = set(map(id, within))
        start = bisect.bisect(ring, (ring_hash(key),))
        owner = min(ready, key=lambda r: r.in_flight)  # replaced below: a ring point is always allowed
        for step in range(len(ring)):
            replica = ring[(start + step) % len(ring)][1]
            if id(replica) in allowed:
                owner = replica
                break
        if blocks:
            best = max(within, key=lambda r: r.holds(blocks), default=owner)
            if best.holds(blocks) >= owner.holds(blocks) + PREFIX_GAIN_BLOCKS:
                return best
        return owner

    def _points(self) -> list[tuple[int, Replica[T]]]:
        if self._ring is None:
            self._ring = sorted(
                (
                    (ring_hash(f"{address_of(r.client)}#{i}"), r)
                    for r in self.replicas
                    for i in range(RING_POINTS)
                ),
                key=lambda point: point[0],
            )
        return self._ring

    def add(self, client: T) -> Replica[T]:
        """A replica that appeared (a pod found in DNS); tried until its health says otherwise."""
        replica = Replica(client)
        self.replicas.append(replica)
        self._ring = None
        return replica

    def remove(self, replica: Replica[T]) -> None:
        """A replica that left: never picked again (calls in flight on it finish where they are)."""
        self.replicas.remove(replica)
        self._ring = None

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
