"""Responses-API streaming vs chat-completions streaming through the gateway (issue 15 item 4).

    python bench/responses_bench.py                       # defaults, ~6-8 min on 2 cores
    python bench/responses_bench.py --rounds 2 --requests 16 --concurrency 16

One model service and one gateway worker (SQLite). The same workload two ways, streamed with a
real API key, so auth, the reservation, metering and settling are on both paths:
  chat      -- POST /v1/chat/completions, stream: true (SSE chunks, ends with [DONE]);
  responses -- POST /v1/responses, stream: true (the semantic events: created, in_progress,
               output_item.added, content_part.added, output_text.delta..., done events, completed).
Each request is one user message whose chat prompt is ~128 tokens, built exactly as
gateway_bench.py builds them (distinct per request and per path, so the prefix cache never serves
one path the other's prompt); greedy, 128 output tokens at most, store: false on both (history
writes are the same code on both paths and are not what is compared). The paths alternate in
rounds, each round running both back to back at the same concurrency and which goes first
alternating, so both see the same machine. Throughput is output tokens per second over all
rounds; the ratio responses/chat is printed (target >= 0.95).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
from gateway_bench import ViaGateway, build_messages
from harness import (
    MODEL_NAME,
    add_engine_options,
    apply_engine_options,
    install_cleanup,
    make_api_key,
    start_gateway,
    start_model_service,
)
from report import console, machine, print_table, save_json, verdict
from stats import RequestTiming, RunSummary, closed_loop, summarize, summary_table


class ChatStream(ViaGateway):
    """Streamed /v1/chat/completions (gateway_bench's sender), store: false as by default."""

    name = "chat stream"


class ResponsesStream:
    """Streamed /v1/responses: a token per output_text.delta, the count from response.completed."""

    name = "responses stream"

    def __init__(self, url: str, key: str) -> None:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        headers = {"Authorization": f"Bearer {key}"}
        self.http = httpx.AsyncClient(base_url=url, headers=headers, timeout=600, limits=limits)

    async def send(self, message: str, prompt_tokens: int, max_tokens: int) -> RequestTiming:
        body = {
            "model": MODEL_NAME,
            "input": message,
            "max_output_tokens": max_tokens,
            "temperature": 0.0,
            "stream": True,
            "store": False,
        }
        timing = RequestTiming(time.perf_counter(), prompt_tokens=prompt_tokens)
        async with self.http.stream("POST", "/v1/responses", json=body) as response:
            if response.status_code != 200:
                raise RuntimeError(f"gateway answered {response.status_code}: {await response.aread()!r}")
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                event = orjson.loads(line[6:])
                kind = event["type"]
                if kind == "response.output_text.delta":
                    timing.token(time.perf_counter(), 1)
                elif kind == "response.completed" or kind == "response.incomplete":
                    usage = event["response"]["usage"]
                    timing.tokens = usage["output_tokens"]
                    timing.prompt_tokens = usage["input_tokens"]
                elif kind == "response.failed":
                    raise RuntimeError(f"response failed: {event['response']['error']}")
        return timing

    async def close(self) -> None:
        await self.http.aclose()


async def compare(args: argparse.Namespace, model_addr: str, url: str, key: str) -> list[RunSummary]:
    chat, responses = ChatStream(url, key), ResponsesStream(url, key)
    timings: dict[str, list[RequestTiming]] = {chat.name: [], responses.name: []}
    walls = {chat.name: 0.0, responses.name: 0.0}
    try:
        warm, warm_sizes = await build_messages(
            model_addr, 2 * args.warmup, args.prompt_tokens, start=300_000
        )
        for n, target in enumerate((chat, responses)):
            part = range(n * args.warmup, (n + 1) * args.warmup)
            await closed_loop(
                args.warmup, args.warmup, lambda i, t=target, p=part: t.send(warm[p[i]], warm_sizes[p[i]], 16)
            )
        offset = 400_000
        for round_ in range(args.rounds):
            order = (chat, responses) if round_ % 2 == 0 else (responses, chat)
            for target in order:
                messages, sizes = await build_messages(model_addr, args.requests, args.prompt_tokens, offset)
                offset += args.requests
                done, wall = await closed_loop(
                    args.requests,
                    args.concurrency,
                    lambda i, t=target, m=messages, s=sizes: t.send(m[i], s[i], args.max_tokens),
                )
                timings[target.name].extend(done)
                walls[target.name] += wall
                console.print(
                    f"  round {round_ + 1} {target.name}: "
                    f"{sum(t.tokens for t in done if not t.error) / wall:.1f} tok/s"
                )
    finally:
        await chat.close()
        await responses.close()
    return [summarize(name, args.concurrency, timings[name], walls[name]) for name in timings]


async def main_async(args: argparse.Namespace) -> None:
    apply_engine_options(args)
    env = machine()
    model = await asyncio.to_thread(start_model_service, args.max_num_seqs)
    try:
        with tempfile.TemporaryDirectory(prefix="ragway-bench-resp-") as tmp:
            gateway = await asyncio.to_thread(
                start_gateway, "gateway-sqlite", Path(tmp) / "sqlite", model.address, "127.0.0.1:9"
            )
            try:
                key = await asyncio.to_thread(make_api_key, gateway.address, gateway.extra["admin_key"])
                console.rule("streaming: chat completions vs Responses API")
                summaries = await compare(args, model.address, gateway.address, key)
            finally:
                await asyncio.to_thread(gateway.stop)
    finally:
        await asyncio.to_thread(model.stop)

    chat, responses = summaries
    ratio = responses.tok_per_s / chat.tok_per_s if chat.tok_per_s else float("nan")
    rows: list[dict[str, Any]] = [
        {
            "name": f"throughput responses/chat streaming, conc {args.concurrency}",
            "value": ratio,
            "target": ">= 0.95",
            "ok": verdict(ratio, 0.95, True),
        }
    ]
    summary_table(
        f"~{args.prompt_tokens} prompt tokens, up to {args.max_tokens} output tokens, greedy, "
        f"{args.rounds} rounds x {args.requests} requests per path",
        summaries,
    )
    print_table(
        "ratio measured in this run", ["ratio", "value", "target", ""], [list(r.values()) for r in rows]
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
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--requests", type=int, default=32, help="requests per path per round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds; which path goes first alternates")
    parser.add_argument("--prompt-tokens", type=int, default=128, help="chat prompt size (approximate)")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=4, help="warm-up requests per path")
    parser.add_argument("--max-num-seqs", type=int, default=64, help="model service max_num_seqs")
    add_engine_options(parser)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    return parser.parse_args()


if __name__ == "__main__":
    install_cleanup()
    asyncio.run(main_async(parse_args()))
