"""What perceive publishes agrees with itself and with its schemas (issue 17's findings):

- face boxes and keypoints lie in the frame (they were extrapolated past its edge);
- provenance lists only the inputs of the modalities an event used (faces listed the
  audio block and the text line);
- an event closed by the end of input carries its last real observation: score, subject
  and modalities (a `face.left` at the end had score 1.0; after a tick without a frame it
  had no subject and no modalities).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sensorfuse.perception.features import clip_to_frame
from tests.fusion.test_perceive_node import by_stream, feed, harness

pytestmark = pytest.mark.timeout(120)


def modality_of(tick: dict[str, Any]) -> dict[str, str]:
    """stream -> modality, from a tick record's port → stream map."""
    ports = {"frame": "vision", "audio": "audio", "text": "text"}
    return {stream: ports[port] for port, stream in tick["streams"].items()}


def test_boxes_and_keypoints_are_clipped_to_the_frame() -> None:
    box, keypoints = clip_to_frame(np.array([-16.93, 156.5, 21.3, 250.0]),
                                   np.array([[-14.5, 170.0], [5.0, 171.0], [3.0, 180.0], [4.0, 190.0],
                                             [-20.0, 175.0], [330.0, 241.0]]), 240, 320)
    assert box == [0.0, 156.5, 21.3, 240.0]
    assert keypoints == [[0.0, 170.0], [5.0, 171.0], [3.0, 180.0], [4.0, 190.0], [0.0, 175.0], [320.0, 240.0]]


def test_a_box_inside_the_frame_is_unchanged() -> None:
    box, keypoints = clip_to_frame(np.array([10.04, 20.0, 50.0, 60.0]), np.full((6, 2), 30.0), 240, 320)
    assert box == [10.0, 20.0, 50.0, 60.0] and keypoints == [[30.0, 30.0]] * 6


def test_provenance_lists_only_the_modalities_used(model_cache: Path, short_ticks: list[dict[str, Any]]) -> None:
    msgs = feed(harness(model_cache), short_ticks)
    modality = modality_of(short_ticks[0])
    events = by_stream(msgs, "perceive/events")
    assert {"face.appeared", "speech.offscreen"} <= {e["type"] for e in events}
    for e in events:
        used = {modality[p["stream"]] for p in e["provenance"]}
        assert e["provenance"] and used <= set(e["modalities"]), e


def open_faces_at(ticks: list[dict[str, Any]], model_cache: Path) -> int:
    """How many ticks to feed so that a face event is open when the input ends."""
    msgs = feed(harness(model_cache), ticks)
    events = by_stream(msgs, "perceive/events")
    start = next(e for e in events if e["type"] == "face.appeared")
    end = next(e for e in events if e["event_id"] == start["event_id"] and e["phase"] == "end")
    return next(i for i, t in enumerate(ticks) if t["t_ns"] > (start["t_ns"] + end["end_ns"]) // 2)


@pytest.fixture(scope="module")
def cut(model_cache: Path, short_ticks: list[dict[str, Any]]) -> int:
    return open_faces_at(short_ticks, model_cache)


def test_a_face_ended_by_the_end_of_input_keeps_its_last_score(model_cache: Path,
                                                               short_ticks: list[dict[str, Any]], cut: int) -> None:
    msgs = feed(harness(model_cache), short_ticks[:cut])
    detections = by_stream(msgs, "perceive/detections")
    closing = [e for e in by_stream(msgs, "perceive/events") if e["type"] == "face.left" and e["t_ns"] ==
               short_ticks[cut - 1]["t_ns"]]
    assert closing, "no face open at the end of input"
    for event in closing:
        track = event["subject"]["track_id"]
        last = [f for d in detections for f in d["faces"] if f["track_id"] == track][-1]
        assert event["score"] == last["score"] < 1.0
        assert event["subject"]["box"] == last["box"] and event["modalities"] == ["vision"]


def test_a_tick_without_a_frame_before_the_end_keeps_the_faces_as_last_seen(
        model_cache: Path, short_ticks: list[dict[str, Any]], cut: int) -> None:
    blind = copy.deepcopy(short_ticks[cut])
    blind["members"]["frame"], blind["mask"]["frame"], blind["status"]["frame"] = None, False, "missing"
    msgs = feed(harness(model_cache), [*short_ticks[:cut], blind])
    closing = [e for e in by_stream(msgs, "perceive/events") if e["type"] == "face.left" and e["t_ns"] == blind["t_ns"]]
    assert closing
    for event in closing:
        assert event["modalities"] == ["vision"] and set(event["subject"]) == {"track_id", "box"}
        assert 0.5 <= event["score"] < 1.0
        assert [p["stream"] for p in event["provenance"]] == [blind["streams"]["frame"]]
