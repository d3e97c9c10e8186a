"""Image classifier / encoder pre- and post-processing (EfficientNet-Lite0, MobileNetV2).

Centre crop of a fraction of the short side, resize, per-channel `(x - mean) / std`,
NCHW float32. EfficientNet-Lite0 was trained with the TF-Lite convention mean 127 /
std 128 on bicubic crops of 87.5 %; the ImageNet mean/std from its README gives worse
labels (measured, see MODELS.md). The manifest carries whichever the model needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from sensorfuse.engine.manifest import CenterCropPre

_INTERPOLATION = {
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
}


def preprocess(image_rgb: np.ndarray, pre: CenterCropPre) -> np.ndarray:
    """One HxWx3 uint8 RGB image → a [1, 3, size, size] float32 tensor."""
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got shape {image_rgb.shape}")
    height, width = image_rgb.shape[:2]
    crop = max(1, int(round(min(height, width) * pre.crop_fraction)))
    top, left = (height - crop) // 2, (width - crop) // 2
    patch = image_rgb[top:top + crop, left:left + crop]
    resized = cv2.resize(patch, (pre.size, pre.size), interpolation=_INTERPOLATION[pre.interpolation])
    pixels = resized.astype(np.float32)
    pixels -= np.asarray(pre.mean, dtype=np.float32)
    pixels /= np.asarray(pre.std, dtype=np.float32)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1)[None])


def preprocess_batch(images_rgb: list[np.ndarray], pre: CenterCropPre) -> np.ndarray:
    """Several images → one [N, 3, size, size] batch."""
    return np.concatenate([preprocess(image, pre) for image in images_rgb], axis=0)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis, in float64 then back to float32."""
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return (exp / exp.sum(axis=-1, keepdims=True)).astype(np.float32)


@dataclass(frozen=True)
class Label:
    """One class guess: index into the label file, its name, and the softmax probability."""

    index: int
    name: str
    probability: float


def top_k(logits: np.ndarray, labels: list[str], k: int) -> list[Label]:
    """The k most probable classes of one logit vector, most probable first."""
    probs = softmax(np.asarray(logits).reshape(-1))
    order = np.argsort(-probs, kind="stable")[:k]
    return [Label(int(i), labels[int(i)], float(probs[i])) for i in order]


def load_labels(path: Path, *, expected: int | None = None) -> list[str]:
    """One class name per line, line number = class index."""
    names = path.read_text(encoding="utf-8").splitlines()
    if expected is not None and len(names) != expected:
        raise ValueError(f"label file {path} has {len(names)} lines, model has {expected} classes")
    return names
