"""Structured-outputs benchmark (issue 15): what a json_schema constraint costs in output tok/s.

    python bench/structured_bench.py                         # defaults, ~5 min on 2 cores
    python bench/structured_bench.py --rounds 1 --requests 16
    python bench/structured_bench.py --json out/structured.json

One model service (`ragway model`, the configured structured-output backend), the same chat
prompts sent two ways through gRPC Generate, greedy:

  (a) free      -- no constraint;
  (b) json      -- SamplingParams.json_schema, a schema whose answers run ~100-200 tokens
                   (an array of objects with bounded strings and integers).

Both do the same work: a warm-up sends every prompt constrained and records how many tokens each
answer took; the free request for that prompt then asks for exactly that many (max_tokens with
ignore_eos). So prefill, output lengths and batch shapes match, and the ratio is the grammar's
own cost: per-step token-mask computation and the constrained sampling. Rounds alternate (a) and
(b) at each concurrency so drift on the machine hits both; the verdict compares the medians over
rounds: output tok/s (b)/(a), target >= 0.8, at every concurrency measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any

import grpc
from harness import add_engine_options, apply_engine_options, install_cleanup, start_model_service
from report import console, machine, print_table, save_json, verdict
from stats import RequestTiming, RunSummary, closed_loop, summarize, summary_table

from ragway.core.grpc_server import GRPC_OPTIONS
from ragway.v1 import model_pb2, model_pb2_grpc

TOPICS = (
    "fruit", "tools", "books", "planets", "cities", "animals", "songs", "games", "rivers", "cars",
    "flowers", "desserts", "sports", "paintings", "bridges", "birds",
)  # fmt: skip
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 40},
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "maxLength": 24},
                    "rank": {"type": "integer", "minimum": 1, "maximum": 10},
                    "note": {"type": "string", "maxLength": 40},
                },
                "required": ["name", "rank", "note"],
            },
            "minItems": 5,
            "maxItems": 5,
        },
    },
    "required": ["title", "items"],
}
TARGET = 0.8


def prompts(n: int) -> list[str]:
    return [
        f"List five {TOPICS[i % len(TOPICS)]} (set {i}) with a rank and a short note each." for i in range(n)
    ]


def request(prompt: str, constrained: bool, max_tokens: int) -> model_pb2.GenerateRequest:
    sampling = model_pb2.SamplingParams(max_tokens=max_tokens, temperature=0.0)
    if constrained:
        sampling.json_schema = json.dumps(SCHEMA)
    else:
        sampling.ignore_eos = True
    chat = model_pb2.ChatInput(messages=[model_pb2.ChatMessage(role="user", content=prompt)])
    return model_pb2.GenerateRequest(chat=chat, sampling=sampling)


async def send(stub: model_pb2_grpc.ModelServiceStub, req: model_pb2.GenerateRequest) -> RequestTiming:
    timing = RequestTiming(time.perf_counter())
    async for message in stub.Generate(req):
        if message.prompt_tokens:
            timing.prompt_tokens = message.prompt_tokens
        timing.token(time.perf_counter(), sum(len(c.token_ids) for c in message.choices))
    return timing


async def run(args: argparse.Namespace) -> dict[str, Any]:
    service = await asyncio.to_thread(start_model_service, args.max_num_seqs, args.kv_cache_gib)
    try:
        async with grpc.aio.insecure_channel(service.address, options=GRPC_OPTIONS) as channel:
            stub = model_pb2_grpc.ModelServiceStub(channel)
            texts = prompts(args.requests)
            # Warm-up, constrained: compiles the schema (cached by the backend afterwards) and
            # measures each answer's length, which the free requests then match.
            lengths = [
                t.tokens
                for t in await asyncio.gather(*(send(stub, request(p, True, args.max_tokens)) for p in texts))
            ]
            console.print(f"constrained answer lengths: mean {statistics.mean(lengths):.0f}, {lengths}")
            runs: dict[tuple[str, int], list[RunSummary]] = {}
            for round_ in range(args.rounds):
                for concurrency in args.concurrency:
                    n = len(texts) if concurrency > 1 else min(len(texts), args.requests_c1)
                    order = ("free", "json") if round_ % 2 == 0 else ("json", "free")
                    for variant in order:
                        constrained = variant == "json"

                        async def one(k: int, constrained: bool = constrained) -> RequestTiming:
                            budget = args.max_tokens if constrained else lengths[k]
                            return await send(stub, request(texts[k], constrained, budget))

                        timings, wall = await closed_loop(n, concurrency, one)
                        summary = summarize(variant, concurrency, timings, wall)
                        runs.setdefault((variant, concurrency), []).append(summary)
                        console.print(
                            f"round {round_ + 1} c={concurrency} {variant}: {summary.tok_per_s:.1f} tok/s "
                            f"({summary.output_tokens} tokens, load {summary.load1:.2f})"
                        )
    finally:
        await asyncio.to_thread(service.stop)

    rows, verdicts = [], []
    for concurrency in args.concurrency:
        free = statistics.median(s.tok_per_s for s in runs[("free", concurrency)])
        constrained = statistics.median(s.tok_per_s for s in runs[("json", concurrency)])
        ratio = constrained / free
        rows.append([f"c={concurrency}", free, constrained, ratio, verdict(ratio, TARGET, True)])
        verdicts.append(
            {"concurrency": concurrency, "free_tok_s": free, "json_tok_s": constrained, "ratio": ratio}
        )
    summary_table("Every run", [s for series in runs.values() for s in series])
    print_table(
        f"json_schema vs unconstrained, output tok/s (median of {args.rounds} rounds; target >= {TARGET})",
        ["concurrency", "(a) free", "(b) json_schema", "(b)/(a)", "verdict"],
        rows,
    )
    return {
        "machine": machine(),
        "args": vars(args),
        "ratios": verdicts,
        "runs": [s.row() for series in runs.values() for s in series],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=32, help="prompts per run at concurrency > 1")
    parser.add_argument("--requests-c1", type=int, default=6, help="prompts per run at concurrency 1")
    parser.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 16])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=320, help="cap for the constrained answers")
    parser.add_argument("--max-num-seqs", type=int, default=64)
    parser.add_argument("--kv-cache-gib", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    add_engine_options(parser)
    args = parser.parse_args()
    apply_engine_options(args)
    install_cleanup()
    save_json(args.json, asyncio.run(run(args)))


if __name__ == "__main__":
    main()
