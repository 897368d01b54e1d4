#!/usr/bin/env python3
"""Regenerates the decoder test fixtures in this directory.

The source is one deterministic stereo signal at 44.1 kHz (the same formula is
`tone_sample` in src/decode.rs's tests; keep the two in sync):

    t   = n / 44100, for n in 0..44100 (1.0 s)
    g   = min(1, t / 0.01, (1 - t) / 0.01)          10 ms fades at both ends
    L   = g * (0.6 + 0.4 sin(2 pi 3 t))
          * (0.25 sin(2 pi 220 t) + 0.12 sin(2 pi 440 t + 0.3) + 0.06 sin(2 pi 660 t + 1.1))
    R   = g * (0.2 sin(2 pi 330 t + 0.5) + 0.1 sin(2 pi 990 t + 0.7)
               + 0.15 sin(2 pi (500 t + 750 t^2)))     a 500 -> 2000 Hz chirp

The lossy fixtures hold the whole second; the lossless ones only its first
LOSSLESS_FRAMES frames, to keep the repository small. Needs python3 and ffmpeg
(with libmp3lame, libvorbis and libopus). Run from anywhere:

    python3 tests/data/decode/make_fixtures.py
"""

import math
import os
import struct
import subprocess
import tempfile

RATE = 44100
FRAMES = 44100
LOSSLESS_FRAMES = 6000
OPUS_REFERENCE_FRAMES = 24000  # 0.5 s at 48 kHz

HERE = os.path.dirname(os.path.abspath(__file__))


def tone_sample(n):
    t = n / RATE
    g = min(1.0, t / 0.01, (1.0 - t) / 0.01)
    tau = 2.0 * math.pi
    am = 0.6 + 0.4 * math.sin(tau * 3.0 * t)
    left = am * (
        0.25 * math.sin(tau * 220.0 * t)
        + 0.12 * math.sin(tau * 440.0 * t + 0.3)
        + 0.06 * math.sin(tau * 660.0 * t + 1.1)
    )
    right = (
        0.2 * math.sin(tau * 330.0 * t + 0.5)
        + 0.1 * math.sin(tau * 990.0 * t + 0.7)
        + 0.15 * math.sin(tau * (500.0 * t + 750.0 * t * t))
    )
    return g * left, g * right


def write_float_wav(path, frames):
    """Writes a plain (format 3, IEEE float) stereo WAV."""
    data = bytearray()
    for n in range(frames):
        left, right = tone_sample(n)
        data += struct.pack("<ff", left, right)
    fmt = struct.pack("<HHIIHH", 3, 2, RATE, RATE * 8, 8, 32)
    with open(path, "wb") as f:
        f.write(b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(data)) + b"WAVE")
        f.write(b"fmt " + struct.pack("<I", len(fmt)) + fmt)
        f.write(b"data" + struct.pack("<I", len(data)) + data)


def strip_flac_padding(path):
    """Drops PADDING metadata blocks (ffmpeg writes 8 KiB of them), so that
    the fixture is mostly audio frames and a truncated copy still holds some."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:4] == b"fLaC"
    blocks, pos = [], 4
    while True:
        header = data[pos]
        length = int.from_bytes(data[pos + 1 : pos + 4], "big")
        if header & 0x7F != 1:
            blocks.append(bytearray(data[pos : pos + 4 + length]))
        pos += 4 + length
        if header & 0x80:
            break
    for i, block in enumerate(blocks):
        block[0] = (block[0] & 0x7F) | (0x80 if i == len(blocks) - 1 else 0)
    with open(path, "wb") as f:
        f.write(b"fLaC" + b"".join(blocks) + data[pos:])


def ffmpeg(*args):
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args]
    subprocess.run(cmd, check=True)


def out(name):
    return os.path.join(HERE, name)


def main():
    with tempfile.TemporaryDirectory() as tmp:
        full = os.path.join(tmp, "tone_full.wav")
        short = os.path.join(tmp, "tone_short.wav")
        write_float_wav(full, FRAMES)
        write_float_wav(short, LOSSLESS_FRAMES)

        bitexact = ["-fflags", "+bitexact", "-flags:a", "+bitexact", "-map_metadata", "-1"]
        # Lossless: the float WAV is written here directly; the others by ffmpeg.
        write_float_wav(out("tone_f32.wav"), LOSSLESS_FRAMES)
        ffmpeg("-i", short, *bitexact, "-c:a", "pcm_s16le", out("tone_s16.wav"))
        ffmpeg(
            "-i", short, *bitexact, "-c:a", "flac", "-sample_fmt", "s16",
            "-frame_size", "1024", out("tone.flac"),
        )
        strip_flac_padding(out("tone.flac"))
        # Lossy: the whole second.
        ffmpeg("-i", full, *bitexact, "-c:a", "libmp3lame", "-b:a", "128k", out("tone.mp3"))
        ffmpeg("-i", full, *bitexact, "-c:a", "libvorbis", "-q:a", "4", out("tone.ogg"))
        ffmpeg("-i", full, *bitexact, "-c:a", "libopus", "-b:a", "96k", out("tone.opus"))
        ffmpeg("-i", full, *bitexact, "-c:a", "aac", "-b:a", "128k", out("tone.m4a"))
        # A container with a video track and no audio track.
        ffmpeg(
            "-f", "lavfi", "-i", "color=black:s=16x16:d=0.1:r=10",
            "-c:v", "mpeg4", "-fflags", "+bitexact", "-flags", "+bitexact",
            "-map_metadata", "-1", out("no_audio.mp4"),
        )

    # The reference decode of the Opus fixture: libopus through ffmpeg (pre-skip
    # and end trim applied), down-mixed to mono as (L + R) / 2, 48 kHz 16-bit,
    # first half second only.
    ffmpeg(
        "-c:a", "libopus", "-i", out("tone.opus"),
        "-af", "pan=mono|c0=0.5*c0+0.5*c1,atrim=end_sample=%d" % OPUS_REFERENCE_FRAMES,
        "-ar", "48000",
        "-fflags", "+bitexact", "-flags:a", "+bitexact", "-map_metadata", "-1",
        "-c:a", "pcm_s16le", out("opus_reference_ffmpeg.wav"),
    )


if __name__ == "__main__":
    main()
