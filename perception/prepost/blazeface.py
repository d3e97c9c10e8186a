"""BlazeFace (MediaPipe face detection) pre- and post-processing.

Pipeline: letterbox the RGB frame into a square (aspect ratio kept, so faces are not
squashed), resize to the model's input, scale to [-1, 1]; decode the regressors against
SSD anchors; sigmoid the raw scores; weighted NMS (MediaPipe blends overlapping boxes by
score rather than dropping them, which steadies boxes across frames); map the result
back from the letterboxed square to pixel coordinates of the original frame.

Model output layout per anchor: `[dx, dy, w, h, kx0, ky0, ..., kx5, ky5]` in input
pixels, relative to the anchor centre. Keypoints: right eye, left eye, nose tip, mouth
centre, right ear tragion, left ear tragion (subject's left/right).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from sensorfuse.engine.manifest import LetterboxPre, SsdFacePost


@dataclass(frozen=True)
class Letterbox:
    """How a frame was placed into the model's square: side of the padded square, offsets."""

    square: int
    pad_left: int
    pad_top: int

    def to_pixels(self, normalized_xy: np.ndarray) -> np.ndarray:
        """Map [..., 2] coordinates in [0, 1] of the square to frame pixel coordinates."""
        offset = np.array([self.pad_left, self.pad_top], dtype=np.float64)
        return normalized_xy.astype(np.float64) * self.square - offset


@dataclass(frozen=True)
class Faces:
    """Detections in frame pixels: boxes [N, 4] as x0, y0, x1, y1; keypoints [N, K, 2]."""

    boxes: np.ndarray
    keypoints: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return int(self.scores.shape[0])


def letterbox(image_rgb: np.ndarray, pre: LetterboxPre) -> tuple[np.ndarray, Letterbox]:
    """HxWx3 uint8 RGB → ([1, 3, size, size] float32, the placement to undo it)."""
    resized, placement = square_resize(image_rgb, pre.size)
    tensor = (resized.astype(np.float32) - pre.mean) / pre.std
    return np.ascontiguousarray(tensor.transpose(2, 0, 1)[None]), placement


def square_resize(image_rgb: np.ndarray, size: int) -> tuple[np.ndarray, Letterbox]:
    """HxWx3 uint8 → (size×size×3 uint8: centred on a black square, resized; its placement)."""
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got shape {image_rgb.shape}")
    height, width = image_rgb.shape[:2]
    square = max(height, width)
    pad_top, pad_left = (square - height) // 2, (square - width) // 2
    padded = cv2.copyMakeBorder(
        image_rgb, pad_top, square - height - pad_top, pad_left, square - width - pad_left,
        cv2.BORDER_CONSTANT, value=(0, 0, 0),
    )
    interpolation = cv2.INTER_AREA if square > size else cv2.INTER_LINEAR
    resized = cv2.resize(padded, (size, size), interpolation=interpolation)
    return resized, Letterbox(square, pad_left, pad_top)


def anchor_centers(input_size: int, post: SsdFacePost) -> np.ndarray:
    """SSD anchor centres [N, 2] in [0, 1], in the order the model emits them.

    MediaPipe's SsdAnchorsCalculator with fixed anchor size: consecutive layers with the
    same stride share one grid, and each cell repeats its centre once per anchor of
    every layer in the group (short range: strides 8,16,16,16 × 2 → 512 + 384 = 896).
    """
    if len(post.strides) != len(post.anchors_per_cell):
        raise ValueError("strides and anchors_per_cell must have the same length")
    centers: list[np.ndarray] = []
    layer = 0
    while layer < len(post.strides):
        stride = post.strides[layer]
        repeats = 0
        while layer < len(post.strides) and post.strides[layer] == stride:
            repeats += post.anchors_per_cell[layer]
            layer += 1
        cells = int(np.ceil(input_size / stride))
        grid = (np.arange(cells, dtype=np.float64) + 0.5) / cells
        ys, xs = np.meshgrid(grid, grid, indexing="ij")
        cell_centers = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centers.append(np.repeat(cell_centers, repeats, axis=0))
    return np.concatenate(centers, axis=0)


