"""Score a run's `perceive/objects` against a sample session's per-frame truth, per class.

The sample generator (`sensorfuse.replay.scene`) places photos whose subjects have COCO
names: a face sprite is a person's head and shoulders (`person`), `chelsea` is a cat, the
`motorcycle` and `coffee` photos are a motorcycle and a cup; the rocket has no COCO class.
Every detector result is scored against the true boxes of the frame it was computed from
(``frame_t_ns``; the generator lists subjects at least half in view):

- a detection is right when a true subject of its class has its box centre inside the
  detection and IoU ≥ `MIN_IOU` (low because a face truth box is only the head of the
  person the detector boxes), each truth matched once, best score first;
- precision: right detections / detections; recall: truths matched / truths, over the
  frames the detector ran on.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from sensorfuse.perception.tracking import iou

MIN_IOU = 0.1
#: generator sprite kind or name → COCO class (kinds first: every face is a person)
TRUTH_CLASSES = {"face": "person", "cat": "cat", "motorcycle": "motorcycle", "coffee": "cup"}


@dataclass
class ClassScore:
    label: str
    detections: int = 0
    correct: int = 0
    truths: int = 0
    found: int = 0

    @property
    def precision(self) -> float:
        return self.correct / self.detections if self.detections else 0.0

    @property
    def recall(self) -> float:
        return self.found / self.truths if self.truths else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"detections": self.detections, "correct": self.correct, "truths": self.truths, "found": self.found,
                "precision": self.precision, "recall": self.recall}


def truth_class(box: dict[str, Any]) -> str | None:
    return TRUTH_CLASSES.get(box.get("kind", "")) or TRUTH_CLASSES.get(box.get("sprite", ""))


def matches(detection: list[float], truth: list[float]) -> bool:
    cx, cy = (truth[0] + truth[2]) / 2, (truth[1] + truth[3]) / 2
    inside = detection[0] <= cx <= detection[2] and detection[1] <= cy <= detection[3]
    return inside and iou(np.asarray(detection), np.asarray(truth)) >= MIN_IOU


def score_objects(results: Iterable[dict[str, Any]], boxes: dict[int, list[dict[str, Any]]],
                  classes: Iterable[str]) -> dict[str, ClassScore]:
    """`results`: `perceive/objects` records; `boxes`: frame t_ns → true boxes (the session's
    `labels/boxes`); one score per configured class."""
    scores = {c: ClassScore(c) for c in classes}
    for result in results:
        truths = [(truth_class(b), list(b["box"])) for b in boxes.get(result["frame_t_ns"], [])]
        for label, score in scores.items():
            wanted = [box for c, box in truths if c == label]
            found = [o for o in sorted(result["objects"], key=lambda o: -o["score"]) if o["class"] == label]
            score.truths += len(wanted)
            score.detections += len(found)
            free = list(range(len(wanted)))
            for o in found:
                hit = next((i for i in free if matches(o["box"], wanted[i])), None)
                if hit is not None:
                    free.remove(hit)
                    score.correct += 1
                    score.found += 1
    return scores


def table(scores: dict[str, ClassScore]) -> str:
    """Rows for the classes with something to score (a truth or a detection)."""
    rows = [("object class", "detections", "right", "truth", "found", "precision", "recall")]
    for s in scores.values():
        if s.truths or s.detections:
            rows.append((s.label, str(s.detections), str(s.correct), str(s.truths), str(s.found),
                         f"{s.precision:.2f}" if s.detections else "-", f"{s.recall:.2f}" if s.truths else "-"))
    if len(rows) == 1:
        return "objects: nothing of the configured classes in the session, none detected"
    return "\n".join(f"{r[0]:<18}" + " ".join(f"{c:>10}" for c in r[1:]) for r in rows)
