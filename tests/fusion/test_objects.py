"""Objects: the event-time schedule and per-class tracking of `ObjectStage`, and perceive's
`perceive/objects` and `object.*` events on frames with a real person in them."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from sensorfuse.engine import manifest as mf
from sensorfuse.engine.errors import StartupError, UsageError
from sensorfuse.engine.node import Out
from sensorfuse.perception import object_tiles
from sensorfuse.perception.objects import ObjectStage, UnknownClass, check_classes
from sensorfuse.perception.prepost import nanodet
from sensorfuse.engine.testing import NodeHarness
from sensorfuse.models import media
from sensorfuse.nodes.perceive import PerceiveNode
from sfhelpers import record_errors

pytestmark = pytest.mark.timeout(120)
MS = 1_000_000
LABELS = ["person", "bicycle", "car", "cat"]


class FakeDetector:
    """Detections from a script, one entry per run."""

    labels = LABELS
    post = mf.GflBoxesPost(strides=[8], reg_max=7, min_score=0.3)

    def __init__(self, script: list[list[tuple[int, list[float], float]]]) -> None:
        self.script = list(script)
        self.tiles: list[list[tuple[int, int, int, int]]] = []  # the tiles of each run

    def detect(self, rgb: np.ndarray, tiles: Sequence[tuple[int, int, int, int]] = ()) -> nanodet.Detections:
        self.tiles.append(list(tiles))
        found = self.script.pop(0)
        return nanodet.Detections(np.array([b for _, b, _ in found], float).reshape(-1, 4),
                                  np.array([s for _, _, s in found], float), np.array([c for c, _, _ in found], int))


def test_results_enter_at_the_delay_and_tracks_keep_their_ids() -> None:
    person, car = (0, [10, 10, 50, 90], 0.8), (2, [100, 50, 160, 90], 0.7)
    moved = (0, [14, 12, 54, 92], 0.75)
    cat_low = (3, [0, 0, 5, 5], 0.2)  # below min_score
    bike = (1, [200, 10, 230, 40], 0.9)  # a class not configured
    detector = FakeDetector([[person, car, cat_low, bike], [moved], [], []])
    stage = ObjectStage(detector, ["person", "car", "cat"], period_ns=300 * MS, delay_ns=100 * MS)
    frame = np.zeros((120, 240, 3), np.uint8)
    entered = {t: stage.step(t * MS, frame) for t in range(0, 1000, 50)}
    fresh = {t: r for t, r in entered.items() if r is not None}
    assert sorted(fresh) == [100, 400, 700]  # every 300 ms of event time, 100 ms after its frame
    first = fresh[100]
    assert first.frame_t_ns == 0 and first.size == (120, 240)
    assert [(o.label, o.track_id) for o in first.objects] == [("person", 1), ("car", 2)]  # one id space
    assert [(o.label, o.track_id, o.box) for o in fresh[400].objects] == [("person", 1, [14.0, 12.0, 54.0, 92.0])]
    assert fresh[700].objects == []
    assert stage.current is fresh[700]
    assert detector.tiles == [object_tiles.quarter_tiles(120, 240)] * 4  # every tile every run by default


def test_tiles_rotate_one_run_after_the_other() -> None:
    detector = FakeDetector([[]] * 6)
    stage = ObjectStage(detector, ["person"], period_ns=300 * MS, delay_ns=100 * MS, tiles_per_run=1)
    frame = np.zeros((240, 320, 3), np.uint8)
    for t in range(0, 1800, 50):
        stage.step(t * MS, frame)
    quarters = object_tiles.quarter_tiles(240, 320)
    assert detector.tiles == [[quarters[i % 4]] for i in range(6)]
    with pytest.raises(ValueError, match="tiles per run must be 0..4"):
        ObjectStage(detector, ["person"], period_ns=300 * MS, delay_ns=100 * MS, tiles_per_run=5)


def test_unknown_class_names_the_closest_known_ones() -> None:
    with pytest.raises(UnknownClass, match=r"unknown object class 'persn' \(closest: person"):
        check_classes(["car", "persn"], LABELS)
    assert check_classes(["cat", "person"], LABELS) == [3, 0]


STREAMS = {"ticks": "align/ticks", "detections": "perceive/detections", "objects": "perceive/objects",
           "scene": "perceive/scene", "speech": "perceive/speech", "sound": "perceive/sound",
           "events": "perceive/events", "scores": "perceive/scores"}


def with_frames(ticks: list[dict[str, Any]], person_until: int) -> list[dict[str, Any]]:
    """The ticks with the astronaut (a person, 240 px tall) in their frames until tick
    `person_until`, an empty grey frame after."""
    astronaut = cv2.cvtColor(cv2.resize(media.load_rgb("astronaut"), (240, 240)), cv2.COLOR_RGB2BGR)
    out = []
    for i, record in enumerate(ticks):
        r = copy.deepcopy(record)
        frame = np.full((240, 320, 3), 128, np.uint8)
        if i < person_until:
            frame[:, 40:280] = astronaut
        r["members"]["frame"].update(data=frame.tobytes(), shape=[240, 320, 3])
        out.append(r)
    return out


def test_perceive_publishes_objects_and_object_events(model_cache: Path, short_ticks: list[dict[str, Any]]) -> None:
    h = NodeHarness(PerceiveNode, {"cache": str(model_cache), "classes": ["person", "cat"]}, name="perceive",
                    streams=STREAMS)
    ticks = with_frames(short_ticks[:60], person_until=30)  # 2 s with her, 2 s without, at 15 fps
    msgs = []
    for record in ticks:
        msgs += h.send("ticks", Out.record("ticks", record, record["t_ns"]))
    msgs += h.finish()
    assert [e for m in msgs for e in record_errors(m.header.stream, m.record)] == []
    objects = [m.record for m in msgs if m.header.stream == "perceive/objects"]
    assert 10 <= len(objects) <= 13  # every 333 ms of event time over 4 s
    people = [o for r in objects for o in r["objects"] if o["class"] == "person" and o["score"] > 0.5]
    assert len(people) >= 5 and {o["track_id"] for o in people} == {people[0]["track_id"]}  # one track
    x0, y0, x1, y1 = people[0]["box"]
    assert x0 < 70 and y0 < 30 and 180 < x1 < 260 and y1 > 220  # on her, in frame pixels
    assert objects[-1]["objects"] == []
    events = [m.record for m in msgs if m.header.stream == "perceive/events" and m.record["type"].startswith("object")]
    assert [(e["type"], e["subject"]["class"]) for e in events] == [("object.appeared", "person"),
                                                                     ("object.left", "person")]
    appeared, left = events
    assert appeared["event_id"] == left["event_id"] and appeared["start_ns"] < ticks[30]["t_ns"] <= left["end_ns"]
    scores = [m.record for m in msgs if m.header.stream == "perceive/scores"]
    assert max(s for r in scores for s in r["scores"]["object"].values()) > 0.5


def test_unknown_class_fails_start_and_no_classes_turns_objects_off(model_cache: Path,
                                                                     short_ticks: list[dict[str, Any]]) -> None:
    with pytest.raises(StartupError, match="unknown object class 'unicorn'"):
        NodeHarness(PerceiveNode, {"cache": str(model_cache), "classes": ["person", "unicorn"]}, name="perceive",
                    streams=STREAMS)
    h = NodeHarness(PerceiveNode, {"cache": str(model_cache), "classes": []}, name="perceive", streams=STREAMS)
    msgs = []
    for record in with_frames(short_ticks[:12], person_until=12):
        msgs += h.send("ticks", Out.record("ticks", record, record["t_ns"]))
    assert h.node.objects is None and not [m for m in msgs if m.header.stream == "perceive/objects"]


def motorcycle_ticks(ticks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ticks with skimage's motorcycle photo filling their 640×480 frames: its headlight
    scores like a face to both face models (bench/faces.py's face-free clips)."""
    photo = cv2.cvtColor(cv2.resize(media.load_rgb("motorcycle"), (640, 480)), cv2.COLOR_RGB2BGR)
    out = []
    for record in ticks:
        r = copy.deepcopy(record)
        r["members"]["frame"].update(data=photo.tobytes(), shape=[480, 640, 3])
        out.append(r)
    return out


