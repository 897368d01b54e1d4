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
        (np.r_[np.zeros(22_050), np.nan].astype(np.float32), ValueError, "NaN"),
        (np.r_[np.zeros(22_050), np.inf], ValueError, "inf"),
        (np.zeros((9, 22_050), dtype=np.float32), ValueError, r"shape \(9, 22050\)"),
        (np.zeros((40, 40), dtype=np.float32), ValueError, r"channels, n"),
        (np.zeros((10, 10, 2), dtype=np.float32), ValueError, "3 dimensions"),
        (np.zeros(100, dtype=np.float32), ValueError, "too short to analyse"),
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
    with pytest.raises(FileNotFoundError, match="no index in this directory"):
        refrain.Index.open(str(tmp_path))
    with pytest.raises(refrain.NotFoundError, match="no such directory"):
        refrain.Index.open(str(tmp_path / "absent"))
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


def _layouts(x):
    """The same (n, 2) stereo clip in every memory layout numpy has."""
    c = np.ascontiguousarray(x)
    big = np.zeros((2 * len(x), 4), dtype=x.dtype)
    big[::2, 1:3] = x
    rev = np.ascontiguousarray(x[::-1])
    return {
        "C": c,
        "F": np.asfortranarray(c),
        "transposed view of (2, n)": np.ascontiguousarray(c.T).T,
        "negative strides": rev[::-1],
        "non-contiguous slice": big[::2, 1:3],
        "float64 F": np.asfortranarray(c.astype(np.float64)),
        "channels-first (2, n)": np.ascontiguousarray(c.T),
        "channels-first F view": np.asfortranarray(c).T,
    }


def test_every_memory_layout_gives_the_same_verdict(auditor):
    x = tune(2, seconds=10, start_s=6)
    stereo = np.stack([x, 0.7 * x], axis=1)
    want = auditor.check(stereo, RATE).to_dict()
    assert want["verdict"] == "flag"
    for name, a in _layouts(stereo).items():
        assert auditor.check(a, RATE).to_dict() == want, name
    # batches: (batch, n, 2) in C and F order, transposed, and (batch, 2, n)
    batch = np.stack([stereo, stereo])
    for name, b in {
        "C": batch,
        "F": np.asfortranarray(batch),
        "transpose(0, 2, 1) of (batch, 2, n)": np.ascontiguousarray(batch.transpose(0, 2, 1)).transpose(0, 2, 1),
        "(batch, 2, n)": batch.transpose(0, 2, 1),
    }.items():
        got = auditor.check_batch(b, RATE)
        assert [v.to_dict() for v in got] == [want, want], name
    # the index stores the same audio whatever the layout: a duplicate
    b = refrain.IndexBuilder()
    assert b.add("c", stereo, RATE)
    for name, a in _layouts(stereo).items():
        if "float64" in name:
            continue  # other values: another item
        assert not b.add(name, a, RATE), name
    # a stream fed Fortran-ordered chunks flags like one fed C chunks
    s = auditor.stream(RATE, channels=2)
    fs = np.asfortranarray(np.tile(stereo, (2, 1)))
    for i in range(0, len(fs), 4_000):
        s.push(np.asfortranarray(fs[i : i + 4_000]))
    assert s.first_flag is not None and s.first_flag.match_item == 2


class _Tensor:
    """A CPU tensor's interface as numpy sees it: __array__ only."""

    def __init__(self, a):
        self._a = a

    def __array__(self, dtype=None, copy=None):
        return self._a if dtype is None else self._a.astype(dtype)


def test_layouts_and_types_generation_pipelines_pass(auditor):
    x = tune(4, seconds=8, start_s=2)
    want = auditor.check(x, RATE).to_dict()
    assert want["verdict"] == "flag"
    # torchaudio's channels-first (channels, n), as a tensor-like object
    assert auditor.check(_Tensor(np.stack([x, x])), RATE).to_dict()["verdict"] == "flag"
    assert auditor.check(_Tensor(x), RATE).to_dict() == want
    got = auditor.check_batch(_Tensor(np.stack([np.stack([x, x])] * 3)), RATE)
    assert [v.match_item for v in got] == [4, 4, 4]
    # an integral float rate is a rate; another is named
    assert auditor.check(x, float(RATE)).to_dict() == want
    assert auditor.check(x, np.int64(RATE)).to_dict() == want
    with pytest.raises(ValueError, match=r"sample_rate must be a whole number of Hz, got 22050\.5"):
        auditor.check(x, RATE + 0.5)
    with pytest.raises(TypeError, match="sample_rate must be a number of Hz, got str"):
        auditor.check(x, "22050")
    with pytest.raises(TypeError, match="sample_rate"):
        auditor.check(x, True)


