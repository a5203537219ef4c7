"""Measuring requests: one timing record per streamed request, the loops that send them
(closed loop at a concurrency, paired runs against a baseline) and their summaries."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from report import console, print_table


@dataclass
class RequestTiming:
    """One streamed request: when it started, when its first and last tokens arrived."""

    start: float
    first: float | None = None
    last: float | None = None
    tokens: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    error: str | None = None
    # Seconds the engine itself took from taking the request to its first output, where the
    # bench can see inside (the paired model target): TTFT minus this is what the path adds.
    engine_ttft: float | None = None

    def token(self, now: float, count: int = 1) -> None:
        if count <= 0:
            return
        if self.first is None:
            self.first = now
        self.last = now
        self.tokens += count

    @property
    def ttft(self) -> float:
        assert self.first is not None, "no token arrived"
        return self.first - self.start

    @property
    def itl(self) -> float | None:
        """Mean time per output token after the first (vLLM's TPOT); None for single tokens."""
        if self.first is None or self.last is None or self.tokens < 2:
            return None
        return (self.last - self.first) / (self.tokens - 1)


Sender = Callable[[int], Awaitable[RequestTiming]]  # sends request number k, returns its timing


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


@dataclass
class RunSummary:
    target: str
    concurrency: int
    requests: int
    output_tokens: int
    wall_s: float
    tok_per_s: float
    ttft_p50_ms: float
    ttft_p95_ms: float
    itl_p50_ms: float
    mean_output_tokens: float
    mean_prompt_tokens: float
    errors: int
    load1: float  # the machine's 1-minute load average at the end: other work skews figures
    # Set on a run paired request by request with a baseline run (alternating, one machine):
    # the median of the per-pair TTFT differences this - baseline. Far steadier than a
    # difference of two p50s when TTFT varies by more than the overhead being measured.
    paired_ttft_delta_p50_ms: float = float("nan")
    # p50 of TTFT minus the engine's own time to first output (RequestTiming.engine_ttft): the
    # path's cost with the prefill's request-to-request variation taken out.
    ttft_outside_engine_p50_ms: float = float("nan")

    def row(self) -> dict[str, Any]:
        return asdict(self)


def summarize(target: str, concurrency: int, timings: list[RequestTiming], wall: float) -> RunSummary:
    done = [t for t in timings if t.first is not None and t.error is None]
    tokens = sum(t.tokens for t in done)
    itls = [i for t in done if (i := t.itl) is not None]
    return RunSummary(
        target=target,
        concurrency=concurrency,
        requests=len(done),
        output_tokens=tokens,
        wall_s=wall,
        tok_per_s=tokens / wall if wall else float("nan"),
        ttft_p50_ms=pct([t.ttft * 1000 for t in done], 50),
        ttft_p95_ms=pct([t.ttft * 1000 for t in done], 95),
        itl_p50_ms=pct([i * 1000 for i in itls], 50),
        mean_output_tokens=tokens / len(done) if done else float("nan"),
        mean_prompt_tokens=float(np.mean([t.prompt_tokens for t in done])) if done else float("nan"),
        errors=len(timings) - len(done),
        load1=os.getloadavg()[0],
        ttft_outside_engine_p50_ms=pct(
            [(t.ttft - t.engine_ttft) * 1000 for t in done if t.engine_ttft is not None], 50
        ),
    )


async def attempt(one: Sender, index: int) -> RequestTiming:
    """Request `index`; a failure is recorded with its error (summaries count it), not raised."""
    started = time.perf_counter()
    try:
        return await one(index)
    except Exception as exc:
        timing = RequestTiming(started, error=f"{type(exc).__name__}: {exc}"[:500])
        console.print(f"  [red]request failed:[/red] {timing.error}")
        return timing


async def paired_run(baseline: tuple[str, Sender], other: tuple[str, Sender], pairs: int) -> list[RunSummary]:
    """Two senders at concurrency 1, one request each per pair, which goes first alternating, so
    each pair sees the same machine within seconds; sender(k) sends the k-th distinct request
    (k < 2 * pairs). Summaries of both; `other`'s carries its median per-pair TTFT difference."""
    runs: dict[str, list[RequestTiming]] = {baseline[0]: [], other[0]: []}
    for i in range(pairs):
        order = (baseline, other) if i % 2 == 0 else (other, baseline)
        for j, (name, send) in enumerate(order):
            runs[name].append(await attempt(send, 2 * i + j))
    first, second = (
        summarize(name, 1, timings, sum((t.last or t.start) - t.start for t in timings))
        for name, timings in runs.items()
    )
    second.paired_ttft_delta_p50_ms = pct(
        [
            (b.ttft - a.ttft) * 1000
            for a, b in zip(runs[baseline[0]], runs[other[0]], strict=True)
            if a.first is not None and b.first is not None and a.error is None and b.error is None
        ],
        50,
    )
    return [first, second]


async def closed_loop(n_requests: int, concurrency: int, one: Sender) -> tuple[list[RequestTiming], float]:
    """`concurrency` workers send requests 0..n-1 back to back; the timings and the wall time.

    A failed request is recorded (with its error) and the run goes on; summaries count it."""
    queue = list(range(n_requests))
    queue.reverse()
    results: list[RequestTiming] = []

    async def worker() -> None:
        while queue:
            results.append(await attempt(one, queue.pop()))

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, n_requests))))
    return results, time.perf_counter() - started


def summary_table(title: str, summaries: list[RunSummary]) -> None:
    print_table(
        title,
        [
            "target",
            "conc",
            "ok",
            "errors",
            "out tok",
            "tok/s",
            "TTFT p50 ms",
            "TTFT p95 ms",
            "ITL p50 ms",
            "load1",
        ],
        [
            [
                s.target,
                s.concurrency,
                s.requests,
                s.errors,
                s.output_tokens,
                s.tok_per_s,
                s.ttft_p50_ms,
                s.ttft_p95_ms,
                s.itl_p50_ms,
                s.load1,
            ]
            for s in summaries
        ],
    )
