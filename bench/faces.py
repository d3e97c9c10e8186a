"""Face recall by size, yaw and colour, and false faces on face-free frames (docs/fusion.md).

Runs the runtime face pipeline — `Perception.process`, the code the perceive node runs
(detector on the whole frame, regions around known faces, rotating tiles, landmark
confirmation, landmark tracking, the IoU tracker) — on generated 640×480 clips:

- **faces**: a photo inset (the face with a margin of 0.35 × its box on each side, hard
  edges, as a picture in a picture) scaled so the face box is 24–320 px tall, on a
  textured background photo, in colour or grey, turned by a yaw of 0°, 25° or 45°. Yaw
  is approximated by rotating the flat inset about its vertical axis (a perspective warp:
  the far side shrinks), not by a 3D head turn. Each clip is 30 frames (2 s at 15 fps)
  with the inset drifting a few pixels per frame; a fresh `Perception` per clip, so the
  recall includes the frames it takes to find a new face. A frame counts a hit when a
  published face box has IoU ≥ 0.3 with the truth box; other faces are false.
- **face-free**: textured photos and synthetic patterns (full frame with a slow pan and
  zoom, and as a 240×240 inset on another texture), 60 frames each (4 s). False faces per
  minute are face-frames (a face published in one frame) and `face.appeared` events (the
  perceive node's face rule: score ≥ 0.5 held for 150 ms) per minute of clip time.

Beside the faces the perceive node's object stage runs on every clip (NanoDet with its
tiles, the default classes, every 333 ms of clip time, entering 300 ms after its frame),
and each face is also judged by the node's face veto (`observations.face_on_object`: a
face on a tracked cat, dog or motorcycle and on no person starts no face event). Every
number is printed without and with the veto.

Faces: ``astronaut`` (the sample sessions' train face) and ``cameraman`` (their held-out
face) are what the pipeline was tuned on; ``grace_hopper`` (matplotlib's sample photo)
is used by no session, test or training, and is reported on its own. Clip layouts come
from seeds 7000+ (no session uses them). The truth box of each photo is the short-range
detector's box on the photo at its own size (a comfortable scale), so truth and
detections share one box convention.

    .venv/bin/python bench/faces.py [--quick] [--json OUT] [--cache DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from sensorfuse.engine import manifest as mf
from sensorfuse.engine.events import EventTracker, Observation
from sensorfuse.perception import Encoders, Perception, TickInput, label_embeddings
from sensorfuse.perception import faces as face_pipeline
from sensorfuse.perception.objects import OBJECT_MODEL, ObjectDetector, ObjectStage
from sensorfuse.perception.observations import FACE_VETO, face_on_object
from sensorfuse.perception.tracking import iou
from sensorfuse.models.sources import package_file
from sensorfuse.nodes.perceive_setup import DEFAULT_CLASSES, DEFAULT_RULES
from sensorfuse.nodes.perceive import PerceiveNode

WIDTH, HEIGHT = 640, 480
FPS = 15.0
SIZES = (24, 32, 48, 64, 96, 128, 192, 256, 320)
YAWS = (0, 25, 45)
COLOURS = ("colour", "grey")
FACES = ("astronaut", "cameraman", "grace_hopper")
HELD_OUT_FACES = ("grace_hopper",)
BACKGROUNDS = ("brick", "gravel", "grass", "china", "coffee", "moon")
FACE_FREE = ("flower", "coffee", "rocket", "brick", "chelsea", "hubble", "retina", "motorcycle", "china",
             "grass", "gravel", "coins", "moon", "ihc", "noise", "grey_noise", "gradient", "stripes")
FACE_FRAMES = 30
FREE_FRAMES = 60
MARGIN = 0.35  # inset border around the face box, in box sizes
MATCH_IOU = 0.3
SEED = 7000


def _skimage(name: str) -> np.ndarray:
    import skimage.data as sk

    image = {"motorcycle": lambda: sk.stereo_motorcycle()[0], "ihc": sk.immunohistochemistry, "hubble": sk.hubble_deep_field,
             "astronaut": sk.astronaut, "cameraman": sk.camera}.get(name, lambda: getattr(sk, name)())()
    return image


def photo_bgr(name: str) -> np.ndarray:
    """A named photo or pattern as HxWx3 uint8 BGR."""
    rng = np.random.default_rng(SEED + 1)
    if name == "grace_hopper":
        image = cv2.imread(str(package_file("matplotlib", "matplotlib/mpl-data/sample_data/grace_hopper.jpg")))
        assert image is not None, "matplotlib's grace_hopper.jpg did not decode"
        return image
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        return cv2.cvtColor(load_sample_image(f"{name}.jpg"), cv2.COLOR_RGB2BGR)
    if name == "noise":
        return cv2.GaussianBlur(rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8), (3, 3), 0)
    if name == "grey_noise":
        grey = cv2.resize(rng.integers(0, 256, (HEIGHT // 8, WIDTH // 8), dtype=np.uint8), (WIDTH, HEIGHT))
        return cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    if name == "gradient":
        x = np.linspace(0, 255, WIDTH)[None, :, None]
        y = np.linspace(0, 255, HEIGHT)[:, None, None]
        return np.concatenate([np.broadcast_to(x, (HEIGHT, WIDTH, 1)), np.broadcast_to(y, (HEIGHT, WIDTH, 1)),
                               np.broadcast_to((x + y) / 2, (HEIGHT, WIDTH, 1))], axis=2).astype(np.uint8)
    if name == "stripes":
        yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
        grey = (127 + 120 * np.sin(xx / 9.0) * np.cos(yy / 13.0)).astype(np.uint8)
        return cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    image = _skimage(name)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(image[..., :3], cv2.COLOR_RGB2BGR)


def cover(image: np.ndarray, width: int, height: int, *, zoom: float = 1.0, pan: float = 0.0) -> np.ndarray:
    """`image` resized to cover width×height (aspect kept), zoomed in by `zoom`, panned by `pan` in [0, 1]."""
    scale = max(width / image.shape[1], height / image.shape[0]) * zoom
    resized = cv2.resize(image, (max(width, round(image.shape[1] * scale)), max(height, round(image.shape[0] * scale))),
                         interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    x0 = int((resized.shape[1] - width) * pan)
    y0 = (resized.shape[0] - height) // 2
    return np.ascontiguousarray(resized[y0:y0 + height, x0:x0 + width])


@dataclass(frozen=True)
class Inset:
    image: np.ndarray  # BGR, already scaled and turned
    box: np.ndarray  # the face's truth box inside `image`


def face_inset(photo: np.ndarray, box: np.ndarray, height_px: int, yaw_deg: float) -> Inset:
    """The face of `photo` (truth `box`) with its margin, scaled to a `height_px` tall box and turned by yaw."""
    bw, bh = box[2] - box[0], box[3] - box[1]
    x0, y0 = max(0, int(box[0] - MARGIN * bw)), max(0, int(box[1] - MARGIN * bh))
    x1, y1 = min(photo.shape[1], int(box[2] + MARGIN * bw)), min(photo.shape[0], int(box[3] + MARGIN * bh))
    crop = photo[y0:y1, x0:x1]
    scale = height_px / bh
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    scaled = cv2.resize(crop, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    face = (box - np.array([x0, y0, x0, y0])) * scale
    if yaw_deg == 0:
        return Inset(scaled, face)
    return turn(scaled, face, yaw_deg)


def turn(image: np.ndarray, box: np.ndarray, yaw_deg: float) -> Inset:
    """Rotate the flat picture about its vertical centre line by `yaw_deg`, seen by a pinhole camera."""
    h, w = image.shape[:2]
    theta = np.deg2rad(yaw_deg)
    focal = 2.0 * max(w, h)

    def project(points: np.ndarray) -> np.ndarray:
        x, y = points[:, 0] - w / 2, points[:, 1] - h / 2
        depth = focal + x * np.sin(theta)  # the right side moves away
        return np.stack([x * np.cos(theta) * focal / depth, y * focal / depth], axis=1)

    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64)
    moved = project(corners)
    moved -= moved.min(axis=0)
    matrix = cv2.getPerspectiveTransform(corners.astype(np.float32), moved.astype(np.float32))
    out_w, out_h = int(np.ceil(moved[:, 0].max())), int(np.ceil(moved[:, 1].max()))
    warped = cv2.warpPerspective(image, matrix, (out_w, out_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    box_corners = np.array([[box[0], box[1]], [box[2], box[1]], [box[2], box[3]], [box[0], box[3]]], np.float64)
    warped_box = cv2.perspectiveTransform(box_corners[None].astype(np.float32), matrix)[0]
    return Inset(warped, np.concatenate([warped_box.min(axis=0), warped_box.max(axis=0)]).astype(np.float64))


def paste(frame: np.ndarray, image: np.ndarray, x: int, y: int) -> None:
    """Paste `image` with its top-left at (x, y), clipped to the frame."""
    h, w = image.shape[:2]
    fx0, fy0, fx1, fy1 = max(0, x), max(0, y), min(frame.shape[1], x + w), min(frame.shape[0], y + h)
    if fx0 < fx1 and fy0 < fy1:
        frame[fy0:fy1, fx0:fx1] = image[fy0 - y:fy1 - y, fx0 - x:fx1 - x]


def grey(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)


def face_clip(inset: Inset, background: np.ndarray, colour: str, rng: np.random.Generator,
              frames: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Frames with the inset drifting over the background, and the face's truth box per frame."""
    bw, bh = inset.box[2] - inset.box[0], inset.box[3] - inset.box[1]
    # the face box stays inside the frame; the inset's margin may leave it
    fx = rng.uniform(2, max(3.0, WIDTH - bw - 2))
    fy = rng.uniform(2, max(3.0, HEIGHT - bh - 2))
    vx, vy = rng.uniform(-2.0, 2.0, size=2)
    out = []
    for _ in range(frames):
        frame = background.copy()
        x, y = int(round(fx - inset.box[0])), int(round(fy - inset.box[1]))
        paste(frame, inset.image, x, y)
        truth = inset.box + np.array([x, y, x, y], np.float64)
        out.append((grey(frame) if colour == "grey" else frame, truth))
        if not 2 <= fx + vx <= WIDTH - bw - 2:
            vx = -vx
        if not 2 <= fy + vy <= HEIGHT - bh - 2:
            vy = -vy
        fx, fy = fx + vx, fy + vy
    return out


