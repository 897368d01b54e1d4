import json
import threading
import time

import numpy as np
import pytest

import refrain
from conftest import RATE, TRAINING, tune


def test_index_round_trip(index_dir, index):
    assert len(index) == TRAINING
    assert index.paths == [f"train/song{s}.wav" for s in range(TRAINING)]
    assert 0.04 < index.hours < 0.06  # six 30 s songs
    assert index.thresholds["method"] == "default"
    # the same samples twice are one item
    b = refrain.IndexBuilder()
    assert b.add("a", tune(1), RATE)
    assert not b.add("again", tune(1), RATE)
    assert len(b) == 1
    b.build()
    with pytest.raises(RuntimeError, match="already built"):
        b.build()
    with pytest.raises(ValueError, match="no item"):
        refrain.IndexBuilder().build()


def test_a_copy_is_flagged_with_its_evidence(auditor):
    # 10 s of song 2 from its 8 s mark
    v = auditor.check(tune(2, seconds=10, start_s=8), RATE)
    assert v.flagged and v.verdict == "flag"
    assert v.match == "train/song2.wav" and v.match_item == 2
    # the same-recording score decides a 10 s copy; the melody score weighs
    # match length (total over the square root of the length), so 10 s of
    # exact copy scores high on it without needing to cross
    assert v.audio_score >= v.audio_threshold
    assert v.melody_score > 0.3
    assert abs(v.transpose_semitones) < 0.5
    assert abs(v.tempo_ratio - 1.0) < 0.05
    # where the copy sits in the song
    assert abs((v.match_start_s - v.query_start_s) - 8.0) <= 1.0
    assert v.query_end_s - v.query_start_s >= 8.0
    assert abs(v.duration_s - 10.0) < 0.01
    assert v.window is None
    assert v.candidates[0].path == v.match
    assert 0.0 < v.elapsed_ms < 60_000.0


def test_transposed_and_faster_stereo_copy_at_another_rate(auditor):
    rate = 44_100
    x = tune(4, seconds=12, rate=rate, transpose=2, tempo=1.06, start_s=5)
    stereo = np.stack([x, 0.5 * x], axis=1).astype(np.float64)
    v = auditor.check(stereo, rate)
    assert v.flagged, v
    assert v.match_item == 4
    assert abs(v.transpose_semitones - 2.0) <= 0.5, v
    assert abs(v.tempo_ratio - 1.06) <= 0.05, v


def test_originals_pass(auditor):
    for seed in (100, 101, 102):
        v = auditor.check(tune(seed, seconds=10), RATE)
        assert not v.flagged, v
        assert v.verdict == "pass"


def test_batch_matches_single_checks_in_order(auditor):
    clips = [tune(s, seconds=8, start_s=3) for s in (1, 100, 5)]
    single = [auditor.check(c, RATE).to_dict() for c in clips]
    as_list = auditor.check_batch(clips, RATE)
    as_array = auditor.check_batch(np.stack(clips), RATE)
    assert [v.to_dict() for v in as_list] == single
    assert [v.to_dict() for v in as_array] == single
    assert [v.flagged for v in as_list] == [True, False, True]
    # (batch, n, channels)
    st = np.stack([np.stack([c, c], axis=1) for c in clips])
    assert [v.flagged for v in auditor.check_batch(st, RATE)] == [True, False, True]


def test_verdict_as_json_and_dict(auditor):
    v = auditor.check(tune(3, seconds=6), RATE)
    d = v.to_dict()
    assert d == json.loads(v.to_json())
    assert d["verdict"] == "flag"
    best = d["candidates"][0]
    for key in (
        "path",
        "audio_score",
        "melody_score",
        "query_start_s",
        "match_start_s",
        "transpose_semitones",
        "tempo_ratio",
        "raw",
    ):
        assert key in best
    assert d["thresholds"]["audio"] == v.audio_threshold
    assert "flag" in repr(v) and "song3" in repr(v)


def test_thresholds_can_be_set_per_auditor(index):
    strict = index.auditor(audio_threshold=1.0, melody_threshold=1.0)
    v = strict.check(tune(2, seconds=10), RATE)
    assert not v.flagged and v.match_item == 2
    assert v.thresholds["method"] == "caller"
    with pytest.raises(ValueError, match="outside"):
        index.auditor(audio_threshold=1.5)


