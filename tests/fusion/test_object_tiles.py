"""Object detector tiles: the quarters, tile boxes back in frame pixels, the merge, the
rotation, the default per camera count, and a small subject the whole frame misses found
through a tile."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from sensorfuse.engine import manifest as mf
from sensorfuse.models import media
from sensorfuse.perception import object_tiles
from sensorfuse.nodes.perceive import PerceiveNode
from sensorfuse.perception.objects import OBJECT_MODEL, ObjectDetector, default_tiles_per_run
from sensorfuse.perception.prepost import nanodet
from sensorfuse.perception.tracking import iou

pytestmark = pytest.mark.timeout(120)


def detections(*rows: tuple[int, list[float], float]) -> nanodet.Detections:
    return nanodet.Detections(np.array([b for _, b, _ in rows], float).reshape(-1, 4),
                              np.array([s for _, _, s in rows], float), np.array([c for c, _, _ in rows], int))


def test_quarters_overlap_past_the_middle_and_cover_the_frame() -> None:
    tiles = object_tiles.quarter_tiles(240, 320)
    assert tiles == [(0, 0, 200, 150), (120, 0, 320, 150), (0, 90, 200, 240), (120, 90, 320, 240)]
    covered = np.zeros((240, 320), bool)
    for x0, y0, x1, y1 in tiles:
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    # a subject a quarter of the frame wide lies whole inside one tile wherever it is
    for x in range(0, 320 - 80, 7):
        assert any(x0 <= x and x + 80 <= x1 for x0, _, x1, _ in tiles)
    assert object_tiles.quarter_tiles(480, 640, overlap=0.0) == [(0, 0, 320, 240), (320, 0, 640, 240),
                                                                (0, 240, 320, 480), (320, 240, 640, 480)]
    with pytest.raises(ValueError, match="overlap"):
        object_tiles.quarter_tiles(240, 320, overlap=0.5)


def test_tile_boxes_move_to_frame_pixels_and_tile_filling_ones_are_dropped() -> None:
    found = detections((0, [10, 20, 50, 90], 0.6), (2, [0, 0, 190, 140], 0.5))  # the second fills the tile
    moved = object_tiles.from_tile(found, (120, 90, 320, 240))
    assert moved.boxes.tolist() == [[130, 110, 170, 180]] and moved.classes.tolist() == [0]
    assert moved.scores.tolist() == [0.6]


def test_merge_keeps_one_box_per_subject_and_class() -> None:
    whole = detections((0, [100, 40, 200, 230], 0.5), (15, [10, 10, 60, 60], 0.4))
    tile = detections((0, [110, 45, 190, 150], 0.7),  # head and shoulders inside the body box: one person
                      (0, [101, 41, 199, 229], 0.45),  # the same body box again
                      (15, [20, 20, 50, 50], 0.6),  # a cat inside the whole frame's cat: one cat
                      (0, [250, 50, 300, 120], 0.4))  # a second person beside the first
    merged = object_tiles.merge([whole, tile], iou_threshold=0.5, max_detections=50)
    assert merged.scores.tolist() == [0.7, 0.6, 0.4]  # best first
    assert merged.classes.tolist() == [0, 15, 0]
    assert merged.boxes.tolist()[2] == [250, 50, 300, 120]
    # classes never suppress each other
    other = detections((2, [110, 45, 190, 150], 0.9))
    assert len(object_tiles.merge([whole, other], 0.5, 50)) == 3


def test_rotation_visits_every_tile() -> None:
    tiles = object_tiles.quarter_tiles(240, 320)
    assert object_tiles.tiles_now(tiles, 5, 4) == tiles
    assert [object_tiles.tiles_now(tiles, run, 1) for run in range(5)] == [[t] for t in tiles + tiles[:1]]
    assert [object_tiles.tiles_now(tiles, run, 2) for run in range(2)] == [tiles[:2], tiles[2:]]
    assert object_tiles.tiles_now(tiles, 3, 0) == []


def test_a_small_person_is_found_through_a_tile(model_cache: Path) -> None:
    """The astronaut photo 24 px tall in a 320×240 frame: the whole frame finds no person,
    a tile does (at ~0.5), with its box on her in frame pixels."""
    detector = ObjectDetector(mf.find_manifest(OBJECT_MODEL, model_cache))
    frame = np.full((240, 320, 3), 128, np.uint8)
    frame[150:174, 220:244] = cv2.resize(media.load_rgb("astronaut"), (24, 24), interpolation=cv2.INTER_AREA)
    tiles = object_tiles.quarter_tiles(240, 320)

    def people(found: nanodet.Detections) -> list[list[float]]:
        return [found.boxes[i].tolist() for i in range(len(found)) if found.classes[i] == 0]

    assert people(detector.detect(frame)) == []
    found = people(detector.detect(frame, tiles))
    assert len(found) == 1
    assert iou(np.asarray(found[0]), np.array([220, 150, 244, 174])) > 0.7


def test_default_tiles_are_for_one_camera() -> None:
    assert [default_tiles_per_run(n) for n in (1, 2, 3, 4, 8)] == [4, 0, 0, 0, 0]
    assert PerceiveNode.Params(cameras=["a", "b"]).tiles_per_run(2) == 0
    assert PerceiveNode.Params(cameras=["a", "b"], objects_tiles=2).tiles_per_run(2) == 2
    assert PerceiveNode.Params(objects_tiles=0).tiles_per_run(1) == 0
