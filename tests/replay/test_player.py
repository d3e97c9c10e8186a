"""PlayerNode logic: exact republishing, pacing, seek, loop, stream selection."""

from __future__ import annotations

from pathlib import Path

import pytest

from sensorfuse.engine import wire
from sensorfuse.engine.errors import StartupError
from sensorfuse.engine.testing import NodeHarness
from sensorfuse.replay.player import PlayerNode
from tests.replay.replay_helpers import payload_bytes, publish_like_runtime

pytestmark = pytest.mark.timeout(60)


def _player(path: Path, **params: object) -> PlayerNode:
    h = NodeHarness(PlayerNode, {"path": str(path), **params})
    node = h.node
    assert isinstance(node, PlayerNode)
    return node


def _run(node: PlayerNode, limit: int = 100_000) -> list[wire.Message]:
    """Drive `produce` at each due time (a fake clock), as the runtime would."""
    out: list[wire.Message] = []
    now = 0
    for _ in range(limit):
        got = node.produce(now)
        if got is None:
            return out
        out += [publish_like_runtime(o) for o in got]
        now = node.next_due_ns if node.next_due_ns is not None else now
    raise AssertionError("player did not finish")


def test_republishes_every_message_exactly_in_capture_time_order(recorded: Path, session_msgs: list) -> None:
    node = _player(recorded, rate="max")
    got = _run(node)
    node.stop()
    assert [m.t_ns for m in got] == sorted(m.t_ns for m in got)
    by_key = {(m.stream, m.seq): m for m in session_msgs}
    assert len(got) == len(session_msgs)
    for m in got:
        original = by_key[(m.stream, m.seq)]
        expected = original.header
        assert (m.header.t_ns, m.header.src, m.header.session, m.header.kind) == (
            expected.t_ns, expected.src, expected.session, expected.kind)
        assert (m.header.layout, m.header.encoding, m.header.rate, m.header.sample0, m.header.meta) == (
            expected.layout, expected.encoding, expected.rate, expected.sample0, expected.meta)
        assert payload_bytes(m) == payload_bytes(original)  # records too: msgpack bytes verbatim


def test_rate_paces_at_recorded_spacing_divided_by_rate(recorded: Path) -> None:
    for rate in (1.0, 4.0):
        node = _player(recorded, rate=rate, batch=1)
        first = node.produce(1_000)
        assert first is not None and len(first) == 1
        t_first = first[0].t_ns
        checked = 0
        now = 1_000
        while True:
            due = node.next_due_ns
            if due is not None and due > now:
                assert node.produce(due - 1) == []  # not yet due
                now = due
            got = node.produce(now)
            if got is None:
                break
            for o in got:
                assert now - 1_000 == pytest.approx((o.t_ns - t_first) / rate, abs=1)
                checked += 1
        node.stop()
        assert checked > 40


def test_seek_start_end_and_stream_selection(recorded: Path) -> None:
    full = _run(_player(recorded, rate="max"))
    t0 = full[0].t_ns
    node = _player(recorded, rate="max", start_s=0.1, end_s=0.25, streams=["cam0/frame", "text/in"])
    got = _run(node)
    expected = [m for m in full if m.stream in ("cam0/frame", "text/in")
                and t0 + 100_000_000 <= m.t_ns < t0 + 250_000_000]
    assert [(m.stream, m.seq) for m in got] == [(m.stream, m.seq) for m in expected]
    assert got


def test_loop_continues_time_and_seq(recorded: Path) -> None:
    node = _player(recorded, rate="max", loop=True, streams=["cam0/frame"])
    got: list[wire.Message] = []
    while len(got) < 30:
        outs = node.produce(0)
        assert outs is not None
        got += [publish_like_runtime(o) for o in outs]
    seqs = [m.seq for m in got[:30]]
    assert seqs == list(range(30))
    times = [m.t_ns for m in got[:30]]
    assert all(b > a for a, b in zip(times, times[1:]))
    assert times[12] - times[11] >= 1_000_000_000  # the pass boundary is a visible gap


def test_watermarks_never_pass_a_message_still_to_come(recorded: Path) -> None:
    """In-line watermarks (a stream quiet for `watermark_ms` of log time) and the runtime's
    idles (`watermark_ns`), across `loop` passes: no later message of the stream is captured
    before what was promised."""
    streams = ["cam0/frame", "text/in"]
    h = NodeHarness(PlayerNode, {"path": str(recorded), "rate": "max", "loop": True, "watermark_ms": 50,
                                 "streams": streams, "batch": 1})
    h.ctx.outputs = {s: s for s in streams}  # wired as in a graph
    seen: list[tuple[str, str, int]] = []  # (what, stream, t_ns) in the order it goes out
    while sum(what == "msg" for what, _, _ in seen) < 45:  # 15 messages a pass
        seen += [("idle", s, wm) for s in streams if (wm := h.node.watermark_ns(s)) is not None]
        for out in h.node.produce(0) or []:
            if out.kind == wire.KIND_IDLE:
                seen.append(("inline", out.port, out.t_ns))
            else:
                seen.append(("msg", out.port, publish_like_runtime(out).t_ns))
    h.node.stop()
    for i, (what, stream, promised) in enumerate(seen):
        if what != "msg":
            later = [t for w, s, t in seen[i + 1:] if w == "msg" and s == stream]
            assert all(t > promised for t in later), (what, stream, promised, later[:3])
    inline = [(s, t) for w, s, t in seen if w == "inline"]
    assert {s for s, _ in inline} == set(streams)  # text after its last line, frames across the loop gap
    assert len([s for s, _ in inline if s == "text/in"]) >= 6


def test_missing_or_non_mcap_file_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(StartupError, match="no such log"):
        _player(tmp_path / "nope.mcap")
    bad = tmp_path / "bad.mcap"
    bad.write_bytes(b"not an mcap file at all")
    with pytest.raises(StartupError, match="not an MCAP"):
        _player(bad)
    with pytest.raises(StartupError, match="rate"):
        _player(bad, rate=0)
