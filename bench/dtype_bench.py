"""dtype benchmark (issue 13): is `dtype=auto`'s choice the fastest correct dtype on this CPU?

    flock /tmp/ragway-engine.lock python bench/dtype_bench.py          # ~5-8 min on 2 cores

Runs the start-up probe afresh (ragway.model.dtype.probe: each candidate dtype in its own engine
process, one after another, never two at once; every candidate, also those the start-up probe
skips for lack of native support on this CPU), ignoring any cached decision, and prints per dtype
its correctness against float32, its 128-token prefill and its throughput at 32 concurrent greedy
streams; then the ratios, all from this one run: the chosen dtype's throughput over the best
correct dtype's (target >= 0.95; 1.0 by construction unless the rule is broken) and every dtype's
throughput over the chosen one's. It also compares with the decision cached beside the model, if
any, so a stale cache shows.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ragway.model.config import ModelSettings
from ragway.model.dtype import cache_file, load_cached, probe, probe_key
from ragway.model.weights import resolve_model

FIELDS = ("dtype", "correct", "prefill_ms", "tokens_per_s", "detail", "error")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eager", action="store_true", help="probe without torch.compile")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    settings = ModelSettings()
    model_dir = Path(resolve_model(settings))
    enforce_eager = args.eager or settings.enforce_eager
    choice = probe(model_dir, enforce_eager, every=True)  # non-native dtypes too: is skipping them right?
    correct = [m for m in choice.measurements if m.correct and not m.error]
    best = max(correct, key=lambda m: m.tokens_per_s)
    chosen = next(m for m in choice.measurements if m.dtype == choice.dtype)

    print(f"{'dtype':<10} {'correct':<8} {'prefill 128 ms':>15} {'tok/s @32':>10}  detail")
    for m in choice.measurements:
        verdict = "error" if m.error else ("yes" if m.correct else "NO")
        figures = f"{m.prefill_ms:>15.0f} {m.tokens_per_s:>10.0f}"
        print(f"{m.dtype:<10} {verdict:<8} {figures}  {m.detail or m.error}")
    print(f"\nchosen: {choice.dtype}  ({choice.reason})")
    print(f"chosen / best correct throughput at 32 streams: {chosen.tokens_per_s / best.tokens_per_s:.2f}")
    for m in choice.measurements:
        if not m.error and m.dtype != chosen.dtype:
            print(f"{m.dtype} / chosen throughput: {m.tokens_per_s / chosen.tokens_per_s:.2f}")
    cached = load_cached(cache_file(settings.cache, model_dir), probe_key(model_dir, enforce_eager))
    if cached is not None and cached.dtype != choice.dtype:
        print(f"note: the cached decision says {cached.dtype}; this run says {choice.dtype}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        figures = {
            "chosen": choice.dtype,
            "ratio_chosen_over_best_correct": chosen.tokens_per_s / best.tokens_per_s,
            "dtypes": [{k: getattr(m, k) for k in FIELDS} for m in choice.measurements],
        }
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
