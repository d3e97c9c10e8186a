"""Streaming Silero VAD: chunking with carried context and state, and speech segments.

Silero v5/v6 takes `[B, 64 + 512]` samples at 16 kHz: the last 64 samples of the previous
chunk followed by 512 new ones, plus a recurrent state `[2, B, 128]` carried between
calls. Without the 64-sample context it detects nothing (measured, MODELS.md).

`SpeechSegmenter` turns per-chunk probabilities into segments with hysteresis (enter at
`threshold`, leave after `min_silence_ms` below `neg_threshold`). It is the streaming
form of `silero_vad.get_speech_timestamps` and gives the same segments, in samples:
the offline padding step only ever takes its "pad both sides" branch, because two
segments are always separated by more than `min_silence_ms` > 2 × `speech_pad_ms`, so
each segment can be emitted as soon as its silence is confirmed, without lookahead.
(Only `max_speech_duration_s = inf`, silero's default, is implemented.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from sensorfuse.engine.manifest import AudioStreamPre, VadPost

# (input [1, context + chunk] float32, state, sample rate) -> (speech prob, new state)
VadModel = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[float, np.ndarray]]
RunFn = Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]


def silero_model(run: RunFn) -> VadModel:
    """Adapt a `ModelSession.run`-like callable to the VadModel signature.

    Tensor names are those of silero_vad.onnx (v5/v6): input, state, sr → output, stateN.
    """
    def call(window: np.ndarray, state: np.ndarray, rate: np.ndarray) -> tuple[float, np.ndarray]:
        outputs = run({"input": window, "state": state, "sr": rate})
        return float(outputs["output"].reshape(-1)[0]), outputs["stateN"]

    return call


@dataclass(frozen=True)
class SpeechSegment:
    """Speech from `start` to `end` (sample indices from the start of the stream)."""

    start: int
    end: int


@dataclass
class SpeechSegmenter:
    """Per-chunk speech probabilities in, finished speech segments out."""

    post: VadPost
    sample_rate: int
    chunk: int
    _triggered: bool = field(default=False, init=False)
    _start: int = field(default=0, init=False)
    _temp_end: int = field(default=0, init=False)  # 0 = no silence pending (as in silero)
    _chunks_seen: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        rate = self.sample_rate
        self._neg_threshold = (
            self.post.neg_threshold if self.post.neg_threshold is not None
            else max(self.post.threshold - 0.15, 0.01)
        )
        self._min_speech = rate * self.post.min_speech_ms / 1000
        self._min_silence = rate * self.post.min_silence_ms / 1000
        self._pad = int(rate * self.post.speech_pad_ms / 1000)

    @property
    def in_speech(self) -> bool:
        """True between a speech start and its confirmed end."""
        return self._triggered

    def push(self, probability: float) -> SpeechSegment | None:
        """Feed one chunk's probability; returns a segment when one has just ended."""
        sample = self.chunk * self._chunks_seen
        self._chunks_seen += 1
        is_speech = probability >= self.post.threshold
        if is_speech and self._temp_end:
            self._temp_end = 0
        if is_speech and not self._triggered:
            self._triggered, self._start = True, sample
            return None
        if probability < self._neg_threshold and self._triggered:
            if not self._temp_end:
                self._temp_end = sample
            if sample - self._temp_end < self._min_silence:
                return None
            start, end = self._start, self._temp_end
            self._triggered, self._temp_end = False, 0
            if end - start > self._min_speech:
                return SpeechSegment(max(0, start - self._pad), end + self._pad)
        return None

    def finish(self, total_samples: int) -> SpeechSegment | None:
        """End of stream: close a segment still open (ends at the last sample)."""
        if self._triggered and total_samples - self._start > self._min_speech:
            self._triggered = False
            return SpeechSegment(max(0, self._start - self._pad), total_samples)
        self._triggered = False
        return None


@dataclass
class SileroStream:
    """Feeds arbitrary-sized blocks of 16 kHz mono float32 audio through the model."""

    model: VadModel
    pre: AudioStreamPre
    post: VadPost
    last_probability: float = field(default=0.0, init=False)  # not a list: streams run for hours
    _pending: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32), init=False)
    _total: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self._context = np.zeros(self.pre.context, np.float32)
        self._state = np.zeros(self.pre.state_shape, np.float32)
        self._rate = np.array(self.pre.sample_rate, dtype=np.int64)
        self.segmenter = SpeechSegmenter(self.post, self.pre.sample_rate, self.pre.chunk)

    def push(self, samples: np.ndarray) -> list[SpeechSegment]:
        """Add audio; returns the segments that ended within it (usually none)."""
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        self._total += samples.size
        self._pending = np.concatenate([self._pending, samples])
        finished = []
        while self._pending.size >= self.pre.chunk:
            block, self._pending = self._pending[:self.pre.chunk], self._pending[self.pre.chunk:]
            segment = self._step(block)
            if segment is not None:
                finished.append(segment)
        return finished

    def finish(self) -> list[SpeechSegment]:
        """End of stream: zero-pad the last partial chunk (as silero does) and close."""
        finished = []
        if self._pending.size:
            block = np.zeros(self.pre.chunk, np.float32)
            block[:self._pending.size] = self._pending
            self._pending = np.zeros(0, np.float32)
            segment = self._step(block)
            if segment is not None:
                finished.append(segment)
        last = self.segmenter.finish(self._total)
        if last is not None:
            finished.append(last)
        return finished

    def _step(self, block: np.ndarray) -> SpeechSegment | None:
        window = np.concatenate([self._context, block])[None]
        probability, self._state = self.model(window, self._state, self._rate)
        self._context = block[-self.pre.context:]
        self.last_probability = probability
        return self.segmenter.push(probability)


def segments_offline(model: VadModel, audio: np.ndarray, pre: AudioStreamPre,
                     post: VadPost) -> list[SpeechSegment]:
    """All speech segments of a whole clip (the streaming path, fed at once)."""
    stream = SileroStream(model, pre, post)
    return stream.push(audio) + stream.finish()
