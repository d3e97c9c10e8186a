"""Tiles for the object detector: the whole frame plus 2×2 overlapping quarters, merged.

Why: NanoDet-m letterboxes the whole frame to 416 px, so a subject 40–80 px wide in a
320×240 frame is 50–100 px at its input, where it finds few (the demo session: person
recall 0.08, cats never). Each tile is 5/8 of the frame's width and height (the quarters
reach 1/8 past the middle, so a subject up to 1/4 of the frame wide lies whole inside
one), seen at 1.6× the whole frame's scale; the whole frame still finds what is larger
than a tile. Detections go back to frame pixels and are merged:

- a tile box covering more than `MAX_TILE_AREA` of its tile is dropped (upscaled texture
  fills a tile with large, low-score boxes; anything that large the whole frame sees);
- class-wise NMS at the model's IoU threshold over everything (the same subject seen in
  the whole frame and one or two tiles);
- then a box that mostly contains, or lies mostly inside, a better box of its class
  (`MAX_INSIDE` of the smaller one's area) is dropped: the whole frame boxes a person's
  body, a tile their head and shoulders, at an IoU well under the NMS threshold.

Measured on the demo and a held-out session (docs/objects.md): person recall 0.08 → 0.54
at precision 0.97 on the demo, 0.27 → 0.45 at 0.94 held out, for 5 detector runs instead
of 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sensorfuse.perception.prepost import nanodet

Tile = tuple[int, int, int, int]  # x0, y0, x1, y1 in frame pixels
COUNT = 4  # tiles of a frame
#: how far past the frame's middle each quarter reaches, as a fraction of the frame side
TILE_OVERLAP = 0.125
#: a tile box larger than this fraction of its tile is dropped
MAX_TILE_AREA = 0.5
#: a box is dropped when this fraction of the smaller of it and a better box of its class
#: lies inside the other
MAX_INSIDE = 0.7


def quarter_tiles(height: int, width: int, overlap: float = TILE_OVERLAP) -> list[Tile]:
    """The frame's four quarters, each reaching `overlap` × the frame side past the middle,
    row-major (top left, top right, bottom left, bottom right)."""
    if not 0.0 <= overlap < 0.5:
        raise ValueError(f"tile overlap must be in [0, 0.5), got {overlap}")
    reach_x, reach_y = round(width * overlap), round(height * overlap)
    xs = [(0, min(width, width // 2 + reach_x)), (max(0, width // 2 - reach_x), width)]
    ys = [(0, min(height, height // 2 + reach_y)), (max(0, height // 2 - reach_y), height)]
    return [(x0, y0, x1, y1) for y0, y1 in ys for x0, x1 in xs]


def from_tile(found: nanodet.Detections, tile: Tile, max_area: float = MAX_TILE_AREA) -> nanodet.Detections:
    """A tile's detections (in tile pixels) → frame pixels, without boxes over `max_area` of the tile."""
    x0, y0, x1, y1 = tile
    boxes = found.boxes.reshape(-1, 4) + np.array([x0, y0, x0, y0], dtype=np.float64)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = areas <= max_area * (x1 - x0) * (y1 - y0)
    return nanodet.Detections(boxes[keep], found.scores[keep], found.classes[keep])


def inside_fraction(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """For each of `boxes`: the fraction of the smaller of it and `box` that lies inside the other."""
    width = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    height = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    smaller = np.maximum(np.minimum(areas, (box[2] - box[0]) * (box[3] - box[1])), 1e-9)
    return width * height / smaller


def merge(parts: Sequence[nanodet.Detections], iou_threshold: float, max_detections: int,
          max_inside: float = MAX_INSIDE) -> nanodet.Detections:
    """Detections of the whole frame and its tiles (frame pixels) → one set, best first."""
    union = nanodet.Detections(np.concatenate([p.boxes.reshape(-1, 4) for p in parts]),
                               np.concatenate([p.scores for p in parts]), np.concatenate([p.classes for p in parts]))
    found = nanodet.nms(union, iou_threshold, max_detections)
    kept: list[int] = []
    for index in range(len(found)):
        better = [k for k in kept if found.classes[k] == found.classes[index]]
        if not better or (inside_fraction(found.boxes[index], found.boxes[better]) < max_inside).all():
            kept.append(index)
    keep = np.asarray(kept, dtype=np.int64)
    return nanodet.Detections(found.boxes[keep].reshape(-1, 4), found.scores[keep], found.classes[keep])


def tiles_now(tiles: Sequence[Tile], run: int, per_run: int) -> list[Tile]:
    """The tiles of the `run`-th detector run (from 0): `per_run` of them in rotation."""
    count = min(per_run, len(tiles))
    return [tiles[(run * count + j) % len(tiles)] for j in range(count)]
