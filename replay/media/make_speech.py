#!/usr/bin/env python3
"""Regenerate the speech clips used by the sample-session generator (replay/sample.py).

Each clip is synthesized with espeak-ng (Debian package `espeak-ng`), resampled to
16 kHz mono and written as 16-bit FLAC next to this script, with `speech.json` listing
clip, voice, text and split. Run from the repository root:

    .venv/bin/python replay/media/make_speech.py

Split (see docs/replay.md): voices and sentences of the `train` split are never used by
held-out sessions (`heldout`), so evaluation hears unseen voices saying unseen words.
The output depends on the espeak-ng version; the committed files are the reference.
"""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

HERE = Path(__file__).resolve().parent
RATE = 16000

# (clip id, espeak-ng voice, words per minute, pitch, split, text)
CLIPS = [
    ("a1", "en-us+m3", 160, 45, "train", "Hello, can you hear me?"),
    ("a2", "en-us+m3", 160, 45, "train", "Please bring me the coffee."),
    ("a3", "en-us+m3", 160, 45, "train", "Let's start the meeting now."),
    ("b1", "en+f3", 165, 60, "train", "The weather is nice today."),
    ("b2", "en+f3", 165, 60, "train", "I think the cat is asleep."),
    ("b3", "en+f3", 165, 60, "train", "Where did I put my keys?"),
    ("c1", "en-gb+m1", 150, 40, "heldout", "Good morning, everyone."),
    ("c2", "en-gb+m1", 150, 40, "heldout", "The rocket launch is at noon."),
    ("d1", "en-us+f4", 170, 65, "heldout", "Could you open the window?"),
    ("d2", "en-us+f4", 170, 65, "heldout", "This flower smells lovely."),
]


def synthesize(voice: str, wpm: int, pitch: int, text: str) -> np.ndarray:
    wav = subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "-p", str(pitch), "--stdout", text],
                         check=True, capture_output=True).stdout
    samples, rate = sf.read(io.BytesIO(wav), dtype="float32")
    if samples.ndim > 1:
        samples = samples.mean(axis=1)
    g = np.gcd(RATE, rate)
    out = resample_poly(samples, RATE // g, rate // g).astype(np.float32)
    # Trim leading/trailing silence so clip boundaries are speech boundaries (ground truth).
    loud = np.flatnonzero(np.abs(out) > 0.01)
    out = out[loud[0]:loud[-1] + 1] if loud.size else out
    return out / max(1e-6, float(np.abs(out).max())) * 0.7


def main() -> None:
    index = []
    for clip_id, voice, wpm, pitch, split, text in CLIPS:
        samples = synthesize(voice, wpm, pitch, text)
        sf.write(HERE / f"speech_{clip_id}.flac", samples, RATE, subtype="PCM_16")
        index.append({"clip": clip_id, "file": f"speech_{clip_id}.flac", "voice": voice, "split": split,
                      "text": text, "seconds": round(len(samples) / RATE, 3)})
    (HERE / "speech.json").write_text(json.dumps(index, indent=1) + "\n")


if __name__ == "__main__":
    main()
