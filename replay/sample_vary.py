"""Variety for generated sessions (`sensorfuse sample --vary`): what no training session has.

A varied session is the seed's session (same script: scenes, who speaks when, sounds,
texts) seen and heard differently. Each *axis* can be switched on alone; every value is
drawn from the seed (`draw`, its own generator: the session of a seed without ``--vary``
stays byte for byte what it was), and every axis's values are drawn whichever axes are on,
so ``--vary lighting`` has exactly the lighting of ``--vary all``.

| axis | per | what changes |
|---|---|---|
| ``lighting`` | session | gain ×0.5–1.6, gamma 0.7–1.5, white balance (warm ↔ cool cast, a green/magenta tint); one session in five grey; over the session a slow ramp (gain ×0.5–2 by its end) or a light switched (×0.4–0.7 or ×1.4–2.2, a 0.3 s fade), or neither |
| ``sizes`` | subject | faces ×0.45–1.9 their usual scale, cat and objects ×0.6–1.6 (about its centre, kept inside the world) |
| ``insets`` | subject | how a photo is cut and pasted: the margin of photo around the subject (0.05–0.9 box sizes per side; ≥ 0.25 for ellipses, so the box stays inside) and the edge: wide soft ellipse, hard ellipse, hard rectangle, or rectangle with a 2–5 px white/black/grey frame |
| ``camera`` | session | sensor noise σ 0–8 levels, blur σ 0.6–1.6 px in half of the sessions, JPEG quality 30–90 (default 90) |
| ``voices`` | speech clip | speed and pitch ×0.88–1.15 together (resampled; a slowed clip is kept inside its gap and scene), level ×0.4–1.2; room tone ×1–6 per session (−50 to −34 dB) |
| ``faces`` | scene | held-out seeds only: in half the scenes one face is matplotlib's ``grace_hopper`` (a photo no other session uses); train seeds have no face to spare |

The truth follows: boxes come from where each sprite is placed and how it is cut
(`scene.Placement.look`), speech intervals from the resampled clips; lighting and camera
change pixels only, so their truth is the unvaried session's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from sensorfuse.engine.errors import UsageError
from sensorfuse.replay import scene

AXES = ("lighting", "sizes", "insets", "camera", "voices", "faces")
STREAM = 0x56415259  # "VARY": the variety generator's second seed word
RATE16K = 16_000
VARIED_FACE = "grace_hopper"


def parse_axes(vary: bool | str | Iterable[str] | None) -> frozenset[str]:
    """`True` or ``"all"``: every axis; `False`, `None` or ``""``: none; else axis names
    (a comma list or an iterable). An unknown name is a `UsageError` naming it."""
    if vary is None or vary is False:
        return frozenset()
    if vary is True:
        return frozenset(AXES)
    names = [n.strip() for n in (vary.split(",") if isinstance(vary, str) else vary)]
    names = [n for n in names if n]
    if "all" in names:
        return frozenset(AXES)
    unknown = [n for n in names if n not in AXES]
    if unknown:
        raise UsageError(f"--vary wants all or a comma list of {', '.join(AXES)}; got {unknown[0]!r}")
    return frozenset(names)


@dataclass(frozen=True)
class Lighting:
    gain: float
    gamma: float
    cast_bgr: tuple[float, float, float]  # white balance: per-channel gain
    grey: bool
    change: str  # none | ramp | step
    change_gain: float  # ramp: gain factor at the session's end; step: after the switch
    change_s: float  # step: when the light is switched
    fade_s: float = 0.3

    def gain_at(self, t: float, duration_s: float) -> float:
        g = self.gain
        if self.change == "ramp":
            g *= 1.0 + (self.change_gain - 1.0) * min(1.0, max(0.0, t / max(1e-6, duration_s)))
        elif self.change == "step":
            u = min(1.0, max(0.0, (t - self.change_s) / self.fade_s))
            g *= 1.0 + (self.change_gain - 1.0) * u
        return g


@dataclass(frozen=True)
class Camera:
    noise_sigma: float
    blur_sigma: float  # 0: sharp
    jpeg_quality: int


@dataclass
class Variety:
    """A session's drawn variety; `axes` says which of it is applied."""

    seed: int
    axes: frozenset[str]
    duration_s: float
    lighting: Lighting
    camera: Camera
    room_gain: float

    def summary(self) -> dict[str, Any]:
        """What the log's metadata records (``variety``): the axes and their session values."""
        out: dict[str, Any] = {"axes": sorted(self.axes)}
        if "lighting" in self.axes:
            out["lighting"] = _rounded(dataclasses.asdict(self.lighting))
        if "camera" in self.axes:
            out["camera"] = _rounded(dataclasses.asdict(self.camera))
        if "voices" in self.axes:
            out["room_gain"] = round(self.room_gain, 3)
        return out


