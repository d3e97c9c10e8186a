"""Sample-exact stamping of audio blocks, gap and drift detection, and the 16 kHz stream.

`BlockStamper` turns "a block of N frames whose first sample the ADC took at time T" into
``(t_ns, sample0)`` with the rule of docs/time.md: the first block anchors the stream;
afterwards block k starts at ``anchor + sample0 * 1e9 / rate`` (sample-exact), whatever
jitter the measured times have. The measured times are still used for three things:

- a *gap*: the driver reported an overflow and the measured time runs ahead of the
  sample clock, or the node itself had to drop blocks (`lost_frames`): ``sample0``
  skips the missing samples, so time and index both jump and nothing is silently
  concatenated. Without an overflow PortAudio delivers every sample, so a jump in the
  measured time alone is a clock artifact, never a gap (PulseAudio's ALSA plugin moves
  its ADC-time estimate by tens of ms while a stream settles, with no sample lost);
- *drift*: the slope of (measured - sample clock) over time, in ppm, for the metrics;
- *re-anchoring* when the two clocks disagree by more than ``max_skew_ns`` for
  `SKEW_BLOCKS` blocks in a row: the anchor moves by their median (a discontinuity with
  ``gap_samples: 0`` and ``reanchor_ns``); a single outlier moves nothing.

`Resampler16k` wraps a streaming soxr resampler (stateful across blocks), restarted at
each discontinuity so no filter state smears across a gap.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import soxr

NS = 1_000_000_000
MODEL_RATE = 16_000
SKEW_BLOCKS = 25


@dataclass
class Stamp:
    t_ns: int
    sample0: int
    gap_samples: int = 0
    reanchor_ns: int = 0
    overflow: bool = False

    @property
    def discontinuity(self) -> bool:
        return bool(self.gap_samples or self.reanchor_ns or self.overflow)


class BlockStamper:
    def __init__(self, rate: int, *, max_skew_ns: int = 20_000_000, drift_points: int = 512) -> None:
        self.rate = rate
        self.max_skew_ns = max_skew_ns
        self.anchor_ns: int | None = None
        self.anchor_sample = 0
        self.next_sample0 = 0
        self._errors: deque[tuple[float, float]] = deque(maxlen=drift_points)  # (elapsed s, error ns)
        self._recent: deque[int] = deque(maxlen=SKEW_BLOCKS)
        self._first_measured: int | None = None

    def time_of(self, sample: int) -> int:
        assert self.anchor_ns is not None
        return self.anchor_ns + (sample - self.anchor_sample) * NS // self.rate

    def stamp(self, frames: int, measured_ns: int, *, overflow: bool = False, lost_frames: int = 0) -> Stamp:
        """Stamp the next block of `frames` whose first sample was measured at `measured_ns`
        (`lost_frames`: samples the caller knows were dropped just before this block)."""
        if self.anchor_ns is None:
            self.anchor_ns, self.anchor_sample = measured_ns, 0
            self._first_measured = measured_ns
            out = Stamp(measured_ns, 0)
        else:
            error = measured_ns - self.time_of(self.next_sample0 + lost_frames)
            out = Stamp(0, self.next_sample0, overflow=overflow, gap_samples=lost_frames)
            if overflow and error > frames * NS // self.rate // 2:
                out.gap_samples += round(error * self.rate / NS)
            else:
                self._track_skew(out, error, measured_ns)
            out.sample0 += out.gap_samples
            out.t_ns = self.time_of(out.sample0)
        self.next_sample0 = out.sample0 + frames
        return out

    def _track_skew(self, out: Stamp, error: int, measured_ns: int) -> None:
        self._recent.append(error)
        recent = sorted(self._recent)
        if len(recent) == SKEW_BLOCKS and (recent[0] > self.max_skew_ns or recent[-1] < -self.max_skew_ns):
            shift = recent[len(recent) // 2]
            assert self.anchor_ns is not None
            self.anchor_ns += shift
            out.reanchor_ns = shift
            self._recent.clear()
            self._errors.clear()
            self._first_measured = measured_ns
            return
        assert self._first_measured is not None
        self._errors.append(((measured_ns - self._first_measured) / NS, float(error)))

    def drift_ppm(self) -> float | None:
        """Sample clock vs host clock: + means the device's clock runs slow (ppm)."""
        if len(self._errors) < 16:
            return None
        x = np.array([e[0] for e in self._errors])
        y = np.array([e[1] for e in self._errors])
        if float(x.max() - x.min()) < 0.5:
            return None
        slope_ns_per_s = float(np.polyfit(x, y, 1)[0])
        return slope_ns_per_s / 1e3  # ns per s -> ppm


class Resampler16k:
    """Streaming mono resampler to 16 kHz; `sample0` counts 16 kHz samples on the stream's clock."""

    def __init__(self, in_rate: int) -> None:
        self.in_rate = in_rate
        self._stream: soxr.ResampleStream | None = None
        self.next_sample0 = 0
        self.seg_t_ns = 0  # capture time of the segment's first 16 kHz sample
        self.seg_sample0 = 0

    def _new_segment(self, t_ns: int, in_sample0: int) -> None:
        self._stream = soxr.ResampleStream(self.in_rate, MODEL_RATE, 1, dtype="float32", quality="HQ")
        self.seg_t_ns = t_ns
        self.seg_sample0 = self.next_sample0 = in_sample0 * MODEL_RATE // self.in_rate

    def push(self, samples: np.ndarray, t_ns: int, in_sample0: int, *, new_segment: bool) -> tuple[np.ndarray, int, int]:
        """Feed one block ([frames, channels]); returns (out [n, 1], out sample0, out t_ns)."""
        if self._stream is None or new_segment:
            self._new_segment(t_ns, in_sample0)
        assert self._stream is not None
        mono = samples.mean(axis=1, dtype=np.float32) if samples.shape[1] > 1 else samples[:, 0]
        out = self._stream.resample_chunk(np.ascontiguousarray(mono, dtype=np.float32), last=False)
        return self._emit(out)

    def flush(self) -> tuple[np.ndarray, int, int]:
        """End the current segment: the resampler's tail (before a gap, or at the end)."""
        if self._stream is None:
            return np.zeros((0, 1), np.float32), self.next_sample0, self.seg_t_ns
        out = self._stream.resample_chunk(np.zeros(0, np.float32), last=True)
        self._stream = None
        return self._emit(out)

    def _emit(self, out: np.ndarray) -> tuple[np.ndarray, int, int]:
        sample0 = self.next_sample0
        t_ns = self.seg_t_ns + (sample0 - self.seg_sample0) * NS // MODEL_RATE
        self.next_sample0 += len(out)
        return np.asarray(out, dtype=np.float32).reshape(-1, 1), sample0, t_ns
