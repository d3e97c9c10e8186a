"""Training/evaluation data of the audio-event encoder: windows of generated sessions.

A session is generated (`sensorfuse.replay.sample`, `sensorfuse.models.corpus`) and read back by the real player node (the
``mic0/audio16k`` stream as the perceive node receives it, and the ground truth on
``labels``). Every sample gets a class from the truth intervals (`speech` records →
speech; `sound` records → alarm / tone / noise, silence → background; uncovered →
background). The session's log-mel frames (`sensorfuse.perception.sound.log_mel`, the runtime
code) and the per-sample classes are cached per seed in `<work_dir>/sound-features-<key>/`,
keyed by everything that changes them. A window starting at frame k is frames
[k, k + N_FRAMES) — exactly the features the runtime computes on samples
[k * HOP, k * HOP + WINDOW_SAMPLES) — and its label is the class covering most of its samples.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from sensorfuse.engine import progressbar
from sensorfuse.perception.sound import (BACKGROUND, FEATURES, HOP_SAMPLES, LOG_FLOOR, N_FRAMES, SAMPLE_RATE,
                                     SOUND_CLASSES, WINDOW_SAMPLES, log_mel)
from sensorfuse.engine.testing import NodeHarness
from sensorfuse.models import corpus
from sensorfuse.replay.player import PlayerNode

AUDIO_STREAM = "mic0/audio16k"
# Truth → class. "silence" is the room tone switched off: no event, so background.
SOUND_TO_CLASS = {"alarm": "alarm", "tone": "tone", "noise": "noise", "silence": BACKGROUND}
LABEL_VERSION = 1  # bump when the truth → class rule changes
MIN_MAJORITY = 0.5  # a window is used when one class covers at least this share of it


def read_session(path: Path) -> tuple[np.ndarray, int, list[dict[str, Any]]]:
    """(16 kHz samples, capture time of sample 0 in ns, label records) of a session."""
    player = NodeHarness(PlayerNode, {"path": str(path), "rate": "max", "streams": [AUDIO_STREAM, "labels"]},
                         streams={})
    messages = player.produce_all(limit=10_000_000)
    player.close()
    blocks, labels = [], []
    t0_ns: int | None = None
    expected_sample0 = 0
    for msg in messages:
        if msg.header.stream == "labels":
            labels.append(msg.record)
            continue
        h = msg.header
        if h.rate != SAMPLE_RATE:
            raise ValueError(f"{path}: {AUDIO_STREAM} at {h.rate} Hz, expected {SAMPLE_RATE}")
        if t0_ns is None:
            t0_ns, expected_sample0 = h.t_ns - h.sample0 * 1_000_000_000 // SAMPLE_RATE, h.sample0
        if h.sample0 != expected_sample0:
            raise ValueError(f"{path}: audio gap at sample {expected_sample0} (next block starts at {h.sample0})")
        block = np.asarray(msg.array, dtype=np.float32).reshape(-1)
        blocks.append(block)
        expected_sample0 += block.shape[0]
    if t0_ns is None:
        raise ValueError(f"{path}: no {AUDIO_STREAM} stream")
    return np.concatenate(blocks), t0_ns, labels


def sample_classes(labels: list[dict[str, Any]], n_samples: int, t0_ns: int) -> np.ndarray:
    """Class index (into SOUND_CLASSES) of every sample, from the truth intervals."""
    out = np.full(n_samples, SOUND_CLASSES.index(BACKGROUND), np.int8)
    for rec in labels:
        if rec["label"] == "speech":
            name = "speech"
        elif rec["label"] == "sound":
            name = SOUND_TO_CLASS[rec["sound"]]
        else:
            continue
        i0, i1 = ((t - t0_ns) * SAMPLE_RATE // 1_000_000_000 for t in (rec["start_ns"], rec["end_ns"]))
        out[max(0, i0):max(0, i1)] = SOUND_CLASSES.index(name)
    return out


def session_arrays(path: Path) -> dict[str, np.ndarray]:
    samples, t0_ns, labels = read_session(path)
    return {"log_mel": log_mel(samples), "classes": sample_classes(labels, samples.shape[0], t0_ns)}


class Windows(NamedTuple):
    features: np.ndarray  # [N, N_FRAMES, N_MELS] float32
    labels: np.ndarray  # [N] class index, int64
    starts: np.ndarray  # [N] first frame (first sample = start * HOP_SAMPLES)
    share: np.ndarray  # [N] share of the window's samples its label covers, 0.5..1


def windows(arrays: dict[str, np.ndarray], *, stride_frames: int = 1, offset: int = 0) -> Windows:
    """The windows starting every `stride_frames` frames from `offset` whose majority class
    covers at least MIN_MAJORITY of their samples."""
    frames, classes = arrays["log_mel"], arrays["classes"]
    starts = np.arange(offset, frames.shape[0] - N_FRAMES + 1, stride_frames)
    onehot = np.zeros((classes.shape[0] + 1, len(SOUND_CLASSES)), np.int32)
    onehot[np.arange(classes.shape[0]) + 1, classes] = 1
    cumulative = np.cumsum(onehot, axis=0)
    s0 = starts * HOP_SAMPLES
    counts = cumulative[np.minimum(s0 + WINDOW_SAMPLES, classes.shape[0])] - cumulative[s0]
    label = counts.argmax(axis=1)
    share = counts.max(axis=1) / WINDOW_SAMPLES
    keep = share >= MIN_MAJORITY
    starts = starts[keep]
    feats = np.lib.stride_tricks.sliding_window_view(frames, N_FRAMES, axis=0)[starts].transpose(0, 2, 1)
    return Windows(np.ascontiguousarray(feats), label[keep].astype(np.int64), starts, share[keep])


def with_gain(log_mel_frames: np.ndarray, gain_db: float | np.ndarray) -> np.ndarray:
    """Log-mel of the same audio `gain_db` louder: power scales by 10^(dB/10), so the log
    shifts by a constant, clipped at the floor (exact but for clipping of loud samples)."""
    shifted = log_mel_frames + np.asarray(gain_db, np.float32) * np.float32(math.log(10.0) / 10.0)
    return np.maximum(shifted, np.float32(math.log(LOG_FLOOR))).astype(np.float32)


def feature_key(duration_s: float) -> str:
    blob = json.dumps([FEATURES, SOUND_CLASSES, SOUND_TO_CLASS, LABEL_VERSION, duration_s], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def build(seeds: list[int], *, duration_s: float, work_dir: Path, workers: int = 2,
          log: Any = progressbar.say) -> dict[int, dict[str, np.ndarray]]:
    """Arrays of every seed, computed (in `workers` processes) or read from the cache."""
    key_dir = work_dir / f"sound-features-{feature_key(duration_s)}"
    return corpus.build(seeds, key_dir, session_arrays, duration_s=duration_s, workers=workers, log=log)