def faces_and_events(model_cache: Path, ticks: list[dict[str, Any]], **params: Any
                     ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    h = NodeHarness(PerceiveNode, {"cache": str(model_cache), **params}, name="perceive", streams=STREAMS)
    msgs = []
    for record in ticks:
        msgs += h.send("ticks", Out.record("ticks", record, record["t_ns"]))
    msgs += h.finish()
    assert [e for m in msgs for e in record_errors(m.header.stream, m.record)] == []
    faces = [f for m in msgs if m.header.stream == "perceive/detections" for f in m.record["faces"]]
    return faces, [m.record for m in msgs if m.header.stream == "perceive/events"]


def test_a_face_on_a_motorcycle_starts_no_face_event(model_cache: Path, short_ticks: list[dict[str, Any]]) -> None:
    """The headlight is a face to the face models and lies on the motorcycle NanoDet tracks:
    by default it is published marked `on_object` and starts no face or speaker event; with
    the veto off it is a face.appeared (what it was before the veto)."""
    ticks = motorcycle_ticks(short_ticks[:45])  # 3 s
    faces, events = faces_and_events(model_cache, ticks)
    assert faces and {f.get("on_object") for f in faces[-10:]} == {"motorcycle"}
    assert not [e for e in events if e["type"] in ("face.appeared", "speaker.active")]
    assert any(e["type"] == "object.appeared" and e["subject"]["class"] == "motorcycle" for e in events)
    faces, events = faces_and_events(model_cache, ticks, face_veto=[])
    assert faces and not any("on_object" in f for f in faces)
    assert [e for e in events if e["type"] == "face.appeared"]


def test_face_veto_names_only_tracked_classes(model_cache: Path) -> None:
    with pytest.raises(UsageError, match=r"face_veto: giraffe not among the tracked classes \(person, "):
        PerceiveNode.check(PerceiveNode.parse_params({"cache": str(model_cache), "face_veto": ["giraffe"]}))
    PerceiveNode.check(PerceiveNode.parse_params({"cache": str(model_cache), "face_veto": ["cat"]}))


def test_face_on_object_needs_a_vetoing_class_and_no_person() -> None:
    from sensorfuse.perception.objects import TrackedObject
    from sensorfuse.perception.observations import face_on_object

    face = [100.0, 100.0, 120.0, 120.0]
    bike = TrackedObject("motorcycle", 1, [90.0, 90.0, 300.0, 200.0], 0.8)
    rider = TrackedObject("person", 2, [80.0, 20.0, 200.0, 200.0], 0.7)
    car = TrackedObject("car", 3, [0.0, 0.0, 400.0, 300.0], 0.9)
    veto = ("cat", "dog", "motorcycle")
    assert face_on_object(face, [bike], veto) == "motorcycle"
    assert face_on_object(face, [bike, rider], veto) is None  # a rider's face
    assert face_on_object(face, [car], veto) is None  # cars do not veto by default (drivers)
    assert face_on_object(face, [car], ("car",)) == "car"
    assert face_on_object(face, [bike], ()) is None
    half_out = TrackedObject("cat", 4, [110.0, 0.0, 300.0, 300.0], 0.6)  # holds half the face: on it
    assert face_on_object(face, [half_out], veto) == "cat"
    less = TrackedObject("cat", 5, [111.0, 0.0, 300.0, 300.0], 0.6)  # 45 %: not on it
    assert face_on_object(face, [less], veto) is None
