"""Start-up benchmark (issue 13): `ragway up` (what `make run` runs) from launch to ready.

    python bench/startup_bench.py                  # one cold start, then --warm warm ones (~4-6 min)
    python bench/startup_bench.py --warm 3 --json bench/results/startup.json

Each start is `ragway up` on free ports with a fresh data folder, timed until the gateway's
/readyz says ready (the model's engine, the retrieval service and the database all up), then
stopped with SIGTERM. "cold" points torch's and vLLM's compile caches (TORCHINDUCTOR_CACHE_DIR,
VLLM_CACHE_ROOT) at empty folders: the first start on a machine where `make install` has
converted the model and decided its dtype. "warm" starts reuse the caches the cold one filled:
every later `make run`. Printed per start: seconds to ready, and from the model service's log the
phases of its engine start (process start to gRPC listening, engine build, vLLM's "init engine"
and its compile/warm-up share), so a regression points at its phase. Target: warm <= 30 s.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from harness import BIN, install_cleanup
from report import machine, print_table, save_json, verdict

from tests.utils.processes import free_port

READY_TIMEOUT = 900.0
# vLLM's own log lines that mark the phases of an engine start, as seconds it reports.
VLLM_PHASES = {
    "init engine": re.compile(r"init engine \(profile, create kv cache, warmup model\) took ([\d.]+) s"),
    "weights": re.compile(r"Loading weights took ([\d.]+) seconds"),
}


def one_start(caches: Path | None) -> dict[str, Any]:
    """`ragway up` once: seconds to ready and the model service's phases."""
    data_dir = Path(tempfile.mkdtemp(prefix="ragway-startup-"))
    port = free_port()
    env = {
        **os.environ,
        "RAGWAY_PORT": str(port),
        "RAGWAY_MODEL_PORT": str(free_port()),
        "RAGWAY_MODEL_METRICS_PORT": str(free_port()),
        "RAGWAY_RETRIEVAL_PORT": str(free_port()),
        "RAGWAY_RETRIEVAL_METRICS_PORT": str(free_port()),
        "RAGWAY_ADMIN_KEY": "rgw_" + secrets.token_urlsafe(32),
    }
    if caches is not None:
        env["TORCHINDUCTOR_CACHE_DIR"] = str(caches / "inductor")
        env["VLLM_CACHE_ROOT"] = str(caches / "vllm")
    url = f"http://127.0.0.1:{port}/readyz"
    started = time.monotonic()
    with (data_dir / "up.log").open("wb") as console:
        up = subprocess.Popen(
            [str(BIN / "ragway"), "up", "--data-dir", str(data_dir)],
            env=env,
            stdout=console,
            stderr=subprocess.STDOUT,
        )
    try:
        ready_after = None
        while time.monotonic() - started < READY_TIMEOUT and up.poll() is None:
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    ready_after = time.monotonic() - started
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
    finally:
        up.terminate()
        try:
            up.wait(90)
        except subprocess.TimeoutExpired:
            up.kill()
    if ready_after is None:
        raise RuntimeError(f"ragway up did not become ready; see {data_dir}/logs and {data_dir}/up.log")
    model_log = (data_dir / "logs" / "model.log").read_text(errors="replace")
    phases = {
        name: float(m.group(1)) if (m := pattern.search(model_log)) else None
        for name, pattern in VLLM_PHASES.items()
    }
    return {"ready_s": ready_after, **phases, "load1": os.getloadavg()[0], "logs": str(data_dir / "logs")}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--warm", type=int, default=2, help="warm starts after the cold one")
    parser.add_argument("--no-cold", action="store_true", help="warm starts only (the caches as they are)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    results: dict[str, Any] = {"machine": machine(), "starts": []}
    with tempfile.TemporaryDirectory(prefix="ragway-startup-caches-") as tmp:
        caches = Path(tmp)
        kinds = ([] if args.no_cold else ["cold"]) + ["warm"] * args.warm
        for kind in kinds:
            # The cold start fills the empty caches that the warm ones after it then reuse.
            run = one_start(caches if not args.no_cold else None)
            run["kind"] = kind
            results["starts"].append(run)
            print(f"{kind}: ready in {run['ready_s']:.1f} s (load {run['load1']:.2f})", flush=True)
    rows = [
        [r["kind"], f"{r['ready_s']:.1f}", r["init engine"], r["weights"], f"{r['load1']:.2f}"]
        for r in results["starts"]
    ]
    print_table(
        "ragway up: launch to /readyz ready",
        ["start", "ready s", "vLLM init engine s", "weights s", "load1"],
        rows,
    )
    warm = [r["ready_s"] for r in results["starts"] if r["kind"] == "warm"]
    if warm:
        best = min(warm)
        print(f"warm start: best {best:.1f} s, target <= 30 s: {verdict(best, 30.0, higher_is_better=False)}")
    save_json(args.json, results)


if __name__ == "__main__":
    install_cleanup()
    sys.exit(main())
