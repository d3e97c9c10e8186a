"""NanoDet (anchor-free, GFL head) pre- and post-processing.

Pipeline: letterbox the RGB frame into a centred square, resize to the model's input,
reorder channels (NanoDet was trained on BGR) and normalise per channel; per stride,
take each cell's best class score, decode its box from the distribution-focal
regression (softmax over 0..reg_max per side, expectation × stride, measured from the
cell centre), then per-class NMS; map boxes back to frame pixels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from sensorfuse.engine.manifest import ChannelLetterboxPre, GflBoxesPost
from sensorfuse.perception.prepost.blazeface import Letterbox, box_iou, square_resize


@dataclass(frozen=True)
class Detections:
    """Boxes [N, 4] (x0, y0, x1, y1), scores [N] and class indices [N], best first."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray

    def __len__(self) -> int:
        return int(self.scores.shape[0])


def empty() -> Detections:
    return Detections(np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64))


def letterbox(image_rgb: np.ndarray, pre: ChannelLetterboxPre) -> tuple[np.ndarray, Letterbox]:
    """HxWx3 uint8 RGB → ([1, 3, size, size] float32, the placement to undo it)."""
    resized, placement = square_resize(image_rgb, pre.size)
    pixels = resized[..., ::-1] if pre.channel_order == "bgr" else resized
    tensor = (pixels.astype(np.float32) - np.asarray(pre.mean, np.float32)) / np.asarray(pre.std, np.float32)
    return np.ascontiguousarray(tensor.transpose(2, 0, 1)[None]), placement


def decode_level(scores: np.ndarray, regression: np.ndarray, stride: int, input_size: int,
                 post: GflBoxesPost) -> Detections:
    """One stride's outputs → candidates above min_score, in input pixels.

    `scores` [cells, classes] are probabilities; `regression` [cells, 4 × (reg_max + 1)].
    Cells run row-major over the (input_size / stride)² grid.
    """
    cells = input_size // stride
    scores = scores.reshape(cells * cells, -1)
    best_class = scores.argmax(axis=1)
    best = scores[np.arange(scores.shape[0]), best_class]
    keep = np.flatnonzero(best >= post.min_score)
    if keep.size == 0:
        return empty()
    logits = regression.reshape(cells * cells, 4, post.reg_max + 1)[keep].astype(np.float64)
    weights = np.exp(logits - logits.max(axis=2, keepdims=True))
    weights /= weights.sum(axis=2, keepdims=True)
    distances = (weights * np.arange(post.reg_max + 1)).sum(axis=2) * stride  # [K, 4] l, t, r, b
    centre_x = (keep % cells + 0.5) * stride
    centre_y = (keep // cells + 0.5) * stride
    boxes = np.stack([centre_x - distances[:, 0], centre_y - distances[:, 1],
                      centre_x + distances[:, 2], centre_y + distances[:, 3]], axis=1)
    return Detections(boxes, best[keep].astype(np.float64), best_class[keep].astype(np.int64))


def nms(candidates: Detections, iou_threshold: float, max_detections: int) -> Detections:
    """Greedy per-class NMS, best first (boxes of different classes never suppress)."""
    order = np.argsort(-candidates.scores, kind="stable")
    boxes, scores, classes = candidates.boxes[order], candidates.scores[order], candidates.classes[order]
    kept: list[int] = []
    suppressed = np.zeros(len(scores), dtype=bool)
    for index in range(len(scores)):
        if suppressed[index]:
            continue
        kept.append(index)
        if len(kept) == max_detections:
            break
        same = np.flatnonzero(~suppressed & (classes == classes[index]))
        suppressed[same[box_iou(boxes[index], boxes[same]) > iou_threshold]] = True
    keep = np.asarray(kept, dtype=np.int64)
    return Detections(boxes[keep], scores[keep], classes[keep])


def postprocess(outputs: Mapping[str, np.ndarray], placement: Letterbox, pre: ChannelLetterboxPre,
                post: GflBoxesPost) -> Detections:
    """Model outputs (named `scores_{s}`, `boxes_{s}`) → detections in frame pixels, best first."""
    levels = [decode_level(outputs[f"scores_{s}"][0], outputs[f"boxes_{s}"][0], s, pre.size, post)
              for s in post.strides]
    merged = Detections(np.concatenate([d.boxes for d in levels]), np.concatenate([d.scores for d in levels]),
                        np.concatenate([d.classes for d in levels]))
    found = nms(merged, post.iou_threshold, post.max_detections)
    scale = placement.square / pre.size
    offset = np.array([placement.pad_left, placement.pad_top] * 2, dtype=np.float64)
    return Detections(found.boxes * scale - offset, found.scores, found.classes)
