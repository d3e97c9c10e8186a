"""Streaming Silero VAD: segments equal silero_vad.get_speech_timestamps, in samples."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile

from sensorfuse.engine import inference
from sensorfuse.engine import manifest as mf
from sensorfuse.perception.prepost import vad

CLIP = Path(__file__).parent / "data" / "speech.flac"
ModelOpener = Callable[..., inference.ModelSession]

# silero_vad imports torch and sets torch's thread count process-wide: run it apart.
REFERENCE_SCRIPT = """
import json, sys, soundfile, torch
from silero_vad import get_speech_timestamps, load_silero_vad
audio, rate = soundfile.read(sys.argv[1], dtype="float32")
model = load_silero_vad(onnx=True)
print(json.dumps(get_speech_timestamps(torch.from_numpy(audio), model, sampling_rate=rate)))
"""


def reference_segments() -> list[tuple[int, int]]:
    result = subprocess.run([sys.executable, "-c", REFERENCE_SCRIPT, str(CLIP)],
                            capture_output=True, text=True, timeout=120, check=True)
    return [(s["start"], s["end"]) for s in json.loads(result.stdout.strip().splitlines()[-1])]


def test_streaming_segments_equal_silero_reference(open_model: ModelOpener) -> None:
    model = open_model("silero_vad")
    audio, rate = soundfile.read(CLIP, dtype="float32")
    assert rate == model.manifest.preprocessing.sample_rate
    stream = vad.SileroStream(vad.silero_model(model.run), model.manifest.preprocessing,
                              model.manifest.postprocessing)
    segments = []
    for start in range(0, audio.size, 333):  # odd block size: chunking is the stream's job
        segments += stream.push(audio[start:start + 333])
    segments += stream.finish()
    expected = reference_segments()
    assert len(expected) >= 3  # the clip has three utterances
    assert [(s.start, s.end) for s in segments] == expected


def test_without_context_nothing_is_detected(open_model: ModelOpener) -> None:
    """Why the 64-sample context is carried: fed bare 512-sample chunks, Silero is deaf."""
    model = open_model("silero_vad")
    audio, _ = soundfile.read(CLIP, dtype="float32")
    state = np.zeros((2, 1, 128), np.float32)
    rate = np.array(16000, dtype=np.int64)
    probabilities = []
    for start in range(0, audio.size - 512, 512):
        out = model.session.run(None, {"input": audio[None, start:start + 512], "state": state, "sr": rate})
        probabilities.append(float(out[0][0, 0]))
        state = out[1]
    assert max(probabilities) < 0.5


def _segmenter(**post: float) -> vad.SpeechSegmenter:
    return vad.SpeechSegmenter(mf.VadPost(**post), sample_rate=16000, chunk=512)


def test_hysteresis_keeps_speech_through_dips_above_neg_threshold() -> None:
    segmenter = _segmenter()
    probs = [0.0] * 5 + [0.9] * 20 + [0.4] * 10 + [0.9] * 10 + [0.0] * 10
    finished = [s for p in probs if (s := segmenter.push(p)) is not None]
    # 0.4 is below threshold (0.5) but above neg_threshold (0.35): one segment, not two.
    assert finished == [vad.SpeechSegment(5 * 512 - 480, 45 * 512 + 480)]


def test_short_blips_and_open_segment_at_end() -> None:
    segmenter = _segmenter()
    blip = [0.9] * 3 + [0.0] * 10  # 3 chunks = 96 ms < 250 ms minimum: dropped
    finished = [s for p in blip + [0.9] * 30 if (s := segmenter.push(p)) is not None]
    assert finished == []
    assert segmenter.in_speech
    assert segmenter.finish(total_samples=43 * 512) == vad.SpeechSegment(13 * 512 - 480, 43 * 512)