def free_clip(name: str, layout: str, rng: np.random.Generator, frames: int) -> list[np.ndarray]:
    """Face-free frames: the photo full frame (slow pan and zoom) or as a 240×240 inset on another texture."""
    photo = photo_bgr(name)
    if layout == "full":
        return [cover(photo, WIDTH, HEIGHT, zoom=1.0 + 0.3 * i / frames, pan=i / frames) for i in range(frames)]
    others = [n for n in FACE_FREE if n != name]
    background = cover(photo_bgr(str(rng.choice(others))), WIDTH, HEIGHT)
    inset = cover(photo, 240, 240)
    x, y = int(rng.integers(0, WIDTH - 240)), int(rng.integers(0, HEIGHT - 240))
    out = []
    for i in range(frames):
        frame = background.copy()
        paste(frame, inset, x + i // 4, y)
        out.append(frame)
    return out


@dataclass(frozen=True)
class Face:
    box: np.ndarray
    track_id: int
    score: float
    on_object: str | None  # the class of the object that vetoes it (`face_on_object`)


class Runner:
    """The runtime pipeline on clips: a fresh `Perception` per clip, frames only, the scene encoder idle."""

    def __init__(self, cache: Path | None) -> None:
        self.encoders = Encoders(cache)
        self.objects = ObjectDetector(mf.find_manifest(OBJECT_MODEL, cache))
        self.node_params = PerceiveNode.Params()  # the node's object schedule
        self.labels = label_embeddings(self.encoders)
        self.frame_ms: list[float] = []
        # model runs (images) per frame: a cost that does not depend on how loaded the machine is;
        # a batched call of N crops counts N
        self.runs = {"detector": 0, "landmarks": 0}
        for key, session in (("detector", self.encoders.face_model), ("landmarks", self.encoders.landmark_model)):
            session.run = self._counted(key, session.run)  # type: ignore[method-assign]

    def _counted(self, key: str, run: Callable[..., Any]) -> Callable[..., Any]:
        def counted(feeds: dict[str, np.ndarray]) -> Any:
            self.runs[key] += len(feeds["image"])
            return run(feeds)

        return counted

    def run(self, frames: list[np.ndarray]) -> list[list[Face]]:
        """Published faces per frame, each with the object class that vetoes it (or None)."""
        perception = Perception(self.encoders, self.labels, scene_period_ns=10**15)
        p = self.node_params
        stage = ObjectStage(self.objects, DEFAULT_CLASSES, period_ns=round(p.objects_period_ms * 1e6),
                            delay_ns=round(p.objects_delay_ms * 1e6))
        published = []
        for i, frame in enumerate(frames):
            tick = TickInput(i, int(i * 1e9 / FPS), frame=frame, frame_layout="HWC/bgr8")
            start = time.perf_counter()
            feats = perception.process(tick)
            self.frame_ms.append((time.perf_counter() - start) * 1e3)
            stage.step(tick.t_ns, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))  # after the faces, as the node does
            on = stage.current.objects if stage.current is not None else ()
            published.append([Face(np.asarray(f.box, np.float64), f.track_id, f.score,
                                   face_on_object(f.box, on, FACE_VETO)) for f in feats.faces])
        return published

    def truth_box(self, photo_bgr_image: np.ndarray) -> np.ndarray:
        """The detector's box of the one face in a photo at its own size."""
        rgb = cv2.cvtColor(photo_bgr_image, cv2.COLOR_BGR2RGB)
        [found] = face_pipeline.find_faces(self.encoders, [face_pipeline.FaceRequest(rgb)], max_faces=3)
        if len(found) != 1:
            raise SystemExit(f"expected one face in the reference photo, found {len(found)}")
        return found[0].box


