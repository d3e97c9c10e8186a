"""Make speech.flac: three espeak-ng utterances separated by silence, 16 kHz mono.

Run from anywhere: `.venv/bin/python tests/models/data/make_speech_clip.py`
(needs the espeak-ng Debian package, plus soundfile and soxr from the project deps).
The clip is committed; this script documents exactly how it was made.
"""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import numpy as np
import soundfile
import soxr

RATE = 16000
UTTERANCES = (
    "Hello there, can you hear me?",
    "The quick brown fox jumps over the lazy dog.",
    "Sensor fusion starts now.",
)
SILENCE_S = (0.8, 1.2, 0.9, 0.7)  # before, between, between, after


def speak(text: str) -> np.ndarray:
    """espeak-ng's WAV output for one utterance, resampled to 16 kHz float32."""
    wav = subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "--stdout", text],
                         check=True, capture_output=True).stdout
    audio, rate = soundfile.read(io.BytesIO(wav), dtype="float32")
    return soxr.resample(audio, rate, RATE).astype(np.float32)


def main() -> None:
    rng = np.random.default_rng(0)
    parts = []
    for index, silence in enumerate(SILENCE_S):
        # A little room noise so the silence is not digital zero.
        parts.append((0.002 * rng.standard_normal(int(silence * RATE))).astype(np.float32))
        if index < len(UTTERANCES):
            parts.append(0.6 * speak(UTTERANCES[index]))
    clip = np.concatenate(parts)
    soundfile.write(Path(__file__).with_name("speech.flac"), clip, RATE, subtype="PCM_16")


if __name__ == "__main__":
    main()
