"""Photos that ship inside scikit-image and scikit-learn, used for calibration and checks.

They are real photographs with known content (a face, a cat, a coffee cup) and come from
a package registry, so tests and int8 calibration need no download and no committed
binaries. Read with OpenCV from the package files (importing skimage is not needed).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from sensorfuse.models.sources import package_file

# name -> (distribution, path inside it)
PHOTOS: dict[str, tuple[str, str]] = {
    "astronaut": ("scikit-image", "skimage/data/astronaut.png"),
    "chelsea": ("scikit-image", "skimage/data/chelsea.png"),
    "coffee": ("scikit-image", "skimage/data/coffee.png"),
    "rocket": ("scikit-image", "skimage/data/rocket.jpg"),
    "motorcycle": ("scikit-image", "skimage/data/motorcycle_left.png"),
    "hubble": ("scikit-image", "skimage/data/hubble_deep_field.jpg"),
    "retina": ("scikit-image", "skimage/data/retina.jpg"),
    "china": ("scikit-learn", "sklearn/datasets/images/china.jpg"),
    "flower": ("scikit-learn", "sklearn/datasets/images/flower.jpg"),
}


def photo_path(name: str) -> Path:
    """Where a named photo is installed."""
    package, path = PHOTOS[name]
    return package_file(package, path)


def load_rgb(name: str) -> np.ndarray:
    """A named photo as HxWx3 uint8 RGB."""
    path = photo_path(name)
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise OSError(f"cannot decode image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def crops(image: np.ndarray, *, count: int, seed: int, min_fraction: float = 0.5) -> list[np.ndarray]:
    """Deterministic random square crops (and mirror flips) of one photo."""
    rng = np.random.default_rng(seed)
    height, width = image.shape[:2]
    out = []
    for _ in range(count):
        side = int(min(height, width) * rng.uniform(min_fraction, 1.0))
        top = int(rng.integers(0, height - side + 1))
        left = int(rng.integers(0, width - side + 1))
        patch = image[top:top + side, left:left + side]
        out.append(np.ascontiguousarray(patch[:, ::-1] if rng.random() < 0.5 else patch))
    return out