def appeared_events(published: list[list[Face]], veto: bool) -> int:
    """`face.appeared` events the perceive node's face rule would emit on these frames
    (`veto`: faces on a vetoing object not observed, as the node does)."""
    tracker = EventTracker(DEFAULT_RULES["face"].rule("face"))
    count = 0
    for i, faces in enumerate(published):
        obs = {f"track:{f.track_id}": Observation(f.score) for f in faces if not (veto and f.on_object)}
        count += sum(e.phase == "start" for e in tracker.step(int(i * 1e9 / FPS), obs))
    return count


def sweep_faces(runner: Runner, faces: tuple[str, ...], clips_per_cell: int) -> list[dict[str, object]]:
    rows = []
    rng = np.random.default_rng(SEED)
    for face in faces:
        photo = photo_bgr(face)
        box = runner.truth_box(photo)
        for size in SIZES:
            for yaw in YAWS:
                inset = face_inset(photo, box, size, yaw)
                for colour in COLOURS:
                    for _ in range(clips_per_cell):
                        background = cover(photo_bgr(str(rng.choice(BACKGROUNDS))), WIDTH, HEIGHT,
                                           pan=float(rng.uniform()))
                        clip = face_clip(inset, background, colour, rng, FACE_FRAMES)
                        published = runner.run([f for f, _ in clip])
                        hits = false = hits_veto = false_veto = 0
                        for (_, truth), found in zip(clip, published):
                            matched = [(iou(f.box, truth) >= MATCH_IOU, f.on_object is None) for f in found]
                            hits += any(m for m, _ in matched)
                            false += sum(not m for m, _ in matched)
                            hits_veto += any(m and kept for m, kept in matched)
                            false_veto += sum(not m and kept for m, kept in matched)
                        rows.append({"face": face, "size": size, "yaw": yaw, "colour": colour,
                                     "frames": len(clip), "hits": hits, "false": false,
                                     "hits_veto": hits_veto, "false_veto": false_veto})
    return rows


