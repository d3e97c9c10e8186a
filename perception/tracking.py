"""IoU face tracking: stable track ids across frames, pure and deterministic.

Greedy matching, best IoU first (faces are few: at most a handful per frame, so the
O(tracks × detections) table is cheaper than the Hungarian algorithm and, for the
non-overlapping faces we see, gives the same pairs). A track survives `max_missed`
frames without a detection so a single missed frame does not re-number a face; ids
are never reused within a session.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np


def intersection(a: Sequence[float], b: Sequence[float]) -> float:
    """The area two x0, y0, x1, y1 boxes share."""
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two x0, y0, x1, y1 boxes."""
    inter = intersection(a, b)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


@dataclass
class Track:
    track_id: int
    box: np.ndarray
    hits: int = 1  # frames with a detection
    missed: int = 0  # consecutive frames without one


class IouTracker:
    """`ids`: where new track ids come from (trackers that share one never hand out the
    same id; default: 1, 2, 3, ... of its own)."""

    def __init__(self, *, min_iou: float = 0.3, max_missed: int = 5, ids: Iterator[int] | None = None) -> None:
        self.min_iou = min_iou
        self.max_missed = max_missed
        self.tracks: list[Track] = []
        self._ids = ids if ids is not None else itertools.count(1)

    def update(self, boxes: list[np.ndarray]) -> tuple[list[int], list[Track]]:
        """Match this frame's boxes; returns each box's track id and the tracks dropped now."""
        pairs = sorted(
            ((iou(t.box, b), ti, bi) for ti, t in enumerate(self.tracks) for bi, b in enumerate(boxes)),
            key=lambda p: (-p[0], p[1], p[2]),
        )
        ids: list[int | None] = [None] * len(boxes)
        used: set[int] = set()
        for score, ti, bi in pairs:
            if score < self.min_iou or ti in used or ids[bi] is not None:
                continue
            track = self.tracks[ti]
            track.box, track.hits, track.missed = boxes[bi], track.hits + 1, 0
            ids[bi] = track.track_id
            used.add(ti)
        for ti, track in enumerate(self.tracks):
            if ti not in used:
                track.missed += 1
        for bi, box in enumerate(boxes):
            if ids[bi] is None:
                track_id = next(self._ids)
                self.tracks.append(Track(track_id, box))
                ids[bi] = track_id
        dropped = [t for t in self.tracks if t.missed > self.max_missed]
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed]
        return [i for i in ids if i is not None], dropped
