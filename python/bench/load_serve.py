"""Load test of `refrain serve`: C concurrent clients POST 10 s clips (raw
float32 PCM at 32 kHz) for a bounded time and count, against 127.0.0.1 only.

    refrain serve --index INDEX_DIR --addr 127.0.0.1:8750 &
    python python/bench/load_serve.py --port 8750 [--clients 8] [--seconds 30] [--max-requests 3000]

Reports checks per second, p50/p99 latency seen by the clients, and errors.
"""

import argparse
import http.client
import os
import sys
import threading
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "examples"))
from generation_loop import tune  # noqa: E402

RATE = 32_000


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--max-requests", type=int, default=3000)
    args = ap.parse_args()
    assert args.seconds <= 600 and args.max_requests <= 100_000, "keep the test bounded"
    host = "127.0.0.1"  # never anything else
    bodies = [tune(700 + i, 10.0, rate=RATE).astype("<f4").tobytes() for i in range(16)]
    path = f"/v1/check?sample_rate={RATE}&channels=1"
    lock = threading.Lock()
    lat, errors, sent = [], [], [0]
    stop_at = time.perf_counter() + args.seconds

    def client(k):
        conn = http.client.HTTPConnection(host, args.port, timeout=60)
        i = k
        while time.perf_counter() < stop_at:
            with lock:
                if sent[0] >= args.max_requests:
                    return
                sent[0] += 1
            body = bodies[i % len(bodies)]
            i += args.clients
            t = time.perf_counter()
            try:
                conn.request("POST", path, body=body, headers={"Content-Type": "application/octet-stream"})
                r = conn.getresponse()
                data = r.read()
                ms = (time.perf_counter() - t) * 1e3
                with lock:
                    if r.status == 200:
                        lat.append(ms)
                    else:
                        errors.append(f"{r.status} {data[:200]!r}")
            except OSError as e:
                with lock:
                    errors.append(repr(e))
                conn.close()
                conn = http.client.HTTPConnection(host, args.port, timeout=60)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    print(
        f"{args.clients} clients, {elapsed:.1f} s: {len(lat)} checks answered, {len(lat) / elapsed:.1f} checks/s, "
        f"p50 {pct(lat, 50):.1f} ms, p99 {pct(lat, 99):.1f} ms, {len(errors)} error(s)"
    )
    for e in errors[:5]:
        print("  error:", e)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
