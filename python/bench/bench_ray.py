"""Latency of a sharded check (refrain.ray) against one index of the same
items, on a local Ray instance: N synthesized 30 s songs, built once as one
index and once as SHARDS shards, then the same 10 s clips checked one at a
time through both. Every sharded verdict is compared with the single one
(the run fails on a difference).

    python python/bench/bench_ray.py [--items 24] [--shards 3] [--n 50] [--cpus 2]
"""

import argparse
import os
import sys
import tempfile
import time

# a private local instance: no token file written to ~/.ray (Ray 2.52+
# writes one otherwise); set RAY_AUTH_MODE to choose
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
import ray  # noqa: E402

import refrain  # noqa: E402
import refrain.ray as rr  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
from conftest import RATE, tune  # noqa: E402  (the tests' synthesizer)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=24)
    ap.add_argument("--shards", type=int, default=3)
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--cpus", type=int, default=2)
    a = ap.parse_args()
    ray.init(num_cpus=a.cpus, logging_level="warning", include_dashboard=False)
    items = [(f"train/song{s}.wav", tune(s), RATE) for s in range(a.items)]
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        b = refrain.IndexBuilder()
        for it in items:
            b.add(*it)
        single = b.build(os.path.join(d, "one")).auditor()
        one_s = time.perf_counter() - t
        t = time.perf_counter()
        layout = rr.build_shards(items, a.shards, os.path.join(d, "shards"))
        shards_s = time.perf_counter() - t
        sharded = rr.ShardedAuditor.open(layout, num_cpus=a.cpus / (a.shards + 1))
        clips = [tune(i % a.items if i % 2 else 1000 + i, seconds=10, start_s=5) for i in range(a.n)]
        for x in clips[:3]:  # warm-up
            sharded.check(x, RATE)
            single.check(x, RATE)
        ts, to = [], []
        for x in clips:
            t = time.perf_counter()
            v = sharded.check(x, RATE)
            ts.append((time.perf_counter() - t) * 1e3)
            t = time.perf_counter()
            w = single.check(x, RATE)
            to.append((time.perf_counter() - t) * 1e3)
            if v.to_json() != w.to_json():
                raise SystemExit(f"sharded and single verdicts differ:\n{v}\n{w}")
    print(f"{a.items} items of 30 s, {a.shards} shards, {a.n} clips of 10 s, ray.init(num_cpus={a.cpus})")
    print(f"build: one index {one_s:.1f} s, {a.shards} shards in Ray tasks {shards_s:.1f} s")
    print(f"sharded check: p50 {pct(ts, 50):.1f} ms, p99 {pct(ts, 99):.1f} ms")
    print(f"single check:  p50 {pct(to, 50):.1f} ms, p99 {pct(to, 99):.1f} ms")
    print("every sharded verdict equals the single one")


if __name__ == "__main__":
    main()
