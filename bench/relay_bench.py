"""The gateway's relay ceiling (issue 24): how many output tokens per second one gateway process
carries from a model service to SSE clients, at GPU-class token rates from the simulated engine.

    python bench/relay_bench.py                          # 64, 256, 1024 streams, ~3 min
    python bench/relay_bench.py --concurrency 256 --itl-ms 10
    python bench/relay_bench.py --tokens 1000 --itl-ms 5 --stream-interval 4   # the README's row

One simulated model replica (RAGWAY_MODEL_ENGINE=sim: real tokenizer, gRPC API, admission and
metrics; a timed batch step instead of a forward pass) streams `--tokens` tokens per request every
`--itl-ms`. At each concurrency the same load runs twice in one run, alternating: straight from the
model service over gRPC (the baseline: what the engine offers) and through one gateway process
(auth, metering, SSE). Figures per concurrency: relayed output tok/s and its ratio to the baseline,
the gateway process's CPU seconds per 1,000 tokens, and the p99 over streams of the inter-token
latency the gateway adds (a stream's mean ITL through the gateway minus the engine's step).
`--stream-interval N` has the model service send N tokens per message (vLLM's --stream-interval;
the first token still goes alone), the setting for a deployment whose token rate the relay cannot
carry one by one. "tok / SSE event" is how many tokens each event the client read carried: above 1
when the gateway fell behind and merged what had queued (gateway/clients/coalescing.py). The
gateway runs on its own PostgreSQL database by default, as a replicated deployment does
(`--database sqlite`: the embedded one).
Target: >= 20,000 tok/s through one gateway process at 256 streams with p99 added ITL <= 5 ms.
The load generator shares the machine: on 2 cores the client's own parsing is part of the ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import string
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
import psutil
from gateway_bench import Direct, ViaGateway
from harness import (
    fresh_postgres_database,
    install_cleanup,
    make_api_key,
    start_gateway,
    start_model_service,
)
from report import console, machine, print_table, save_json, verdict
from stats import RequestTiming, closed_loop

from tests.utils.processes import free_port

TARGET_TOK_S = 20_000.0
TARGET_ADDED_ITL_MS = 5.0


class LeanGateway(ViaGateway):
    """Streamed chat through the gateway, read as raw bytes: the first and last arrivals and the
    usage at the end. The load generator shares two cores with the gateway and the engine, so it
    parses no event it does not need (a JSON parse per token would make the client the ceiling)."""

    events = 0  # SSE events read, over all streams: tokens per event shows the coalescing

    async def send(self, message: str, prompt_tokens: int, max_tokens: int) -> RequestTiming:
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": message}],
            "max_tokens": max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        timing = RequestTiming(time.perf_counter(), prompt_tokens=prompt_tokens)
        tail = b""
        async with self.http.stream("POST", "/v1/chat/completions", json=body) as response:
            if response.status_code != 200:
                raise RuntimeError(f"gateway answered {response.status_code}: {await response.aread()!r}")
            async for chunk in response.aiter_raw():
                now = time.perf_counter()
                self.events += (tail[-1:] + chunk).count(b"\n\n")
                if timing.first is None and b'"content":"' in chunk and b'"content":""' not in chunk:
                    timing.first = now
                timing.last = now
                tail = (tail + chunk)[-4096:]
        usage = re.search(rb'"usage":(\{.*?\}\})', tail)
        if timing.first is None or usage is None:
            raise RuntimeError(f"no answer or no usage: {tail[-300:]!r}")
        timing.tokens = orjson.loads(usage.group(1))["completion_tokens"]
        return timing


def cpu_seconds(process: psutil.Process) -> float:
    """User and system CPU of the gateway and its workers."""
    return sum(sum(p.cpu_times()[:2]) for p in [process, *process.children(recursive=True)])


def prompts(count: int) -> list[str]:
    rng = random.Random(3)
    return [
        " ".join("".join(rng.choices(string.ascii_lowercase, k=6)) for _ in range(12)) for _ in range(count)
    ]


async def run(
    sender: Direct | ViaGateway, concurrency: int, tokens: int, waves: int
) -> tuple[list[RequestTiming], float]:
    texts = prompts(concurrency * waves)

    async def one(k: int) -> RequestTiming:
        return await sender.send(texts[k], 0, tokens)

    return await closed_loop(concurrency * waves, concurrency, one)


async def measure(
    args: argparse.Namespace, model: str, gateway: str, key: str, gateway_process: psutil.Process
) -> tuple[list[list[float]], list[dict[str, float]]]:
    """Each concurrency: direct, then through the gateway; a table row and the raw figures."""
    rows, results = [], []
    for concurrency in args.concurrency:
        direct, via = Direct(model), LeanGateway(gateway, key, connections=concurrency)
        figures = {}
        for name, sender in (("direct", direct), ("gateway", via)):
            cpu = cpu_seconds(gateway_process)
            timings, wall = await run(sender, concurrency, args.tokens, args.waves)
            used = cpu_seconds(gateway_process) - cpu
            done = [t for t in timings if t.error is None and t.itl is not None]
            tokens = sum(t.tokens for t in done)
            itls = [t.itl * 1000 for t in done if t.itl is not None]
            figures[name] = {
                "tok_s": tokens / wall,
                "errors": len(timings) - len(done),
                "itl_p50_ms": float(np.percentile(itls, 50)) if itls else float("nan"),
                "itl_p99_ms": float(np.percentile(itls, 99)) if itls else float("nan"),
                "cpu_per_1k": used / tokens * 1000 if tokens and name == "gateway" else float("nan"),
                "ttft_p50_ms": float(np.percentile([t.ttft * 1000 for t in done], 50))
                if done
                else float("nan"),
                "tokens_per_event": tokens / via.events if name == "gateway" and via.events else float("nan"),
            }
        await direct.close()
        await via.close()
        gw, base = figures["gateway"], figures["direct"]
        rows.append(
            [
                concurrency,
                base["tok_s"],
                gw["tok_s"],
                gw["tok_s"] / base["tok_s"],
                gw["cpu_per_1k"],
                gw["tokens_per_event"],
                base["ttft_p50_ms"],
                gw["ttft_p50_ms"],
                gw["itl_p50_ms"] - args.itl_ms,
                gw["itl_p99_ms"] - args.itl_ms,
                base["errors"] + gw["errors"],
            ]
        )
        results.append(
            {"concurrency": concurrency, **{f"{n}_{k}": v for n, f in figures.items() for k, v in f.items()}}
        )
        await asyncio.sleep(1)
    return rows, results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--tokens", type=int, default=200, help="output tokens per request")
    parser.add_argument("--itl-ms", type=float, default=10.0, help="the simulated engine's step")
    parser.add_argument("--waves", type=int, default=2, help="requests per stream slot")
    parser.add_argument(
        "--stream-interval",
        type=int,
        default=1,
        help="RAGWAY_MODEL_STREAM_INTERVAL (vLLM's --stream-interval): tokens per message",
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="RAGWAY_WORKERS of the gateway (>1 uses Redis)"
    )
    parser.add_argument(
        "--database",
        choices=["postgresql", "sqlite"],
        default="postgresql",
        help="the gateway's database: PostgreSQL as a replicated deployment runs it (a database of "
        "its own on 127.0.0.1:5432), or the embedded SQLite",
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    install_cleanup()
    console.print(f"[bold]relay ceiling[/] load={machine()['load_at_start']}")
    model = start_model_service(
        max_num_seqs=max(args.concurrency),
        env={
            "RAGWAY_MODEL_ENGINE": "sim",
            "RAGWAY_MODEL_SIM_ITL_MS": str(args.itl_ms),
            "RAGWAY_MODEL_SIM_OUTPUT_TOKENS": str(args.tokens),
            "RAGWAY_MODEL_MAX_WAITING": str(max(args.concurrency)),
            "RAGWAY_MODEL_STREAM_INTERVAL": str(args.stream_interval),
        },
        name="relay-sim",
    )
    work = Path(tempfile.mkdtemp(prefix="ragway-relay-"))
    workers = {"RAGWAY_WORKERS": str(args.workers), "RAGWAY_REDIS_URL": "redis://127.0.0.1:6379/0"}
    gateway = start_gateway(
        "relay-gateway",
        work,
        model.address,
        f"127.0.0.1:{free_port()}",
        database_url=fresh_postgres_database("ragway_relay_bench") if args.database == "postgresql" else None,
        env=workers if args.workers > 1 else None,
    )
    key = make_api_key(gateway.address, gateway.extra["admin_key"])
    gateway_process = psutil.Process(gateway.service.process.pid)
    rows, results = asyncio.run(measure(args, model.address, gateway.address, key, gateway_process))
    print_table(
        f"Relay through one gateway ({args.workers} worker(s), {args.database}; "
        f"engine step {args.itl_ms} ms, stream interval {args.stream_interval}, "
        f"{args.tokens} tokens per request)",
        [
            "streams",
            "direct tok/s",
            "gateway tok/s",
            "gateway/direct",
            "gw CPU s /1k tok",
            "tok / SSE event",
            "TTFT p50 ms direct",
            "TTFT p50 ms gateway",
            "added ITL p50 ms",
            "added ITL p99 ms",
            "errors",
        ],
        rows,
    )
    at_256 = next((r for r in rows if r[0] == 256), None)
    if at_256 is not None:
        print_table(
            "Targets at 256 streams",
            ["figure", "value", "target", "verdict"],
            [
                [
                    "gateway tok/s",
                    at_256[2],
                    f">= {TARGET_TOK_S:,.0f}",
                    verdict(at_256[2], TARGET_TOK_S, True),
                ],
                [
                    "added ITL p99 ms",
                    at_256[9],
                    f"<= {TARGET_ADDED_ITL_MS}",
                    verdict(at_256[9], TARGET_ADDED_ITL_MS, False),
                ],
            ],
        )
    save_json(args.json, {"machine": machine(), "args": vars(args) | {"json": None}, "results": results})


if __name__ == "__main__":
    main()
