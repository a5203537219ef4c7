"""Model service benchmark (issue 2): how much of the engine's speed survives our gRPC service.

    python bench/model_bench.py                                  # defaults, ~25 min on 2 cores
    python bench/model_bench.py --requests 32 --requests-c1 4    # a quicker run
    python bench/model_bench.py --targets inproc,grpc --json out/model.json

One workload, three targets run one after another (never two engines at once), each warmed up
first so torch.compile and allocator effects do not count:

  (a) inproc -- ragway.model.engine.Engine in this process: the floor, no RPC at all;
  (b) grpc   -- our model service (`ragway model`), Generate with token_ids input;
  (c) vllm   -- vLLM's own OpenAI server, /v1/completions with token-id prompts, stream=True.

Workload: prompts of exactly 128 random token ids (distinct per request, so the prefix cache
cannot skip prefill), 128 output tokens with ignore_eos, greedy decoding, at concurrency 1 and 32.
Printed per target and concurrency: output tok/s (all output tokens / wall time of the run),
TTFT p50/p95, inter-token latency p50 (per request: (last token - first token) / (tokens - 1)).
Ratios, all measured in this run: (b)/(a) throughput at concurrency 32 (target >= 0.95),
(b)/(c) throughput at concurrency 32 (target >= 1.0), TTFT (b)-(a) at concurrency 1
(target <= 10 ms).

TTFT is measured three ways, most precise last: the concurrency-1 phase (8 requests); a probe
of 32 one-token requests per target ("ttft-probe" rows); and a fourth target, `paired`, which
runs our gRPC server in this process around one engine and alternates one-token requests
straight to the engine (a) and through gRPC (b). A 128-token prefill takes 0.4-1.5 s on 2 cores
and varies by ~100 ms between requests, independently for the two requests of a pair, so the
verdict is TTFT outside the engine: client TTFT minus the engine's own time to first output,
(b) p50 minus (a) p50. In the paired target the gRPC client and server share one event loop,
which costs more than two processes would, not less.

Why these defaults: one stream decodes ~17-28 tok/s, so concurrency 1 uses 8 requests; at
concurrency 32, 64 requests x 128 tokens take 1-4 minutes per target depending on the CPU's
prefill speed (prefill dominates on CPUs without fast fp16 matmul). With an engine start
(30-120 s) and warm-up per target, the run takes ~20-25 minutes. The load average is printed
with every row: other work on the machine skews a run. The client runs on the same 2 cores as
the server; for (c) it also parses JSON per token.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import orjson
from harness import (
    MODEL_NAME,
    add_engine_options,
    apply_engine_options,
    install_cleanup,
    start_model_service,
    start_vllm_openai_server,
)
from report import console, machine, print_table, save_json, verdict
from stats import RequestTiming, RunSummary, Sender, closed_loop, paired_run, summarize, summary_table

from ragway.core.grpc_server import GRPC_OPTIONS
from ragway.v1 import model_pb2, model_pb2_grpc

TARGETS = ("inproc", "grpc", "vllm", "paired")
PROBE = "ttft-probe"
PAIRED = "paired-probe"
LABELS = {
    "inproc": "(a) in-process engine",
    "grpc": "(b) ragway gRPC service",
    "vllm": "(c) vLLM OpenAI server",
    "paired": "(a) vs (b) over one engine, alternating one-token requests",
}


def token_prompts(n: int, length: int, seed: int) -> list[list[int]]:
    """Distinct random prompts of ordinary token ids (the special tokens sit below id 100)."""
    rng = np.random.default_rng(seed)
    return [rng.integers(1_000, 40_000, size=length).tolist() for _ in range(n)]


async def run_phases(
    name: str, send: Callable[[list[int], int], Any], args: argparse.Namespace
) -> list[RunSummary]:
    """Warm up, then the measured runs at each concurrency, with fresh prompts every time."""
    warm = token_prompts(args.warmup, args.prompt_tokens, seed=1)
    await closed_loop(len(warm), len(warm), lambda i: send(warm[i], 16))
    summaries = []
    if args.ttft_probes > 0:
        # One output token per request: TTFT alone, with enough samples for a stable p50.
        probes = token_prompts(args.ttft_probes, args.prompt_tokens, seed=2)
        timings, wall = await closed_loop(len(probes), 1, lambda i: send(probes[i], 1))
        summaries.append(summarize(f"{name} {PROBE}", 1, timings, wall))
        console.print(f"  {name} TTFT probe: p50 {summaries[-1].ttft_p50_ms:.1f} ms")
    phases = ((1, args.requests_c1), (args.concurrency, args.requests))
    for seed, (concurrency, count) in enumerate(phases, start=10):
        if count <= 0:
            continue
        prompts = token_prompts(count, args.prompt_tokens, seed=seed)
        timings, wall = await closed_loop(
            count, concurrency, lambda i, p=prompts: send(p[i], args.max_tokens)
        )
        summary = summarize(name, concurrency, timings, wall)
        console.print(
            f"  {name} conc {concurrency}: {summary.tok_per_s:.1f} tok/s, "
            f"TTFT p50 {summary.ttft_p50_ms:.1f} ms"
        )
        summaries.append(summary)
    return summaries


Send = Callable[[list[int], int], Awaitable[RequestTiming]]


def engine_sender(engine: Any) -> Send:
    """(a): AsyncLLM.generate on `engine` in this process."""
    from ragway.model.sampling import build_sampling_params

    async def send(prompt: list[int], max_tokens: int) -> RequestTiming:
        timing = RequestTiming(time.perf_counter(), prompt_tokens=len(prompt))
        params = build_sampling_params(
            model_pb2.SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True),
            len(prompt),
            engine.max_model_len,
        )
        async for output in engine.generate(prompt, params, uuid.uuid4().hex):
            timing.token(time.perf_counter(), sum(len(c.token_ids) for c in output.outputs))
        return timing

    return send


def grpc_sender(stub: model_pb2_grpc.ModelServiceStub) -> Send:
    """(b): Generate with token_ids input on our model service."""

    async def send(prompt: list[int], max_tokens: int) -> RequestTiming:
        timing = RequestTiming(time.perf_counter(), prompt_tokens=len(prompt))
        request = model_pb2.GenerateRequest(
            token_ids=model_pb2.TokenIds(ids=prompt),
            sampling=model_pb2.SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True),
        )
        async for message in stub.Generate(request, timeout=600):
            timing.token(time.perf_counter(), sum(len(c.token_ids) for c in message.choices))
        return timing

    return send


def model_settings(args: argparse.Namespace) -> Any:
    from ragway.model.config import ModelSettings

    return ModelSettings(max_num_seqs=args.max_num_seqs, kv_cache_gib=args.kv_cache_gib, metrics_port=0)


async def bench_inproc(args: argparse.Namespace) -> list[RunSummary]:
    from ragway.model.engine import Engine

    engine = Engine(model_settings(args))
    await engine.start()
    try:
        return await run_phases("inproc", engine_sender(engine), args)
    finally:
        engine.shutdown()


async def bench_grpc(args: argparse.Namespace) -> list[RunSummary]:
    service = await asyncio.to_thread(start_model_service, args.max_num_seqs, args.kv_cache_gib)
    try:
        async with grpc.aio.insecure_channel(service.address, options=GRPC_OPTIONS) as channel:
            return await run_phases("grpc", grpc_sender(model_pb2_grpc.ModelServiceStub(channel)), args)
    finally:
        await asyncio.to_thread(service.stop)


async def bench_paired(args: argparse.Namespace) -> list[RunSummary]:
    """(a) and (b) over one engine, one-token requests alternating between them at concurrency 1.

    Our gRPC server runs in this process around the engine that (a) calls directly, so each
    pair sees the same engine and machine within a few seconds. Two figures: the median
    per-pair TTFT difference, and -- the verdict -- the difference of the p50s of TTFT outside
    the engine (client TTFT minus the engine's own time from taking the request to its first
    output, timed at the engine's iterator): the prefill's own +-100 ms request-to-request
    variation is independent within a pair, so only taking it out resolves a few milliseconds.
    Client and server share one event loop here, which costs more than two processes, not less."""
    from ragway.model.server import start_server

    running = await start_server(model_settings(args), port=0)
    spans: list[float] = []  # engine time to first output, one per engine request, in order
    try:
        await running.engine_ready
        engine_generate = running.engine.generate

        def timed_generate(prompt_ids: list[int], params: Any, request_id: str) -> AsyncIterator[Any]:
            async def outputs() -> AsyncIterator[Any]:
                submitted, first = time.perf_counter(), True
                async for output in engine_generate(prompt_ids, params, request_id):
                    if first:
                        spans.append(time.perf_counter() - submitted)
                        first = False
                    yield output

            return outputs()

        running.engine.generate = timed_generate  # type: ignore[method-assign]
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}", options=GRPC_OPTIONS) as channel:
            direct = engine_sender(running.engine)
            via_grpc = grpc_sender(model_pb2_grpc.ModelServiceStub(channel))
            prompts = token_prompts(2 * args.paired_probes, args.prompt_tokens, seed=4)

            def with_engine_time(send: Send) -> Sender:
                async def one(k: int) -> RequestTiming:
                    timing = await send(prompts[k], 1)
                    timing.engine_ttft = spans[-1]
                    return timing

                return one

            warm = token_prompts(args.warmup, args.prompt_tokens, seed=3)
            for send in (direct, via_grpc):
                await closed_loop(len(warm), 1, lambda i, f=send: f(warm[i], 1))
            summaries = await paired_run(
                (f"inproc {PAIRED}", with_engine_time(direct)),
                (f"grpc {PAIRED}", with_engine_time(via_grpc)),
                args.paired_probes,
            )
    finally:
        await running.stop()
    a, b = summaries
    console.print(
        f"  paired probe: TTFT p50 inproc {a.ttft_p50_ms:.1f} ms, grpc {b.ttft_p50_ms:.1f} ms, per-pair "
        f"difference p50 {b.paired_ttft_delta_p50_ms:.2f} ms; outside the engine p50 inproc "
        f"{a.ttft_outside_engine_p50_ms:.2f} ms, grpc {b.ttft_outside_engine_p50_ms:.2f} ms"
    )
    return summaries


async def bench_vllm(args: argparse.Namespace) -> list[RunSummary]:
    service = await asyncio.to_thread(start_vllm_openai_server, args.max_num_seqs, args.kv_cache_gib)
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    try:
        async with httpx.AsyncClient(base_url=service.address, timeout=600, limits=limits) as http:

            async def send(prompt: list[int], max_tokens: int) -> RequestTiming:
                body = {
                    "model": MODEL_NAME,
                    "prompt": prompt,
                    "max_tokens": max_tokens,
                    "temperature": 0.0,
                    "ignore_eos": True,
                    "stream": True,
                    "stream_options": {"include_usage": True},
                }
                timing = RequestTiming(time.perf_counter(), prompt_tokens=len(prompt))
                usage_tokens = None
                async with http.stream("POST", "/v1/completions", json=body) as response:
                    if response.status_code != 200:
                        raise RuntimeError(
                            f"vLLM answered {response.status_code}: {await response.aread()!r}"
                        )
                    async for line in response.aiter_lines():
                        if not line.startswith("data: ") or line == "data: [DONE]":
                            continue
                        chunk = orjson.loads(line[6:])
                        if chunk.get("choices"):
                            # vLLM sends one chunk per engine step, i.e. one token per request.
                            timing.token(time.perf_counter(), 1)
                        if chunk.get("usage"):
                            usage_tokens = chunk["usage"]["completion_tokens"]
                if usage_tokens is not None:
                    timing.tokens = usage_tokens
                return timing

            return await run_phases("vllm", send, args)
    finally:
        await asyncio.to_thread(service.stop)


BENCHES = {"inproc": bench_inproc, "grpc": bench_grpc, "vllm": bench_vllm, "paired": bench_paired}


def find(summaries: list[RunSummary], target: str, concurrency: int) -> RunSummary | None:
    return next((s for s in summaries if s.target == target and s.concurrency == concurrency), None)


def ratios(summaries: list[RunSummary], concurrency: int) -> list[dict[str, Any]]:
    a32, b32, c32 = (find(summaries, t, concurrency) for t in ("inproc", "grpc", "vllm"))
    # Most precise first: the paired probe over one engine, then the separate one-token probes,
    # then the concurrency-1 phase.
    paired, paired_a = find(summaries, f"grpc {PAIRED}", 1), find(summaries, f"inproc {PAIRED}", 1)
    a1 = find(summaries, f"inproc {PROBE}", 1) or find(summaries, "inproc", 1)
    b1 = find(summaries, f"grpc {PROBE}", 1) or find(summaries, "grpc", 1)
    nan = float("nan")
    throughput_a = b32.tok_per_s / a32.tok_per_s if a32 and b32 else nan
    throughput_c = b32.tok_per_s / c32.tok_per_s if b32 and c32 else nan
    ttft_rows = []
    if paired and paired_a:
        outside = paired.ttft_outside_engine_p50_ms - paired_a.ttft_outside_engine_p50_ms
        ttft_rows.append(("TTFT (b)-(a) outside the engine, conc 1, paired, p50s [ms]", outside))
        ttft_rows.append(
            ("TTFT (b)-(a), conc 1, paired, p50 of differences [ms]", paired.paired_ttft_delta_p50_ms)
        )
    if a1 and b1:
        ttft_rows.append(
            ("TTFT p50 (b) - p50 (a), conc 1, separate runs [ms]", b1.ttft_p50_ms - a1.ttft_p50_ms)
        )
    return [
        {
            "name": f"throughput (b)/(a), conc {concurrency}",
            "value": throughput_a,
            "target": ">= 0.95",
            "ok": verdict(throughput_a, 0.95, True),
        },
        {
            "name": f"throughput (b)/(c), conc {concurrency}",
            "value": throughput_c,
            "target": ">= 1.0",
            "ok": verdict(throughput_c, 1.0, True),
        },
        *(
            {"name": name, "value": value, "target": "<= 10 ms", "ok": verdict(value, 10.0, False)}
            for name, value in ttft_rows
        ),
    ]


async def main_async(args: argparse.Namespace) -> None:
    apply_engine_options(args)
    summaries: list[RunSummary] = []
    env = machine()
    for target in args.targets:
        console.rule(LABELS[target])
        summaries.extend(await BENCHES[target](args))
    summary_table("model benchmark: 128 prompt tokens -> 128 output tokens (ignore_eos, greedy)", summaries)
    rows = ratios(summaries, args.concurrency)
    print_table(
        "ratios measured in this run", ["ratio", "value", "target", ""], [list(r.values()) for r in rows]
    )
    save_json(
        args.json,
        {
            "args": {k: v for k, v in vars(args).items() if k != "json"},
            "machine": env,
            "runs": [s.row() for s in summaries],
            "ratios": rows,
        },
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--targets", default=",".join(TARGETS), help="comma-separated: inproc,grpc,vllm,paired"
    )
    parser.add_argument("--concurrency", type=int, default=32, help="the high-concurrency level")
    parser.add_argument("--requests", type=int, default=64, help="requests at --concurrency")
    parser.add_argument("--requests-c1", type=int, default=8, help="requests at concurrency 1 (0 skips)")
    parser.add_argument(
        "--ttft-probes", type=int, default=32, help="one-token requests at concurrency 1 for TTFT (0 skips)"
    )
    parser.add_argument(
        "--paired-probes", type=int, default=32, help="request pairs in the paired target (one engine)"
    )
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--max-tokens", type=int, default=128, help="output tokens per request")
    parser.add_argument("--warmup", type=int, default=8, help="warm-up requests (16 tokens) per target")
    parser.add_argument("--max-num-seqs", type=int, default=64, help="engine max_num_seqs, all targets")
    parser.add_argument("--kv-cache-gib", type=int, default=2, help="CPU KV cache, all targets")
    add_engine_options(parser)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = set(args.targets) - set(TARGETS)
    if unknown:
        parser.error(f"unknown targets {sorted(unknown)}; choose from {TARGETS}")
    return args


if __name__ == "__main__":
    install_cleanup()  # vLLM's engine core is a spawned process: the guard is required
    asyncio.run(main_async(parse_args()))
