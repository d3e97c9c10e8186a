"""Object detector with and without tiles: cost per run and per-class P/R on a session.

    .venv/bin/python bench/objects.py [--session S.mcap] [--tiles 0,1,2,4] [--repeat 20]

Cost: milliseconds per objects run (`ObjectDetector.detect` on the whole frame plus the
run's tiles, one onnxruntime thread, as perceive runs it) at 320×240 and 640×480, median
and p90 of `--repeat` runs on the astronaut photo resized. Quality: the session's camera
frames every 333 ms (the default `objects_period_ms`), the tiles rotating as in
`ObjectStage`, scored per class as `sensorfuse demo` does (`nodes/demo_objects.py`; no
tracking: every run's detections of the demo's default classes). Without `--session`, the
demo's own (seed 1000042, 20 s).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

from sensorfuse.engine import manifest as mf
from sensorfuse.engine import wire
from sensorfuse.models import media
from sensorfuse.nodes import demo, demo_objects
from sensorfuse.nodes.perceive_setup import DEFAULT_CLASSES
from sensorfuse.perception import object_tiles
from sensorfuse.perception.objects import OBJECT_MODEL, ObjectDetector
from sensorfuse.replay.mcap_io import LogReader

PERIOD_NS = 333_000_000


def run_tiles(frame: np.ndarray, run: int, per_run: int) -> list[object_tiles.Tile]:
    height, width = frame.shape[:2]
    return object_tiles.tiles_now(object_tiles.quarter_tiles(height, width), run, per_run)


def cost(detector: ObjectDetector, per_run: int, size: tuple[int, int], repeat: int) -> tuple[float, float]:
    frame = cv2.resize(media.load_rgb("astronaut"), size)
    for run in range(3):
        detector.detect(frame, run_tiles(frame, run, per_run))
    times = []
    for run in range(repeat):
        start = time.perf_counter()
        detector.detect(frame, run_tiles(frame, run, per_run))
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times)), float(np.percentile(times, 90))


def frames_every_period(session: Path) -> list[tuple[int, np.ndarray]]:
    frames: list[tuple[int, np.ndarray]] = []
    with LogReader(session) as reader:
        for msg in reader.iter_messages(["cam0/frame"]):
            header, _, payload = msg.decode()
            if frames and header.t_ns < frames[-1][0] + PERIOD_NS:
                continue
            frame = wire.Message(header, [payload]).array
            rgb = frame[..., ::-1] if (header.layout or "").endswith("bgr8") else frame
            frames.append((header.t_ns, np.ascontiguousarray(rgb)))
    return frames


def quality(detector: ObjectDetector, session: Path, per_run: int) -> dict[str, demo_objects.ClassScore]:
    _, boxes, _ = demo.read_truth(session)
    results = []
    for run, (t_ns, frame) in enumerate(frames_every_period(session)):
        found = detector.detect(frame, run_tiles(frame, run, per_run))
        height, width = frame.shape[:2]
        results.append({"frame_t_ns": t_ns, "objects": [
            {"class": detector.labels[c], "box": list(np.clip(b, 0, [width, height, width, height])), "score": s}
            for b, s, c in zip(found.boxes, found.scores, found.classes)]})
    return demo_objects.score_objects(results, boxes, DEFAULT_CLASSES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--session", type=Path, default=None)
    parser.add_argument("--tiles", default="0,1,2,4", help="tiles per run to compare")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    session = args.session or demo.ensure_session()
    detector = ObjectDetector(mf.find_manifest(OBJECT_MODEL))
    for per_run in [int(v) for v in args.tiles.split(",")]:
        costs = [cost(detector, per_run, size, args.repeat) for size in ((320, 240), (640, 480))]
        print(f"tiles per run {per_run}: ms per run (median, p90) 320x240 {costs[0][0]:.0f}, {costs[0][1]:.0f}; "
              f"640x480 {costs[1][0]:.0f}, {costs[1][1]:.0f}")
        print(demo_objects.table(quality(detector, session, per_run)))


if __name__ == "__main__":
    main()
