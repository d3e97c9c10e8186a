"""Objects: NanoDet (80 COCO classes) at its own event-time rate, with IoU track ids.

NanoDet-m at 416×416 costs ~30–40 ms on one core of this kind of machine — eight times
the face path — so it runs like the scene encoder (`sensorfuse.perception.worker`):
every `period_ns` of event time on a worker thread, its result entering at the first
tick `delay_ns` of event time after its frame. Tracking happens when a result enters,
in event-time order, so track ids are the same live, in replay and at any rate.

Only the configured classes are kept (`classes`; names as in the model's labels file,
docs/objects.md); each class has its own IoU tracker, all drawing ids from one counter,
so a track id names one object whatever its class.

Small subjects: besides the whole frame, each run looks at the frame's overlapping
quarters (`object_tiles`, `tiles_per_run` of them, in rotation when fewer than 4), where
they are seen at 1.6× the scale.
"""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sensorfuse.engine import inference
from sensorfuse.engine import manifest as mf
from sensorfuse.perception import object_tiles
from sensorfuse.perception.prepost import imagenet, nanodet
from sensorfuse.perception.tracking import IouTracker
from sensorfuse.perception.worker import EventTimeWorker

OBJECT_MODEL = "nanodet_m_416"
#: Runs an object may go undetected before its track ends (at 3 runs/s: about a second).
MAX_MISSED = 2
#: Tiles each run adds to the whole frame (`object_tiles`): all 4, 5 detector runs in all.
TILES_PER_RUN = object_tiles.COUNT
def default_tiles_per_run(cameras: int) -> int:
    """Tiles per run for each of `cameras` cameras on one worker: all 4 with one camera;
    none with several (their whole frames already share the one worker; docs/objects.md)."""
    return object_tiles.COUNT if cameras <= 1 else 0


class UnknownClass(ValueError):
    """A configured class name the detector does not know."""


@dataclass(frozen=True)
class TrackedObject:
    label: str
    track_id: int
    box: list[float]  # x0, y0, x1, y1 in frame pixels, clipped to the frame
    score: float


@dataclass(frozen=True)
class ObjectsResult:
    frame_t_ns: int  # capture time of the frame the detections are from
    size: tuple[int, int]  # height, width of that frame
    objects: list[TrackedObject]


def check_classes(wanted: Sequence[str], labels: Sequence[str]) -> list[int]:
    """Class indices of `wanted` names; UnknownClass names the first unknown one and the
    closest valid names."""
    index = {name: i for i, name in enumerate(labels)}
    for name in wanted:
        if name not in index:
            near = difflib.get_close_matches(name, labels, n=4, cutoff=0.0)
            raise UnknownClass(f"unknown object class {name!r} (closest: {', '.join(near)}; "
                               f"{len(labels)} COCO classes, see docs/objects.md)")
    return [index[name] for name in wanted]


class ObjectDetector:
    """The pack's object detector with its pre/post-processing and labels."""

    def __init__(self, manifest_path: Path, *, threads: int = 1) -> None:
        self.model = inference.open_model(manifest_path, inference.SessionConfig(intra_op_threads=threads))
        manifest = self.model.manifest
        pre, post = manifest.preprocessing, manifest.postprocessing
        if not isinstance(pre, mf.ChannelLetterboxPre) or not isinstance(post, mf.GflBoxesPost) \
                or manifest.labels is None:
            raise inference.ModelLoadError(f"{manifest_path}: not an object detector (needs letterbox_channels "
                                           "preprocessing, gfl_boxes postprocessing and a labels file)")
        self.pre, self.post = pre, post
        self.labels = imagenet.load_labels(manifest_path.parent / manifest.labels.file)

    def detect(self, rgb: np.ndarray, tiles: Sequence[object_tiles.Tile] = ()) -> nanodet.Detections:
        """Detections on the whole frame and, when given, its `tiles` (merged: `object_tiles`),
        in frame pixels, best first. The graph takes one image a call (its batch and resize
        sizes are fixed at 1 and 416), so the tiles run one after the other."""
        found = self._detect_one(rgb)
        if not tiles:
            return found
        parts = [found] + [object_tiles.from_tile(self._detect_one(np.ascontiguousarray(rgb[y0:y1, x0:x1])),
                                                  (x0, y0, x1, y1)) for x0, y0, x1, y1 in tiles]
        return object_tiles.merge(parts, self.post.iou_threshold, self.post.max_detections)

    def _detect_one(self, rgb: np.ndarray) -> nanodet.Detections:
        tensor, placement = nanodet.letterbox(rgb, self.pre)
        return nanodet.postprocess(self.model.run({"image": tensor}), placement, self.pre, self.post)


