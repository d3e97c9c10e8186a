"""Event-time alignment: a pure, bounded synchronizer (docs/time.md is the user's page).

A plain object: `add` one message, get back the ticks it completes. No sockets, threads,
locks or clock reads; the only notion of "now" is event time carried by the messages, so
the same input order gives the same ticks whether it comes from live sensors or a log at
any replay speed.

- Ticks are scheduled at every message of a trigger stream, or on a fixed-rate grid
  (``origin_ns + k * period_ns``).
- A tick `t` is emitted when every required stream's watermark has passed what `t` needs
  (emitted_by ``watermark``), or when the *frontier* (the newest capture time seen on any
  stream) reaches ``t + lateness_ns`` (``lateness``), or when too many ticks are pending
  (``capacity``), or on `finish` (``flush``). Ticks are emitted in time order.
- Per stream: ``nearest`` (the message closest to `t` within ``slop_ns``), ``window`` (the
  exact samples ``[t - W, t]``, `sensorfuse.engine.align_audio`), ``latest`` (the newest message at
  or before `t`, no older than ``ttl_ns``).
- A stream's watermark is the capture time up to which it is complete: its messages are
  taken in `seq` order, so a message that overtakes a missing one is held until the gap
  fills or is declared lost (the stream has moved ``reorder_ns`` past it). A producer's
  promise (`advance`, from an `idle` message) moves it further while the stream is quiet;
  it never moves the frontier, so lateness stays a matter of data.
- Every refused input is counted by (stream, reason); reasons are `DROP_REASONS`.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from sensorfuse.engine.align_audio import AudioWindow, BadBlock, WindowBuffer

NEAREST, WINDOW, LATEST = "nearest", "window", "latest"
DROP_REASONS = ("late", "over_capacity", "duplicate_seq", "out_of_order", "bad_timestamp", "bad_payload")
#: Per-stream status in a tick: delivered in time / stream complete but nothing in bound /
#: watermark behind `t` when the tick had to go / never delivered anything / ended.
STATUSES = ("ok", "missing", "late", "absent", "ended")


@dataclass(frozen=True)
class StreamPolicy:
    policy: Literal["nearest", "window", "latest"]
    slop_ns: int = 0
    window_ns: int = 0
    ttl_ns: int = 0
    required: bool = True
    capacity: int = 256  # messages (blocks) kept per stream

    def __post_init__(self) -> None:
        if self.policy not in (NEAREST, WINDOW, LATEST):
            raise ValueError(f"policy {self.policy!r}: use nearest, window or latest")
        if min(self.slop_ns, self.window_ns, self.ttl_ns) < 0 or self.capacity < 1:
            raise ValueError("slop, window and ttl must be >= 0 and capacity >= 1")
        if self.policy == WINDOW and self.window_ns <= 0:
            raise ValueError("a window policy needs window_ns > 0")

    @property
    def lookahead_ns(self) -> int:
        """How far past `t` the stream must be complete before tick `t` is final."""
        return self.slop_ns if self.policy == NEAREST else 0


@dataclass(frozen=True)
class AlignerConfig:
    streams: dict[str, StreamPolicy]
    trigger: str | None = None  # tick at every message of this stream ...
    period_ns: int | None = None  # ... or at origin_ns + k * period_ns
    origin_ns: int = 0
    lateness_ns: int = 100_000_000
    reorder_ns: int | None = None  # default: lateness_ns
    max_pending_ticks: int = 64

    def __post_init__(self) -> None:
        if (self.trigger is None) == (self.period_ns is None):
            raise ValueError("give exactly one of trigger (a stream name) or period_ns")
        if self.trigger is not None and self.trigger not in self.streams:
            raise ValueError(f"trigger {self.trigger!r} is not one of the streams {sorted(self.streams)}")
        if self.period_ns is not None and self.period_ns <= 0:
            raise ValueError("period_ns must be > 0")
        if self.lateness_ns < 0 or self.max_pending_ticks < 1:
            raise ValueError("lateness_ns must be >= 0 and max_pending_ticks >= 1")


@dataclass(frozen=True)
class Item:
    """One buffered message of a nearest/latest stream."""

    seq: int
    t_ns: int
    data: Any


@dataclass
class Tick:
    index: int
    t_ns: int
    emitted_by: str  # watermark | lateness | capacity | flush
    members: dict[str, Item | AudioWindow | None]
    status: dict[str, str]
    late_ns: dict[str, int]  # how far each stream's watermark was behind what `t` needs

    @property
    def mask(self) -> dict[str, bool]:
        return {name: m is not None for name, m in self.members.items()}


@dataclass
class _Held:
    t_ns: int
    data: Any
    rate: int | None
    sample0: int | None


@dataclass
class _Stream:
    name: str
    policy: StreamPolicy
    next_seq: int | None = None
    last_t: int | None = None
    max_seen_t: int | None = None
    first_t: int | None = None  # capture time of the first message taken in seq order
    promised_t: int | None = None  # the producer's watermark (`Aligner.advance`) past last_t
    ended: bool = False
    held: dict[int, _Held] = field(default_factory=dict)
    lost: list[tuple[int, int]] = field(default_factory=list)  # seq ranges declared lost
    items: list[Item] = field(default_factory=list)  # nearest / latest, in time order
    times: list[int] = field(default_factory=list)  # items' t_ns, for bisect
    audio: WindowBuffer | None = None
    lookahead_ns: int = 0  # the policy's, except 0 for the trigger (its member is exact)

    def watermark(self) -> int | None:
        if self.audio is not None:
            return self.audio.end_ns()
        if self.promised_t is None or self.last_t is None:
            return self.last_t if self.promised_t is None else self.promised_t
        return max(self.last_t, self.promised_t)

    def complete_for(self, t_ns: int) -> bool:
        if self.ended:
            return True
        if self.audio is not None:
            return self.audio.covers(t_ns)
        wm = self.watermark()
        if wm is None or wm < t_ns:
            return False
        # Once a message at or after `t_ns` is here, no later one can be nearer (later messages
        # come later in time, and ties go to the earlier): the tick need not wait until the
        # stream is complete to t + slop. A second camera's frame stamped at the tick's time
        # (cameras on one clock, a replayed multi-camera session) then costs no frame of waiting.
        return wm >= t_ns + self.lookahead_ns or (self.lookahead_ns > 0 and bool(self.times)
                                                  and self.times[-1] >= t_ns)


def _check_time(t_ns: Any) -> str | None:
    if isinstance(t_ns, bool) or not isinstance(t_ns, (int, float, np.integer, np.floating)):
        return f"t_ns is {type(t_ns).__name__}, not a number"
    if isinstance(t_ns, (float, np.floating)) and not math.isfinite(t_ns):
        return f"t_ns is {t_ns}"
    if t_ns < 0:
        return f"t_ns is negative ({t_ns})"
    return None


class Aligner:
    """Add messages, get ticks. `drops[(stream, reason)]` counts every refused input."""

    def __init__(self, config: AlignerConfig, *, on_drop: Callable[[str, str, str], None] | None = None) -> None:
        self.config = config
        self._reorder_ns = config.reorder_ns if config.reorder_ns is not None else config.lateness_ns
        self._streams: dict[str, _Stream] = {}
        for name, policy in config.streams.items():
            self.add_stream(name, policy)
        self._on_drop = on_drop
        self.drops: dict[tuple[str, str], int] = {}
        self.gaps_declared = 0
        self._pending: list[int] = []
        self._frontier: int | None = None
        self._last_emitted: int | None = None
        self._next_grid: int | None = None  # fixed-rate mode: next tick time to schedule
        self._tick_index = 0

    def add_stream(self, name: str, policy: StreamPolicy) -> None:
        if name in self._streams:
            raise ValueError(f"stream {name!r} is already configured")
        audio = WindowBuffer(policy.window_ns, policy.capacity) if policy.policy == WINDOW else None
        lookahead = 0 if name == self.config.trigger else policy.lookahead_ns
        self._streams[name] = _Stream(name, policy, audio=audio, lookahead_ns=lookahead)

    @property
    def streams(self) -> tuple[str, ...]:
        return tuple(self._streams)

    def watermark(self, stream: str) -> int | None:
        return self._streams[stream].watermark()

    # -- input ---------------------------------------------------------------------------
    def add(
        self, stream: str, seq: int, t_ns: Any, data: Any = None, *,
        rate: int | None = None, sample0: int | None = None,
    ) -> list[Tick]:
        """Take one message; returns the ticks that are now final (possibly none)."""
        st = self._streams[stream]
        problem = _check_time(t_ns)
        if problem is not None:
            return self._drop(stream, "bad_timestamp", problem)
        t = int(t_ns)
        if st.policy.policy == WINDOW and (rate is None or rate <= 0 or sample0 is None or data is None):
            return self._drop(stream, "bad_payload", "a window stream needs audio samples, rate and sample0")
        if st.policy.policy == WINDOW and not np.isfinite(data).all():
            # one NaN would poison every consumer's state (Silero VAD carries it forever): the
            # block is refused and its samples become a gap (zeros, flagged in `gaps`)
            bad = int(np.size(data) - np.isfinite(data).sum())
            return self._drop(stream, "bad_payload", f"seq {seq}: {bad} NaN/inf samples")
        if st.ended:
            return self._drop(stream, "late", f"seq {seq} after the stream ended")
        if st.next_seq is None:
            st.next_seq = seq
        elif seq < st.next_seq or seq in st.held:
            if st.max_seen_t is not None and t > st.max_seen_t and seq not in st.held:
                self._restart(st, seq)  # the producer restarted: its seq began again
            elif any(lo <= seq <= hi for lo, hi in st.lost):
                return self._drop(stream, "out_of_order", f"seq {seq} arrived after its gap was declared lost")
            else:
                return self._drop(stream, "duplicate_seq", f"seq {seq} already seen")
        if st.last_t is not None and t < st.last_t:
            return self._drop(stream, "bad_timestamp", f"t_ns {t} goes backwards (last {st.last_t})")
        held = _Held(t, data, rate, sample0)
        if seq > st.next_seq:
            if len(st.held) >= st.policy.capacity:
                return self._drop(stream, "over_capacity", f"{len(st.held)} messages already wait for seq {st.next_seq}")
            st.held[seq] = held
        else:
            self._take(st, seq, held)
            self._release_held(st)
        st.max_seen_t = t if st.max_seen_t is None else max(st.max_seen_t, t)
        self._advance_frontier(st, t)
        self._expire_gap(st)
        return self._emit_ready()

    def advance(self, stream: str, seq: int, t_ns: Any) -> list[Tick]:
        """The producer promises that no message of `stream` from `seq` on (the next one it
        will send) has a capture time below `t_ns` (an `idle` message's watermark). When
        nothing is missing before `seq`, the stream counts as complete up to `t_ns`: ticks
        waiting only on it are emitted (``watermark``). Behind a gap, on a stale promise
        (data has come since) or on a ``window`` stream (audio is dense: its samples are its
        watermark) nothing changes. Returns the ticks now final."""
        st = self._streams[stream]
        if st.ended or st.audio is not None or _check_time(t_ns) is not None:
            return []
        if st.next_seq is not None and (seq != st.next_seq or st.held):
            return []
        t = int(t_ns)
        if st.promised_t is not None and t <= st.promised_t:
            return []
        st.promised_t = t
        return self._emit_ready()

    def end_stream(self, stream: str) -> list[Tick]:
        """The stream's producer has finished: ticks stop waiting for it."""
        st = self._streams[stream]
        self._declare_lost(st)
        st.ended = True
        return self._emit_ready()

    def finish(self) -> list[Tick]:
        """Every input has ended: emit all pending ticks with what is there."""
        for st in self._streams.values():
            self._declare_lost(st)
            st.ended = True  # nothing is late any more: what is missing now is "ended"
        if self.config.period_ns is not None and self._frontier is not None:
            self._schedule_grid(force=True)
        out: list[Tick] = []
        while self._pending:
            out.append(self._emit("flush"))
        return out

    # -- per-stream bookkeeping -------------------------------------------------------------
    def _drop(self, stream: str, reason: str, detail: str) -> list[Tick]:
        self.drops[(stream, reason)] = self.drops.get((stream, reason), 0) + 1
        if self._on_drop is not None:
            self._on_drop(stream, reason, detail)
        return []

    def _restart(self, st: _Stream, seq: int) -> None:
        self._declare_lost(st)
        st.next_seq = seq
        st.promised_t = None  # the old producer's promise
        st.lost.clear()

    def _take(self, st: _Stream, seq: int, msg: _Held) -> None:
        """Accept the in-order message `seq` (the next one expected)."""
        assert st.next_seq == seq
        st.next_seq = seq + 1
        if st.last_t is not None and msg.t_ns < st.last_t:
            self._drop(st.name, "bad_timestamp", f"t_ns {msg.t_ns} goes backwards (last {st.last_t})")
            return
        if st.first_t is None:
            st.first_t = msg.t_ns
        if st.audio is not None:
            self._take_audio(st, seq, msg)
            return
        st.last_t = msg.t_ns
        if self._is_late(st, msg.t_ns):
            self._drop(st.name, "late", f"seq {seq} at {msg.t_ns} ns is behind emitted tick {self._last_emitted}")
            return
        st.items.append(Item(seq, msg.t_ns, msg.data))
        st.times.append(msg.t_ns)
        if len(st.items) > st.policy.capacity:
            del st.items[0], st.times[0]
            self._drop(st.name, "over_capacity", f"more than {st.policy.capacity} messages buffered")
        if st.name == self.config.trigger:
            self._schedule(msg.t_ns)

    def _take_audio(self, st: _Stream, seq: int, msg: _Held) -> None:
        assert st.audio is not None and msg.rate is not None and msg.sample0 is not None
        samples = np.asarray(msg.data, dtype=np.float32)
        if samples.ndim == 1:
            samples = samples[:, None]
        try:
            block = st.audio.place(seq, msg.t_ns, samples, msg.rate, msg.sample0)
        except BadBlock as exc:
            self._drop(st.name, exc.reason, exc.detail)
            return
        st.last_t = msg.t_ns
        late = self._last_emitted is not None and st.audio.ends_before_window(block, msg.rate, self._last_emitted)
        evicted = st.audio.append(block, msg.rate, msg.sample0, keep=not late)
        if late:
            self._drop(st.name, "late", f"block seq {seq} ends before the window of emitted tick {self._last_emitted}")
        for _ in range(evicted):
            self._drop(st.name, "over_capacity", f"more than {st.policy.capacity} blocks buffered")
        if st.name == self.config.trigger:
            self._schedule(msg.t_ns)

    def _is_late(self, st: _Stream, t_ns: int) -> bool:
        """Would no tick still to come use a message captured at `t_ns`?"""
        if self._last_emitted is None:
            return False
        if st.name == self.config.trigger and t_ns <= self._last_emitted:
            return True
        if st.policy.policy == NEAREST:
            return t_ns <= self._last_emitted - st.policy.slop_ns
        return t_ns + st.policy.ttl_ns <= self._last_emitted

    def _release_held(self, st: _Stream) -> None:
        while st.next_seq in st.held:
            seq = st.next_seq
            self._take(st, seq, st.held.pop(seq))

    def _expire_gap(self, st: _Stream) -> None:
        wm = st.watermark()
        if st.held and st.max_seen_t is not None and (wm is None or st.max_seen_t - wm > self._reorder_ns):
            self._declare_lost(st)

    def _declare_lost(self, st: _Stream) -> None:
        """Give up on the missing seqs before the held messages and take those in order."""
        while st.held:
            first = min(st.held)
            assert st.next_seq is not None
            st.lost.append((st.next_seq, first - 1))
            del st.lost[:-64]  # a bounded memory of gaps, only used to name the drop reason
            self.gaps_declared += 1
            st.next_seq = first
            self._release_held(st)

    # -- ticks ---------------------------------------------------------------------------------
    def _advance_frontier(self, st: _Stream, t_ns: int) -> None:
        end = st.watermark() if st.audio is not None else None
        newest = max(t_ns, end) if end is not None else t_ns
        self._frontier = newest if self._frontier is None else max(self._frontier, newest)
        if self.config.period_ns is not None:
            self._schedule_grid()

    def _schedule(self, t_ns: int) -> None:
        if self._pending and t_ns <= self._pending[-1]:
            return  # same capture time as the previous trigger: one tick
        if self._last_emitted is not None and t_ns <= self._last_emitted:
            return
        self._pending.append(t_ns)

    def _schedule_grid(self, *, force: bool = False) -> None:
        period = self.config.period_ns
        assert period is not None and self._frontier is not None
        if self._next_grid is None:
            # The grid starts at the earliest capture time of any stream; decided once every
            # stream has started or the frontier is a lateness bound past the earliest seen.
            firsts = [s.first_t for s in self._streams.values() if s.first_t is not None]
            if not firsts:
                return
            all_started = len(firsts) == len(self._streams)
            if not (all_started or force) and self._frontier < min(firsts) + self.config.lateness_ns:
                return
            k = -((self.config.origin_ns - min(firsts)) // period)  # ceil((first - origin) / period)
            self._next_grid = self.config.origin_ns + k * period
        while self._next_grid <= self._frontier:
            self._schedule(self._next_grid)
            self._next_grid += period

    def _emit_ready(self) -> list[Tick]:
        out: list[Tick] = []
        required = [s for s in self._streams.values() if s.policy.required]
        while self._pending:
            t = self._pending[0]
            if all(s.complete_for(t) for s in required):
                out.append(self._emit("watermark"))
            elif self._frontier is not None and self._frontier >= t + self.config.lateness_ns:
                out.append(self._emit("lateness"))
            elif len(self._pending) > self.config.max_pending_ticks:
                out.append(self._emit("capacity"))
            else:
                break
        return out

    def _emit(self, emitted_by: str) -> Tick:
        t = self._pending.pop(0)
        members: dict[str, Item | AudioWindow | None] = {}
        status: dict[str, str] = {}
        late_ns: dict[str, int] = {}
        for st in self._streams.values():
            members[st.name] = self._member(st, t)
            status[st.name], late_ns[st.name] = self._status(st, t, members[st.name] is not None)
        tick = Tick(self._tick_index, t, emitted_by, members, status, late_ns)
        self._tick_index += 1
        self._last_emitted = t
        for st in self._streams.values():
            self._prune(st, t)
        return tick

    def _status(self, st: _Stream, t: int, present: bool) -> tuple[str, int]:
        wm = st.watermark()
        if wm is None:
            return ("ended" if st.ended else "absent"), 0
        if st.ended:
            covered = st.audio.covers(t) if st.audio is not None else wm >= t + st.lookahead_ns
            return ("ok" if present else "missing" if covered else "ended"), 0
        if not st.policy.required:
            return ("ok" if present else "missing"), 0  # ticks never wait for it: no lateness
        if not st.complete_for(t):
            needed = st.audio.time_of(st.audio.index_at(t) + 1) if st.audio is not None else t + st.lookahead_ns
            return "late", max(needed - wm, 1)
        return ("ok" if present else "missing"), 0

    def _member(self, st: _Stream, t: int) -> Item | AudioWindow | None:
        if st.audio is not None:
            if st.audio.rate is None:
                return None
            window = st.audio.window(t)
            return window if window.valid_count else None
        if st.policy.policy == NEAREST:
            i = bisect.bisect_left(st.times, t)
            best: Item | None = None
            for j in (i - 1, i):  # the neighbours of t; ties go to the earlier capture
                if 0 <= j < len(st.items) and abs(st.items[j].t_ns - t) <= st.policy.slop_ns:
                    if best is None or abs(st.items[j].t_ns - t) < abs(best.t_ns - t):
                        best = st.items[j]
            return best
        i = bisect.bisect_right(st.times, t) - 1
        if i >= 0 and t - st.items[i].t_ns <= st.policy.ttl_ns:
            return st.items[i]
        return None

    def _prune(self, st: _Stream, t: int) -> None:
        if st.audio is not None:
            if st.audio.rate is not None:
                st.audio.prune_before(st.audio.window_start(t))
            return
        if st.policy.policy == NEAREST:
            keep_from = bisect.bisect_left(st.times, t - st.policy.slop_ns)
        else:  # latest: keep the newest item at or before t; it may serve the next ticks
            keep_from = max(bisect.bisect_right(st.times, t) - 1, 0)
        if keep_from:
            del st.items[:keep_from], st.times[:keep_from]