def decode(regressors: np.ndarray, raw_scores: np.ndarray, anchors: np.ndarray,
           input_size: int, post: SsdFacePost) -> Faces:
    """Raw model outputs → candidate detections (normalised to the square), above min_score."""
    raw = regressors.reshape(-1, 4 + 2 * post.num_keypoints).astype(np.float64)
    logits = raw_scores.reshape(-1).astype(np.float64)
    if raw.shape[0] != anchors.shape[0]:
        raise ValueError(f"model gave {raw.shape[0]} boxes for {anchors.shape[0]} anchors")
    # float64 and the clip keep exp() finite; MediaPipe clips at ±100 the same way.
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -post.score_clip, post.score_clip)))
    keep = scores >= post.min_score
    raw, anchors, scores = raw[keep], anchors[keep], scores[keep]
    centers = raw[:, 0:2] / input_size + anchors
    half = raw[:, 2:4] / input_size / 2.0
    boxes = np.concatenate([centers - half, centers + half], axis=1)
    keypoints = raw[:, 4:].reshape(-1, post.num_keypoints, 2) / input_size + anchors[:, None, :]
    return Faces(boxes, keypoints, scores)


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one x0,y0,x1,y1 box against [N, 4] boxes."""
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def weighted_nms(faces: Faces, iou_threshold: float) -> Faces:
    """MediaPipe's weighted NMS: each cluster's boxes and keypoints averaged by score.

    The cluster keeps its best score. Linear in candidates per kept face; candidates are
    few after the score threshold (tens), so no spatial index is needed.
    """
    order = np.argsort(-faces.scores, kind="stable")
    boxes, keypoints, scores = faces.boxes[order], faces.keypoints[order], faces.scores[order]
    remaining = np.arange(len(scores))
    kept_boxes, kept_points, kept_scores = [], [], []
    while remaining.size:
        best = remaining[0]
        overlap = box_iou(boxes[best], boxes[remaining]) > iou_threshold
        overlap[0] = True
        cluster = remaining[overlap]
        weights = scores[cluster] / scores[cluster].sum()
        kept_boxes.append((boxes[cluster] * weights[:, None]).sum(axis=0))
        kept_points.append((keypoints[cluster] * weights[:, None, None]).sum(axis=0))
        kept_scores.append(scores[best])
        remaining = remaining[~overlap]
    if not kept_scores:
        return faces
    return Faces(np.stack(kept_boxes), np.stack(kept_points), np.asarray(kept_scores))


def to_frame(faces: Faces, placement: Letterbox) -> Faces:
    """Undo the letterbox: normalised square coordinates → frame pixels."""
    corners = placement.to_pixels(faces.boxes.reshape(-1, 2, 2)).reshape(-1, 4)
    return Faces(corners, placement.to_pixels(faces.keypoints), faces.scores)


def postprocess(regressors: np.ndarray, raw_scores: np.ndarray, placement: Letterbox,
                pre: LetterboxPre, post: SsdFacePost) -> Faces:
    """Model outputs → final faces in frame pixels, best first."""
    anchors = _cached_anchors(pre.size, post)
    candidates = decode(regressors, raw_scores, anchors, pre.size, post)
    return to_frame(weighted_nms(candidates, post.iou_threshold), placement)


def square_tiles(height: int, width: int, fraction: float) -> list[tuple[int, int, int, int]]:
    """Overlapping square crops (x0, y0, x1, y1) of `fraction` × the short side covering the frame.

    Why tiles: short-range BlazeFace sees the whole frame at 128 px, so a face 1/8 of a
    320 px frame wide is ~16 px at the model input — too small for it (the held-out
    sessions' faces are found in ~30 % of frames). A tile of 3/4 of the short side is
    seen at twice the scale. Neighbouring tiles overlap by half a tile, so any face up
    to half a tile wide lies whole inside at least one tile. fraction 1: the frame's
    square ends (one tile for a square frame).
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"tile fraction must be in (0, 1], got {fraction}")
    return grid_tiles(height, width, max(1, int(round(min(height, width) * fraction))), overlap=0.5)


def grid_tiles(height: int, width: int, side: int, *, overlap: float) -> list[tuple[int, int, int, int]]:
    """Square crops (x0, y0, x1, y1) of `side` pixels covering the frame, neighbours overlapping
    by at least `overlap` × side (spread evenly, the last flush with the edge)."""
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"tile overlap must be in [0, 1), got {overlap}")
    side = min(side, height, width)
    step = side * (1.0 - overlap)

    def starts(extent: int) -> list[int]:
        if extent <= side:
            return [0]
        count = int(np.ceil((extent - side) / step - 1e-9)) + 1
        return [int(v) for v in np.linspace(0, extent - side, count).round()]

    return [(x, y, x + side, y + side) for y in starts(height) for x in starts(width)]