def test_too_short_is_refused_before_any_work(auditor):
    # an (n, 2) stereo clip given to check_batch: n clips of 2 samples
    stereo = np.zeros((48_000, 2), dtype=np.float32)
    t = time.perf_counter()
    with pytest.raises(refrain.InvalidInputError, match=r"48000 clip\(s\) of 2 frame\(s\).*too short to analyse.*call check\(x\)"):
        auditor.check_batch(stereo, 48_000)
    assert time.perf_counter() - t < 0.5
    with pytest.raises(ValueError, match="too short to analyse"):
        auditor.check(np.zeros(1_000, dtype=np.float32), 48_000)
    with pytest.raises(ValueError, match="too short"):
        refrain.IndexBuilder().add("x", np.zeros(10, dtype=np.float32), RATE)
    # just long enough is judged, with a note
    v = auditor.check(tune(1, seconds=1.0), RATE)
    assert v.notes and v.notes[0].startswith("too short to judge: 1.0 s"), v.notes
    assert not auditor.check(tune(1, seconds=10), RATE).notes


def test_check_batch_returns_a_per_clip_error(auditor):
    clips = [tune(1, seconds=6), np.array([np.nan] * 22_050), tune(100, seconds=6), np.zeros(3), "x"]
    got = auditor.check_batch(clips, RATE)
    assert len(got) == 5
    assert isinstance(got[0], refrain.Verdict) and got[0].flagged
    assert isinstance(got[2], refrain.Verdict) and not got[2].flagged
    for i, cls, says in [(1, ValueError, "NaN"), (3, ValueError, "too short"), (4, TypeError, "float")]:
        e = got[i]
        assert isinstance(e, refrain.RefrainError) and isinstance(e, cls), (i, e)
        assert str(e).startswith(f"clip {i}"), e
        assert says in str(e), e


def test_the_package_as_python_users_expect_it(index, auditor, tmp_path):
    import os

    import refrain._refrain as ext

    here = os.path.dirname(refrain.__file__)
    assert os.path.exists(os.path.join(here, "py.typed"))
    assert os.path.exists(os.path.join(here, "_refrain.pyi"))
    # every class has a repr of its own
    b = refrain.IndexBuilder()
    v = auditor.check(tune(2, seconds=8), RATE)
    s = auditor.stream(RATE)
    for obj, says in [
        (index, "refrain.Index: 6 items"),
        (auditor, "refrain.Auditor over 6 items"),
        (b, "refrain.IndexBuilder: 0 item(s)"),
        (s, "refrain.Stream 1 channel(s), 0.0 s pushed"),
        (v, "refrain.Verdict flag"),
        (v.candidates[0], "refrain.Candidate"),
    ]:
        assert says in repr(obj), repr(obj)
    for name in ["Index", "IndexBuilder", "Auditor", "Stream", "Verdict", "Candidate"]:
        assert "__repr__" in vars(getattr(ext, name)), name
    # one base class; the built-in classes still catch what they caught
    for cls, base in [
        (refrain.InvalidInputError, ValueError),
        (refrain.InvalidTypeError, TypeError),
        (refrain.NotFoundError, FileNotFoundError),
        (refrain.RefrainOSError, OSError),
        (refrain.IncompatibleError, RuntimeError),
        (refrain.StateError, RuntimeError),
    ]:
        assert issubclass(cls, refrain.RefrainError) and issubclass(cls, base)
    with pytest.raises(refrain.RefrainError):
        auditor.check(np.array([np.nan] * 22_050), RATE)
    with pytest.raises(refrain.InvalidTypeError):
        auditor.check(np.zeros(22_050, dtype=np.int16), RATE)
    # thresholds as they print: 0.5, not 0.5000000xyz
    t = index.thresholds
    assert repr(t["audio"]) == "0.5" and repr(v.audio_threshold) == "0.5"
    strict = index.auditor(audio_threshold=0.3, melody_threshold=0.7)
    assert repr(strict.thresholds["audio"]) == "0.3"
    assert repr(strict.check(tune(2, seconds=8), RATE).melody_threshold) == "0.7"
    assert len(repr(v.audio_score)) <= 8, repr(v.audio_score)