@pytest.mark.parametrize(
    "bad, error, message",
    [
        (np.array([0.1, np.nan, 0.2], dtype=np.float32), ValueError, "NaN"),
        (np.array([0.1, np.inf]), ValueError, "inf"),
        (np.zeros((2, 22_050), dtype=np.float32), ValueError, r"pass x\.T"),
        (np.zeros((10, 10, 2), dtype=np.float32), ValueError, "3 dimensions"),
        (np.zeros(0, dtype=np.float32), ValueError, "no samples"),
        (np.zeros(100, dtype=np.int16), TypeError, "int16"),
        ("not audio", TypeError, "float32 or float64"),
    ],
)
def test_bad_samples_raise_clear_errors(auditor, bad, error, message):
    with pytest.raises(error, match=message):
        auditor.check(bad, RATE)


def test_bad_rates_and_paths(auditor, tmp_path):
    for rate in (0, -1, 10_000_000):
        with pytest.raises(ValueError, match="sample_rate"):
            auditor.check(tune(1, seconds=1), rate)
    with pytest.raises(ValueError, match="no index here"):
        refrain.Index.open(str(tmp_path))
    with pytest.raises(ValueError, match=r"clip 1: .*NaN"):
        auditor.check_batch([tune(1, seconds=2), np.array([np.nan] * 10)], RATE)
    with pytest.raises(ValueError, match="batch, n"):
        auditor.check_batch(np.zeros(100, dtype=np.float32), RATE)


def test_the_gil_is_released_while_checking(auditor):
    clips = [tune(s, seconds=10) for s in range(8)]
    done = threading.Event()
    spins = 0

    def work():
        for _ in range(3):
            auditor.check_batch(clips, RATE)
            for c in clips[:4]:
                auditor.check(c, RATE)
        done.set()

    t = threading.Thread(target=work)
    start = time.perf_counter()
    t.start()
    while not done.is_set():
        spins += 1
    t.join()
    elapsed = time.perf_counter() - start
    # while the worker ran, this thread kept running Python: a held GIL
    # would leave it a handful of switch intervals at most
    assert elapsed > 0.05
    assert spins > 10_000, (spins, elapsed)


def test_threads_share_one_auditor(auditor):
    clips = [tune(s, seconds=8) for s in range(4)]
    expected = [auditor.check(c, RATE).to_dict() for c in clips]
    results = {}

    def work(k):
        results[k] = [auditor.check(c, RATE).to_dict() for c in clips]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(results[k] == expected for k in range(4))


def test_a_stream_flags_a_copy_soon_after_it_starts(auditor):
    rate = 32_000
    # 12 s of an original, then 18 s copied from song 5 at its 4 s mark
    x = np.concatenate(
        [tune(200, seconds=12, rate=rate), tune(5, seconds=18, rate=rate, start_s=4)]
    )
    stereo = np.stack([x, x], axis=1)
    s = auditor.stream(rate, channels=2)
    seen = []
    for i in range(0, len(stereo), 7_000):
        v = s.push(stereo[i : i + 7_000])
        if v is not None:
            seen.append(v)
            if v.flagged:
                break
    assert [v.window[1] for v in seen[:2]] == [5.0, 10.0]
    assert not any(v.flagged for v in seen[:2])
    flag = s.first_flag
    assert flag is not None and flag.flagged and flag.match_item == 5
    assert flag.window[1] <= 20.0  # within 8 s of the copy's start
    assert flag.query_start_s >= 11.0  # stream time
    assert s.duration_s <= flag.window[1] + 7_000 / rate


def test_stream_tail_and_bad_chunks(auditor):
    s = auditor.stream(RATE, window_s=6.0, every_s=3.0)
    assert s.push(tune(300, seconds=2)) is None
    assert s.push(tune(301, seconds=2)) is not None  # crossed 3 s
    tail = s.finish()
    assert tail is not None and tail.window == (0.0, 4.0)
    assert s.finish() is None
    with pytest.raises(ValueError, match="channel"):
        s.push(np.zeros((100, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="NaN"):
        s.push(np.array([0.0, np.nan], dtype=np.float32))
    with pytest.raises(ValueError, match="every_s"):
        auditor.stream(RATE, window_s=2.0, every_s=5.0)
