"""PerceiveNode logic through the harness: outputs, masking, bad ticks, every shipped head."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sensorfuse.engine import wire
from sensorfuse.engine.errors import StartupError
from sensorfuse.engine.node import Out
from sensorfuse.perception.fusion import STRATEGIES
from sensorfuse.engine.testing import NodeHarness
from sensorfuse.nodes.perceive import PerceiveNode, default_heads_dir
from sfhelpers import record_errors

pytestmark = pytest.mark.timeout(120)
STREAMS = {"ticks": "align/ticks", "frame": "cam0/frame", "detections": "perceive/detections",
           "scene": "perceive/scene", "speech": "perceive/speech", "sound": "perceive/sound",
           "events": "perceive/events", "scores": "perceive/scores"}


def harness(model_cache: Path, *, unwired: tuple[str, ...] = (), **params: Any) -> NodeHarness:
    return NodeHarness(PerceiveNode, {"cache": str(model_cache), **params}, name="perceive", streams=STREAMS,
                       unwired=unwired)


def feed(h: NodeHarness, ticks: list[dict[str, Any]]) -> list[wire.Message]:
    out = []
    for record in ticks:
        out += h.send("ticks", Out.record("ticks", record, record["t_ns"]))
    return out + h.finish()


def feed_inputs(h: NodeHarness, inputs: list[tuple[str, Any]], *, lose: set[int] = frozenset()) -> list[wire.Message]:
    """Frames and referencing ticks in arrival order; frames with a seq in `lose` never arrive."""
    out = []
    for port, item in inputs:
        if port == "frame":
            if item.header.seq not in lose:
                out += h.send("frame", item)
        else:
            out += h.send("ticks", Out.record("ticks", item, item["t_ns"]))
    return out + h.finish()


def by_stream(msgs: list[wire.Message], stream: str) -> list[dict[str, Any]]:
    return [m.record for m in msgs if m.header.stream == stream]


def test_outputs_on_a_held_out_session(model_cache: Path, short_ticks: list[dict[str, Any]]) -> None:
    h = harness(model_cache)
    msgs = feed(h, short_ticks)
    detections = by_stream(msgs, "perceive/detections")
    assert len(detections) == len(short_ticks)
    faces = [f for d in detections for f in d["faces"]]
    assert faces, "no face detected in a session with faces"
    for f in faces:
        assert len(f["box"]) == 4 and len(f["keypoints"]) == 6 and 0 <= f["speaking"] <= 1
    # track ids are stable: far fewer ids than face detections
    assert len({f["track_id"] for f in faces}) <= len(faces) / 2
    scene = by_stream(msgs, "perceive/scene")
    assert scene and len(scene[0]["labels"]) == 5 and len(scene[0]["embedding_f32"]) == 1280 * 4
    speech = by_stream(msgs, "perceive/speech")
    assert any(s["in_speech"] for s in speech)
    events = by_stream(msgs, "perceive/events")
    types = {e["type"] for e in events}
    assert "face.appeared" in types
    # every started event ends (the node flushes at the end of input)
    started = {e["event_id"] for e in events if e["phase"] == "start"}
    ended = {e["event_id"] for e in events if e["phase"] == "end"}
    assert started == ended
    for e in events:
        assert e["provenance"] and all({"stream", "seq", "t_ns"} <= set(p) for p in e["provenance"])
        assert e["modalities"]
    # every record of every output matches its shipped schema (engine/schemas)
    assert [error for m in msgs for error in record_errors(m.header.stream, m.record)] == []


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_shipped_strategy_runs_in_the_node(model_cache: Path, short_ticks: list[dict[str, Any]],
                                                 strategy: str) -> None:
    h = harness(model_cache, head=strategy)
    assert h.node.head.strategy == strategy
    msgs = feed(h, short_ticks[:40])
    assert len(by_stream(msgs, "perceive/detections")) == 40


@pytest.mark.parametrize("missing", ["frame", "audio", "text"])
def test_missing_modality_degrades_without_crashing(model_cache: Path, short_ticks: list[dict[str, Any]],
                                                   missing: str) -> None:
    ticks = []
    for record in short_ticks:
        r = copy.deepcopy(record)
        r["members"][missing] = None
        r["mask"][missing] = False
        r["status"][missing] = "missing"
        ticks.append(r)
    h = harness(model_cache)
    msgs = feed(h, ticks)
    assert h.ctx.rejected == {}
    if missing == "frame":
        assert by_stream(msgs, "perceive/detections") == []
        assert not any(e["type"] == "speaker.active" for e in by_stream(msgs, "perceive/events"))
    if missing == "audio":
        assert by_stream(msgs, "perceive/speech") == []
    if missing == "text":
        assert not any(e["type"] == "query.match" for e in by_stream(msgs, "perceive/events"))


def test_bad_ticks_are_rejected_and_counted(model_cache: Path, short_ticks: list[dict[str, Any]]) -> None:
    h = harness(model_cache)
    bad_frame = copy.deepcopy(short_ticks[0])
    bad_frame["members"]["frame"]["data"] = b"\x00" * 10
    bad_audio = copy.deepcopy(short_ticks[1])
    bad_audio["members"]["audio"]["n"] = 7
    assert h.send("ticks", Out.record("ticks", {"no": "tick"}, 1)) == []
    assert h.send("ticks", Out.record("ticks", [1, 2], 1)) == []
    assert h.send("ticks", Out.record("ticks", bad_frame, bad_frame["t_ns"])) == []
    assert h.send("ticks", Out.record("ticks", bad_audio, bad_audio["t_ns"])) == []
    assert h.ctx.rejected == {("align/ticks", "bad_tick"): 4}
    assert by_stream(h.send("ticks", Out.record("ticks", short_ticks[2], short_ticks[2]["t_ns"])),
                     "perceive/detections")


def test_head_errors_fail_start_with_the_reason(model_cache: Path, tmp_path: Path) -> None:
    with pytest.raises(StartupError, match="use default"):
        harness(model_cache, head="nonsense")
    with pytest.raises(StartupError, match="no default fusion head"):
        harness(model_cache, heads_dir=str(tmp_path))
    src = default_heads_dir() / "fusion_late.manifest.json"
    bad = tmp_path / "fusion_late.manifest.json"
    bad.write_text(re.sub(r'"feature_version": \d+', '"feature_version": 99', src.read_text()))
    with pytest.raises(StartupError, match="retrain"):
        harness(model_cache, head=str(bad))
    with pytest.raises(StartupError, match="unknown event rules"):
        harness(model_cache, rules={"nope": {"on": 0.5, "off": 0.4}})


def test_frames_joined_on_seq_give_what_embedded_frames_give(model_cache: Path, short_ticks: list[dict[str, Any]],
                                                             short_inputs: list[tuple[str, Any]]) -> None:
    embedded = feed(harness(model_cache), short_ticks)
    h = harness(model_cache)
    joined = feed_inputs(h, short_inputs)
    assert h.ctx.rejected == {}
    for stream in STREAMS.values():
        assert by_stream(joined, stream) == by_stream(embedded, stream), stream
    assert len(by_stream(joined, "perceive/detections")) == len(short_ticks)


def test_a_frame_lost_on_the_way_is_counted_and_its_tick_goes_on(model_cache: Path,
                                                                 short_inputs: list[tuple[str, Any]]) -> None:
    h = harness(model_cache)
    msgs = feed_inputs(h, short_inputs, lose={5, 6, 30})
    ticks = [r for port, r in short_inputs if port == "ticks"]
    assert h.ctx.rejected == {("cam0/frame", "frame_not_received"): 3}
    assert len(by_stream(msgs, "perceive/detections")) == len(ticks) - 3
    assert len(by_stream(msgs, "perceive/speech")) == len(ticks)  # audio went on


def test_referenced_frames_with_no_frame_input_wired(model_cache: Path, short_inputs: list[tuple[str, Any]]) -> None:
    h = harness(model_cache, unwired=("frame",))
    ticks = [(port, r) for port, r in short_inputs if port == "ticks"][:20]
    msgs = feed_inputs(h, ticks)
    assert h.ctx.rejected == {("cam0/frame", "frame_not_wired"): 20}
    assert by_stream(msgs, "perceive/detections") == [] and len(by_stream(msgs, "perceive/speech")) == 20


def test_sound_classes_and_a_refused_audio_window(model_cache: Path, short_ticks: list[dict[str, Any]]) -> None:
    h = harness(model_cache)
    msgs = feed(h, short_ticks[:40])
    sound = by_stream(msgs, "perceive/sound")
    assert sound, "the classifier runs once its 0.5 s window is full"
    for record in sound:
        probs = record["probabilities"]
        assert set(probs) == {"speech", "alarm", "tone", "noise", "background"}
        assert abs(sum(probs.values()) - 1.0) < 1e-3
    # NaN samples (a tick from some other aligner): the tick is refused and counted, the
    # node goes on and its VAD is not poisoned
    h = harness(model_cache)
    ticks = copy.deepcopy(short_ticks[:20])
    audio = np.frombuffer(ticks[12]["members"]["audio"]["data"], np.float32).copy()
    audio[-100:] = np.nan
    ticks[12]["members"]["audio"]["data"] = audio.tobytes()
    msgs = feed(h, ticks)
    assert h.ctx.rejected == {("align/ticks", "bad_tick"): 1}
    assert len(by_stream(msgs, "perceive/detections")) == 19
    assert all(np.isfinite(r["probability"]) for r in by_stream(msgs, "perceive/speech"))


def test_scene_delay_must_be_below_its_period(model_cache: Path) -> None:
    with pytest.raises(StartupError, match="scene delay"):
        harness(model_cache, scene_period_ms=333, scene_delay_ms=400)


def test_scores_per_tick_are_what_the_event_rules_see(model_cache: Path, short_ticks: list[dict[str, Any]]) -> None:
    h = harness(model_cache, rules={"query.match": {"on": 0.7, "off": 0.3}})
    msgs = feed(h, short_ticks)
    scores = by_stream(msgs, "perceive/scores")
    assert [s["tick"] for s in scores] == [t["tick"] for t in short_ticks]
    assert [s["t_ns"] for s in scores] == [t["t_ns"] for t in short_ticks]
    assert scores[0]["thresholds"]["query.match"] == {"on": 0.7, "off": 0.3}
    assert scores[0]["thresholds"]["speaker.active"] == {"on": 0.6, "off": 0.4}
    # the speaking score of each face is the one its detection carries (rounded there)
    detections = {d["tick"]: d for d in by_stream(msgs, "perceive/detections")}
    compared = 0
    for s in scores:
        for face in detections[s["tick"]]["faces"]:
            key = f"track:{face['track_id']}"
            assert s["scores"]["face"][key] == face["score"]
            if key in s["scores"]["speaker.active"]:
                assert round(s["scores"]["speaker.active"][key], 4) == face["speaking"]
                compared += 1
    assert compared
    # an event's key is scored in the tick it starts, at or above the rule's `on`
    by_tick = {s["t_ns"]: s for s in scores}
    fused = ("speaker.active", "speech.offscreen", "query.match")
    started = [e for e in by_stream(msgs, "perceive/events") if e["phase"] == "start" and e["type"] in fused]
    assert started
    for e in started:
        s = by_tick[e["start_ns"]]
        assert s["scores"][e["type"]][e["key"]] >= s["thresholds"][e["type"]]["on"]
    # a query's text beside its score
    assert any(s["queries"] for s in scores)
    assert all(s["queries"].keys() == s["scores"]["query.match"].keys() for s in scores)


def test_scores_are_not_built_when_nobody_listens(model_cache: Path, short_ticks: list[dict[str, Any]]) -> None:
    wired = feed(harness(model_cache), short_ticks[:30])
    h = NodeHarness(PerceiveNode, {"cache": str(model_cache)}, name="perceive", streams=STREAMS, start=False)
    del h.ctx.outputs["scores"]
    h.node.start()
    msgs = feed(h, short_ticks[:30])
    assert by_stream(msgs, "perceive/scores") == []
    # the other outputs are the same with or without it
    assert [m.record for m in msgs] == [m.record for m in wired if m.header.stream != "perceive/scores"]
