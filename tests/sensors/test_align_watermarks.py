"""Producers' watermarks (`Aligner.advance`, from `idle` messages): a required sparse stream
stops holding ticks back once its watermark passes them, never behind a gap, and the same
inputs and watermarks give the same ticks."""

from __future__ import annotations

import random

import numpy as np
import pytest

from sensorfuse.engine.align import Aligner, AlignerConfig, StreamPolicy, Tick
from sensorfuse.engine.node import Out
from sensorfuse.engine.testing import NodeHarness
from sensorfuse.nodes.aligner import AlignerNode
from tests.sensors.align_helpers import MS, tick_key

pytestmark = pytest.mark.timeout(30)
FRAME_NS = 33 * MS


def config(**kw: object) -> AlignerConfig:
    streams = {"frame": StreamPolicy("nearest", slop_ns=10 * MS),
               "text": StreamPolicy("latest", ttl_ns=5000 * MS)}  # required, sparse
    return AlignerConfig(streams, **{"trigger": "frame", "lateness_ns": 2000 * MS, **kw})  # type: ignore[arg-type]


def frames(aligner: Aligner, first: int, last: int) -> list[Tick]:
    out: list[Tick] = []
    for k in range(first, last):
        out += aligner.add("frame", k, k * FRAME_NS, f"f{k}")
    return out


def test_a_required_sparse_stream_no_longer_holds_ticks_once_its_watermark_passes() -> None:
    held = Aligner(config())
    held.add("text", 0, 0, "hello")
    assert frames(held, 1, 10) == []  # without a promise: held until the lateness bound (2 s)

    al = Aligner(config())
    al.add("text", 0, 0, "hello")
    assert frames(al, 1, 10) == []
    ticks = al.advance("text", 1, 5 * FRAME_NS)  # quiet up to frame 5: ticks 1..5 go
    assert [t.t_ns for t in ticks] == [k * FRAME_NS for k in range(1, 6)]
    assert {t.emitted_by for t in ticks} == {"watermark"}
    assert all(t.status["text"] == "ok" and t.members["text"].data == "hello" for t in ticks)  # type: ignore[union-attr]
    assert al.watermark("text") == 5 * FRAME_NS
    # the frames 6..9 wait again: their ticks need text up to their own time
    assert al.advance("text", 1, 5 * FRAME_NS) == []
    later = al.add("text", 1, 20 * FRAME_NS, "world")  # data moves it past the promise
    assert [t.t_ns for t in later] == [k * FRAME_NS for k in range(6, 10)]


def test_a_stream_that_never_sent_anything_is_complete_up_to_its_watermark() -> None:
    al = Aligner(config())
    assert frames(al, 0, 3) == []
    ticks = al.advance("text", 0, 2 * FRAME_NS)
    assert [t.t_ns for t in ticks] == [0, FRAME_NS, 2 * FRAME_NS]
    assert [t.status["text"] for t in ticks] == ["missing"] * 3  # alive and quiet, not absent
    assert al.add("text", 0, 3 * FRAME_NS, "first") == []  # its first message then sets the seq base
    assert al.drops == {}


def test_a_watermark_behind_a_gap_or_stale_does_not_advance() -> None:
    al = Aligner(config())
    al.add("text", 0, 0, "a")
    al.add("text", 2, 2 * FRAME_NS, "c")  # seq 1 missing: held
    assert frames(al, 1, 4) == []
    assert al.advance("text", 3, 3 * FRAME_NS) == []  # promises past a hole prove nothing
    assert al.advance("text", 1, 3 * FRAME_NS) == []  # seq 1 is held back by c: not the gap's end
    assert al.watermark("text") == 0

    stale = Aligner(config())
    stale.add("text", 0, 0, "a")
    stale.add("text", 1, FRAME_NS, "b")
    assert frames(stale, 2, 4) == []
    assert stale.advance("text", 1, 3 * FRAME_NS) == []  # sent before b: b says more
    assert stale.advance("text", 2, 3 * FRAME_NS) != []


def test_a_watermark_moves_no_frontier_and_audio_ignores_it() -> None:
    al = Aligner(config(lateness_ns=100 * MS))
    al.add("text", 0, 0, "a")
    assert frames(al, 1, 2) == []
    assert al.advance("text", 1, 10_000 * MS)  # the ticks waiting on text go ...
    assert frames(al, 2, 3) != []  # ... and a new one still waits for its frame only
    audio = Aligner(AlignerConfig({"audio": StreamPolicy("window", window_ns=40 * MS)}, period_ns=20 * MS))
    assert audio.advance("audio", 0, 10_000 * MS) == [] and audio.watermark("audio") is None


def run(events: list[tuple], *, lateness_ns: int = 2000 * MS) -> list[Tick]:
    al = Aligner(config(lateness_ns=lateness_ns))
    ticks: list[Tick] = []
    for kind, stream, seq, t_ns, data in events:
        if kind == "add":
            ticks += al.add(stream, seq, t_ns, data)
        else:
            ticks += al.advance(stream, seq, t_ns)
    return ticks + al.finish()


@pytest.mark.parametrize("seed", range(5))
def test_same_inputs_and_watermarks_give_the_same_ticks_and_true_watermarks_change_no_member(seed: int) -> None:
    rng = random.Random(seed)
    text_t = sorted(rng.sample(range(0, 300 * FRAME_NS, MS), 6))
    events: list[tuple] = [("add", "frame", k, k * FRAME_NS, f"f{k}") for k in range(300)]
    events += [("add", "text", i, t, f"t{i}") for i, t in enumerate(text_t)]
    events.sort(key=lambda e: e[3])
    # true promises: before each frame, now and then, the text's watermark up to that frame
    with_wm: list[tuple] = []
    sent = 0
    for e in events:
        if e[1] == "text":
            sent += 1
        elif rng.random() < 0.3:
            with_wm.append(("wm", "text", sent, e[3] - 1, None))
        with_wm.append(e)
    once, twice = run(with_wm), run(with_wm)
    assert [tick_key(t) for t in once] == [tick_key(t) for t in twice]
    # emitted early by watermark, or all at the end with nothing late: the same members
    everything_at_the_end = run(events, lateness_ns=10**15)
    assert [tick_key(t, content_only=True) for t in once] == [
        tick_key(t, content_only=True) for t in everything_at_the_end]
    assert sum(t.emitted_by == "watermark" for t in once) > 200
    assert not any(s == "late" for t in once for s in t.status.values())


def test_the_aligner_node_emits_the_ticks_a_watermark_releases() -> None:
    params = {"trigger": "frame", "lateness_ms": 2000,
              "streams": {"frame": {"policy": "nearest", "slop_ms": 10, "embed": False},
                          "text": {"policy": "latest", "ttl_ms": 5000}}}
    h = NodeHarness(AlignerNode, params, streams={"ticks": "align/ticks", "frame": "cam0/frame", "text": "text/in"})
    h.send("text", Out.text("text", "hello", 0))
    for k in range(1, 4):
        assert h.send("frame", Out.tensor("frame", np.zeros((2, 2), np.uint8), k * FRAME_NS)) == []
    assert h.watermark("unwired", 0, 10**12) == []
    ticks = [m.record for m in h.watermark("text", 1, 2 * FRAME_NS)]
    assert [(t["t_ns"], t["emitted_by"], t["members"]["text"]["text"]) for t in ticks] == [
        (FRAME_NS, "watermark", "hello"), (2 * FRAME_NS, "watermark", "hello")]
