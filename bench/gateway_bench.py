"""Gateway benchmark (issue 4): what the gateway costs on top of the model service.

    python bench/gateway_bench.py                                   # defaults, ~10-12 min on 2 cores
    python bench/gateway_bench.py --requests 32 --requests-c1 4 --seconds 10
    python bench/gateway_bench.py --skip-postgres --json out/gateway.json

Part 1, generation. The same chat workload two ways, against one model service:
  direct  -- gRPC Generate with the chat messages (the floor: no HTTP, auth, billing, history);
  gateway -- POST /v1/chat/completions, streamed (SSE over httpx), with a real API key, so auth,
             the credit reservation, metering and the history write are all on the path.
Each request is one user message whose chat prompt is ~128 tokens ("write a long story about
..." plus filler words, fitted with the model's own Tokenize), distinct per request and per path
so the prefix cache never serves one path the other's prompt; greedy, max_tokens 128. The
OpenAI API has no ignore_eos, so answers may end early: throughput is output tokens per second,
which normalises for length, and the mean completion length is printed. Concurrency 1 and 32.
Ratios: gateway/direct throughput at concurrency 32 (target >= 0.95) and the TTFT p50 overhead
gateway - direct at concurrency 1 (target <= 15 ms). The TTFT overhead comes from a probe of 32
pairs of one-token requests at concurrency 1, direct and gateway alternating, as the median of
the per-pair differences: a 128-token prefill (0.4-1.5 s on 2 cores) varies by more than 15 ms
from request to request, so only paired samples resolve the gateway's own few milliseconds.

Part 2, a non-generating endpoint. GET /v1/conversations/{id} with a bearer key on one gateway
worker (one uvicorn process), once on SQLite and once on PostgreSQL (a database of its own):
one conversation is seeded by a chat request, then 32 concurrent clients request it for N
seconds. Printed: requests/s, p50/p95 latency, errors, and PostgreSQL/SQLite.

Why these defaults: 64 requests at concurrency 32 are ~50 s per path at ~170 tok/s, 8 requests
at concurrency 1 are ~60 s per path at ~17 tok/s; the model service starts in 40-120 s; 20 s
of load per database. About 10-12 minutes in all. The client shares the 2 cores with the
services, and the load average is printed with every row.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
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
    drop_postgres_database,
    fresh_postgres_database,
    install_cleanup,
    make_api_key,
    start_gateway,
    start_model_service,
)
from report import console, machine, print_table, save_json, verdict
from stats import RequestTiming, RunSummary, closed_loop, paired_run, pct, summarize, summary_table

from ragway.core.grpc_server import GRPC_OPTIONS
from ragway.v1 import model_pb2, model_pb2_grpc

PG_DATABASE = "ragway_bench_gateway"
PROBE = "ttft-probe"
TOPICS = (
    "a lighthouse keeper who finds a map",
    "a robot learning to paint",
    "two sisters crossing a desert",
    "a baker in a floating city",
    "a detective who cannot sleep",
    "an astronaut lost near Jupiter",
    "a village that forgot its name",
    "a dragon afraid of the dark",
    "a musician who hears colours",
    "a train that never stops",
    "a gardener growing glass flowers",
    "a pirate who hates the sea",
)
FILLER = (
    "river mountain forest castle garden winter summer friend secret journey storm ocean city market "
    "letter window bridge dream shadow light music voice memory stone fire silver golden ancient quiet"
).split()


async def count_chat_tokens(stub: model_pb2_grpc.ModelServiceStub, text: str) -> int:
    chat = model_pb2.ChatInput(messages=[model_pb2.ChatMessage(role="user", content=text)])
    reply = await stub.Tokenize(model_pb2.TokenizeRequest(chat=chat))
    return int(reply.count)


async def fitted_message(
    stub: model_pb2_grpc.ModelServiceStub, index: int, target: int, rng: np.random.Generator
) -> tuple[str, int]:
    """A distinct "write a long story" message whose chat prompt is as close to `target` tokens
    as whole filler words allow; the message and its prompt size."""
    head = (
        f"Story number {index}: write a long, detailed story about {TOPICS[index % len(TOPICS)]}. "
        "Use many paragraphs and vivid details. Include these words:"
    )
    words = rng.choice(FILLER, 400).tolist()
    k, best = 60, ("", 0)
    for _ in range(12):
        text = f"{head} {' '.join(words[:k])}."
        n = await count_chat_tokens(stub, text)
        if abs(n - target) < abs(best[1] - target):
            best = (text, n)
        if n == target:
            break
        k = max(0, k + (target - n))
    return best


async def build_messages(address: str, count: int, target: int, start: int) -> tuple[list[str], list[int]]:
    rng = np.random.default_rng(start)
    async with grpc.aio.insecure_channel(address, options=GRPC_OPTIONS) as channel:
        stub = model_pb2_grpc.ModelServiceStub(channel)
        fitted = [await fitted_message(stub, start + i, target, rng) for i in range(count)]
    return [m for m, _ in fitted], [n for _, n in fitted]


class Direct:
    """gRPC Generate with the chat messages, as the gateway sends them."""

    name = "direct gRPC"

    def __init__(self, address: str) -> None:
        self.channel = grpc.aio.insecure_channel(address, options=GRPC_OPTIONS)
        self.stub = model_pb2_grpc.ModelServiceStub(self.channel)

    async def send(self, message: str, prompt_tokens: int, max_tokens: int) -> RequestTiming:
        timing = RequestTiming(time.perf_counter(), prompt_tokens=prompt_tokens)
        request = model_pb2.GenerateRequest(
            chat=model_pb2.ChatInput(messages=[model_pb2.ChatMessage(role="user", content=message)]),
            sampling=model_pb2.SamplingParams(max_tokens=max_tokens, n=1, temperature=0.0),
        )
        async for reply in self.stub.Generate(request, timeout=600):
            timing.token(time.perf_counter(), sum(len(c.token_ids) for c in reply.choices))
        return timing

    async def close(self) -> None:
        await self.channel.close()


class ViaGateway:
    """Streamed /v1/chat/completions with a user's API key."""

    name = "gateway"

    def __init__(self, url: str, key: str, model: str = MODEL_NAME, connections: int = 64) -> None:
        self.model = model
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        headers = {"Authorization": f"Bearer {key}"}
        self.http = httpx.AsyncClient(base_url=url, headers=headers, timeout=600, limits=limits)

    async def send(self, message: str, prompt_tokens: int, max_tokens: int) -> RequestTiming:
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": message}],
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        timing = RequestTiming(time.perf_counter(), prompt_tokens=prompt_tokens)
        async with self.http.stream("POST", "/v1/chat/completions", json=body) as response:
            if response.status_code != 200:
                raise RuntimeError(f"gateway answered {response.status_code}: {await response.aread()!r}")
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = orjson.loads(line[6:])
                if "error" in chunk:
                    raise RuntimeError(f"gateway stream failed: {chunk}")
                choices = chunk.get("choices") or []
                # The first chunk only announces the assistant role, before the model runs.
                if choices and not any("role" in c.get("delta", {}) for c in choices):
                    timing.token(time.perf_counter(), 1)
                if chunk.get("usage"):
                    timing.tokens = chunk["usage"]["completion_tokens"]
                    timing.prompt_tokens = chunk["usage"]["prompt_tokens"]
        return timing

    async def close(self) -> None:
        await self.http.aclose()


