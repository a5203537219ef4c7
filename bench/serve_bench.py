"""The full stack against `vllm serve`, measured by vLLM's own benchmark client (issue 13).

    python bench/serve_bench.py                                  # defaults, ~6-8 min on 2 cores
    python bench/serve_bench.py --requests 32 --requests-c1 4 --json bench/results/serve.json

Two targets on the same engine arguments and dtype (dtype=auto: the probe's cached choice):
  vllm    -- `python -m vllm.entrypoints.openai.api_server` (vLLM's OpenAI server, no auth);
  ragway  -- the gateway (a real API key: auth, credit reservation, metering, the usage record)
             in front of the model service over gRPC.
One target runs at a time (this machine has 2 cores). Each is driven by `vllm.benchmarks.serve`
-- the client behind `vllm bench serve` -- with the random dataset, 128 tokens in and 128 out,
`ignore_eos` so every request decodes the same length, on `/v1/chat/completions` and on
`/v1/completions`, at concurrency 32 and 1. Printed: output tok/s and TTFT p50 per target, and
ragway/vllm throughput ratios (target >= 1.0) and the TTFT p50 difference at concurrency 1
(target <= +5 ms). vLLM's client counts the first SSE event with content as the first token; the
gateway sends its first chunk with the first generated token, so TTFT is comparable on both APIs.

With `--profile DIR`, py-spy samples the gateway and the model service's gRPC process (not vLLM's
EngineCore) during ragway's first high-concurrency run and writes each one's collapsed stacks and
its top functions by own time to DIR: what the serving processes spend per token beside the engine.

The random prompts come from the same seed for both targets, so both see the same token ids; the
prefix cache is warm for neither (the warm-up requests use other prompts).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext, redirect_stdout
from pathlib import Path
from typing import Any

from harness import (
    LOG_DIR,
    MODEL_DIR,
    MODEL_NAME,
    add_engine_options,
    apply_engine_options,
    install_cleanup,
    make_api_key,
    start_gateway,
    start_model_service,
    start_vllm_openai_server,
)
from report import machine, print_table, save_json, verdict

APIS = {
    "chat": ("openai-chat", "/v1/chat/completions"),
    "completions": ("openai", "/v1/completions"),
}


def client_args(base_url: str, api: str, requests: int, concurrency: int, args: argparse.Namespace) -> Any:
    """The argument namespace `vllm bench serve` would parse for this run."""
    from vllm.benchmarks.serve import add_cli_args
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    backend, endpoint = APIS[api]
    parser = FlexibleArgumentParser()
    add_cli_args(parser)
    argv = [
        "--backend", backend,
        "--base-url", base_url,
        "--endpoint", endpoint,
        "--model", MODEL_NAME,
        "--tokenizer", str(MODEL_DIR),
        "--dataset-name", "random",
        "--random-input-len", str(args.input_len),
        "--random-output-len", str(args.output_len),
        "--num-prompts", str(requests),
        "--max-concurrency", str(concurrency),
        "--num-warmups", str(min(concurrency, args.warmups)),
        "--ignore-eos",
        "--seed", str(args.seed),
        "--temperature", "0",
        "--percentile-metrics", "ttft,tpot,itl,e2el",
        "--disable-tqdm",
    ]  # fmt: skip
    return parser.parse_args(argv)


@contextmanager
def profiled(pids: dict[str, int], out: Path) -> Iterator[None]:
    """py-spy on each process while the block runs; collapsed stacks and a top-25 by own time."""
    py_spy = Path(sys.executable).parent / "py-spy"
    out.mkdir(parents=True, exist_ok=True)
    recorders = {
        name: subprocess.Popen(
            [str(py_spy), "record", "--pid", str(pid), "--rate", "50", "--format", "raw",
             "--output", str(out / f"{name}.folded"), "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )
        for name, pid in pids.items()
    }  # fmt: skip
    try:
        yield
    finally:
        for name, recorder in recorders.items():
            recorder.send_signal(2)  # SIGINT: py-spy writes what it sampled and exits
            recorder.wait(60)
            folded = out / f"{name}.folded"
            for view, top in (("own", own_time(folded)), ("inclusive", inclusive_time(folded, 40))):
                lines = [f"{share:6.1%}  {fn}" for fn, share in top]
                (out / f"{name}.{view}.txt").write_text("\n".join(lines) + "\n")
            print(f"\npy-spy {name}: top functions by own time (of all samples); more in {out}")
            for fn, share in own_time(folded, 12):
                print(f"  {share:6.1%}  {fn}")


def own_time(folded: Path, top: int = 25) -> list[tuple[str, float]]:
    """Each leaf frame's share of the samples, from py-spy's collapsed stacks ("a;b;c count")."""
    return _shares(folded, lambda frames: frames[-1:], top)


def inclusive_time(folded: Path, top: int = 25) -> list[tuple[str, float]]:
    """Each frame's share of the samples whose stack holds it (once per stack): where the time
    goes below a function, e.g. all of one request's serialization."""
    return _shares(folded, lambda frames: set(frames), top)


def _shares(
    folded: Path, frames_of: Callable[[list[str]], Iterable[str]], top: int
) -> list[tuple[str, float]]:
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in folded.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        total += int(n)
        for frame in frames_of(stack.split(";")):
            counts[frame] += int(n)
    return [(fn, n / (total or 1)) for fn, n in counts.most_common(top)]


