"""Picture side of the sample-session generator: sprites from packaged photos, a world
canvas per scene, a moving/zooming camera over it, and mouths that open with speech.

Media (all shipped inside pip packages, nothing downloaded):
scikit-image ``astronaut`` (face), ``camera`` (the cameraman's face), ``chelsea`` (cat),
``coffee``, ``rocket``, ``stereo_motorcycle``, ``grass``, ``gravel``; scikit-learn
``china.jpg`` and ``flower.jpg``; matplotlib ``grace_hopper.jpg`` (a third face, held out,
`sensorfuse sample --vary` only). Which split uses which is in `MEDIA_SPLIT`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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


@dataclass(frozen=True)
class Source:
    """Where a sprite comes from: the packaged photo, the crop the default sprite takes of it
    (x0, y0, x1, y1), the subject's box and mouth in that crop, the alpha's feather, and a
    resize after cropping (1: none)."""

    kind: str
    crop: tuple[int, int, int, int]
    box: Box
    mouth: tuple[int, int, int, int] | None
    feather: float
    resize: float = 1.0


SOURCES: dict[str, Source] = {
    "astronaut": Source("face", (140, 20, 300, 200), (25, 30, 125, 150), (60, 113, 105, 133), 0.12),
    "cameraman": Source("face", (150, 60, 280, 210), (50, 20, 112, 140), (84, 110, 104, 126), 0.12),
    # `sensorfuse sample --vary` only (held-out): its face box is 180 px, the others' about 100
    "grace_hopper": Source("face", (130, 100, 400, 380), (45, 45, 225, 235), (100, 163, 168, 192), 0.12, 0.55),
    "chelsea": Source("cat", (60, 0, 400, 300), (20, 10, 320, 290), None, 0.2),
    "coffee": Source("object", (80, 20, 520, 390), (30, 20, 410, 350), None, 0.2),
    "rocket": Source("object", (230, 0, 420, 427), (40, 0, 150, 427), None, 0.2),
    "motorcycle": Source("object", (100, 100, 650, 450), (40, 30, 510, 320), None, 0.2),
}


@functools.lru_cache(maxsize=None)
def photo(name: str) -> np.ndarray:
    """The whole packaged photo a sprite is cut from, BGR."""
    import skimage.data as sk

    if name == "grace_hopper":
        import matplotlib

        img = cv2.imread(str(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"))
        if img is None:
            raise FileNotFoundError("matplotlib's sample_data/grace_hopper.jpg did not decode")
        return img
    loaders = {"astronaut": sk.astronaut, "cameraman": sk.camera, "chelsea": sk.chelsea, "coffee": sk.coffee,
               "rocket": sk.rocket, "motorcycle": lambda: sk.stereo_motorcycle()[0]}
    return _rgb(loaders[name]())


def _cut(name: str, crop: tuple[int, int, int, int], alpha_of: Callable[[int, int], np.ndarray],
         inset: Inset | None = None) -> Sprite:
    """A sprite of source `name` cut at `crop` (source pixels), its box and mouth moved into the cut."""
    base = name.removesuffix("_mirror")
    if base not in SOURCES:
        raise KeyError(f"no sprite {name!r}")
    src = SOURCES[base]
    x0, y0, x1, y1 = crop
    img = photo(base)[y0:y1, x0:x1]
    dx, dy = src.crop[0] - x0, src.crop[1] - y0  # the default crop's origin in this cut

    def moved(b: tuple[float, ...]) -> tuple[float, ...]:
        return tuple(v + (dx if i % 2 == 0 else dy) for i, v in enumerate(b))

    box, mouth = moved(src.box), (None if src.mouth is None else moved(src.mouth))
    if src.resize != 1.0:
        img = cv2.resize(img, None, fx=src.resize, fy=src.resize, interpolation=cv2.INTER_AREA)
        box = tuple(v * src.resize for v in box)
        mouth = None if mouth is None else tuple(v * src.resize for v in mouth)
    if inset is not None and inset.edge == "framed":
        img = img.copy()
        cv2.rectangle(img, (0, 0), (img.shape[1] - 1, img.shape[0] - 1), inset.frame_bgr, inset.frame_px)
    s = Sprite(name, src.kind, img, alpha_of(*img.shape[:2]), box,  # type: ignore[arg-type]
               None if mouth is None else tuple(int(round(v)) for v in mouth))  # type: ignore[arg-type]
    return _mirror(s) if name.endswith("_mirror") else s


def _mirror(s: Sprite) -> Sprite:
    """A second person: the sprite mirrored and tinted."""
    w = s.image.shape[1]
    img = np.ascontiguousarray(s.image[:, ::-1])
    img = cv2.convertScaleAbs(img, alpha=0.9, beta=12)
    img[..., 0] = cv2.add(img[..., 0], 20)
    bx0, by0, bx1, by1 = s.box
    assert s.mouth is not None
    mx0, my0, mx1, my1 = s.mouth
    return Sprite(s.name, "face", img, s.alpha[:, ::-1].copy(), (w - bx1, by0, w - bx0, by1),
                  (w - mx1, my0, w - mx0, my1))


@functools.lru_cache(maxsize=None)
def sprite(name: str) -> Sprite:
    """The default sprite: the source's crop, an ellipse alpha with the source's feather."""
    src = SOURCES.get(name.removesuffix("_mirror"))
    if src is None:
        raise KeyError(f"no sprite {name!r}")
    return _cut(name, src.crop, lambda h, w: _soft_alpha(h, w, src.feather))


@dataclass(frozen=True)
class Inset:
    """How a sprite is cut and pasted (`sensorfuse sample --vary`, "insets"): `margin` of
    photo around the subject's box, in box sizes per side; `edge`: ``soft`` (wide feathered
    ellipse), ``hard`` (ellipse, no feather), ``rect`` (the rectangle, hard edges) or
    ``framed`` (the rectangle with a `frame_px` border of `frame_bgr`)."""

    margin: float
    edge: str
    frame_bgr: tuple[int, int, int] = (255, 255, 255)
    frame_px: int = 3


INSET_EDGES = ("soft", "hard", "rect", "framed")


@functools.lru_cache(maxsize=None)
def inset_sprite(name: str, inset: Inset) -> Sprite:
    """Source `name` cut `inset.margin` box sizes around its subject (clipped to the photo)
    with `inset.edge`'s alpha; its box and mouth are where the subject is in that cut."""
    src = SOURCES.get(name.removesuffix("_mirror"))
    if src is None or inset.edge not in INSET_EDGES:
        raise KeyError(f"no sprite {name!r} with edge {inset.edge!r}")
    h_img, w_img = photo(name.removesuffix("_mirror")).shape[:2]
    bx0, by0, bx1, by1 = (v + src.crop[i % 2] for i, v in enumerate(src.box))  # the box in photo pixels
    mx, my = inset.margin * (bx1 - bx0), inset.margin * (by1 - by0)
    crop = (max(0, int(bx0 - mx)), max(0, int(by0 - my)), min(w_img, int(np.ceil(bx1 + mx))),
            min(h_img, int(np.ceil(by1 + my))))

    def alpha(h: int, w: int) -> np.ndarray:
        if inset.edge in ("rect", "framed"):
            return np.ones((h, w), np.float32)
        return _soft_alpha(h, w, 0.35 if inset.edge == "soft" else 0.02)

    return _cut(name, crop, alpha, inset)


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
    inset: Inset | None = None  # None: the default sprite (`sensorfuse sample --vary` sets one)

    def look(self) -> Sprite:
        """The sprite as placed: the default one, or its inset cut."""
        return sprite(self.sprite) if self.inset is None else inset_sprite(self.sprite, self.inset)

    def world_box(self) -> Box:
        b = self.look().box
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
        s = p.look()
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
