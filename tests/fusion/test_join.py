"""FrameJoin (perception.join): ticks meet the frames they reference by seq."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sensorfuse.perception.join import FRAME_MISMATCH, FRAME_NOT_RECEIVED, FrameJoin, FrameRef, Joined


def ref(seq: int) -> FrameRef:
    return FrameRef(seq, seq * 100)


def names(joined: list[Joined[str, str]]) -> list[tuple[str, str | None, str | None]]:
    return [(j.tick, j.frame, j.missing) for j in joined]


def test_frame_first_then_tick() -> None:
    join: FrameJoin[str, str] = FrameJoin()
    assert join.add_frame(0, 0, "f0") == []
    assert names(join.add_tick("t0", ref(0))) == [("t0", "f0", None)]


def test_tick_first_waits_for_its_frame_and_keeps_order() -> None:
    join: FrameJoin[str, str] = FrameJoin()
    assert join.add_tick("t0", ref(0)) == []
    assert join.add_tick("t-", None) == []  # no frame wanted, but it may not overtake t0
    assert join.waiting == 2
    assert names(join.add_frame(0, 0, "f0")) == [("t0", "f0", None), ("t-", None, None)]


def test_a_newer_frame_means_the_referenced_one_is_lost() -> None:
    join: FrameJoin[str, str] = FrameJoin()
    join.add_tick("t3", ref(3))
    assert names(join.add_frame(4, 400, "f4")) == [("t3", None, FRAME_NOT_RECEIVED)]
    assert names(join.add_tick("t4", ref(4))) == [("t4", "f4", None)]


def test_capture_time_mismatch_is_not_used() -> None:
    join: FrameJoin[str, str] = FrameJoin()
    join.add_frame(2, 999, "f2")
    assert names(join.add_tick("t2", ref(2))) == [("t2", None, FRAME_MISMATCH)]


def test_end_of_frames_releases_waiting_ticks_but_keeps_buffered_frames() -> None:
    join: FrameJoin[str, str] = FrameJoin()
    join.add_frame(0, 0, "f0")
    join.add_frame(1, 100, "f1")
    assert join.end_frames() == []
    # ticks still in flight after the frame stream's end find their frames
    assert names(join.add_tick("t0", ref(0))) == [("t0", "f0", None)]
    assert names(join.add_tick("t1", ref(1))) == [("t1", "f1", None)]
    assert names(join.add_tick("t2", ref(2))) == [("t2", None, FRAME_NOT_RECEIVED)]


def test_publisher_restart_clears_old_frames() -> None:
    join: FrameJoin[str, str] = FrameJoin()
    join.add_frame(7, 700, "old7")
    join.add_frame(0, 50, "new0")  # seq went back
    assert join.buffered == 1
    assert names(join.add_tick("t", FrameRef(0, 50))) == [("t", "new0", None)]


def test_bounded_frames_and_ticks() -> None:
    join: FrameJoin[str, str] = FrameJoin(capacity=2)
    for seq in range(5):
        join.add_frame(seq, seq * 100, f"f{seq}")
    assert join.buffered == 2
    assert names(join.add_tick("t0", ref(0))) == [("t0", None, FRAME_NOT_RECEIVED)]
    stalled: FrameJoin[str, str] = FrameJoin(capacity=2)
    out = [*stalled.add_tick("a", ref(10)), *stalled.add_tick("b", ref(11)), *stalled.add_tick("c", ref(12))]
    assert names(out) == [("a", None, FRAME_NOT_RECEIVED)]  # a stalled frame stream cannot stall ticks
    assert stalled.waiting == 2
    with pytest.raises(ValueError):
        FrameJoin(capacity=0)


def test_a_lock_step_caller_that_asks_first_loses_no_frame() -> None:
    """Ticks run ahead of frames (a slow perceive reads several ticks in a row): asking
    `wants_tick` / `wants_frame` before each read, every tick gets its frame, and the two
    are never False together."""
    join: FrameJoin[str, str] = FrameJoin(capacity=1)
    ticks, frames, out = [f"t{i}" for i in range(6)], [f"f{i}" for i in range(6)], []
    while ticks or frames:
        assert join.wants_tick() or join.wants_frame()
        if ticks and join.wants_tick():  # the tick socket is read first whenever it may be
            out += join.add_tick(ticks[0], ref(int(ticks.pop(0)[1:])))
        elif frames and join.wants_frame():
            seq = int(frames[0][1:])
            out += join.add_frame(seq, seq * 100, frames.pop(0))
    assert names(out) == [(f"t{i}", f"f{i}", None) for i in range(6)]


@given(st.lists(st.booleans(), min_size=1, max_size=60), st.sets(st.integers(0, 59)), st.integers(1, 8))
def test_every_tick_leaves_once_in_order(order: list[bool], lost: set[int], lag: int) -> None:
    """Frames seq 0..n-1 (some lost on the way), one tick per frame arriving up to `lag`
    frames late or, per `order`, before its frame: each tick leaves exactly once, in
    order, with its own frame exactly when that frame arrived."""
    n = len(order)
    join: FrameJoin[int, int] = FrameJoin(capacity=64)
    out: list[Joined[int, int]] = []
    events = []
    for seq in range(n):
        if order[seq]:  # the tick comes first
            events.append(("tick", seq, seq - 0.5))
        else:
            events.append(("tick", seq, seq + lag - 0.5))
        if seq not in lost:
            events.append(("frame", seq, float(seq)))
    events.sort(key=lambda e: (e[2], e[0] == "tick"))
    ticks_sent = -1
    for kind, seq, _ in events:
        if kind == "frame":
            out += join.add_frame(seq, seq * 100, seq)
        elif seq > ticks_sent:  # ticks go in order
            for s in range(ticks_sent + 1, seq + 1):
                out += join.add_tick(s, ref(s))
            ticks_sent = seq
    out += join.end_frames()
    assert [j.tick for j in out] == list(range(n))
    for j in out:
        assert (j.frame == j.tick) if j.tick not in lost else (j.frame is None and j.missing == FRAME_NOT_RECEIVED)


def test_a_full_buffer_wants_no_frame_until_a_tick_uses_one() -> None:
    """Lock-step callers read a frame only while `wants_frame`: nothing is ever evicted."""
    join: FrameJoin[str, str] = FrameJoin(capacity=2)
    join.add_frame(0, 0, "f0")
    assert join.wants_frame()
    join.add_frame(1, 100, "f1")
    assert not join.wants_frame()  # a third frame would evict f0, whose tick has not come
    assert names(join.add_tick("t0", ref(0))) == [("t0", "f0", None)]
    assert names(join.add_tick("t1", ref(1))) == [("t1", "f1", None)]
    assert join.wants_frame()  # f0 is released (f1 stays: the next tick may reuse it)
    join.add_frame(2, 200, "f2")
    assert not join.wants_frame()
    assert join.add_tick("t3", ref(3)) == []
    assert join.wants_frame()  # a waiting tick needs a newer frame: read on
    assert names(join.add_frame(3, 300, "f3")) == [("t3", "f3", None)]


def test_waiting_ticks_are_bounded_and_never_blocked_with_the_frames() -> None:
    join: FrameJoin[str, str] = FrameJoin(capacity=2)
    join.add_tick("t0", ref(0))
    assert join.wants_tick() and join.wants_frame()
    join.add_tick("t1", ref(1))
    assert not join.wants_tick()  # a third would push t0 on without its frame
    assert join.wants_frame()  # ...so frames are read: the two are never held at once
    assert names(join.add_frame(0, 0, "f0")) == [("t0", "f0", None)]
    assert join.wants_tick()