class ObjectStage:
    """Detector + per-class trackers on the event-time schedule."""

    def __init__(self, detector: ObjectDetector, classes: Sequence[str], *, period_ns: int, delay_ns: int,
                 min_score: float | None = None, executor: Executor | None = None,
                 ids: Iterator[int] | None = None, tiles_per_run: int = TILES_PER_RUN) -> None:
        """`ids`: where track ids come from (stages of several cameras share one);
        `tiles_per_run`: how many of the frame's 4 tiles each run adds to the whole frame, in
        rotation (0: the whole frame only; 4: every tile every run)."""
        if not 0 <= tiles_per_run <= object_tiles.COUNT:
            raise ValueError(f"tiles per run must be 0..4, got {tiles_per_run}")
        self.detector = detector
        self.tiles_per_run = tiles_per_run
        self.runs = 0  # detector runs started (the tile rotation)
        self.class_ids = set(check_classes(classes, detector.labels))
        self.min_score = min_score if min_score is not None else detector.post.min_score
        self.worker = EventTimeWorker(self._run, period_ns=period_ns, delay_ns=delay_ns, executor=executor,
                                      what="objects")
        ids = ids if ids is not None else itertools.count(1)
        self.trackers = {c: IouTracker(min_iou=0.3, max_missed=MAX_MISSED, ids=ids) for c in sorted(self.class_ids)}
        self.current: ObjectsResult | None = None

    def step(self, t_ns: int, rgb: np.ndarray | None) -> ObjectsResult | None:
        """At tick time `t_ns` (with its frame, if any): the result that enters now, tracked."""
        fresh, result = self.worker.advance(t_ns)
        if rgb is not None and self.worker.due(t_ns):
            self.worker.start(t_ns, rgb)
        if not fresh:
            return None
        assert result is not None
        self.current = self._track(*result)
        return self.current

    def _run(self, t_ns: int, rgb: np.ndarray) -> tuple[int, tuple[int, int], nanodet.Detections]:
        # Runs one at a time in start order (a run starts only after the last result entered),
        # so the rotation is the same live, in replay and at any rate.
        height, width = rgb.shape[:2]
        tiles = object_tiles.tiles_now(object_tiles.quarter_tiles(height, width), self.runs, self.tiles_per_run)
        self.runs += 1
        return t_ns, (height, width), self.detector.detect(rgb, tiles)

    def _track(self, t_ns: int, size: tuple[int, int], found: nanodet.Detections) -> ObjectsResult:
        height, width = size
        objects = []
        for class_id, tracker in self.trackers.items():
            keep = [i for i in range(len(found)) if found.classes[i] == class_id and found.scores[i] >= self.min_score]
            boxes = [np.clip(found.boxes[i], 0, [width, height, width, height]) for i in keep]
            ids, _ = tracker.update(boxes)
            objects += [TrackedObject(self.detector.labels[class_id], track_id,
                                      [round(float(v), 1) for v in box], round(float(found.scores[i]), 4))
                        for i, track_id, box in zip(keep, ids, boxes)]
        objects.sort(key=lambda o: -o.score)
        return ObjectsResult(t_ns, size, objects)
