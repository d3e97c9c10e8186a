"""Sample-exact audio windows for the aligner (`sensorfuse.engine.align`): placement of blocks on a
sample index, time -> index mapping, and zero-filled windows ``[t - W, t]``.

Each block arrives with its capture time (`t_ns` of its first sample), its rate and its
`sample0`. Within a contiguous run the *sample clock* is the authority: a block whose time
agrees with the previous block's end (within a tolerance of 1 ms) is placed right after it
by `sample0`, so windows never duplicate or skip a sample because of nanosecond rounding
of the stamps; a gap the source reports by advancing `sample0` (and its time alike) stays
sample-exact. When the time and the sample count disagree (the source restarted or
re-anchored its clock), the block is placed by its time and becomes a new *anchor* of
the time -> index map. Samples nobody delivered are zero-filled and masked.

Pure module: no clocks, no sockets, no imports outside numpy and the standard library.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np

NS_PER_S = 1_000_000_000


class BadBlock(ValueError):
    """A block that cannot be placed; `reason` is the aligner's drop-counter key."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass
class AudioBlock:
    seq: int
    t_ns: int
    vstart: int  # first sample on the aligner's index (the source's sample0 unless re-anchored)
    samples: np.ndarray  # [frames, channels] float32
    anchored: bool = False  # placed by its time (a new anchor of the time -> index map)

    @property
    def frames(self) -> int:
        return int(self.samples.shape[0])


@dataclass
class AudioWindow:
    """An exact window of `n` samples ending at the last sample captured at or before `t_ns`."""

    sample0: int  # index of the window's first sample
    rate: int
    samples: np.ndarray  # [n, channels] float32, zeros where nothing was delivered
    valid: np.ndarray  # [n] bool, True where a delivered sample sits
    t_start_ns: int  # capture time of the first sample
    t_end_ns: int  # capture time of the last sample
    seqs: list[int]  # the blocks that contributed

    @property
    def n(self) -> int:
        return int(self.valid.shape[0])

    @property
    def valid_count(self) -> int:
        return int(self.valid.sum())

    def gaps(self) -> list[tuple[int, int]]:
        """Runs of missing samples as (offset in window, length)."""
        missing = np.flatnonzero(~self.valid)
        if missing.size == 0:
            return []
        breaks = np.flatnonzero(np.diff(missing) != 1)
        starts = np.concatenate(([missing[0]], missing[breaks + 1]))
        ends = np.concatenate((missing[breaks], [missing[-1]]))
        return [(int(s), int(e - s + 1)) for s, e in zip(starts, ends)]


