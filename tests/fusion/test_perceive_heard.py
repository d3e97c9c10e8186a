"""Queries about what was said in the perceive node: its `heard` input (transcribe's lines),
when a line counts, a late line counted and used, a bad one rejected; and in real processes,
a spoken session through transcribe -> perceive answering "did someone say ...?"
(docs/queries.md, "Queries about words")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sensorfuse.engine.node import Out
from sensorfuse.engine.testing import NodeHarness
from sensorfuse.nodes.perceive import PerceiveNode
from sfhelpers import GraphRun, read_jsonl, ticks_with_lines

pytestmark = pytest.mark.timeout(240)
MS = 1_000_000
STREAMS = {"ticks": "align/ticks", "frame": "cam0/frame", "speech": "perceive/speech", "events": "perceive/events",
           "scores": "perceive/scores", "heard": "speech/heard"}


def scores_of(msgs: list[Any], key: str) -> dict[int, float]:
    return {m.record["tick"]: m.record["scores"]["query.match"].get(key, 0.0) for m in msgs
            if m.header.stream == "perceive/scores"}


def test_a_heard_line_answers_a_query_about_its_words(model_cache: Path, short_ticks: list[dict[str, Any]]) -> None:
    lines = {2: (0, "did anyone say hello?"), 3: (1, "has someone mentioned bananas"), 4: (2, "is anyone talking?")}
    ticks = ticks_with_lines(short_ticks, lines, 80)
    h = NodeHarness(PerceiveNode, {"cache": str(model_cache), "classes": [], "query_ttl_ms": 0, "query_delay_ms": 0,
                                   "heard_delay_ms": 1000}, name="perceive", streams=STREAMS)
    said_at = ticks[10]["t_ns"]  # "Hello there." ends here; Whisper delivers it at tick 12
    late_at = ticks[30]["t_ns"]  # "Banana bread, anyone?" ends here; delivered only at tick 60
    msgs = []
    for record in ticks:
        if record["tick"] == 12:
            msgs += h.send("heard", Out.text("heard", "Hello there.", said_at))
        if record["tick"] == 60:
            msgs += h.send("heard", Out.text("heard", "Banana bread, anyone?", late_at))
            msgs += h.send("heard", Out.record("heard", {"text": "not a line"}, late_at))
            msgs += h.send("heard", Out.text("heard", "  ", late_at))
        msgs += h.send("ticks", Out.record("ticks", record, record["t_ns"]))
    # not lock-step (drop_oldest): the heard stream's watermark and end hold nothing back
    assert h.watermark("heard", 2, ticks[-1]["t_ns"]) == [] and h.end("heard") == []
    h.close()
    hello = scores_of(msgs, "text:0")
    assert {i for i, s in hello.items() if s >= 0.6} == {i for i, s in hello.items()
                                                        if ticks[i]["t_ns"] >= said_at + 1000 * MS}
    assert min(i for i, s in hello.items() if s >= 0.6) > 12, "from end + heard_delay_ms, not from arrival"
    banana = scores_of(msgs, "text:1")
    assert {i for i, s in banana.items() if s >= 0.6} == set(range(60, 80)), "late: counted from its arrival on"
    assert h.node.heard.late == 1 and h.node.heard.received == 2
    assert h.ctx.rejected == {("speech/heard", "bad_heard"): 2}
    talking = [m.record for m in msgs if m.header.stream == "perceive/speech"]
    speaking = {r["tick"] for r in talking if r["in_speech"]}
    assert {i for i, s in scores_of(msgs, "text:2").items() if s == 1.0} == speaking, "speech, not words"


def test_in_lock_step_a_tick_waits_for_the_heard_watermark(model_cache: Path,
                                                          short_ticks: list[dict[str, Any]]) -> None:
    """A `block` heard input: tick t is perceived once the heard stream promised no line
    ending at or before t - heard_delay_ms is still to come (or the stream ended)."""
    h = NodeHarness(PerceiveNode, {"cache": str(model_cache), "classes": [], "heard_delay_ms": 1000},
                    name="perceive", streams=STREAMS, start=False)
    h.ctx.blocking = frozenset({"ticks", "heard"})
    h.node.start()
    ticks = short_ticks[:40]
    held = []
    for record in ticks:
        held += h.send("ticks", Out.record("ticks", record, record["t_ns"]))
    assert held == [] and len(h.node.held) == 40
    assert not h.node.accepts("ticks"), "frame_buffer (32) ticks held: the aligner waits"
    wm = ticks[20]["t_ns"] - 1000 * MS  # lines ending before tick 20's t - delay have all come
    released = {m.record["tick"] for m in h.watermark("heard", 0, wm) if m.header.stream == "perceive/scores"}
    assert released == set(range(20)), "tick t goes once the watermark is past t - heard_delay_ms"
    rest = {m.record["tick"] for m in h.end("heard") if m.header.stream == "perceive/scores"}
    assert rest == set(range(20, 40)) and not h.node.held
    h.close()


def spoken_graph(session: Path, out: Path, cache: Path, lines: Path) -> dict[str, Any]:
    """Frames and audio of a session through align -> perceive (no objects, no sound classes)
    and transcribe, whose `heard` lines go to perceive (lock-step, --rate max); typed
    queries from a timed file."""
    return {"name": "heard", "nodes": {
        "player": {"kind": "player", "params": {"path": str(session), "rate": "max",
                                                "streams": ["cam0/frame", "mic0/audio16k"]},
                   "outputs": {"cam0/frame": "cam0/frame", "mic0/audio16k": "mic0/audio16k"}},
        "text": {"kind": "text", "params": {"source": "file", "path": str(lines), "pace": "max"},
                 "outputs": {"text": "text/in"}},
        "align": {"kind": "aligner", "params": {"trigger": "frame", "lateness_ms": 2000, "streams": {
            "frame": {"policy": "nearest", "slop_ms": 20, "embed": False},
            "audio": {"policy": "window", "window_ms": 600},
            "text": {"policy": "latest", "ttl_ms": 2500, "required": True}}},
            "inputs": {"frame": {"stream": "cam0/frame", "policy": "block", "queue": 8},
                       "audio": {"stream": "mic0/audio16k", "policy": "block", "queue": 64},
                       "text": {"stream": "text/in", "policy": "block", "queue": 16}},
            "outputs": {"ticks": "align/ticks"}},
        "perceive": {"kind": "perceive", "params": {"cache": str(cache), "classes": [], "sound": "off",
                                                    "query_ttl_ms": 0},
                     "inputs": {"ticks": {"stream": "align/ticks", "policy": "block", "queue": 8},
                                "frame": {"stream": "cam0/frame", "policy": "block", "queue": 8},
                                # lock-step: a tick waits for the heard stream's watermark (no line late)
                                "heard": {"stream": "speech/heard", "policy": "block", "queue": 64}},
                     "outputs": {"events": "perceive/events"}},
        "transcribe": {"kind": "transcribe", "params": {"cache": str(cache)},
                       "inputs": {"audio": {"stream": "mic0/audio16k", "policy": "block", "queue": 16}},
                       "outputs": {"transcripts": "perceive/transcripts", "heard": "speech/heard"}},
        "events": {"kind": "jsonl", "params": {"path": str(out / "events.jsonl")},
                   "inputs": {"in": {"stream": "perceive/events", "policy": "block", "queue": 256}}},
        "transcripts": {"kind": "jsonl", "params": {"path": str(out / "transcripts.jsonl")},
                        "inputs": {"in": {"stream": "perceive/transcripts", "policy": "block", "queue": 64}}}}}


def test_a_spoken_word_answers_a_typed_query_in_real_processes(demo_session: Path, model_cache: Path,
                                                                tmp_path: Path) -> None:
    """The demo session's held-out voice says "Could you open the window?" at 1.2–2.9 s;
    asked (and kept: ttl 0) from 1.2 s (the frames start at 1 s), "tell me when someone says window" matches from
    the transcript's end + `heard_delay_ms`; a word never said never does."""
    lines = tmp_path / "lines.txt"  # seconds on the session's time base (the file clock's origin is 0)
    lines.write_text("1.2\ttell me when someone says window\n1.6\tdid anyone say banana?\n")
    run = GraphRun(spoken_graph(demo_session, tmp_path, model_cache, lines), tmp_path)
    try:
        assert run.wait_exit(timeout=200) == 0, run.stderr()
        gauges = json.loads((run.run_dir / "status.json").read_text())["nodes"]["perceive"]["gauges"]
    finally:
        run.cleanup()
    said = [r["record"] for r in read_jsonl(tmp_path / "transcripts.jsonl") if "window" in r["record"]["text"].lower()]
    assert said, "Whisper heard the window sentence"
    matches = [r["record"] for r in read_jsonl(tmp_path / "events.jsonl") if r["record"]["type"] == "query.match"]
    window = [e for e in matches if e["subject"]["query"] == "tell me when someone says window"]
    delay = round(PerceiveNode.Params().heard_delay_ms * MS)
    assert window and window[0]["phase"] == "start", matches
    assert said[0]["end_ns"] + delay <= window[0]["start_ns"] < said[0]["end_ns"] + delay + 150 * MS, (window, said)
    assert not [e for e in matches if "banana" in e["subject"]["query"]], matches
    assert gauges["heard_late"] == 0 and gauges["heard_lines"] >= 1, gauges


def test_events_end_when_the_ticks_do_not_when_the_heard_stream_does(model_cache: Path,
                                                                      short_ticks: list[dict[str, Any]]) -> None:
    """The transcriber ends its heard stream only after decoding the last sentence (~0.4 s
    after the ticks end in the demo); not lock-step, no line could count any more: the open
    events end with the ticks, once."""
    h = NodeHarness(PerceiveNode, {"cache": str(model_cache), "classes": []}, name="perceive", streams=STREAMS)
    msgs = []
    for record in short_ticks[:45]:
        msgs += h.send("ticks", Out.record("ticks", record, record["t_ns"]))
    events = [m.record for m in msgs if m.header.stream == "perceive/events"]
    still_open = {e["event_id"] for e in events if e["phase"] == "start"} - {e["event_id"] for e in events
                                                                             if e["phase"] == "end"}
    assert still_open, "the test needs an event open at the end"
    assert h.end("frame") == []
    ended = [m.record for m in h.end("ticks") if m.header.stream == "perceive/events"]
    assert {e["event_id"] for e in ended if e["phase"] == "end"} == still_open
    assert h.end("heard") == [] and h.finish() == []
    h.close()
