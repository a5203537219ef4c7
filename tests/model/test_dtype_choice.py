"""dtype=auto on the CPU: the decision rule and its cache (pure logic, no engine).

The probe runner is replaced by canned measurements here; the real probe runs in
test_dtype_probe.py against the real engine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragway.core.errors import FailedPrecondition
from ragway.model import dtype as dtypes
from ragway.model.dtype import Measurement, choose_dtype, compare, decide, judge

PARIS = [504, 3575, 282, 4649, 314, 7042, 30, 2]
REAL_X86_FLAGS = dtypes.x86_flags  # before the fixture below replaces it
EVERY_NATIVE = {"sse2", "avx2", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_fp16"}


@pytest.fixture(autouse=True)
def _a_cpu_with_every_dtype(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every candidate is probed unless a test says which CPU it is on: the machine's own flags
    would decide how many runs the cache tests count."""
    monkeypatch.setattr(dtypes, "x86_flags", lambda: EVERY_NATIVE)


def _reference(outputs: list[list[int]]) -> Measurement:
    # float32 is sure of every token except token 3 of the first prompt (a near tie with 999).
    logprobs = [[{tok: -0.01, 999: -5.0} for tok in out] for out in outputs]
    logprobs[0][2] = {outputs[0][2]: -0.6, 999: -0.9}
    return Measurement("float32", outputs=outputs, logprobs=logprobs, tokens_per_s=437, prefill_ms=144)


def _candidate(name: str, outputs: list[list[int]], speed: float) -> Measurement:
    return Measurement(name, outputs=outputs, tokens_per_s=speed, prefill_ms=10)


def test_same_greedy_tokens_is_correct() -> None:
    ok, why = compare(_reference([PARIS, [1, 2]]), _candidate("float16", [PARIS, [1, 2]], 79))
    assert ok and "2/2 prompts" in why


def test_a_divergence_at_a_near_tie_is_rounding_not_a_bug() -> None:
    other = [*PARIS[:2], 999, 5, 6]
    ok, why = compare(_reference([PARIS, [1, 2]]), _candidate("bfloat16", [other, [1, 2]], 711))
    assert ok and "1/2 prompts" in why and "near tie" in why


def test_near_ties_on_most_prompts_mean_the_dtype_drifts() -> None:
    """bfloat16 on SmolLM2 leaves float32's tokens at a close call on every probe prompt."""
    ref = _reference([PARIS, [1, 2, 3], [4, 5, 6]])
    for n in (1, 2):
        ref.logprobs[n][1] = {ref.outputs[n][1]: -0.6, 999: -0.8}
    flipped = [[*PARIS[:2], 999], [1, 999], [4, 999]]
    ok, why = compare(ref, _candidate("bfloat16", flipped, 711))
    assert not ok and why.startswith("drifts from float32: only 0/3 prompts match exactly")


def test_a_confident_divergence_is_wrong() -> None:
    garbage = [43, 22, 7, 7, 7]
    ok, why = compare(_reference([PARIS]), _candidate("bfloat16", [garbage], 711))
    assert not ok
    assert "prompt 1 differs at token 1" in why and "outside float32's top 5" in why


def test_an_early_end_of_sequence_is_a_difference() -> None:
    ok, _ = compare(_reference([PARIS]), _candidate("bfloat16", [[*PARIS[:3], 2]], 711))
    assert not ok


def test_auto_never_chooses_a_wrong_dtype_however_fast() -> None:
    """The issue's rule: bf16 is the fastest here but wrong, so float32 wins over slow float16."""
    measurements = [
        _reference([PARIS]),
        _candidate("bfloat16", [[43, 22, 7]], 711),
        _candidate("float16", [PARIS], 79),
    ]
    judge(measurements)
    chosen, reason = decide(measurements)
    assert chosen == "float32"
    assert "bfloat16 WRONG" in reason and "float16 correct" in reason


def test_the_fastest_correct_dtype_wins() -> None:
    measurements = [
        _reference([PARIS]),
        _candidate("bfloat16", [PARIS], 711),
        _candidate("float16", [PARIS], 79),
    ]
    judge(measurements)
    assert decide(measurements)[0] == "bfloat16"


def test_a_failed_candidate_is_skipped_and_a_failed_reference_stops_the_probe() -> None:
    measurements = [_reference([PARIS]), Measurement("float16", error="exit 1: boom")]
    judge(measurements)
    chosen, reason = decide(measurements)
    assert chosen == "float32" and "float16 failed (exit 1: boom)" in reason
    with pytest.raises(FailedPrecondition):
        judge([Measurement("float32", error="exit 1"), _candidate("float16", [PARIS], 79)])


def _model_dir(tmp_path: Path) -> Path:
    model = tmp_path / "models" / "tiny"
    model.mkdir(parents=True)
    (model / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}')
    (model / "model.safetensors").write_bytes(b"weights")
    return model


