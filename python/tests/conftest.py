"""A small index of synthesized songs, built once per test session."""

import numpy as np
import pytest

import refrain

RATE = 22_050


MAJOR = np.array([0, 2, 4, 5, 7, 9, 11])


def _midi(tonic, degree):
    """MIDI pitch of a scale degree (any integer array) in a major key."""
    return tonic + MAJOR[degree % 7] + 12 * (degree // 7)


def _voice(midi, rate, amp):
    f = 440.0 * 2.0 ** ((midi - 69.0) / 12.0)
    phase = np.cumsum(2 * np.pi * f / rate)
    return amp * (np.sin(phase) + 0.4 * np.sin(2 * phase) + 0.2 * np.sin(3 * phase))


def tune(seed, seconds=30.0, rate=22_050, transpose=0.0, tempo=1.0, start_s=0.0):
    """A deterministic piece in a random major key: one chord per 1 s bar (a
    triad on degree I-vi, half of them with a seventh), a bass line and a
    melody of eighth notes (a random walk on the scale). `tempo` > 1 plays
    it faster, `transpose` shifts it in semitones, `start_s` starts that far
    into it (tune time). At most 96 s of tune time."""
    rng = np.random.default_rng(seed)
    tonic = 50 + int(rng.integers(0, 12))
    chords = rng.integers(0, 6, size=96)
    sevenths = rng.integers(0, 2, size=96)
    walk = np.clip(np.cumsum(rng.integers(-2, 3, size=96 * 4)), -5, 9) + 7
    t = start_s + np.arange(int(seconds * rate)) / rate * tempo
    bar = t.astype(int)
    step = (t * 4.0).astype(int)
    note_age = t * 4.0 - step  # 0..1 within an eighth note
    x = np.zeros(len(t))
    for k in (0, 2, 4):
        x += _voice(_midi(tonic, chords[bar] + k) + transpose, rate, 0.06)
    x += _voice(_midi(tonic, chords[bar] + 6) + transpose, rate, 0.05 * sevenths[bar])
    x += _voice(_midi(tonic, chords[bar]) - 12 + transpose, rate, 0.10)
    x += _voice(_midi(tonic, walk[step]) + 12 + transpose, rate, 0.16) * np.exp(-2.5 * note_age)
    return (0.8 * x / max(1e-9, np.abs(x).max())).astype(np.float32)


TRAINING = 6


@pytest.fixture(scope="session")
def index_dir(tmp_path_factory):
    b = refrain.IndexBuilder()
    for s in range(TRAINING):
        assert b.add(f"train/song{s}.wav", tune(s), RATE)
    path = tmp_path_factory.mktemp("index")
    b.build(str(path))
    return path


@pytest.fixture(scope="session")
def index(index_dir):
    return refrain.Index.open(str(index_dir))


@pytest.fixture(scope="session")
def auditor(index):
    return index.auditor()