def sweep_free(runner: Runner, frames: int) -> list[dict[str, object]]:
    rows = []
    rng = np.random.default_rng(SEED + 2)
    for name in FACE_FREE:
        for layout in ("full", "inset"):
            published = runner.run(free_clip(name, layout, rng, frames))
            rows.append({"photo": name, "layout": layout, "frames": len(published),
                         "face_frames": sum(len(f) for f in published),
                         "face_frames_veto": sum(f.on_object is None for faces in published for f in faces),
                         "appeared": appeared_events(published, veto=False),
                         "appeared_veto": appeared_events(published, veto=True),
                         "vetoed_by": sorted({f.on_object for faces in published for f in faces if f.on_object})})
    return rows


def recall_table(rows: list[dict[str, object]], faces: tuple[str, ...], hits_key: str = "hits") -> str:
    cells: dict[tuple[int, int, str], list[int]] = defaultdict(lambda: [0, 0])
    for r in rows:
        if r["face"] in faces:
            cell = cells[(int(r["size"]), int(r["yaw"]), str(r["colour"]))]  # type: ignore[call-overload]
            cell[0] += int(r[hits_key])  # type: ignore[call-overload]
            cell[1] += int(r["frames"])  # type: ignore[call-overload]
    heads = [f"{yaw}° {colour}" for yaw in YAWS for colour in COLOURS]
    lines = ["| face px | " + " | ".join(heads) + " |", "|---|" + "---|" * len(heads)]
    for size in SIZES:
        values = [cells[(size, yaw, colour)] for yaw in YAWS for colour in COLOURS]
        lines.append(f"| {size} | " + " | ".join(f"{h / n:.2f}" if n else "–" for h, n in values) + " |")
    return "\n".join(lines)