def tile_levels(height: int, width: int, fraction: float, *, min_side: int, ratio: float = 0.6,
                overlap: float = 0.0) -> list[list[tuple[int, int, int, int]]]:
    """Detector tiles at several scales, coarse to fine: `square_tiles` of `fraction`, then
    tiles `ratio` × smaller each level, down to `min_side` (the detector's input size).

    Why: short-range BlazeFace finds a face that fills about a quarter of its input or more
    (measured with bench/faces.py: a 32 px face in 120–128 px tiles scores 0.86–0.96, in 240 px
    tiles nothing above 0.35, and the full-range model did worse than either); a 32 px face
    in a 640×480 frame needs tiles near the model's own 128 px. Finer levels need not
    overlap (`overlap`, spread evenly so the last tile is flush with the edge): a quarter
    overlap made 35 tiles of 130 px at 640×480 instead of 20, so a face waited 35 frames
    for its tile instead of 20, and a face cut by a tile edge is mostly found from its
    larger part or in the next coarser level. Finer levels list their tiles centre first.
    Levels stop at the first one within 1.25×
    of `min_side` (640×480: 360, 216, 130 px; 320×240: 180, 128 px).
    """
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"tile ratio must be in (0, 1), got {ratio}")
    levels = [square_tiles(height, width, fraction)]
    side = levels[0][0][2] - levels[0][0][0]
    while side > min_side * 1.25:
        side = max(min_side, int(round(side * ratio)))
        tiles = grid_tiles(height, width, side, overlap=overlap)
        # centre first: people are framed, so a new face is likelier mid-frame than in a corner
        levels.append(sorted(tiles, key=lambda t: (t[0] + t[2] - width) ** 2 + (t[1] + t[3] - height) ** 2))
    return levels


def roi_tile(box: np.ndarray, height: int, width: int, *, scale: float = 2.5,
             min_side: int = 64) -> tuple[int, int, int, int]:
    """A square region (x0, y0, x1, y1) `scale` × the box's longer side around its centre,
    moved inside the frame (and no larger than its short side).

    Why: a face found once is looked for again at a scale where the detector sees it
    (~1/2.5 of its input), for one detector run instead of a full set of tiles.
    """
    side = int(round(min(min(height, width), max(min_side, scale * max(box[2] - box[0], box[3] - box[1])))))
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    x0 = int(round(np.clip(cx - side / 2, 0, width - side)))
    y0 = int(round(np.clip(cy - side / 2, 0, height - side)))
    return x0, y0, x0 + side, y0 + side


def tile_candidates(regressors: np.ndarray, raw_scores: np.ndarray, placement: Letterbox,
                    tile: tuple[int, int, int, int], pre: LetterboxPre, post: SsdFacePost) -> Faces:
    """One tile's outputs → candidates above min_score in frame pixels, before NMS."""
    anchors = _cached_anchors(pre.size, post)
    found = to_frame(decode(regressors, raw_scores, anchors, pre.size, post), placement)
    offset = np.array(tile[:2], dtype=np.float64)
    return Faces(found.boxes + np.tile(offset, 2), found.keypoints + offset, found.scores)


def merge_tiles(parts: list[Faces], post: SsdFacePost) -> Faces:
    """Candidates of all tiles → final faces, best first: one weighted NMS over the union.

    NMS in frame pixels gives the same clusters as in the model's square (IoU and the
    score-weighted average do not change under a uniform scale and shift).
    """
    if not parts:
        raise ValueError("no tiles to merge")
    union = Faces(np.concatenate([p.boxes.reshape(-1, 4) for p in parts]),
                  np.concatenate([p.keypoints.reshape(-1, post.num_keypoints, 2) for p in parts]),
                  np.concatenate([p.scores for p in parts]))
    return weighted_nms(union, post.iou_threshold)


def add_new_faces(known: Faces, extra: Faces, iou_threshold: float) -> Faces:
    """`known` plus the faces of `extra` that overlap none of them, best first.

    Why not one NMS over both: a face already found in the whole frame and in the region
    around its last box would be blended with whichever tile happens to cover it this
    frame, and its box would jitter with the tile rotation (the mouth-patch cue reads that
    jitter as motion). Tiles only add faces that nothing else found.
    """
    keep = [i for i in range(len(extra))
            if len(known) == 0 or not (box_iou(extra.boxes[i], known.boxes) > iou_threshold).any()]
    boxes = np.concatenate([known.boxes.reshape(-1, 4), extra.boxes[keep].reshape(-1, 4)])
    keypoints = np.concatenate([known.keypoints.reshape(-1, *extra.keypoints.shape[1:]) if len(known) else
                                extra.keypoints[:0], extra.keypoints[keep]])
    scores = np.concatenate([known.scores, extra.scores[keep]])
    order = np.argsort(-scores, kind="stable")
    return Faces(boxes[order], keypoints[order], scores[order])


_ANCHOR_CACHE: dict[tuple[int, tuple[int, ...], tuple[int, ...]], np.ndarray] = {}


def _cached_anchors(input_size: int, post: SsdFacePost) -> np.ndarray:
    # Anchors depend only on the manifest; computing them per frame would cost ~0.1 ms.
    key = (input_size, tuple(post.strides), tuple(post.anchors_per_cell))
    if key not in _ANCHOR_CACHE:
        _ANCHOR_CACHE[key] = anchor_centers(input_size, post)
    return _ANCHOR_CACHE[key]
