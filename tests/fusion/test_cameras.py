"""Several cameras in one perceive: each camera perceived as alone, named in every output,
tracks that never move between cameras, and a camera that drops out leaves the others as
they were. The cameras here replay the same held-out frames, so each must give exactly
what a one-camera perceive gives on them."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from sensorfuse.engine import wire
from sensorfuse.engine.node import Out
from sensorfuse.engine.testing import NodeHarness
from sensorfuse.nodes.perceive import PerceiveNode
from sfhelpers import record_errors

pytestmark = pytest.mark.timeout(300)
STREAMS = {"ticks": "align/ticks", "frame": "cam0/frame", "detections": "perceive/detections",
           "objects": "perceive/objects", "scene": "perceive/scene", "speech": "perceive/speech",
           "sound": "perceive/sound", "events": "perceive/events", "scores": "perceive/scores"}
CAMERAS = ["camA", "camB"]


def run(model_cache: Path, ticks: list[dict[str, Any]], **params: Any) -> list[wire.Message]:
    h = NodeHarness(PerceiveNode, {"cache": str(model_cache), **params}, name="perceive", streams=STREAMS)
    out = []
    for record in ticks:
        out += h.send("ticks", Out.record("ticks", record, record["t_ns"]))
    return out + h.finish()


def two_cameras(tick: dict[str, Any], *, drop_b: bool = False) -> dict[str, Any]:
    """A one-camera tick record as a two-camera one: both cameras hold its frame (camB none with `drop_b`)."""
    rec = copy.deepcopy(tick)
    for field in ("members", "streams", "status", "mask"):
        part = rec.get(field)
        if isinstance(part, dict) and "frame" in part:
            value = part.pop("frame")
            part["camA"], part["camB"] = value, copy.deepcopy(value)
    if drop_b:
        rec["members"]["camB"], rec["status"]["camB"] = None, "missing"
        if "mask" in rec:
            rec["mask"]["camB"] = False
    return rec


def records(msgs: list[wire.Message], stream: str) -> list[dict[str, Any]]:
    return [m.record for m in msgs if m.header.stream == stream]


def faces_of(detections: list[dict[str, Any]], camera: str | None) -> list[tuple[int, list[tuple[Any, ...]]]]:
    """Per tick, the faces without their track ids (ids differ between runs)."""
    return [(d["tick"], [(tuple(f["box"]), f["score"], f["speaking"]) for f in d["faces"]])
            for d in detections if d.get("camera") == camera]


def events_of(events: list[dict[str, Any]], camera: str | None) -> list[tuple[Any, ...]]:
    """Events about what `camera` sees (None: a one-camera run), without ids."""
    return [(e["type"], e["phase"], e["start_ns"], e.get("end_ns"), tuple(e["subject"]["box"]))
            for e in events if e["type"] in ("face.appeared", "face.left", "speaker.active")
            and e["subject"].get("camera") == camera]


@pytest.fixture(scope="module")
def one_camera(model_cache: Path, short_ticks: list[dict[str, Any]]) -> list[wire.Message]:
    return run(model_cache, short_ticks)


def test_each_camera_is_perceived_as_if_alone(model_cache: Path, short_ticks: list[dict[str, Any]],
                                               one_camera: list[wire.Message]) -> None:
    msgs = run(model_cache, [two_cameras(t) for t in short_ticks], cameras=CAMERAS)
    single = faces_of(records(one_camera, "perceive/detections"), None)
    assert any(faces for _, faces in single), "no face in the session: the test would prove nothing"
    detections = records(msgs, "perceive/detections")
    assert len(detections) == 2 * len(short_ticks)
    for camera in CAMERAS:
        assert faces_of(detections, camera) == single, camera
        assert events_of(records(msgs, "perceive/events"), camera) == \
            events_of(records(one_camera, "perceive/events"), None), camera
    # a track names one face on one camera: no id on both
    ids = {c: {f["track_id"] for d in detections if d["camera"] == c for f in d["faces"]} for c in CAMERAS}
    assert ids["camA"] and ids["camB"] and not ids["camA"] & ids["camB"]
    events = records(msgs, "perceive/events")
    for e in events:
        if e["type"] in ("face.appeared", "speaker.active"):
            assert e["key"].startswith(f"{e['subject']['camera']}:track:")
            assert e["subject"]["track_id"] in ids[e["subject"]["camera"]]
    # heard once: speech and sound records once a tick, as one camera gives them
    for stream in ("perceive/speech", "perceive/sound"):
        assert records(msgs, stream) == records(one_camera, stream)
    offscreen = [e for e in events if e["type"] == "speech.offscreen"]
    assert offscreen == [e for e in records(one_camera, "perceive/events") if e["type"] == "speech.offscreen"]
    assert [error for m in msgs for error in record_errors(m.header.stream, m.record)] == []


def test_a_camera_that_drops_out_leaves_the_others_unaffected(model_cache: Path, short_ticks: list[dict[str, Any]],
                                                               one_camera: list[wire.Message]) -> None:
    half = len(short_ticks) // 2
    ticks = [two_cameras(t, drop_b=i >= half) for i, t in enumerate(short_ticks)]
    msgs = run(model_cache, ticks, cameras=CAMERAS)
    detections = records(msgs, "perceive/detections")
    single = faces_of(records(one_camera, "perceive/detections"), None)
    assert faces_of(detections, "camA") == single
    b_ticks = [d["tick"] for d in detections if d["camera"] == "camB"]
    assert b_ticks == [t["tick"] for t in short_ticks[:half]], "camB has detections only while it sends frames"
    events = records(msgs, "perceive/events")
    assert events_of(events, "camA") == events_of(records(one_camera, "perceive/events"), None)
    # camB's faces are kept as last seen (no frame is no evidence they left) and end at the end of input
    b_open = {e["event_id"] for e in events if e["subject"].get("camera") == "camB" and e["phase"] == "start"}
    b_ended = {e["event_id"] for e in events if e["subject"].get("camera") == "camB" and e["phase"] == "end"}
    assert b_open == b_ended


def test_frames_sent_by_reference_are_counted_not_joined(model_cache: Path, short_ticks: list[dict[str, Any]]) -> None:
    ticks = [two_cameras(t) for t in short_ticks[:3]]
    for rec in ticks:
        member = rec["members"]["camB"]
        rec["members"]["camB"] = {k: member[k] for k in ("seq", "t_ns", "dt_ns") if k in member}
    h = NodeHarness(PerceiveNode, {"cache": str(model_cache), "cameras": CAMERAS}, name="perceive", streams=STREAMS)
    out = []
    for record in ticks:
        out += h.send("ticks", Out.record("ticks", record, record["t_ns"]))
    detections = records(out + h.finish(), "perceive/detections")
    assert [d["camera"] for d in detections] == ["camA"] * 3
    assert h.ctx.rejected.get(("align/ticks", "frame_not_embedded")) == 3


def test_a_camera_the_ticks_do_not_carry_is_counted(model_cache: Path, short_ticks: list[dict[str, Any]]) -> None:
    """A `cameras` name the aligner has no port for (a typo) is counted on every tick, not
    taken for a camera that lost its frames."""
    h = NodeHarness(PerceiveNode, {"cache": str(model_cache), "cameras": ["camA", "camZ"]}, name="perceive",
                    streams=STREAMS)
    out = []
    for record in [two_cameras(t) for t in short_ticks[:3]]:
        out += h.send("ticks", Out.record("ticks", record, record["t_ns"]))
    detections = records(out + h.finish(), "perceive/detections")
    assert [d["camera"] for d in detections] == ["camA"] * 3
    assert h.ctx.rejected.get(("align/ticks", "camera_not_in_tick")) == 3