def _rounded(values: dict[str, Any]) -> dict[str, Any]:
    def r(v: Any) -> Any:
        return round(v, 3) if isinstance(v, float) else [r(x) for x in v] if isinstance(v, (list, tuple)) else v

    return {k: r(v) for k, v in values.items()}


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def draw(seed: int, axes: frozenset[str], duration_s: float) -> tuple[Variety, np.random.Generator]:
    """The session-wide values, and the generator the per-subject and per-clip values come from next."""
    rng = np.random.default_rng([seed, STREAM])
    temp, tint = float(rng.uniform(-1, 1)), float(rng.uniform(-0.08, 0.08))
    gain, gamma = _log_uniform(rng, 0.5, 1.6), float(rng.uniform(0.7, 1.5))
    grey = bool(rng.random() < 0.2)
    change = str(rng.choice(["none", "ramp", "step"], p=[0.3, 0.35, 0.35]))
    ramp_gain = _log_uniform(rng, 0.5, 2.0)
    step_gain = _log_uniform(rng, 0.4, 0.7) if rng.random() < 0.5 else _log_uniform(rng, 1.4, 2.2)
    step_s = float(rng.uniform(0.25, 0.75)) * duration_s
    lighting = Lighting(gain, gamma, (1.0 - 0.25 * temp, 1.0 + tint, 1.0 + 0.25 * temp), grey, change,
                        ramp_gain if change == "ramp" else step_gain if change == "step" else 1.0, step_s)
    noise = float(rng.uniform(0.0, 8.0))
    blur = float(rng.uniform(0.6, 1.6)) if rng.random() < 0.5 else 0.0
    camera = Camera(noise, blur, int(rng.integers(30, 91)))
    room_gain = _log_uniform(rng, 1.0, 6.0)
    return Variety(seed, axes, duration_s, lighting, camera, room_gain), rng


def _inset(rng: np.random.Generator, kind: str) -> scene.Inset:
    edge = str(rng.choice(scene.INSET_EDGES))
    lo = 0.25 if edge in ("soft", "hard") and kind == "face" else 0.05 if kind == "face" else 0.03
    margin = float(rng.uniform(lo, 0.9 if kind == "face" else 0.5))
    frame = [(255, 255, 255), (0, 0, 0), (128, 128, 128)][int(rng.integers(3))]
    return scene.Inset(round(margin, 3), edge, frame, int(rng.integers(2, 6)))


def _resized(p: scene.Placement, factor: float, world: tuple[int, int]) -> scene.Placement:
    """`p` scaled by `factor` about its subject box's centre, moved back inside the world."""
    x0, y0, x1, y1 = p.world_box()
    scale = p.scale * factor
    b = p.look().box
    nx = (x0 + x1) / 2 - (b[0] + b[2]) / 2 * scale
    ny = (y0 + y1) / 2 - (b[1] + b[3]) / 2 * scale
    h, w = p.look().image.shape[:2]
    nx = float(min(max(nx, 0.0), max(0.0, world[0] - w * scale)))
    ny = float(min(max(ny, 0.0), max(0.0, world[1] - h * scale)))
    return dataclasses.replace(p, x=nx, y=ny, scale=scale)