def summary(rows: list[dict[str, object]], free: list[dict[str, object]], frame_ms: list[float],
            runs: dict[str, int]) -> str:
    out = []
    for label, faces in (("tuned-on faces (astronaut, cameraman)", tuple(f for f in FACES if f not in HELD_OUT_FACES)),
                         ("held-out face (grace_hopper)", HELD_OUT_FACES)):
        if any(r["face"] in faces for r in rows):
            out += [f"Recall, {label}:", "", recall_table(rows, faces), ""]
            out += [f"Recall with the face veto, {label}:", "", recall_table(rows, faces, "hits_veto"), ""]
    big = [r for r in rows if int(r["size"]) >= 32]  # type: ignore[call-overload]
    if big:
        frames = sum(int(r["frames"]) for r in big)  # type: ignore[call-overload]
        all_frames = sum(int(r["frames"]) for r in rows)  # type: ignore[call-overload]
        for suffix, label in (("", "without the veto"), ("_veto", "with the veto")):
            hits = sum(int(r["hits" + suffix]) for r in big)  # type: ignore[call-overload]
            false = sum(int(r["false" + suffix]) for r in rows)  # type: ignore[call-overload]
            out.append(f"recall, faces ≥ 32 px, all poses and colours, {label}: {hits / frames:.3f} "
                       f"({hits}/{frames} frames); false faces on face frames: {false / all_frames:.3f} / frame")
    if free:
        frames = sum(int(r["frames"]) for r in free)  # type: ignore[call-overload]
        minutes = frames / FPS / 60.0
        for suffix, label in (("", "without the veto"), ("_veto", "with the veto")):
            face_frames = sum(int(r["face_frames" + suffix]) for r in free)  # type: ignore[call-overload]
            appeared = sum(int(r["appeared" + suffix]) for r in free)  # type: ignore[call-overload]
            worst = sorted(free, key=lambda r: -int(r["face_frames" + suffix]))[:4]  # type: ignore[call-overload]
            out.append(f"face-free, {label}: {frames} frames ({minutes:.1f} min at {FPS:g} fps): "
                       f"{face_frames / minutes:.1f} false face-frames / min, {appeared / minutes:.1f} false "
                       "face.appeared / min; most: "
                       + ", ".join(f"{r['photo']}/{r['layout']} {r['face_frames' + suffix]}" for r in worst))
    ms = np.asarray(frame_ms)
    out.append(f"Perception.process, ms / frame (640×480, faces only): p50 {np.percentile(ms, 50):.1f}, "
               f"p90 {np.percentile(ms, 90):.1f}, p99 {np.percentile(ms, 99):.1f}; model runs / frame: "
               + ", ".join(f"{key} {count / max(1, ms.size):.2f}" for key, count in runs.items()))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=None, help="model cache (default: $SENSORFUSE_MODEL_CACHE)")
    parser.add_argument("--quick", action="store_true", help="one face (cameraman), fewer face-free frames")
    parser.add_argument("--clips", type=int, default=1, help="clips per (face, size, yaw, colour) cell")
    parser.add_argument("--faces", default=",".join(FACES), help="comma-separated: " + ", ".join(FACES))
    parser.add_argument("--no-free", action="store_true", help="skip the face-free clips")
    parser.add_argument("--json", type=Path, default=None, help="write every clip's counts here")
    args = parser.parse_args(argv)
    faces = ("cameraman",) if args.quick else tuple(args.faces.split(","))
    unknown = [f for f in faces if f not in FACES]
    if unknown:
        parser.error(f"unknown face {unknown[0]!r}; choose from {', '.join(FACES)}")
    runner = Runner(args.cache)
    rows = sweep_faces(runner, faces, args.clips)
    free = [] if args.no_free else sweep_free(runner, FREE_FRAMES // 2 if args.quick else FREE_FRAMES)
    print(summary(rows, free, runner.frame_ms, runner.runs))
    if args.json:
        args.json.write_text(json.dumps({"faces": rows, "free": free}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