async def generation_part(
    args: argparse.Namespace, model_addr: str, gateway_url: str, key: str
) -> tuple[list[RunSummary], list[dict[str, Any]]]:
    direct, gateway = Direct(model_addr), ViaGateway(gateway_url, key)
    summaries: list[RunSummary] = []
    try:
        warm, warm_sizes = await build_messages(model_addr, args.warmup, args.prompt_tokens, start=100_000)
        for target in (direct, gateway):
            await closed_loop(len(warm), len(warm), lambda i, t=target: t.send(warm[i], warm_sizes[i], 16))
        offset = 200_000
        if args.ttft_probes > 0:
            summaries.extend(await ttft_probe(direct, gateway, model_addr, args, offset))
        # Back to back per concurrency level, so both paths see the same machine.
        offset = 0
        for concurrency, count in ((1, args.requests_c1), (args.concurrency, args.requests)):
            if count <= 0:
                continue
            for target in (direct, gateway):
                messages, sizes = await build_messages(model_addr, count, args.prompt_tokens, start=offset)
                offset += count
                timings, wall = await closed_loop(
                    count,
                    concurrency,
                    lambda i, t=target, m=messages, s=sizes: t.send(m[i], s[i], args.max_tokens),
                )
                summary = summarize(target.name, concurrency, timings, wall)
                console.print(
                    f"  {target.name} conc {concurrency}: {summary.tok_per_s:.1f} tok/s, "
                    f"TTFT p50 {summary.ttft_p50_ms:.1f} ms, {summary.mean_output_tokens:.0f} tok/answer"
                )
                summaries.append(summary)
    finally:
        await direct.close()
        await gateway.close()
    return summaries, ratios(summaries, args.concurrency)


