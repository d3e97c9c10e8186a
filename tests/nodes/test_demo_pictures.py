"""The logic under the demo's HTML report: which intervals a timeline draws, which frames
are key frames, and a page that is one self-contained file."""

from __future__ import annotations

import numpy as np

from sensorfuse.nodes import demo_pictures, report_plots
from sensorfuse.nodes.report_html import HtmlReport

S = 1_000_000_000


def event(type_: str, phase: str, event_id: str, t: float, start: float, score: float, **extra: object) -> dict:
    return {"type": type_, "phase": phase, "event_id": event_id, "key": event_id.split(":")[-1], "t_ns": int(t * S),
            "start_ns": int(start * S), "score": score, **extra}


def test_detected_intervals_join_phases_on_event_id_and_open_events_run_to_the_end() -> None:
    events = [
        event("face.present", "update", "face.present:0", 1.0, 0.5, 0.9),  # started before the log: no interval
        event("face.appeared", "start", "face.present:1", 2.0, 1.8, 0.8),
        event("face.present", "update", "face.present:1", 3.0, 1.8, 0.95),
        event("face.left", "end", "face.present:1", 4.0, 1.8, 0.1, end_ns=int(3.7 * S)),
        event("speaker.active", "start", "speaker.active:2", 5.0, 4.6, 0.7),
    ]
    got = demo_pictures.detected_intervals(events, end_ns=9 * S)
    assert sorted(got) == ["face.appeared", "speaker.active"]
    face, = got["face.appeared"]
    assert (face["start_ns"], face["end_ns"]) == (int(1.8 * S), int(3.7 * S))
    assert face["scores"] == [(2 * S, 0.8), (3 * S, 0.95), (4 * S, 0.1)]
    speaker, = got["speaker.active"]
    assert speaker["end_ns"] == 9 * S, "never ended: drawn to the end of the run"


def test_truth_intervals_are_what_the_type_is_scored_against() -> None:
    labels = [
        {"label": "speaker_visible", "subject": "face0", "start_ns": 1 * S, "end_ns": 2 * S},
        {"label": "sound", "sound": "alarm", "start_ns": 3 * S, "end_ns": 4 * S},
        {"label": "sound", "sound": "tone", "start_ns": 5 * S, "end_ns": 6 * S},
        {"label": "query", "matches": ["face0"], "start_ns": 7 * S, "end_ns": 7 * S},
        {"label": "query", "matches": [], "start_ns": 8 * S, "end_ns": 8 * S},
    ]
    assert demo_pictures.truth_intervals("speaker.active", labels) == [("truth face0", 1 * S, 2 * S)]
    assert demo_pictures.truth_intervals("sound.alarm", labels) == [("truth", 3 * S, 4 * S)]
    assert demo_pictures.truth_intervals("query.match", labels) == [("truth", 7 * S, 7 * S)], \
        "a query nothing matches is no truth"


def test_key_frames_are_face_event_starts_else_frames_with_faces() -> None:
    detections = {t * S: {"faces": [{"track_id": 1}] if t >= 5 else []} for t in range(1, 11)}
    detected = {"speaker.active": [{"start_ns": 7 * S}], "face.appeared": [{"start_ns": 5 * S}, {"start_ns": 7 * S}],
                "speech.offscreen": [{"start_ns": 2 * S}]}
    assert demo_pictures.key_frame_times(detected, detections) == [5 * S, 7 * S]
    fallback = demo_pictures.key_frame_times({}, detections)
    assert fallback and all(detections[t]["faces"] for t in fallback)


def test_page_is_one_file_with_marked_pictures() -> None:
    page = HtmlReport("t <1>")
    page.table(["event", "events"], [["x", 3]], row_data=[{"type": "x"}])
    page.figure(report_plots.timeline("x", [("truth", [(1.0, 2.0), (3.0, 3.0)], report_plots.TRUTH_COLOR)],
                                      (0.0, 4.0)), alt="x", data={"kind": "timeline", "event-type": "x"})
    page.figure(report_plots.annotated_frame(np.zeros((24, 32, 3), np.uint8), [([2, 2, 10, 10], "track 1", True)],
                                             "f"), alt="f", data={"kind": "frame"})
    text = page.render()
    assert "<title>t &lt;1&gt;</title>" in text
    assert text.count('src="data:image/png;base64,') == 2
    assert 'data-kind="timeline" data-event-type="x"' in text
    assert '<tr data-type="x"><td data-col="event">x</td><td data-col="events">3</td></tr>' in text
