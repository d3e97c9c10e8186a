"""Camera rig of a sample session: where each camera looks and where each face stands.

One camera (the default) pans and zooms over a world twice the view's size, and faces
stand still, as `sensorfuse.replay.sample` always did. With ``cameras = N > 1`` the world
is N views wide and the cameras stand side by side, camera k centred on the k-th slot of
the world with a mild pan and zoom of its own; every face walks at least one view's
width during its scene, away from the world's nearer edge, so it leaves one camera's view
and enters a neighbour's. Everything a rig of N > 1 cameras draws comes from its own
random generator, so the one-camera session of a seed stays byte for byte what it was,
and the sound and text of a seed are the same for every N.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from sensorfuse.replay import scene

MAX_CAMERAS = 8
View = tuple[float, float, float]  # cx, cy, zoom in world pixels


@dataclass
class Shot:
    """One scene as the rig sees it: per camera, where it looks at the scene's start and
    end; per face subject, its world x at the start and end (absent: it stands still)."""

    views: list[tuple[View, View]]
    walks: dict[str, tuple[float, float]] = field(default_factory=dict)


def world_size(view: tuple[int, int], cameras: int) -> tuple[int, int]:
    """The world's size in pixels: twice the view for one camera, N views wide for N."""
    return (view[0] * 2 if cameras == 1 else view[0] * cameras, view[1] * 2)


def eased(seg_start_s: float, seg_end_s: float, t: float) -> float:
    """0 → 1 across a scene, easing in and out (a camera's pan, a face's walk)."""
    u = (t - seg_start_s) / max(1e-6, seg_end_s - seg_start_s)
    return float(0.5 - 0.5 * np.cos(np.pi * u))


def plan(rng: np.random.Generator, cameras: int, view: tuple[int, int], faces: list[scene.Placement]) -> Shot:
    """The N > 1 cameras' pans and the faces' walks for one scene."""
    vw = view[0]
    ww, wh = world_size(view, cameras)

    def look(k: int) -> View:
        return (float((k + 0.5) * vw + rng.uniform(-0.08, 0.08) * vw), float(rng.uniform(0.45, 0.55) * wh),
                float(rng.uniform(0.95, 1.1)))

    views = [(look(k), look(k)) for k in range(cameras)]
    walks: dict[str, tuple[float, float]] = {}
    for p in faces:
        x0, _, x1, _ = p.world_box()
        width = x1 - x0
        direction = 1.0 if (x0 + x1) / 2 < ww / 2 else -1.0  # towards the middle: room to walk
        distance = float(rng.uniform(1.0, 1.6)) * vw
        end = float(np.clip(p.x + direction * distance, -(x0 - p.x), ww - width - (x0 - p.x)))
        walks[p.subject] = (p.x, end)
    return Shot(views, walks)


def faces_at(shot: Shot | None, faces: list[scene.Placement], u: float) -> list[scene.Placement]:
    """The scene's faces where they stand at progress `u` (0..1) of the scene."""
    if shot is None or not shot.walks:
        return faces
    out = []
    for p in faces:
        x_from, x_to = shot.walks.get(p.subject, (p.x, p.x))
        out.append(dataclasses.replace(p, x=x_from + (x_to - x_from) * u))
    return out


def views_at(shot: Shot, u: float) -> list[tuple[tuple[float, float], float]]:
    """Every camera's (centre, zoom) at progress `u` of the scene."""
    out = []
    for a, b in shot.views:
        out.append(((a[0] + (b[0] - a[0]) * u, a[1] + (b[1] - a[1]) * u), a[2] + (b[2] - a[2]) * u))
    return out