def vary_scenes(v: Variety, rng: np.random.Generator, segments: list[Any], split: str,
                world: tuple[int, int]) -> None:
    """Apply ``faces``, ``insets`` and ``sizes`` to every scene's placements, in place.
    Values are drawn for every subject whichever axes are on."""
    for seg in segments:
        swap, swap_at = rng.random() < 0.5, int(rng.integers(2))
        for group in ("faces", "static"):
            placed = []
            for i, p in enumerate(getattr(seg, group)):
                kind = p.look().kind
                factor = _log_uniform(rng, 0.45, 1.9) if kind == "face" else _log_uniform(rng, 0.6, 1.6)
                inset = _inset(rng, kind)
                if "faces" in v.axes and split == "heldout" and kind == "face" and swap and i == swap_at % len(seg.faces):
                    p = _swap_face(p, i)
                if "insets" in v.axes:
                    p = _recut(p, inset)
                if "sizes" in v.axes:
                    p = _resized(p, factor, world)
                placed.append(p)
            setattr(seg, group, placed)


def _swap_face(p: scene.Placement, index: int) -> scene.Placement:
    """`p` played by the varied face, at the same subject box (its photo's face is bigger)."""
    name = VARIED_FACE + ("_mirror" if index % 2 else "")
    return _same_box(p, dataclasses.replace(p, sprite=name))


def _recut(p: scene.Placement, inset: scene.Inset) -> scene.Placement:
    return _same_box(p, dataclasses.replace(p, inset=inset))


def _same_box(old: scene.Placement, new: scene.Placement) -> scene.Placement:
    """`new` moved and scaled so its subject box is `old`'s (its width; the centre kept)."""
    ox0, oy0, ox1, oy1 = old.world_box()
    b = new.look().box
    scale = (ox1 - ox0) / max(1e-6, b[2] - b[0])
    return dataclasses.replace(new, scale=scale, x=(ox0 + ox1) / 2 - (b[0] + b[2]) / 2 * scale,
                               y=(oy0 + oy1) / 2 - (b[1] + b[3]) / 2 * scale)


def vary_voices(v: Variety, rng: np.random.Generator, sounds: list[Any], segments: list[Any],
                duration_s: float) -> None:
    """Apply ``voices`` to the speech events in place: resampled (speed and pitch), level.
    A slowed clip is shortened towards its own speed where it would run into the next
    sound, past the session's end, or (with a visible speaker) past its scene."""
    for k, ev in enumerate(sounds):
        if ev.kind != "speech":
            continue
        speed, level = float(rng.uniform(0.88, 1.15)), _log_uniform(rng, 0.4, 1.2)
        if "voices" not in v.axes:
            continue
        limit = min(duration_s, sounds[k + 1].start_s - 0.05 if k + 1 < len(sounds) else duration_s)
        if ev.speaker != "offscreen":
            limit = min(limit, next(s.end_s for s in segments if s.start_s <= ev.start_s < s.end_s))
        n = len(ev.samples)
        room = max(1, int((limit - ev.start_s) * RATE16K))
        speed = max(speed, n / room)
        n_out = max(1, int(n / speed))
        src = np.arange(n_out) * speed
        ev.samples = (np.interp(src, np.arange(n), ev.samples) * level).astype(np.float32)


def look(frame: np.ndarray, t: float, v: Variety, noise_rng: np.random.Generator) -> np.ndarray:
    """A rendered view under the session's ``lighting`` and ``camera`` (blur, then noise;
    the JPEG quality applies when the frame is stored)."""
    out = frame
    if "lighting" in v.axes:
        li = v.lighting
        if li.grey:
            out = cv2.cvtColor(cv2.cvtColor(out, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
        cast = (1.0, 1.0, 1.0) if li.grey else li.cast_bgr
        levels = (np.arange(256, dtype=np.float64) / 255.0) ** li.gamma * 255.0 * li.gain_at(t, v.duration_s)
        lut = np.stack([np.clip(levels * c, 0, 255) for c in cast], axis=1).astype(np.uint8)
        out = cv2.LUT(out, lut.reshape(256, 1, 3))
    if "camera" in v.axes:
        cam = v.camera
        if cam.blur_sigma > 0:
            out = cv2.GaussianBlur(out, (0, 0), cam.blur_sigma)
        if cam.noise_sigma > 0:
            noisy = out.astype(np.float32) + noise_rng.normal(0.0, cam.noise_sigma, out.shape).astype(np.float32)
            out = np.clip(noisy, 0, 255).astype(np.uint8)
    return out
