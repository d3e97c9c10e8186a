"""Face finding on small faces: detector tiles, presence-confirmed detections, landmark tracking."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data as sk

from sensorfuse.perception import Encoders, Perception, faces, label_embeddings
from sensorfuse.perception.faces import FACE_TILE_CYCLE, FACE_TILE_FRACTION, FACE_TRACK_FRAMES, FaceRequest
from sensorfuse.perception.prepost import blazeface
from sensorfuse.perception.prepost.blazeface import square_tiles
from sensorfuse.perception.ticks import TickInput
from sensorfuse.perception.tracking import iou
from sensorfuse.replay import scene

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def encoders(model_cache: Path) -> Encoders:
    return Encoders(model_cache)


def small_cameraman(scale: float = 0.4) -> tuple[np.ndarray, np.ndarray]:
    """The held-out face (in profile) ~25 px wide on a grey 320×240 frame, and its face box."""
    sprite = scene.sprite("cameraman")
    face = cv2.resize(cv2.cvtColor(sprite.image, cv2.COLOR_BGR2RGB), None, fx=scale, fy=scale,
                      interpolation=cv2.INTER_AREA)
    frame = np.full((240, 320, 3), 90, np.uint8)
    x, y = 200, 60
    frame[y:y + face.shape[0], x:x + face.shape[1]] = face
    return frame, np.asarray(sprite.box) * scale + [x, y, x, y]


def astronaut() -> np.ndarray:
    return np.ascontiguousarray(cv2.resize(sk.astronaut(), (320, 320))[40:280])


def find(encoders: Encoders, frame: np.ndarray, *, acquire: list[tuple[int, int, int, int]] = (),
         **rules: float) -> list[faces.FaceObservation]:
    return faces.find_faces(encoders, [FaceRequest(frame, acquire=acquire)], max_faces=3, min_score=0.5, **rules)[0]


def shifted(rgb: np.ndarray, dx: float, dy: float) -> np.ndarray:
    return cv2.warpAffine(rgb, np.float32([[1, 0, dx], [0, 1, dy]]), (rgb.shape[1], rgb.shape[0]))


def test_tiles_find_a_small_face_the_whole_frame_misses(encoders: Encoders) -> None:
    frame, truth = small_cameraman()
    assert find(encoders, frame) == []
    found = find(encoders, frame, confirm_presence=0.7, acquire=square_tiles(240, 320, 0.75))
    assert len(found) == 1 and iou(found[0].box, truth) > 0.4
    assert found[0].mesh_xy.shape == (468, 2) and found[0].tracked_frames == 0


def test_weak_detections_need_the_landmark_model_to_confirm_a_face(encoders: Encoders) -> None:
    frame, _ = small_cameraman(0.5)
    weak = find(encoders, frame)  # whole frame: 0.58, below the pack's 0.65
    assert len(weak) == 1 and weak[0].score < 0.65 and weak[0].presence > 0.9
    assert len(find(encoders, frame, confirm_presence=0.9)) == 1
    assert find(encoders, frame, confirm_presence=1.01) == []


def test_track_face_follows_the_face_and_lets_go_of_nothing(encoders: Encoders) -> None:
    rgb = astronaut()
    [face] = find(encoders, rgb, acquire=square_tiles(*rgb.shape[:2], 0.75))
    followed = faces.track_face(encoders, shifted(rgb, 6, 4), face, min_presence=0.7)
    assert followed is not None and followed.tracked_frames == 1 and followed.score == face.score
    assert np.allclose(followed.box - face.box, [6, 4, 6, 4], atol=1.5)
    assert np.allclose(followed.keypoints - face.keypoints, [6, 4], atol=1.5)
    assert faces.track_face(encoders, np.full_like(rgb, 90), face, min_presence=0.7) is None


def test_perception_keeps_a_missed_face_on_its_track_for_a_bounded_time(
        encoders: Encoders, monkeypatch: pytest.MonkeyPatch) -> None:
    perception = Perception(encoders, label_embeddings(encoders), scene_period_ns=10**18)
    rgb = astronaut()

    def tick(i: int, frame: np.ndarray) -> TickInput:
        return TickInput(i, i * 66_666_667, frame=frame, frame_layout="HWC/rgb8")

    first = perception.process(tick(0, rgb))
    assert [f.track_id for f in first.faces] == [1] and first.appeared == [1]
    monkeypatch.setattr(faces, "find_faces", lambda enc, requests, **k: [[] for _ in requests])  # missed from now on
    ids = []
    for i in range(1, FACE_TRACK_FRAMES + 3):
        feats = perception.process(tick(i, shifted(rgb, i, 0)))
        ids.append([f.track_id for f in feats.faces])
        assert feats.appeared == []
    assert ids[:FACE_TRACK_FRAMES] == [[1]] * FACE_TRACK_FRAMES
    assert ids[FACE_TRACK_FRAMES:] == [[], []]  # then it needs a detection again


def test_a_found_face_is_looked_for_around_its_last_box(encoders: Encoders) -> None:
    """The small profile face needs a tile to be found; on the next frames, whose tiles are
    elsewhere, the detector finds it again in a region around its last box (not by
    landmarks alone)."""
    frame, truth = small_cameraman()
    perception = Perception(encoders, label_embeddings(encoders), scene_period_ns=10**18, face_tiles_per_frame=1)
    tiles = len(square_tiles(240, 320, FACE_TILE_FRACTION))
    found_at = None
    for i in range(3 * tiles):
        feats = perception.process(TickInput(i, i * 66_666_667, frame=shifted(frame, i, 0), frame_layout="HWC/rgb8"))
        if found_at is None and feats.faces:
            found_at = i
        if found_at is not None:
            assert [f.track_id for f in feats.faces] == [1], i
            assert perception.faces.last_faces()[0].tracked_frames == 0, "detected, not only followed by landmarks"
            assert iou(np.asarray(feats.faces[0].box), truth + [i, 0, i, 0]) > 0.4
    assert found_at is not None and found_at < tiles, "found within one rotation of the tiles"


def test_roi_tile_is_a_square_inside_the_frame() -> None:
    from sensorfuse.perception.prepost.blazeface import roi_tile

    assert roi_tile(np.array([100.0, 50.0, 140.0, 100.0]), 240, 320) == (58, 12, 183, 137)  # 2.5 × 50 around the centre
    assert roi_tile(np.array([0.0, 0.0, 20.0, 20.0]), 240, 320) == (0, 0, 64, 64)  # min side, moved inside
    assert roi_tile(np.array([250.0, 150.0, 330.0, 250.0]), 240, 320) == (80, 0, 320, 240)  # at most the short side


def grey_inset_frame(face_px: float = 36.0) -> tuple[np.ndarray, np.ndarray]:
    """A 640×480 grey frame: brick, with a 240×240 inset of the cameraman's photo scaled so
    his face is `face_px` tall (as seen from outside: such a face was found in 0 of 180
    frames), and the face's box. The face box is the detector's on the photo at its size."""
    photo_box = np.array([178.0, 121.0, 263.0, 207.0])  # sk.camera(), short-range detector
    scale = face_px / (photo_box[3] - photo_box[1])
    side = int(round(512 * scale))
    inset = np.full((240, 240), 128, np.uint8)
    pad = (240 - side) // 2
    inset[pad:pad + side, pad:pad + side] = cv2.resize(sk.camera(), (side, side), interpolation=cv2.INTER_AREA)
    frame = cv2.resize(sk.brick(), (640, 640))[80:560]
    x, y = 360, 200
    frame[y:y + 240, x:x + 240] = inset
    return cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB), photo_box * scale + [x + pad, y + pad, x + pad, y + pad]


def run_frames(encoders: Encoders, frames: list[np.ndarray]) -> list[list[np.ndarray]]:
    perception = Perception(encoders, label_embeddings(encoders), scene_period_ns=10**18)
    return [[np.asarray(f.box) for f in perception.process(
        TickInput(i, i * 66_666_667, frame=frame, frame_layout="HWC/rgb8")).faces] for i, frame in enumerate(frames)]


def test_a_small_grey_face_in_a_photo_inset_is_found_within_one_tile_cycle(encoders: Encoders) -> None:
    frame, truth = grey_inset_frame()
    published = run_frames(encoders, [shifted(frame, i, 0) for i in range(FACE_TILE_CYCLE + 4)])
    hits = [any(iou(box, truth + [i, 0, i, 0]) > 0.3 for box in boxes) for i, boxes in enumerate(published)]
    assert True in hits[:FACE_TILE_CYCLE], hits
    assert all(hits[hits.index(True):]), hits  # once found, kept
    assert all(len(boxes) <= 1 for boxes in published), published


def test_a_face_free_textured_photo_yields_no_face(encoders: Encoders) -> None:
    """The flower photo: face-like blobs the detector scores 0.6–0.75, the landmark model ~0."""
    from sklearn.datasets import load_sample_image

    flower = cv2.resize(load_sample_image("flower.jpg"), (640, 480))
    frames = [np.ascontiguousarray(cv2.resize(flower, None, fx=1 + i / 60, fy=1 + i / 60)[:480, i:i + 640])
              for i in range(30)]
    assert run_frames(encoders, frames) == [[]] * 30


def test_each_frame_runs_a_share_of_every_tile_level(encoders: Encoders) -> None:
    pipeline = faces.FacePipeline(encoders)
    levels = blazeface.tile_levels(480, 640, FACE_TILE_FRACTION, min_side=encoders.face_input_size)
    seen = []
    for frame in range(1, FACE_TILE_CYCLE + 1):
        now = pipeline.tiles_now(frame, 480, 640)
        assert len(now) == sum(-(-len(level) // FACE_TILE_CYCLE) for level in levels)  # 1 + 2 + 3
        seen += now
    assert sorted(set(seen)) == sorted(t for level in levels for t in level)  # every tile once a cycle
    single = faces.FacePipeline(encoders, tile_levels=False)
    assert single.tiles_now(1, 480, 640) == [levels[0][0]]