class WindowBuffer:
    """Blocks of one audio stream on a sample index, bounded to `capacity` blocks."""

    def __init__(self, window_ns: int, capacity: int) -> None:
        self.window_ns = window_ns
        self.capacity = capacity
        self.rate: int | None = None
        self.channels: int | None = None
        self.n: int = 0  # window length in samples, fixed once the rate is known
        self.blocks: list[AudioBlock] = []
        self._anchor_t: list[int] = []  # anchors of the time -> index map, sorted by time
        self._anchor_v: list[int] = []
        self.vend: int | None = None  # index one past the last delivered sample
        self._next_sample0 = 0  # the source's sample0 we expect next

    # -- the time <-> index map ------------------------------------------------------
    def index_at(self, t_ns: int) -> int:
        """Index of the last sample captured at or before `t_ns`."""
        i = max(bisect.bisect_right(self._anchor_t, t_ns) - 1, 0)
        assert self.rate is not None
        return self._anchor_v[i] + ((t_ns - self._anchor_t[i]) * self.rate) // NS_PER_S

    def time_of(self, index: int) -> int:
        """Capture time (ns, floored) of sample `index`."""
        i = max(bisect.bisect_right(self._anchor_v, index) - 1, 0)
        assert self.rate is not None
        return self._anchor_t[i] + ((index - self._anchor_v[i]) * NS_PER_S) // self.rate

    def end_ns(self) -> int | None:
        """Capture time just past the last delivered sample: this stream's watermark."""
        return None if self.vend is None else self.time_of(self.vend)

    def covers(self, t_ns: int) -> bool:
        """Has the sample at or before `t_ns` been delivered (or declared lost)?"""
        return self.vend is not None and self.index_at(t_ns) < self.vend

    def window_start(self, t_ns: int) -> int:
        return self.index_at(t_ns) + 1 - self.n

    def ends_before_window(self, block: AudioBlock, rate: int, t_ns: int) -> bool:
        """Does `block` end before the window of tick `t_ns` starts (so no later tick needs it)?"""
        if self.rate is not None:
            return block.vstart + block.frames <= self.window_start(t_ns)
        n = (self.window_ns * rate + NS_PER_S // 2) // NS_PER_S  # first block: it is its own anchor
        start = block.vstart + ((t_ns - block.t_ns) * rate) // NS_PER_S + 1 - n
        return block.vstart + block.frames <= start

    # -- blocks ----------------------------------------------------------------------
    def place(self, seq: int, t_ns: int, samples: np.ndarray, rate: int, sample0: int) -> AudioBlock:
        """Decide where a block sits on the index; raises `BadBlock` (nothing is changed then)."""
        if samples.ndim != 2 or samples.shape[0] == 0:
            raise BadBlock("bad_payload", f"audio block shape {list(samples.shape)}, need [frames>0, channels]")
        if self.rate is None:
            n = (self.window_ns * rate + NS_PER_S // 2) // NS_PER_S
            if n <= 0:
                raise BadBlock("bad_payload", f"window of {self.window_ns} ns is shorter than one sample at {rate} Hz")
            return AudioBlock(seq, t_ns, sample0, samples, anchored=True)
        if rate != self.rate or samples.shape[1] != self.channels:
            raise BadBlock(
                "bad_payload",
                f"stream changed from {self.rate} Hz x {self.channels} ch to {rate} Hz x {samples.shape[1]} ch",
            )
        assert self.vend is not None
        gap_by_samples = sample0 - self._next_sample0
        gap_by_time = round((t_ns - self.time_of(self.vend)) * rate / NS_PER_S)
        tolerance = max(1, rate // 1000)  # 1 ms: stamps of a sample-exact source agree far better
        if abs(gap_by_time - gap_by_samples) <= tolerance:
            if gap_by_samples < 0:
                raise BadBlock("bad_timestamp", f"sample0 {sample0} goes back before {self._next_sample0}")
            return AudioBlock(seq, t_ns, self.vend + gap_by_samples, samples)
        if gap_by_time < -tolerance:
            raise BadBlock("bad_timestamp", f"block at {t_ns} ns overlaps the previous one by {-gap_by_time} samples")
        return AudioBlock(seq, t_ns, self.vend + max(gap_by_time, 0), samples, anchored=True)

    def append(self, block: AudioBlock, rate: int, sample0: int, *, keep: bool) -> int:
        """Commit a placed block; returns how many old blocks were evicted for capacity."""
        if self.rate is None:
            self.rate, self.channels = rate, int(block.samples.shape[1])
            self.n = (self.window_ns * rate + NS_PER_S // 2) // NS_PER_S
        if block.anchored:
            self._add_anchor(block.t_ns, block.vstart)
        frames = block.frames
        self.vend = block.vstart + frames
        self._next_sample0 = sample0 + frames
        if not keep:
            return 0
        self.blocks.append(block)
        evicted = max(len(self.blocks) - self.capacity, 0)
        if evicted:
            del self.blocks[:evicted]
        return evicted

    def _add_anchor(self, t_ns: int, vstart: int) -> None:
        if self._anchor_t and t_ns <= self._anchor_t[-1]:
            return  # a re-anchor never moves time backwards; keep the map monotonic
        self._anchor_t.append(t_ns)
        self._anchor_v.append(vstart)

    def prune_before(self, index: int) -> None:
        """Forget blocks (and anchors) that end at or before `index`."""
        k = 0
        while k < len(self.blocks) and self.blocks[k].vstart + self.blocks[k].frames <= index:
            k += 1
        if k:
            del self.blocks[:k]
        keep_from = max(bisect.bisect_right(self._anchor_v, index) - 1, 0)
        if keep_from:
            del self._anchor_t[:keep_from]
            del self._anchor_v[:keep_from]

    def window(self, t_ns: int) -> AudioWindow:
        """The `n` samples ending at the last sample at or before `t_ns`, gaps zero-filled."""
        assert self.rate is not None and self.channels is not None
        end = self.index_at(t_ns) + 1
        start = end - self.n
        out = np.zeros((self.n, self.channels), dtype=np.float32)
        valid = np.zeros(self.n, dtype=bool)
        seqs: list[int] = []
        starts = [b.vstart for b in self.blocks]
        k = max(bisect.bisect_right(starts, start) - 1, 0)
        for block in self.blocks[k:]:
            if block.vstart >= end:
                break
            lo, hi = max(block.vstart, start), min(block.vstart + block.frames, end)
            if lo >= hi:
                continue
            out[lo - start : hi - start] = block.samples[lo - block.vstart : hi - block.vstart]
            valid[lo - start : hi - start] = True
            seqs.append(block.seq)
        return AudioWindow(start, self.rate, out, valid, self.time_of(start), self.time_of(end - 1), seqs)
