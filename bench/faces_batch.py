"""Face pipeline per tick for 1, 2 and 4 cameras: one batched `FacePipeline` vs one
one-camera pipeline per camera stepped in turn (the same frames, the same faces).

Frames: 640×480 from the shipped sample photos (the astronaut full frame and mirrored,
the cat, the coffee cup with the astronaut as a small inset), moving a pixel a tick, so
regions, tiles and tracking all run. Batched and looped ticks alternate, so clock drift
and other jobs on the machine hit both alike; the first ticks (new batch shapes) are not
counted. Prints a Markdown table: median and p90 ms per tick, model calls per tick, and
looped / batched.

    .venv/bin/python bench/faces_batch.py [--cache DIR] [--ticks 60] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from sensorfuse.models import media
from sensorfuse.perception import Encoders
from sensorfuse.perception.faces import FacePipeline

WIDTH, HEIGHT = 640, 480
WARMUP_TICKS = 5


def camera_frames() -> list[np.ndarray]:
    """Four 640×480 RGB frames from the sample photos."""
    astronaut = cv2.resize(media.load_rgb("astronaut"), (WIDTH, HEIGHT))
    coffee = cv2.resize(media.load_rgb("coffee"), (WIDTH, HEIGHT))
    coffee[300:460, 440:600] = cv2.resize(media.load_rgb("astronaut"), (160, 160))
    return [astronaut, cv2.resize(media.load_rgb("chelsea"), (WIDTH, HEIGHT)), coffee,
            np.ascontiguousarray(astronaut[:, ::-1])]


def tick_frames(frames: list[np.ndarray], tick: int) -> list[np.ndarray]:
    shift = np.float32([[1, 0, tick % 20], [0, 1, tick % 3]])
    return [cv2.warpAffine(f, shift, (WIDTH, HEIGHT)) for f in frames]


def count_calls(encoders: Encoders) -> dict[str, int]:
    calls = {"calls": 0}
    for session in (encoders.face_model, encoders.landmark_model):
        session.run = _counted(calls, session.run)  # type: ignore[method-assign]
    return calls


def _counted(calls: dict[str, int], run: Callable[..., Any]) -> Callable[..., Any]:
    def counted(feeds: dict[str, np.ndarray]) -> Any:
        calls["calls"] += 1
        return run(feeds)
    return counted


def measure(encoders: Encoders, calls: dict[str, int], cameras: int, ticks: int) -> dict[str, float]:
    frames = camera_frames()[:cameras]
    batched = FacePipeline(encoders, cameras=cameras)
    looped = [FacePipeline(encoders) for _ in range(cameras)]
    times: dict[str, list[float]] = {"batched": [], "looped": []}
    model_calls: dict[str, list[int]] = {"batched": [], "looped": []}
    for tick in range(ticks + WARMUP_TICKS):
        now = tick_frames(frames, tick)
        for way in ("batched", "looped") if tick % 2 else ("looped", "batched"):
            calls["calls"] = 0
            started = time.perf_counter()
            if way == "batched":
                batched.step(now)
            else:
                for pipeline, frame in zip(looped, now):
                    pipeline.step([frame])
            if tick >= WARMUP_TICKS:
                times[way].append((time.perf_counter() - started) * 1e3)
                model_calls[way].append(calls["calls"])
    row = {f"{way}_{q}": float(np.percentile(times[way], p)) for way in times for q, p in (("p50", 50), ("p90", 90))}
    row.update({f"{way}_calls": float(np.mean(model_calls[way])) for way in model_calls})
    row["ratio"] = row["looped_p50"] / row["batched_p50"]
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=None, help="model cache (default: the usual one)")
    parser.add_argument("--ticks", type=int, default=60, help="measured ticks per camera count")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    parser.add_argument("--cameras", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args(argv)
    encoders = Encoders(args.cache, threads=args.threads)
    calls = count_calls(encoders)
    print(f"face pipeline per tick, {WIDTH}×{HEIGHT}, {args.ticks} ticks, {args.threads} intra-op thread(s), "
          f"providers {sorted(set(encoders.providers.values()))}")
    print("| cameras | batched p50 / p90 ms | looped p50 / p90 ms | model calls per tick (batched / looped) "
          "| looped / batched |")
    print("|---|---|---|---|---|")
    for cameras in args.cameras:
        r = measure(encoders, calls, cameras, args.ticks)
        print(f"| {cameras} | {r['batched_p50']:.1f} / {r['batched_p90']:.1f} | {r['looped_p50']:.1f} / "
              f"{r['looped_p90']:.1f} | {r['batched_calls']:.1f} / {r['looped_calls']:.1f} | {r['ratio']:.2f}× |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