def drive(
    base_url: str,
    api_key: str | None,
    args: argparse.Namespace,
    profile: Callable[[], Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """Every (API, concurrency) run against one target; vLLM's result dicts by run name.
    `profile()`, when given, is a context manager wrapped around the first high-concurrency run."""
    from vllm.benchmarks.serve import main as bench_serve

    if api_key:  # vLLM's client sends OPENAI_API_KEY as the bearer token
        os.environ["OPENAI_API_KEY"] = api_key
    else:
        os.environ.pop("OPENAI_API_KEY", None)
    results: dict[str, dict[str, Any]] = {}
    client_log = LOG_DIR / f"vllm-bench-client-{os.getpid()}.log"
    client_log.parent.mkdir(parents=True, exist_ok=True)
    print(f"vLLM's client prints its own tables (and errors) to {client_log}")
    for api in args.apis:
        for concurrency, requests in ((args.concurrency, args.requests), (1, args.requests_c1)):
            if requests <= 0:
                continue
            run = client_args(base_url, api, requests, concurrency, args)
            sampled = profile() if profile is not None and concurrency > 1 else nullcontext()
            if concurrency > 1:
                profile = None
            with sampled, client_log.open("a") as log, redirect_stdout(log):
                full = bench_serve(run)
            # Per-request lists (texts, TTFTs, errors) stay out of the report; the first error is kept.
            result = {k: v for k, v in full.items() if not isinstance(v, list)}
            result["first_error"] = next((e for e in full.get("errors", []) if e), None)
            result["load1"] = os.getloadavg()[0]
            results[f"{api} c{concurrency}"] = result
    return results


def run_vllm(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    server = start_vllm_openai_server(args.max_num_seqs, args.kv_cache_gib)
    try:
        return drive(server.address, None, args)
    finally:
        server.stop()


def run_ragway(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    data_dir = Path(tempfile.mkdtemp(prefix="ragway-serve-bench-"))
    model = start_model_service(args.max_num_seqs, args.kv_cache_gib)
    try:
        # Plain generation never reaches the retrieval service: the gateway is given no live one.
        gateway = start_gateway("gateway", data_dir, model.address, "127.0.0.1:9")
        try:
            key = make_api_key(gateway.address, gateway.extra["admin_key"])
            pids = {"gateway": gateway.service.process.pid, "model-service": model.service.process.pid}
            profile = (lambda: profiled(pids, args.profile)) if args.profile else None
            return drive(gateway.address, key, args, profile)
        finally:
            gateway.stop()
    finally:
        model.stop()


def report(vllm: dict[str, dict[str, Any]], ragway: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Both targets' runs side by side; ratios where both ran (one target alone: none)."""
    rows, ratios = [], []
    for run in dict.fromkeys([*vllm, *ragway]):
        targets = (("vllm", vllm), ("ragway", ragway))
        measured = [(name, target[run]) for name, target in targets if run in target]
        for name, r in measured:
            rows.append(
                [
                    run,
                    name,
                    f"{r['completed']} ({r.get('failed', 0)} failed)",
                    f"{r['output_throughput']:.1f}",
                    f"{r['median_ttft_ms']:.1f}",
                    f"{r['p99_ttft_ms']:.1f}",
                    f"{r['median_tpot_ms']:.2f}",
                    f"{r['load1']:.2f}",
                ]
            )
        if len(measured) == 2:
            base, ours = vllm[run], ragway[run]
            ratio = ours["output_throughput"] / base["output_throughput"]
            ttft_delta = ours["median_ttft_ms"] - base["median_ttft_ms"]
            ratios.append({"run": run, "throughput_ratio": ratio, "ttft_p50_delta_ms": ttft_delta})
    print_table(
        "vLLM's benchmark client, random 128 in / 128 out, ignore_eos",
        ["run", "target", "done", "out tok/s", "TTFT p50 ms", "TTFT p99 ms", "TPOT p50 ms", "load1"],
        rows,
    )
    ratio_rows = []
    for r in ratios:
        ttft = f"{r['ttft_p50_delta_ms']:+.1f} ms"
        if r["run"].endswith(" c1"):
            ttft += " " + verdict(r["ttft_p50_delta_ms"], 5.0, higher_is_better=False)
        throughput = f"{r['throughput_ratio']:.3f}x " + verdict(r["throughput_ratio"], 1.0, True)
        ratio_rows.append([r["run"], throughput, ttft])
    if ratio_rows:
        print_table("ragway / vllm (same run)", ["run", "output tok/s", "TTFT p50"], ratio_rows)
    return ratios


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--apis", nargs="+", choices=sorted(APIS), default=["chat", "completions"])
    parser.add_argument(
        "--targets", nargs="+", choices=["vllm", "ragway"], default=["vllm", "ragway"],
        help="one target alone (e.g. to profile ragway) prints no ratios",
    )  # fmt: skip
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--requests", type=int, default=64, help="requests at --concurrency")
    parser.add_argument("--requests-c1", type=int, default=8, help="requests at concurrency 1 (0 skips)")
    parser.add_argument("--input-len", type=int, default=128)
    parser.add_argument("--output-len", type=int, default=128)
    parser.add_argument("--warmups", type=int, default=4, help="vLLM client warm-up requests per run")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--max-num-seqs", type=int, default=64)
    parser.add_argument("--kv-cache-gib", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--profile", type=Path, default=None, help="py-spy the ragway processes into DIR")
    add_engine_options(parser)
    return parser.parse_args()


async def main_async(args: argparse.Namespace) -> None:
    apply_engine_options(args)
    start = machine()
    # vLLM's client runs its own event loop per run: keep it off this one.
    vllm = await asyncio.to_thread(run_vllm, args) if "vllm" in args.targets else {}
    ragway = await asyncio.to_thread(run_ragway, args) if "ragway" in args.targets else {}
    ratios = report(vllm, ragway)
    save_json(args.json, {"machine": start, "vllm": vllm, "ragway": ragway, "ratios": ratios})


if __name__ == "__main__":
    install_cleanup()
    asyncio.run(main_async(parse_args()))
