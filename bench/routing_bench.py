"""Routing benchmark (issue 18): what the model table adds to a request, and what a failover adds.

    flock /tmp/ragway-engine.lock python bench/routing_bench.py        # ~4-6 min on 2 cores
    flock /tmp/ragway-engine.lock python bench/routing_bench.py --pairs 64 --json out/routing.json

Part 1, routing. Gateways on the same model service A: "one model" has no models file (one
model, named by its service, as `make run` serves it); "two models" reads a model table of two
models on A and is asked for the second one by its alias, so every request resolves through the
table. Paired one-token streamed chat requests, which path goes first alternating, distinct prompts:
the median of the per-pair TTFT differences is what routing costs (target <= 1 ms). A control pair,
"one model" against a second gateway configured the same, shows what two gateway processes differ
by when nothing differs: the noise floor of that figure.

Part 2, a failover. Model service B admits one request at a time (MAX_NUM_SEQS 1, MAX_WAITING 0)
and is kept busy by a long generation sent to it directly, so it refuses every gateway request with
RESOURCE_EXHAUSTED, as a full replica does; a third gateway's table lists the model on [B, A]. Its
replica picks go to B first (B is first and both look idle to the gateway), so each request is
refused by B and retried on A before its first token; the gateway's ragway_gateway_model_retries
counter proves it. Paired against "one model" (A directly): p50 TTFT retried vs direct, and the
median per-pair difference. Two engines run at once here (B mostly idles on its one request).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import grpc
import httpx
import yaml
from gateway_bench import ViaGateway
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
from stats import paired_run, summary_table

from ragway.v1 import model_pb2, model_pb2_grpc

ROUTING_TARGET_MS = 1.0


def metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(float(v) for v in re.findall(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE))


def write_table(path: Path, models: list[dict[str, Any]]) -> dict[str, str]:
    path.write_text(yaml.safe_dump({"models": models}))
    return {"RAGWAY_MODELS_FILE": str(path)}


async def keep_busy(address: str, stop: asyncio.Event) -> None:
    """One endless generation on B, straight over gRPC, so B's only slot is always taken."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = model_pb2_grpc.ModelServiceStub(channel)
        while not stop.is_set():
            request = model_pb2.GenerateRequest(
                text="Count to one million:",
                sampling=model_pb2.SamplingParams(max_tokens=2000, ignore_eos=True),
            )
            call = stub.Generate(request)
            try:
                async for _ in call:
                    if stop.is_set():
                        call.cancel()
                        break
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.1)


async def main_async(args: argparse.Namespace) -> None:
    info = machine()
    console.print(f"[bold]routing bench[/bold] {info}")
    work = Path(tempfile.mkdtemp(prefix="ragway-routing-"))
    nowhere = "127.0.0.1:1"  # chat needs no retrieval service
    a = start_model_service()
    b = start_model_service(
        max_num_seqs=1, kv_cache_gib=1, env={"RAGWAY_MODEL_MAX_WAITING": "0"}, name="model-b"
    )
    one = start_gateway("gw-one", work / "one", a.address, nowhere)
    control = start_gateway("gw-control", work / "control", a.address, nowhere)
    two_env = write_table(
        work / "two.yaml",
        [
            {"name": MODEL_NAME, "aliases": ["smol"], "replicas": [a.address]},
            {"name": "smol-2", "aliases": ["smol-2-alias"], "replicas": [a.address]},
        ],
    )
    two = start_gateway("gw-two", work / "two", a.address, nowhere, env=two_env)
    failover_env = write_table(
        work / "failover.yaml", [{"name": MODEL_NAME, "replicas": [b.address, a.address]}]
    )
    failover = start_gateway("gw-failover", work / "failover", a.address, nowhere, env=failover_env)
    stop = asyncio.Event()
    busy: asyncio.Task[None] | None = None
    senders = {
        "one model": ViaGateway(one.address, make_api_key(one.address, one.extra["admin_key"])),
        "control": ViaGateway(control.address, make_api_key(control.address, control.extra["admin_key"])),
        "two models": ViaGateway(
            two.address, make_api_key(two.address, two.extra["admin_key"]), model="smol-2-alias"
        ),
        "failover": ViaGateway(failover.address, make_api_key(failover.address, failover.extra["admin_key"])),
    }
    results: dict[str, Any] = {"machine": info}
    try:
        for target in senders.values():  # warm: connections, the prefix cache of the template
            for k in range(4):
                await target.send(f"Warm up {k}.", 0, 1)

        # Offsets of equal digit counts: the prompts of both sides of a pair are the same length.
        def send(target: ViaGateway, offset: int) -> Any:
            return lambda k: target.send(f"Say hi to number {offset + k}.", 0, 1)

        routing = await paired_run(
            ("one model", send(senders["one model"], 10_000)),
            ("two models", send(senders["two models"], 20_000)),
            args.pairs,
        )
        noise = await paired_run(
            ("one model", send(senders["one model"], 30_000)),
            ("control", send(senders["control"], 40_000)),
            args.pairs,
        )
        busy = asyncio.create_task(keep_busy(b.address, stop))
        await asyncio.sleep(2)  # B's one slot is taken before the first failover request
        retries_before = metric(failover.address, "ragway_gateway_model_retries_total")
        failing_over = await paired_run(
            ("direct", send(senders["one model"], 50_000)),
            ("retried", send(senders["failover"], 60_000)),
            args.pairs,
        )
        retried = metric(failover.address, "ragway_gateway_model_retries_total") - retries_before
    finally:
        stop.set()
        if busy is not None:
            await busy
        for target in senders.values():
            await target.close()
    summary_table("routing: one model vs two models routed (concurrency 1, 1 token)", routing)
    summary_table("control: two gateways configured alike (concurrency 1, 1 token)", noise)
    summary_table(
        "failover: direct on A vs refused by B and retried on A (concurrency 1, 1 token)", failing_over
    )
    routing_delta = routing[1].paired_ttft_delta_p50_ms
    noise_delta = noise[1].paired_ttft_delta_p50_ms
    failover_delta = failing_over[1].paired_ttft_delta_p50_ms
    ratio = failing_over[1].ttft_p50_ms / failing_over[0].ttft_p50_ms
    rows = [
        [
            "routing overhead, paired TTFT p50 delta (ms)",
            f"{routing_delta:.2f}",
            verdict(routing_delta, ROUTING_TARGET_MS, False),
        ],
        ["control: alike gateways, paired TTFT p50 delta (ms)", f"{noise_delta:.2f}", ""],
        ["failover: retried requests / pairs", f"{retried:.0f} / {args.pairs}", ""],
        ["failover added latency, paired TTFT p50 delta (ms)", f"{failover_delta:.2f}", ""],
        ["TTFT p50 retried / direct", f"{ratio:.2f}x", ""],
    ]
    print_table("routing and failover figures", ["figure", "value", "verdict"], rows)
    results.update(
        routing=[asdict(s) for s in routing],
        control=[asdict(s) for s in noise],
        failover=[asdict(s) for s in failing_over],
        retried=retried,
        load_at_end=os.getloadavg(),
    )
    save_json(args.json, results)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=int, default=48, help="paired requests per comparison")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    add_engine_options(parser)
    args = parser.parse_args()
    apply_engine_options(args)
    return args


if __name__ == "__main__":
    install_cleanup()
    asyncio.run(main_async(parse_args()))
