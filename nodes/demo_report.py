"""Score a run's events against a sample session's ground truth, and summarise latency.

Matching rules (all times are the session's capture times):

- ``speaker.active``: an event is right when its start falls inside a ``speaker_visible``
  interval (widened by `slack_ns` before the start, since the event is stamped at the
  first tick above threshold) AND its face box overlaps that subject's true box when the
  event was published (its ``t_ns``, within the interval; IoU >= 0.3) — it names the right face. Recall: intervals with a right event.
- ``speech.offscreen``: start inside an ``offscreen_speech`` interval (same slack).
- ``query.match``: the event's text `seq` points at a ``query`` label whose target (speech
  for "who is speaking?", the cat, the named object) is present at some time in the
  query's life (`QUERY_LIFE_NS` from the query, perceive's default `query_ttl_ms`; a query
  without a target: its `matches` at its time), and the event starts while it is (same
  slack). Recall: such queries with a right event.
- ``face.appeared``: start inside a ``face_visible`` interval of a face whose true box
  overlaps the event's box.
- ``sound.alarm`` / ``sound.tone`` / ``sound.noise``: start inside a ``sound`` interval of
  that kind.
Timing error: event start minus the truth's start (query: minus the query's time).

Replayed span: a run cut short (``--duration``) is scored only against the truth it
replayed (`replayed_truth`): labels that start at least `MIN_REPLAYED_NS` before the last
replayed frame (a later one could not have been detected yet).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from sensorfuse.perception.tracking import iou

SLACK_NS = 500_000_000
MIN_REPLAYED_NS = 500_000_000
SOUND_TYPES = ("sound.alarm", "sound.tone", "sound.noise")
#: the interval label each event type is scored against (``sound``: of the event's kind)
TRUTH_LABELS = {"speaker.active": "speaker_visible", "speech.offscreen": "offscreen_speech",
                "face.appeared": "face_visible", **{t: "sound" for t in SOUND_TYPES}}
#: how long a query lives in the demo graph (perceive's default `query_ttl_ms`): it asks
#: "tell me when", so what appears during its life is an answer
QUERY_LIFE_NS = 2_500_000_000
EVENT_TYPES = ("face.appeared", "speaker.active", "speech.offscreen", "query.match", *SOUND_TYPES)
#: what one camera sees, scored per camera against that camera's labels and boxes
PER_CAMERA_TYPES = ("face.appeared", "speaker.active")


@dataclass
class Score:
    type: str
    events: int
    correct: int
    truths: int
    found: int
    timing_errors_ms: list[float]

    @property
    def precision(self) -> float:
        return self.correct / self.events if self.events else 0.0

    @property
    def recall(self) -> float:
        return self.found / self.truths if self.truths else 0.0

    @property
    def mean_timing_ms(self) -> float | None:
        return float(np.mean(np.abs(self.timing_errors_ms))) if self.timing_errors_ms else None


def query_hits(query: dict[str, Any], labels: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """When a ``query`` label's target is present during its life (clipped to it)."""
    t0, t1 = query["start_ns"], query["start_ns"] + QUERY_LIFE_NS
    target = query.get("target")
    if target is None:
        return [(t0, t0 + 1)] if query.get("matches") else []
    spans = [(r["start_ns"], r["end_ns"]) for r in labels
             if (target == "speaker" and r["label"] == "speech")
             or (target == "cat" and r["label"] == "cat_visible")
             or (r["label"].endswith("_visible") and r.get("subject") == target)]
    return sorted((max(s, t0), min(e, t1)) for s, e in spans if s < t1 and e > t0)


