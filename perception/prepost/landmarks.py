"""Face landmark (468 points) pre- and post-processing.

The landmark model wants an upright face filling the middle of a square crop, so the
crop is `scale`× the detection box (MediaPipe uses 1.5) around its centre, rotated so
the eyes are level (angle from the detector's eye keypoints). One affine transform maps
crop pixels to frame pixels; the same transform maps the 468 points back, so points
land on the frame even when the crop leaves the frame (out-of-frame crop is zero-padded).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from sensorfuse.engine.manifest import FaceCropPre, LandmarksPost

RIGHT_EYE, LEFT_EYE = 0, 1
#: (detector score below, face-present probability needed) pairs, ascending in score.
PresenceRule = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class FaceCrop:
    """Affine map from crop pixels (u, v) to frame pixels: frame = matrix @ [u, v, 1]."""

    matrix: np.ndarray
    side: float
    size: int

    def to_frame(self, crop_xy: np.ndarray) -> np.ndarray:
        """[..., 2] crop pixel coordinates → frame pixel coordinates."""
        ones = np.ones(crop_xy.shape[:-1] + (1,), dtype=np.float64)
        homogeneous = np.concatenate([crop_xy.astype(np.float64), ones], axis=-1)
        return homogeneous @ self.matrix.T


def eye_angle(keypoints: np.ndarray) -> float:
    """Roll of a face in radians from the detector's keypoints (0 when eyes are level)."""
    dx, dy = keypoints[LEFT_EYE] - keypoints[RIGHT_EYE]
    return float(np.arctan2(dy, dx))


def crop_face(image_rgb: np.ndarray, box: np.ndarray, pre: FaceCropPre,
              *, angle: float = 0.0) -> tuple[np.ndarray, FaceCrop]:
    """Square crop around an x0,y0,x1,y1 box, rotated by `angle` → ([1,3,S,S], FaceCrop)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    center = np.array([(x0 + x1) / 2.0, (y0 + y1) / 2.0])
    side = max(x1 - x0, y1 - y0) * pre.scale
    if side <= 0:
        raise ValueError(f"degenerate face box {box.tolist()}")
    unit = side / pre.size
    cos, sin = np.cos(angle) * unit, np.sin(angle) * unit
    half = pre.size / 2.0
    # frame = center + R(angle) · unit · ([u, v] - half)
    matrix = np.array([
        [cos, -sin, center[0] - cos * half + sin * half],
        [sin, cos, center[1] - sin * half - cos * half],
    ])
    patch = cv2.warpAffine(
        image_rgb, matrix, (pre.size, pre.size),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0),
    )
    tensor = (patch.astype(np.float32) - pre.mean) / pre.std
    return np.ascontiguousarray(tensor.transpose(2, 0, 1)[None]), FaceCrop(matrix, side, pre.size)


@dataclass(frozen=True)
class FaceMesh:
    """468 points in frame pixels (z in the same pixel scale) and the face-present score."""

    points: np.ndarray
    presence: float


def postprocess(raw_points: np.ndarray, presence_logit: np.ndarray, crop: FaceCrop,
                post: LandmarksPost) -> FaceMesh:
    """Model outputs → FaceMesh in frame coordinates (compare presence with min_presence)."""
    points = raw_points.reshape(post.num_points, 3).astype(np.float64)
    frame_xy = crop.to_frame(points[:, :2])
    z = points[:, 2:3] * (crop.side / crop.size)
    logit = float(np.clip(np.asarray(presence_logit).reshape(-1)[0], -100.0, 100.0))
    presence = 1.0 / (1.0 + np.exp(-logit))
    return FaceMesh(np.concatenate([frame_xy, z], axis=1), presence)


def presence_needed(score: float, rule: PresenceRule) -> float:
    """The landmark model's face-present probability a detection of `score` needs (0: none).

    The first pair whose score bound lies above `score` applies; past the last, none is
    needed. A rule must list its score bounds in ascending order.
    """
    bounds = [below for below, _ in rule]
    if bounds != sorted(bounds):
        raise ValueError(f"presence rule score bounds must ascend, got {bounds}")
    for below, needed in rule:
        if score < below:
            return needed
    return 0.0