async def ttft_probe(
    direct: Direct, gateway: ViaGateway, model_addr: str, args: argparse.Namespace, start: int
) -> list[RunSummary]:
    """One-token requests at concurrency 1, direct and gateway alternating (see `paired_run`),
    so each pair sees the same machine within a second; the gateway's summary carries the
    median per-pair TTFT difference."""
    messages, sizes = await build_messages(model_addr, 2 * args.ttft_probes, args.prompt_tokens, start)
    summaries = await paired_run(
        (f"{direct.name} {PROBE}", lambda k: direct.send(messages[k], sizes[k], 1)),
        (f"{gateway.name} {PROBE}", lambda k: gateway.send(messages[k], sizes[k], 1)),
        args.ttft_probes,
    )
    console.print(
        f"  TTFT probe: direct p50 {summaries[0].ttft_p50_ms:.1f} ms, gateway p50 "
        f"{summaries[1].ttft_p50_ms:.1f} ms, per-pair difference p50 "
        f"{summaries[1].paired_ttft_delta_p50_ms:.2f} ms"
    )
    return summaries


def ratios(summaries: list[RunSummary], concurrency: int) -> list[dict[str, Any]]:
    def find(target: str, conc: int) -> RunSummary | None:
        return next((s for s in summaries if s.target == target and s.concurrency == conc), None)

    d_hi, g_hi = find("direct gRPC", concurrency), find("gateway", concurrency)
    d1, g1 = find("direct gRPC", 1), find("gateway", 1)
    nan = float("nan")
    throughput = g_hi.tok_per_s / d_hi.tok_per_s if d_hi and g_hi else nan
    # The paired probe when it ran (the median of per-pair differences), else the phase p50s.
    probe = find(f"gateway {PROBE}", 1)
    if probe:
        ttft = probe.paired_ttft_delta_p50_ms
    else:
        ttft = g1.ttft_p50_ms - d1.ttft_p50_ms if d1 and g1 else nan
    return [
        {
            "name": f"throughput gateway/direct, conc {concurrency}",
            "value": throughput,
            "target": ">= 0.95",
            "ok": verdict(throughput, 0.95, True),
        },
        {
            "name": "TTFT p50 gateway - direct, conc 1 [ms]",
            "value": ttft,
            "target": "<= 15 ms",
            "ok": verdict(ttft, 15.0, False),
        },
    ]


async def seed_conversation(url: str, key: str) -> str:
    body = {
        "model": MODEL_NAME,
        "messages": [{"role": "user", "content": "Say hello to the benchmark."}],
        "max_tokens": 16,
        "temperature": 0.0,
    }
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120
    ) as http:
        response = await http.post("/v1/chat/completions", json=body)
        if response.status_code != 200:
            raise RuntimeError(f"seeding chat answered {response.status_code}: {response.text}")
        conversation_id = response.json().get("conversation_id") or response.headers.get("X-Conversation-Id")
        check = await http.get(f"/v1/conversations/{conversation_id}")
        if check.status_code != 200:
            raise RuntimeError(f"GET /v1/conversations/{conversation_id}: {check.status_code} {check.text}")
    return str(conversation_id)


async def hammer(url: str, key: str, path: str, clients: int, seconds: float) -> dict[str, Any]:
    """`clients` concurrent loops GET `path` for `seconds`; throughput and latency."""
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"Authorization": f"Bearer {key}"}
    latencies: list[float] = []
    errors: dict[str, int] = {}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30, limits=limits) as http:

        async def loop(deadline: float, record: bool) -> None:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                try:
                    status = (await http.get(path)).status_code
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                if not record:
                    continue
                if status == 200:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors[str(status)] = errors.get(str(status), 0) + 1

        warm_until = time.perf_counter() + min(3.0, seconds / 4)
        await asyncio.gather(*(loop(warm_until, False) for _ in range(clients)))
        started = time.perf_counter()
        await asyncio.gather(*(loop(started + seconds, True) for _ in range(clients)))
        wall = time.perf_counter() - started
    return {
        "requests": len(latencies),
        "req_per_s": len(latencies) / wall,
        "p50_ms": pct([x * 1000 for x in latencies], 50),
        "p95_ms": pct([x * 1000 for x in latencies], 95),
        "errors": errors,
    }