def truth_for(etype: str, labels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The label records an event type is scored against (``query.match``: the queries
    whose target is present at some time in their life; scored once per query time)."""
    if etype == "query.match":
        return [r for r in labels if r["label"] == "query" and query_hits(r, labels)]
    label = TRUTH_LABELS[etype]
    return [r for r in labels if r["label"] == label and (label != "sound" or f"sound.{r['sound']}" == etype)]


def _box_at(boxes: dict[int, list[dict[str, Any]]], times: list[int], t_ns: int, subject: str) -> list[float] | None:
    if not times:
        return None
    i = int(np.searchsorted(times, t_ns, side="right")) - 1
    for b in boxes[times[max(i, 0)]]:
        if b["subject"] == subject:
            return list(b["box"])
    return None


def score_events(events: Iterable[dict[str, Any]], labels: list[dict[str, Any]],
                 boxes: dict[int, list[dict[str, Any]]], text_times: dict[int, int]) -> dict[str, Score]:
    """`events`: event records (start phases are scored); `boxes`: frame t_ns → true boxes;
    `text_times`: text seq → its capture time (to find the query label an event answers)."""
    times = sorted(boxes)
    starts = [e for e in events if e.get("phase") == "start"]
    out: dict[str, Score] = {}
    for etype in TRUTH_LABELS:
        truths = truth_for(etype, labels)
        evs = [e for e in starts if e["type"] == etype]
        found: set[int] = set()
        correct, errors = 0, []
        for e in evs:
            for i, r in enumerate(truths):
                if not r["start_ns"] - SLACK_NS <= e["start_ns"] < r["end_ns"]:
                    continue
                if "subject" in r:
                    # the event's box is the one seen when it was published (`t_ns`; its start
                    # may be dated earlier): a moving face is compared where it was then
                    seen_ns = min(max(e.get("t_ns", e["start_ns"]), r["start_ns"]), r["end_ns"] - 1)
                    true_box = _box_at(boxes, times, seen_ns, r["subject"])
                    box = e.get("subject", {}).get("box")
                    if true_box is None or box is None or iou(np.asarray(box), np.asarray(true_box)) < 0.3:
                        continue
                correct += 1
                if i not in found:
                    errors.append((e["start_ns"] - r["start_ns"]) / 1e6)
                found.add(i)
                break
        out[etype] = Score(etype, len(evs), correct, len(truths), len(found), errors)
    positives = {r["start_ns"]: query_hits(r, labels) for r in truth_for("query.match", labels)}
    evs = [e for e in starts if e["type"] == "query.match"]
    correct, found_q, errors = 0, set(), []
    for e in evs:
        t_text = text_times.get(e.get("subject", {}).get("text_seq", -1))
        hit = next((s for s, end in positives.get(t_text, ()) if s - SLACK_NS <= e["start_ns"] < end), None)
        if t_text is not None and hit is not None:
            correct += 1
            if t_text not in found_q:
                errors.append((e["start_ns"] - hit) / 1e6)
            found_q.add(t_text)
    out["query.match"] = Score("query.match", len(evs), correct, len(positives), len(found_q), errors)
    return out


def add_up(scores: Iterable[Any]) -> Any:
    """The sum of scores of one kind (`Score`, `demo_objects.ClassScore`): counts added,
    lists joined, the other fields (names) of the first."""
    scores = list(scores)
    total = dataclasses.replace(scores[0])
    for field in dataclasses.fields(total):
        values = [getattr(s, field.name) for s in scores]
        if isinstance(values[0], (int, list)):
            setattr(total, field.name, sum(values[1:], values[0]))
    return total


def score_cameras(events: list[dict[str, Any]], labels: list[dict[str, Any]],
                  boxes: dict[str, dict[int, list[dict[str, Any]]]], text_times: dict[int, int]
                  ) -> tuple[dict[str, Score], dict[str, dict[str, Score]]]:
    """A multi-camera run: what a camera sees (`PER_CAMERA_TYPES`) scored per camera
    (`boxes`: camera → its true boxes; labels with a ``camera`` count for that camera
    only, events by their subject's camera), and added up; the rest (speech, sound,
    queries) scored once. Returns (all cameras, per camera)."""
    per_camera = {}
    for camera, camera_boxes in boxes.items():
        mine = [e for e in events if e.get("subject", {}).get("camera") == camera]
        seen = [r for r in labels if r.get("camera", camera) == camera]
        scores = score_events(mine, seen, camera_boxes, text_times)
        per_camera[camera] = {t: scores[t] for t in PER_CAMERA_TYPES}
    total = score_events(events, labels, {}, text_times)  # its per-camera rows are replaced below
    for etype in PER_CAMERA_TYPES:
        total[etype] = add_up(scores[etype] for scores in per_camera.values())
    return total, per_camera


def camera_table(per_camera: dict[str, dict[str, Score]]) -> str:
    """Per camera: events, precision and recall of what a camera sees."""
    head = f"{'camera':<8}" + "".join(f" {t + ' P/R (events)':>28}" for t in PER_CAMERA_TYPES)
    rows = [head]
    for camera, scores in per_camera.items():
        cells = []
        for etype in PER_CAMERA_TYPES:
            s = scores[etype]
            pr = f"{s.precision:.2f}" if s.events else "-", f"{s.recall:.2f}" if s.truths else "-"
            cells.append(f" {f'{pr[0]}/{pr[1]} ({s.events})':>28}")
        rows.append(f"{camera:<8}" + "".join(cells))
    return "\n".join(rows)


def replayed_truth(labels: list[dict[str, Any]], end_ns: int | None) -> list[dict[str, Any]]:
    """The labels a replay that ended at frame time `end_ns` could have found (all when None:
    the whole session was replayed)."""
    if end_ns is None:
        return list(labels)
    return [r for r in labels if r["start_ns"] <= end_ns - MIN_REPLAYED_NS]


def latency_ms(events: list[dict[str, Any]], frame_pub: dict[int, int]) -> list[float]:
    """Per event: its publish time minus the publish time of the frame of its tick.

    `frame_pub`: frame capture time `t_ns` → when the player published it. On replay `t_ns`
    is the recorded capture time, so wall-clock latency is measured from when the player
    published that frame (the moment a live camera would have delivered it) to when
    perceive published the event (an event's `t_ns` is its tick's frame time).
    """
    return [(e["t_pub_ns"] - frame_pub[e["t_ns"]]) / 1e6 for e in events
            if e.get("t_pub_ns") and e.get("t_ns") in frame_pub]


TABLE_HEADER = ("event", "events", "right", "truth", "found", "precision", "recall", "timing err ms")


def table_rows(scores: dict[str, Score]) -> list[list[Any]]:
    """One row per event type, cells as `TABLE_HEADER` names them ("-": no events to be
    right about / nothing in the session to find / no timing)."""
    rows = []
    for etype in EVENT_TYPES:
        s = scores[etype]
        rows.append([etype, s.events, s.correct, s.truths, s.found, f"{s.precision:.2f}" if s.events else "-",
                     f"{s.recall:.2f}" if s.truths else "-",
                     f"{s.mean_timing_ms:.0f}" if s.mean_timing_ms is not None else "-"])
    return rows


def table(scores: dict[str, Score]) -> str:
    widths = (-18, 6, 6, 6, 6, 9, 7, 13)  # negative: left-aligned
    lines = [" ".join(f"{cell:<{-w}}" if w < 0 else f"{cell:>{w}}" for cell, w in zip(row, widths))
             for row in [list(TABLE_HEADER), *table_rows(scores)]]
    return "\n".join(lines)
