"""Picture side of the sample-session generator: sprites from packaged photos, a world
canvas per scene, a moving/zooming camera over it, and mouths that open with speech.

Media (all shipped inside pip packages, nothing downloaded):
scikit-image ``astronaut`` (face), ``camera`` (the cameraman's face), ``chelsea`` (cat),
``coffee``, ``rocket``, ``stereo_motorcycle``, ``grass``, ``gravel``; scikit-learn
``china.jpg`` and ``flower.jpg``. Which split uses which is in `MEDIA_SPLIT`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

Box = tuple[float, float, float, float]

#: Media per split. Held-out sessions use none of the train faces, backgrounds, objects or
#: voices; the cat photo is the only one packages ship, so both splits share it.
MEDIA_SPLIT: dict[str, dict[str, tuple[str, ...]]] = {
    "train": {"faces": ("astronaut", "astronaut_mirror"), "backgrounds": ("china", "grass"),
              "objects": ("coffee", "rocket"), "cats": ("chelsea",)},
    "heldout": {"faces": ("cameraman", "cameraman_mirror"), "backgrounds": ("flower", "gravel"),
                "objects": ("motorcycle",), "cats": ("chelsea",)},
}


@dataclass(frozen=True)
class Sprite:
    name: str
    kind: str  # face | cat | object
    image: np.ndarray  # BGR uint8
    alpha: np.ndarray  # float32 [h, w] in [0, 1]
    box: Box  # the subject's box inside the sprite (a face box for faces)
    mouth: tuple[int, int, int, int] | None = None


def _rgb(im: np.ndarray) -> np.ndarray:
    if im.ndim == 2:
        return cv2.cvtColor(im, cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(im, cv2.COLOR_RGB2BGR)


def _soft_alpha(h: int, w: int, feather: float = 0.12) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.sqrt(((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2)
    return np.clip((1.0 - r) / feather, 0.0, 1.0).astype(np.float32)


@functools.lru_cache(maxsize=None)
def sprite(name: str) -> Sprite:
    import skimage.data as sk

    if name.startswith("astronaut"):
        img = _rgb(sk.astronaut())[20:200, 140:300]
        s = Sprite(name, "face", img, _soft_alpha(*img.shape[:2]), (25, 30, 125, 150), (60, 113, 105, 133))
    elif name.startswith("cameraman"):
        img = _rgb(sk.camera())[60:210, 150:280]
        s = Sprite(name, "face", img, _soft_alpha(*img.shape[:2]), (50, 20, 112, 140), (84, 110, 104, 126))
    elif name == "chelsea":
        img = _rgb(sk.chelsea())[0:300, 60:400]
        s = Sprite(name, "cat", img, _soft_alpha(*img.shape[:2], 0.2), (20, 10, 320, 290))
    elif name == "coffee":
        img = _rgb(sk.coffee())[20:390, 80:520]
        s = Sprite(name, "object", img, _soft_alpha(*img.shape[:2], 0.2), (30, 20, 410, 350))
    elif name == "rocket":
        img = _rgb(sk.rocket())[0:427, 230:420]
        s = Sprite(name, "object", img, _soft_alpha(*img.shape[:2], 0.2), (40, 0, 150, 427))
    elif name == "motorcycle":
        img = _rgb(sk.stereo_motorcycle()[0])[100:450, 100:650]
        s = Sprite(name, "object", img, _soft_alpha(*img.shape[:2], 0.2), (40, 30, 510, 320))
    else:
        raise KeyError(f"no sprite {name!r}")
    if name.endswith("_mirror"):  # a second person: mirrored and tinted
        w = s.image.shape[1]
        img = np.ascontiguousarray(s.image[:, ::-1])
        img = cv2.convertScaleAbs(img, alpha=0.9, beta=12)
        img[..., 0] = cv2.add(img[..., 0], 20)
        bx0, by0, bx1, by1 = s.box
        assert s.mouth is not None
        mx0, my0, mx1, my1 = s.mouth
        s = Sprite(name, "face", img, s.alpha[:, ::-1].copy(), (w - bx1, by0, w - bx0, by1), (w - mx1, my0, w - mx0, my1))
    return s


@functools.lru_cache(maxsize=None)
def background(name: str) -> np.ndarray:
    import skimage.data as sk
    from sklearn.datasets import load_sample_image

    if name in ("china", "flower"):
        return _rgb(load_sample_image(f"{name}.jpg"))
    return _rgb(getattr(sk, name)())


def open_mouth(s: Sprite, openness: float) -> np.ndarray:
    """The sprite with its jaw dropped by `openness` (0..1) of the mouth height."""
    img = s.image
    if s.mouth is None or openness <= 0.02:
        return img
    x0, y0, x1, y1 = s.mouth
    mid = (y0 + y1) // 2
    drop = int(round(openness * (y1 - y0) * 1.2))
    if drop <= 0:
        return img
    out = img.copy()
    lim = min(img.shape[0], y1 + 2 * (y1 - y0))
    out[mid + drop:lim, x0:x1] = img[mid:lim - drop, x0:x1]
    cv2.ellipse(out, ((x0 + x1) // 2, mid + drop // 2), (max(1, (x1 - x0) // 2 - 2), max(1, drop // 2 + 1)),
                0, 0, 360, (25, 15, 45), -1)
    return out


@dataclass(frozen=True)
class Placement:
    subject: str  # e.g. face0, face1, cat, coffee
    sprite: str
    x: float  # world position of the sprite's top-left corner
    y: float
    scale: float

    def world_box(self) -> Box:
        s = sprite(self.sprite)
        b = s.box
        return (self.x + b[0] * self.scale, self.y + b[1] * self.scale,
                self.x + b[2] * self.scale, self.y + b[3] * self.scale)


def paste(canvas: np.ndarray, image: np.ndarray, alpha: np.ndarray, p: Placement) -> None:
    h, w = image.shape[:2]
    nw, nh = max(1, int(w * p.scale)), max(1, int(h * p.scale))
    img = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
    a = cv2.resize(alpha, (nw, nh), interpolation=cv2.INTER_LINEAR)[..., None]
    x, y = int(p.x), int(p.y)
    H, W = canvas.shape[:2]
    cx0, cy0, cx1, cy1 = max(0, x), max(0, y), min(W, x + nw), min(H, y + nh)
    if cx0 >= cx1 or cy0 >= cy1:
        return
    src = img[cy0 - y:cy1 - y, cx0 - x:cx1 - x].astype(np.float32)
    aa = a[cy0 - y:cy1 - y, cx0 - x:cx1 - x]
    dst = canvas[cy0:cy1, cx0:cx1].astype(np.float32)
    canvas[cy0:cy1, cx0:cx1] = (src * aa + dst * (1.0 - aa)).astype(np.uint8)


def world_canvas(bg: str, size: tuple[int, int], static: list[Placement], *, tile_w: int | None = None) -> np.ndarray:
    """The scene's background at `size` with its static sprites. With `tile_w`, the
    background is scaled to that width and repeated, mirrored, across a wider world
    (a many-camera world is not one photo stretched N times)."""
    w, h = size
    if tile_w is None:
        canvas = cv2.resize(background(bg), (w, h), interpolation=cv2.INTER_AREA)
    else:
        tile = cv2.resize(background(bg), (tile_w, h), interpolation=cv2.INTER_AREA)
        pair = np.concatenate([tile, tile[:, ::-1]], axis=1)
        canvas = np.ascontiguousarray(np.tile(pair, (1, -(-w // pair.shape[1]), 1))[:, :w])
    for p in static:
        s = sprite(p.sprite)
        paste(canvas, s.image, s.alpha, p)
    return canvas


def camera_matrix(center: tuple[float, float], zoom: float, view: tuple[int, int]) -> np.ndarray:
    """World → view affine transform for a camera centred on `center` with `zoom`."""
    vw, vh = view
    cx, cy = center
    return np.array([[zoom, 0.0, vw / 2 - zoom * cx], [0.0, zoom, vh / 2 - zoom * cy]], dtype=np.float64)


def render(canvas: np.ndarray, m: np.ndarray, view: tuple[int, int]) -> np.ndarray:
    return cv2.warpAffine(canvas, m, view, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def view_box(box: Box, m: np.ndarray) -> Box:
    x0, y0, x1, y1 = box
    return (m[0, 0] * x0 + m[0, 2], m[1, 1] * y0 + m[1, 2], m[0, 0] * x1 + m[0, 2], m[1, 1] * y1 + m[1, 2])


def visible_fraction(box: Box, view: tuple[int, int]) -> float:
    x0, y0, x1, y1 = box
    area = max(1e-6, (x1 - x0) * (y1 - y0))
    ix = max(0.0, min(x1, view[0]) - max(x0, 0.0))
    iy = max(0.0, min(y1, view[1]) - max(y0, 0.0))
    return ix * iy / area
