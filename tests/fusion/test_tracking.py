"""IoU tracker: stable ids, tolerance to missed frames, no id reuse."""

from __future__ import annotations

import numpy as np
import pytest

from sensorfuse.perception.tracking import IouTracker, iou

pytestmark = pytest.mark.timeout(30)


def box(x: float, y: float, s: float = 40) -> np.ndarray:
    return np.array([x, y, x + s, y + s])


def test_iou() -> None:
    assert iou(box(0, 0), box(0, 0)) == pytest.approx(1.0)
    assert iou(box(0, 0), box(100, 100)) == 0.0
    assert iou(box(0, 0), box(20, 0)) == pytest.approx(1 / 3)


def test_ids_follow_moving_faces_and_survive_missed_frames() -> None:
    tracker = IouTracker(max_missed=2)
    ids, _ = tracker.update([box(0, 0), box(200, 0)])
    assert ids == [1, 2]
    ids, _ = tracker.update([box(205, 2), box(5, 1)])  # order swapped, both moved a little
    assert ids == [2, 1]
    ids, dropped = tracker.update([box(8, 2)])  # face 2 missed once: kept
    assert ids == [1] and dropped == []
    ids, _ = tracker.update([box(10, 2), box(206, 3)])
    assert ids == [1, 2]
    for _ in range(3):
        ids, dropped = tracker.update([box(12, 2)])
    assert [t.track_id for t in dropped] == [2]
    ids, _ = tracker.update([box(12, 2), box(206, 3)])
    assert ids == [1, 3]  # a new face gets a new id: ids are never reused