async def conversations_part(args: argparse.Namespace, db: str, url: str, admin_key: str) -> dict[str, Any]:
    key = await asyncio.to_thread(make_api_key, url, admin_key)
    conversation_id = await seed_conversation(url, key)
    result = await hammer(url, key, f"/v1/conversations/{conversation_id}", args.clients, args.seconds)
    result["db"] = db
    result["load1"] = os.getloadavg()[0]
    console.print(f"  {db}: {result['req_per_s']:.0f} req/s, p50 {result['p50_ms']:.1f} ms")
    return result


async def main_async(args: argparse.Namespace) -> None:
    apply_engine_options(args)
    env = machine()
    model = await asyncio.to_thread(start_model_service, args.max_num_seqs)
    summaries: list[RunSummary] = []
    gen_ratios: list[dict[str, Any]] = []
    conversations: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="ragway-bench-gw-") as tmp:
            # No retrieval service: nothing here searches, and an idle one would only take memory.
            sqlite_gw = await asyncio.to_thread(
                start_gateway, "gateway-sqlite", Path(tmp) / "sqlite", model.address, "127.0.0.1:9"
            )
            try:
                key = await asyncio.to_thread(make_api_key, sqlite_gw.address, sqlite_gw.extra["admin_key"])
                if not args.skip_generation:
                    console.rule("generation: direct gRPC vs gateway")
                    summaries, gen_ratios = await generation_part(args, model.address, sqlite_gw.address, key)
                console.rule("GET /v1/conversations/{id}")
                conversations.append(
                    await conversations_part(args, "sqlite", sqlite_gw.address, sqlite_gw.extra["admin_key"])
                )
            finally:
                await asyncio.to_thread(sqlite_gw.stop)
            if not args.skip_postgres:
                url = await asyncio.to_thread(fresh_postgres_database, PG_DATABASE)
                pg_gw = await asyncio.to_thread(
                    start_gateway, "gateway-pg", Path(tmp) / "pg", model.address, "127.0.0.1:9", url
                )
                try:
                    conversations.append(
                        await conversations_part(args, "postgresql", pg_gw.address, pg_gw.extra["admin_key"])
                    )
                finally:
                    await asyncio.to_thread(pg_gw.stop)
                    await asyncio.to_thread(drop_postgres_database, PG_DATABASE)
    finally:
        await asyncio.to_thread(model.stop)

    if summaries:
        summary_table(
            f"chat: ~{args.prompt_tokens} prompt tokens, max_tokens {args.max_tokens}, greedy", summaries
        )
        print_table(
            "mean tokens per request",
            ["target", "conc", "prompt", "completion"],
            [[s.target, s.concurrency, s.mean_prompt_tokens, s.mean_output_tokens] for s in summaries],
        )
        print_table(
            "ratios measured in this run",
            ["ratio", "value", "target", ""],
            [list(r.values()) for r in gen_ratios],
        )
    print_table(
        f"GET /v1/conversations/{{id}}, {args.clients} concurrent clients, {args.seconds:g} s, one worker",
        ["database", "requests", "req/s", "p50 ms", "p95 ms", "errors", "load1"],
        [
            [c["db"], c["requests"], c["req_per_s"], c["p50_ms"], c["p95_ms"], c["errors"] or 0, c["load1"]]
            for c in conversations
        ],
    )
    if len(conversations) == 2 and conversations[0]["req_per_s"]:
        console.print(
            f"postgresql/sqlite req/s: {conversations[1]['req_per_s'] / conversations[0]['req_per_s']:.2f}"
        )
    save_json(
        args.json,
        {
            "args": {k: v for k, v in vars(args).items() if k != "json"},
            "machine": env,
            "generation": [s.row() for s in summaries],
            "ratios": gen_ratios,
            "conversations": conversations,
        },
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--concurrency", type=int, default=32, help="the high-concurrency level")
    parser.add_argument("--requests", type=int, default=64, help="chat requests per path at --concurrency")
    parser.add_argument("--requests-c1", type=int, default=8, help="chat requests per path at concurrency 1")
    parser.add_argument(
        "--ttft-probes", type=int, default=32, help="one-token request pairs for the TTFT overhead (0 skips)"
    )
    parser.add_argument("--prompt-tokens", type=int, default=128, help="chat prompt size (approximate)")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=4, help="warm-up chats per path")
    parser.add_argument("--max-num-seqs", type=int, default=64, help="model service max_num_seqs")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients on the conversation GET")
    parser.add_argument("--seconds", type=float, default=20.0, help="load time per database")
    parser.add_argument("--skip-generation", action="store_true")
    parser.add_argument("--skip-postgres", action="store_true")
    add_engine_options(parser)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    return parser.parse_args()


if __name__ == "__main__":
    install_cleanup()
    asyncio.run(main_async(parse_args()))