class CountingRunner:
    """A stand-in for the per-dtype engine subprocess: canned outputs, counts its calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, model_dir: Path, dtype: str, enforce_eager: bool) -> Measurement:
        self.calls.append(dtype)
        if dtype == "float32":
            return _reference([PARIS])
        return _candidate(dtype, [PARIS] if dtype == "float16" else [[43]], {"bfloat16": 711}.get(dtype, 79))


def test_the_decision_is_cached_beside_the_model_and_reused(tmp_path: Path) -> None:
    model, runner = _model_dir(tmp_path), CountingRunner()
    first = choose_dtype("auto", "cpu", model, tmp_path / "cache", False, runner)
    assert (first.dtype, first.source) == ("float32", "probe")
    assert runner.calls == ["float32", "bfloat16", "float16"]
    [cached] = json.loads((tmp_path / "cache" / "tiny.dtype.json").read_text())["entries"].values()
    assert cached["dtype"] == "float32" and cached["key"]["model"] == str(model.resolve())

    again = choose_dtype("auto", "cpu", model, tmp_path / "cache", False, runner)
    assert (again.dtype, again.source, again.reason) == ("float32", "probe-cache", first.reason)
    assert [m.correct for m in again.measurements] == [True, False, True]
    assert len(runner.calls) == 3


def test_a_cached_probe_is_judged_by_the_current_rule(tmp_path: Path) -> None:
    model, runner = _model_dir(tmp_path), CountingRunner()
    choose_dtype("auto", "cpu", model, tmp_path, False, runner)
    path = tmp_path / "tiny.dtype.json"
    stale = json.loads(path.read_text())
    [entry] = stale["entries"].values()
    entry["dtype"], entry["reason"] = "bfloat16", "an older rule's verdict"
    path.write_text(json.dumps(stale))
    again = choose_dtype("auto", "cpu", model, tmp_path, False, runner)
    assert (again.dtype, again.source) == ("float32", "probe-cache") and "WRONG" in again.reason
    assert len(runner.calls) == 3


def test_a_changed_model_or_cpu_probes_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, runner = _model_dir(tmp_path), CountingRunner()
    choose_dtype("auto", "cpu", model, tmp_path, False, runner)
    (model / "config.json").write_text('{"architectures": ["LlamaForCausalLM"], "changed": 1}')
    choose_dtype("auto", "cpu", model, tmp_path, False, runner)
    assert len(runner.calls) == 6
    monkeypatch.setattr(dtypes, "cpu_signature", lambda: "another CPU")
    choose_dtype("auto", "cpu", model, tmp_path, False, runner)
    assert len(runner.calls) == 9
    choose_dtype("auto", "cpu", model, tmp_path, True, runner)  # eager runs other kernels
    assert len(runner.calls) == 12
    # Both kernel choices stay cached side by side: alternating starts probe no more.
    choose_dtype("auto", "cpu", model, tmp_path, False, runner)
    choose_dtype("auto", "cpu", model, tmp_path, True, runner)
    assert len(runner.calls) == 12


def test_an_explicit_setting_and_gpus_skip_the_probe(tmp_path: Path) -> None:
    model, runner = _model_dir(tmp_path), CountingRunner()
    explicit = choose_dtype("bfloat16", "cpu", model, tmp_path, False, runner)
    assert (explicit.dtype, explicit.source) == ("bfloat16", "setting")
    gpu = choose_dtype("auto", "cuda", model, tmp_path, False, runner)
    assert (gpu.dtype, gpu.source) == ("auto", "engine")
    assert runner.calls == []


def test_the_cpu_signature_names_the_isa() -> None:
    signature = dtypes.cpu_signature()
    if Path("/proc/cpuinfo").exists():
        assert "flags:" in signature or "Features:" in signature


@pytest.mark.parametrize(
    ("flags", "probed"),
    [
        ({"sse2", "avx2", "fma"}, ["float32"]),  # AVX2 only: both half-precision dtypes emulated
        ({"sse2", "avx512f", "avx512_bf16"}, ["float32", "bfloat16"]),  # this project's EPYCs
        ({"sse2", "avx512_fp16", "amx_bf16"}, ["float32", "bfloat16", "float16"]),  # Sapphire Rapids
        (None, ["float32", "bfloat16", "float16"]),  # not x86: no rule, every candidate
    ],
)
def test_only_dtypes_the_cpu_computes_natively_are_probed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flags: set[str] | None, probed: list[str]
) -> None:
    monkeypatch.setattr(dtypes, "x86_flags", lambda: flags)
    model, runner = _model_dir(tmp_path), CountingRunner()
    choice = choose_dtype("auto", "cpu", model, tmp_path / "cache", False, runner)
    assert runner.calls == probed
    skipped = [d for d in ("bfloat16", "float16") if d not in probed]
    for dtype in skipped:
        assert f"{dtype} not probed (no native {dtype} on this CPU" in choice.reason
    # Skipped candidates are cached as such and never chosen.
    again = choose_dtype("auto", "cpu", model, tmp_path / "cache", False, runner)
    assert again.source == "probe-cache" and runner.calls == probed
    assert again.dtype == choice.dtype == "float32"
    assert [m.dtype for m in again.measurements if m.skipped] == skipped


def test_the_machines_flags_are_read_from_cpuinfo() -> None:
    flags = REAL_X86_FLAGS()
    lines = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    x86 = next((line for line in lines if line.startswith("flags")), None)
    assert flags == (set(x86.partition(":")[2].split()) if x86 else None)


def test_the_benchmark_probes_every_candidate_whatever_the_cpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dtypes, "x86_flags", lambda: {"sse2", "avx2"})
    runner = CountingRunner()
    choice = dtypes.probe(_model_dir(tmp_path), False, runner, every=True)
    assert runner.calls == ["float32", "bfloat16", "float16"]
    assert "not probed" not in choice.reason
