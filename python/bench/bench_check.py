"""Latency of `auditor.check` from Python: a 10 s clip at 32 kHz against an
index, one call at a time (the library then uses one core per call).

    python python/bench/bench_check.py [INDEX_DIR] [--n 200]

INDEX_DIR defaults to the ≈ 50-hour index that `cargo bench --bench audit`
builds and caches (target/bench-data/index-1000). Reports p50/p99 of the
Python call (wall time around `check`, array conversion and verdict object
included) and of the time spent inside the library (`Verdict.elapsed_ms`,
the same `Auditor::check_samples` call the Rust benchmark times); their
difference is what Python adds.
"""

import argparse
import os
import sys
import time

import numpy as np

import refrain

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "examples"))
from generation_loop import tune  # noqa: E402  (the example's synthesizer)

RATE = 32_000


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "index",
        nargs="?",
        default=os.path.join(HERE, "..", "..", "target", "bench-data", "index-1000"),
    )
    ap.add_argument("--n", type=int, default=200)
    args = ap.parse_args()
    index = refrain.Index.open(args.index)
    auditor = index.auditor()
    clips = [tune(500 + i, 10.0, rate=RATE, start_s=5.0) for i in range(20)]
    for c in clips[:5]:  # warm up the per-thread buffers
        auditor.check(c, RATE)
    wall, inside = [], []
    for k in range(args.n):
        x = clips[k % len(clips)]
        t = time.perf_counter()
        v = auditor.check(x, RATE)
        wall.append((time.perf_counter() - t) * 1e3)
        inside.append(v.elapsed_ms)
    over = [w - i for w, i in zip(wall, inside)]
    print(
        f"index {len(index)} items, {index.hours:.1f} h; {args.n} checks of a 10 s clip at 32 kHz (float32 mono)\n"
        f"python check: p50 {pct(wall, 50):.1f} ms, p99 {pct(wall, 99):.1f} ms\n"
        f"inside the library: p50 {pct(inside, 50):.1f} ms, p99 {pct(inside, 99):.1f} ms\n"
        f"added by python: p50 {pct(over, 50):.3f} ms, p95 {pct(over, 95):.3f} ms, p99 {pct(over, 99):.3f} ms, "
        f"max {max(over):.3f} ms; calls adding over 1 ms: {sum(o > 1.0 for o in over)}"
    )


if __name__ == "__main__":
    main()
