"""refrain.ray on a local Ray cluster of a head and one worker node: three
shards give the verdicts and scores of one index, bit for bit, and a shard
actor killed mid-batch is restarted without losing an input.

The comparison is exact (the reports' JSON, every f32 at its shortest
round-trip form): the shards' window search is exact at this size (under
2,000 windows), and the merge reproduces every global input of the score
(see docs/scale.md), so nothing is left to rounding.

Needs Ray (`pip install ./python[ray]`); skipped without it unless
REFRAIN_REQUIRE_RAY=1 (as CI sets), which makes a missing Ray a failure.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import wave

import numpy as np
import pytest

if os.environ.get("REFRAIN_REQUIRE_RAY") != "1":
    pytest.importorskip("ray")
import ray  # noqa: E402

import refrain  # noqa: E402
import refrain.ray as rr  # noqa: E402
from conftest import RATE, TRAINING, tune  # noqa: E402


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_bin():
    return os.path.join(os.path.dirname(sys.executable), "ray")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """`ray start --head`, then `ray start --address` for a worker node,
    both with `--block` so that ending them (by their process ids) stops
    their nodes."""
    port = _free_port()
    # no token authentication (Ray 2.52+ turns it on when a token file such
    # as ~/.ray/auth_token exists): the nodes and this driver must agree,
    # and a private cluster on 127.0.0.1 needs none
    saved = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    common = [
        "--node-ip-address=127.0.0.1",
        "--num-cpus=2",
        "--object-store-memory=100000000",
        "--disable-usage-stats",
        "--block",
    ]
    # Ray's files (its sockets, and the address file a later ray.init()
    # would connect to) in a short temporary directory, removed at the end
    temp_dir = tempfile.mkdtemp(prefix="rfr-ray-", dir="/tmp")
    logs = tmp_path_factory.mktemp("ray-logs")
    head_log = open(logs / "head.log", "w")
    worker_log = open(logs / "worker.log", "w")
    head = subprocess.Popen(
        [
            _ray_bin(),
            "start",
            "--head",
            f"--port={port}",
            f"--temp-dir={temp_dir}",
            "--include-dashboard=false",
            *common,
        ],
        env=env,
        stdout=head_log,
        stderr=subprocess.STDOUT,
    )
    procs = [head]
    try:
        address = f"127.0.0.1:{port}"
        # the worker joins once the head's GCS answers
        ray.init(address=address, logging_level="warning")
        worker = subprocess.Popen(
            [_ray_bin(), "start", f"--address={address}", *common],
            env=env,
            stdout=worker_log,
            stderr=subprocess.STDOUT,
        )
        procs.append(worker)
        for _ in range(120):
            if len([n for n in ray.nodes() if n["Alive"]]) == 2:
                break
            threading.Event().wait(0.5)
        assert len([n for n in ray.nodes() if n["Alive"]]) == 2, "the worker node did not join"
        yield address
    finally:
        ray.shutdown()
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
        for p in reversed(procs):
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        head_log.close()
        worker_log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)
        if saved is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = saved


def _items():
    # the items of conftest's single index, in its order
    return [(f"train/song{s}.wav", tune(s), RATE) for s in range(TRAINING)]


@pytest.fixture(scope="module")
def layout(cluster, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    lay = rr.build_shards(_items(), 3, out)
    assert [s.items for s in lay.shards] == [2, 2, 2]
    assert len(lay) == TRAINING
    return lay


@pytest.fixture(scope="module")
def sharded(layout):
    return rr.ShardedAuditor.open(layout, num_cpus=0.5)


def _queries():
    """Copies (exact, transposed and faster, stereo), originals, and a
    clip too short to judge."""
    q = [tune(s, seconds=10, start_s=8) for s in range(TRAINING)]
    q.append(tune(4, seconds=12, transpose=2, tempo=1.06, start_s=5))
    x = tune(1, seconds=9, start_s=3)
    q.append(np.stack([x, 0.5 * x], axis=1))
    q += [tune(s, seconds=10) for s in (101, 102, 103)]
    q.append(tune(3, seconds=4, start_s=2))
    return q


def _same(a, b):
    assert a.to_json() == b.to_json()


def test_three_shards_give_the_verdicts_and_scores_of_one_index(sharded, auditor):
    flagged = 0
    for i, x in enumerate(_queries()):
        one = auditor.check(x, RATE)
        many = sharded.check(x, RATE)
        assert many.to_json() == one.to_json(), f"query {i}"
        flagged += one.flagged
    # the comparison covers both verdicts
    assert 0 < flagged < len(_queries())


def _wav(path, x):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes((x * 32767).astype("<i2").tobytes())
    return path


def test_files_through_shards_and_one_index(sharded, index, tmp_path):
    path = _wav(tmp_path / "clip.wav", tune(5, seconds=10, start_s=12))
    one = index.auditor().check_file(path)
    assert one.flagged and one.match_item == 5
    _same(sharded.check_file(path), one)
    # a Ray Data dataset of files
    paths = [path, _wav(tmp_path / "other.wav", tune(105, seconds=10))]
    rows = sharded.audit_dataset(ray.data.from_items([{"path": str(p)} for p in paths])).take_all()
    by_path = {r["path"]: r for r in rows}
    assert sorted(by_path) == sorted(str(p) for p in paths)
    for p in paths:
        assert by_path[str(p)]["report"] == index.auditor().check_file(p).to_json()


def test_calibration_through_shards_uses_merged_scores(sharded, auditor):
    # another auditor over the same actors, so that the others keep theirs
    sharded = rr.ShardedAuditor(
        sharded.layout, sharded.actors, sharded.params_json, sharded.thresholds_json
    )
    negatives = [tune(s, seconds=10) for s in range(200, 208)]
    names = [f"negative {s}" for s in range(200, 208)]
    one = json.loads(
        refrain.calibrate_thresholds(
            [auditor.check(x, RATE) for x in negatives], 0.25, names=names
        )
    )
    t = sharded.calibrate(negatives, RATE, target_fpr=0.25, names=names)
    for d in (one, t):
        d.pop("calibrated_at")
    assert t == one
    assert t["method"] == "calibrated"
    assert sharded.thresholds["audio"] == one["audio"]
    # verdicts now use them
    x = tune(2, seconds=10, start_s=8)
    v = sharded.check(x, RATE)
    assert v.audio_threshold == pytest.approx(one["audio"], abs=0)
    assert v.flagged


def test_a_ray_data_dataset_is_audited(sharded, auditor):
    clips = _queries()[:4] + [tune(104, seconds=8)]
    ds = ray.data.from_items(
        [
            {"id": i, "samples": np.asarray(x, dtype=np.float32), "sample_rate": RATE}
            for i, x in enumerate(clips)
        ]
    )
    rows = sharded.audit_dataset(ds, batch_size=2, num_cpus=0.5).take_all()
    assert sorted(int(r["id"]) for r in rows) == list(range(len(clips)))
    for row in rows:
        one = auditor.check(clips[int(row["id"])], RATE)
        assert row["error"] == ""
        assert row["report"] == one.to_json()
        assert row["verdict"] == one.verdict


def test_a_shard_killed_mid_batch_is_restarted_and_every_input_answered(sharded, auditor):
    clips = _queries()[:8]
    pids = ray.get([a.pid.remote() for a in sharded.actors])
    timers = []

    def batch():
        for i, x in enumerate(clips):
            if i == 2:
                # between two checks: the next step waits for the restart
                ray.kill(sharded.actors[1], no_restart=False)
            if i == 4:
                # while a check is running: its step is retried
                t = threading.Timer(0.05, ray.kill, (sharded.actors[2],), {"no_restart": False})
                t.start()
                timers.append(t)
            yield x

    out = sharded.check_batch(batch(), RATE)
    for t in timers:
        t.join()
    assert len(out) == len(clips)
    for x, v in zip(clips, out):
        assert isinstance(v, refrain.Verdict), v
        _same(v, auditor.check(x, RATE))
    after = ray.get([a.pid.remote() for a in sharded.actors])
    assert after[0] == pids[0]
    assert after[1] != pids[1] and after[2] != pids[2], "the killed actors were not restarted"


def test_a_shard_that_cannot_answer_fails_the_check_and_is_named(layout):
    a = rr.ShardedAuditor.open(layout, num_cpus=0.5)
    ray.kill(a.actors[1], no_restart=True)
    with pytest.raises(rr.ShardUnavailableError, match="shard 1 .*shard-001") as e:
        a.check(tune(1, seconds=10, start_s=8), RATE)
    assert e.value.shard == 1
    assert isinstance(e.value, refrain.RefrainError)
    a.close()
