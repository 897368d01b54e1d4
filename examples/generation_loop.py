"""A generation loop with Refrain in it: draw candidate clips, check each
against the training set, re-sample the ones that copy it with a new seed,
and log what was rejected and why.

    pip install ./python            # once, from the repository root
    python examples/generation_loop.py [--index INDEX_DIR] [--prompts 12]

Without --index, a "training set" of synthesized songs is indexed in a
temporary directory first. The "model" is a toy: it writes a new piece for
most seeds, and for some seeds regurgitates a training song, sometimes
transposed or faster, the way a memorizing model would. Needs numpy only:
no downloads. With --index, the toy model's copies come from songs that are
not in your index, so everything should pass.
"""

import argparse
import sys
import tempfile
import time
from typing import Any, Optional, Union

import numpy as np
import numpy.typing as npt

import refrain

Floats = npt.NDArray[np.float32]

RATE = 32_000
CLIP_S = 10.0
TRAINING_SONGS = 8
MAJOR = np.array([0, 2, 4, 5, 7, 9, 11])


def _midi(tonic: int, degree: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    return tonic + MAJOR[degree % 7] + 12 * (degree // 7)


def _voice(
    midi: npt.NDArray[np.number[Any]],
    rate: int,
    amp: Union[float, npt.NDArray[np.float64]],
) -> npt.NDArray[np.float64]:
    f = 440.0 * 2.0 ** ((midi - 69.0) / 12.0)
    phase = np.cumsum(2 * np.pi * f / rate)
    wave: npt.NDArray[np.float64] = amp * (
        np.sin(phase) + 0.4 * np.sin(2 * phase) + 0.2 * np.sin(3 * phase)
    )
    return wave


def tune(
    seed: int,
    seconds: float,
    rate: int = RATE,
    transpose: float = 0.0,
    tempo: float = 1.0,
    start_s: float = 0.0,
) -> Floats:
    """A deterministic piece: a random major key, one chord per second, a
    bass line and a melody of eighth notes (at most 96 s of it)."""
    rng = np.random.default_rng(seed)
    tonic = 50 + int(rng.integers(0, 12))
    chords = rng.integers(0, 6, size=96)
    sevenths = rng.integers(0, 2, size=96)
    walk = np.clip(np.cumsum(rng.integers(-2, 3, size=96 * 4)), -5, 9) + 7
    t = start_s + np.arange(int(seconds * rate)) / rate * tempo
    bar = t.astype(int)
    step = (t * 4.0).astype(int)
    note_age = t * 4.0 - step
    x = np.zeros(len(t))
    for k in (0, 2, 4):
        x += _voice(_midi(tonic, chords[bar] + k) + transpose, rate, 0.06)
    x += _voice(_midi(tonic, chords[bar] + 6) + transpose, rate, 0.05 * sevenths[bar])
    x += _voice(_midi(tonic, chords[bar]) - 12 + transpose, rate, 0.10)
    x += _voice(_midi(tonic, walk[step]) + 12 + transpose, rate, 0.16) * np.exp(-2.5 * note_age)
    out: Floats = (0.8 * x / max(1e-9, np.abs(x).max())).astype(np.float32)
    return out


class ToyModel:
    """Stands in for a music model: `sample(prompt, seed)` returns a stereo
    clip, shape (n, 2), float32 at RATE. About one seed in three
    regurgitates a training song."""

    def __init__(self, training_seeds: list[int], copy_rate: float = 0.35) -> None:
        self.training_seeds = training_seeds
        self.copy_rate = copy_rate

    def sample(self, prompt: int, seed: int) -> tuple[Floats, str]:
        """The clip, and what it really is (which this loop would not know)."""
        rng = np.random.default_rng([prompt, seed])
        if rng.random() < self.copy_rate:
            song = int(rng.choice(self.training_seeds))
            truth = f"the model did copy training/song{song:02}.wav"
            x = tune(
                song,
                CLIP_S,
                transpose=float(rng.choice([0, 0, 2, -3])),
                tempo=float(rng.choice([1.0, 1.0, 1.06, 0.95])),
                start_s=float(rng.integers(0, 50)),
            )
        else:
            x = tune(10_000 + prompt * 1_000 + seed, CLIP_S)
            truth = "a false alarm: the clip was new"
        x = x + 0.01 * rng.standard_normal(len(x)).astype(np.float32)
        return np.stack([x, 0.9 * x], axis=1), truth


def build_demo_index(path: str) -> refrain.Index:
    builder = refrain.IndexBuilder()
    for s in range(TRAINING_SONGS):
        builder.add(f"training/song{s:02}.wav", tune(s, 90.0, rate=22_050), 22_050)
    return builder.build(path)


def why(v: refrain.Verdict) -> str:
    """One line of evidence for a flagged verdict."""
    return (
        f"copies {v.match} (audio {v.audio_score:.2f}, melody {v.melody_score:.2f}; "
        f"thresholds {v.audio_threshold:.2f}/{v.melody_threshold:.2f}): "
        f"clip {v.query_start_s:.1f}-{v.query_end_s:.1f} s = song {v.match_start_s:.1f}-{v.match_end_s:.1f} s, "
        f"{v.transpose_semitones:+.1f} semitones, tempo x{v.tempo_ratio:.2f}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--index", help="an index directory (default: build a demo one)")
    ap.add_argument("--prompts", type=int, default=12)
    ap.add_argument("--max-tries", type=int, default=5)
    args = ap.parse_args()

    tmp: Optional[tempfile.TemporaryDirectory[str]] = None
    if args.index:
        index = refrain.Index.open(args.index)
    else:
        tmp = tempfile.TemporaryDirectory()
        t = time.perf_counter()
        index = build_demo_index(tmp.name)
        print(f"indexed {len(index)} synthesized training songs in {time.perf_counter() - t:.1f} s")
    auditor = index.auditor()
    model = ToyModel(list(range(TRAINING_SONGS)))

    # 1. sample one candidate per prompt, check them as a batch, re-sample
    # the rejected ones with a new seed
    accepted: dict[int, str] = {}
    rejected, check_s = 0, 0.0
    seeds = {p: 0 for p in range(args.prompts)}
    pending = list(range(args.prompts))
    while pending:
        drawn = [model.sample(p, seeds[p]) for p in pending]
        t = time.perf_counter()
        verdicts = auditor.check_batch([clip for clip, _ in drawn], RATE)
        check_s += time.perf_counter() - t
        still = []
        for p, v, (_, truth) in zip(pending, verdicts, drawn):
            if isinstance(v, refrain.RefrainError):
                # a clip that could not be checked is not accepted
                print(f"prompt {p:2} seed {seeds[p]}: NOT CHECKED, {v}")
                seeds[p] += 1
                if seeds[p] < args.max_tries:
                    still.append(p)
                continue
            if not v.flagged:
                accepted[p] = truth
                continue
            rejected += 1
            print(f"prompt {p:2} seed {seeds[p]}: REJECTED, {why(v)} [{truth}]")
            seeds[p] += 1
            if seeds[p] < args.max_tries:
                still.append(p)
            else:
                print(f"prompt {p:2}: gave up after {args.max_tries} tries")
        pending = still
    checks = len(accepted) + rejected
    missed = sum(t.startswith("the model did copy") for t in accepted.values())
    print(
        f"{len(accepted)}/{args.prompts} prompts answered ({missed} of them copies the check missed); "
        f"{rejected} candidate(s) rejected and re-sampled; {checks} checks in {check_s:.2f} s "
        f"({1e3 * check_s / max(1, checks):.1f} ms each, batched)"
    )

    # 2. the same check while a clip is being generated: a stream re-checks
    # the last 10 s every 5 s, so a copy can be stopped before it is done
    long_clip = np.concatenate(
        [tune(20_000, 12.0), tune(3, 20.0, start_s=20.0)]
    )  # an original that drifts into training song 3 after 12 s
    stream = auditor.stream(RATE, window_s=10.0, every_s=5.0)
    chunk = RATE // 2  # the generator emits half a second at a time
    for i in range(0, len(long_clip), chunk):
        sv = stream.push(long_clip[i : i + chunk])
        if sv is not None and sv.flagged and sv.window is not None:
            print(
                f"stream: stopped generating at {stream.duration_s:.1f} s "
                f"(window {sv.window[0]:.0f}-{sv.window[1]:.0f} s): {why(sv)}"
            )
            break
    else:
        last = stream.finish()
        print(f"stream: {stream.duration_s:.1f} s generated, last check {last.verdict if last else 'none'}")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
