"""Joining ticks that reference their frame by `seq` with the frames perceive receives itself.

Why: a 640×480 frame embedded in every tick record was encoded by the aligner, sent a
second time over ipc and decoded again by perceive (~1 MB a tick). With ``embed: false``
on the aligner's frame stream, a tick carries only ``{seq, t_ns}`` for its frame and
perceive subscribes to the camera stream directly (zero-copy). This module pairs the
two: pure, bounded, no clocks, so replay stays deterministic.

Rules (frames arrive in `seq` order on one subscription; ticks arrive in tick order):

- ticks leave in the order they came; a tick waits while its frame may still come;
- a tick's frame is *not received* when a newer frame of the stream has arrived, or the
  stream has ended, and the referenced one is not buffered (dropped on the way by a
  queue policy, evicted from a full buffer, or never sent): the tick goes on without
  vision and the caller counts the reason;
- a frame whose capture time differs from the reference is a *mismatch* (a restarted
  publisher reusing seqs): the tick goes on without it, counted;
- frames older than the newest one a tick has used are released; at most `capacity`
  frames are held (the oldest goes first) and at most `capacity` ticks wait (beyond
  that the oldest goes on without its frame: a frame stream that stalls cannot stall
  perception);
- a lock-step caller asks `wants_frame` / `wants_tick` first and reads no frame (tick)
  while it is False (the buffer is full and no tick waits for a newer frame / as many ticks
  wait as the buffer holds): then nothing is evicted, and the publisher waits instead
  (replay at max rate runs ahead of perception at start). The two are never both False.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")  # the tick (opaque here)
F = TypeVar("F")  # the frame (opaque here)

FRAME_NOT_RECEIVED = "frame_not_received"
FRAME_MISMATCH = "frame_t_mismatch"


@dataclass(frozen=True)
class FrameRef:
    seq: int
    t_ns: int


@dataclass(frozen=True)
class Joined(Generic[T, F]):
    tick: T
    frame: F | None
    #: why `frame` is None although the tick referenced one (FRAME_NOT_RECEIVED / FRAME_MISMATCH)
    missing: str | None = None


class FrameJoin(Generic[T, F]):
    def __init__(self, *, capacity: int = 32) -> None:
        if capacity < 1:
            raise ValueError("frame join capacity must be ≥ 1")
        self.capacity = capacity
        self._frames: OrderedDict[int, tuple[int, F]] = OrderedDict()  # seq → (t_ns, frame)
        self._pending: deque[tuple[T, FrameRef | None]] = deque()
        self._newest_seq: int | None = None
        self.frames_ended = False

    @property
    def waiting(self) -> int:
        """Ticks held back for their frame."""
        return len(self._pending)

    @property
    def buffered(self) -> int:
        return len(self._frames)

    def wants_frame(self) -> bool:
        """False when one more frame would evict one that no tick has used yet, and no
        waiting tick needs a newer frame (so the ticks for the held frames must come first)."""
        return len(self._frames) < self.capacity or bool(self._pending)

    def wants_tick(self) -> bool:
        """False when one more waiting tick would push the oldest on without its frame."""
        return len(self._pending) < self.capacity

    def add_frame(self, seq: int, t_ns: int, frame: F) -> list[Joined[T, F]]:
        if self._newest_seq is not None and seq <= self._newest_seq:
            # seq went back: the publisher restarted; what we hold belongs to its old run
            self._frames.clear()
        self._newest_seq = seq
        self.frames_ended = False
        self._frames[seq] = (t_ns, frame)
        while len(self._frames) > self.capacity:
            self._frames.popitem(last=False)
        return self._resolve()

    def add_tick(self, tick: T, ref: FrameRef | None) -> list[Joined[T, F]]:
        """`ref` None: the tick has no frame to wait for (it still keeps its place in line)."""
        self._pending.append((tick, ref))
        out = self._resolve()
        while len(self._pending) > self.capacity:
            stalled, _ = self._pending.popleft()
            out.append(Joined(stalled, None, FRAME_NOT_RECEIVED))
            out.extend(self._resolve())
        return out

    def end_frames(self) -> list[Joined[T, F]]:
        """The frame stream (or all input) ended: every waiting tick leaves, with its frame if
        buffered, else without it."""
        self.frames_ended = True
        return self._resolve()

    def _resolve(self) -> list[Joined[T, F]]:
        out: list[Joined[T, F]] = []
        while self._pending:
            tick, ref = self._pending[0]
            if ref is None:
                out.append(Joined(tick, None))
            elif ref.seq in self._frames:
                t_ns, frame = self._frames[ref.seq]
                self._release_before(ref.seq)
                out.append(Joined(tick, frame) if t_ns == ref.t_ns else Joined(tick, None, FRAME_MISMATCH))
            elif self.frames_ended or (self._newest_seq is not None and self._newest_seq > ref.seq):
                self._release_before(ref.seq)
                out.append(Joined(tick, None, FRAME_NOT_RECEIVED))
            else:
                break  # its frame may still come
            self._pending.popleft()
        return out

    def _release_before(self, seq: int) -> None:
        # The tick's own frame stays: the next tick may reference it too (nearest policy).
        while self._frames and next(iter(self._frames)) < seq:
            self._frames.popitem(last=False)
