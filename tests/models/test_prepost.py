"""Pre/post-processing units: anchors, letterbox, weighted NMS, crops, tokenisation."""

from __future__ import annotations

from pathlib import Path

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensorfuse.engine import manifest as mf
from sensorfuse.perception.prepost import blazeface, imagenet, landmarks, text
from sensorfuse.models import specs


def test_anchor_counts_and_order() -> None:
    short = blazeface.anchor_centers(128, specs.BLAZEFACE_POST_SHORT)
    full = blazeface.anchor_centers(192, specs.BLAZEFACE_POST_FULL)
    assert short.shape == (896, 2) and full.shape == (2304, 2)
    # Stride 8 grid first (16×16 cells, 2 anchors each), row-major, x before y.
    assert np.allclose(short[0], [0.5 / 16, 0.5 / 16]) and np.allclose(short[1], short[0])
    assert np.allclose(short[2], [1.5 / 16, 0.5 / 16])
    assert np.allclose(short[512], [0.5 / 8, 0.5 / 8])  # then the stride-16 grid, 6 per cell
    assert np.allclose(short[517], short[512]) and not np.allclose(short[518], short[512])


@settings(max_examples=40, deadline=None)
@given(height=st.integers(20, 400), width=st.integers(20, 400))
def test_letterbox_round_trip(height: int, width: int) -> None:
    image = np.zeros((height, width, 3), np.uint8)
    tensor, placement = blazeface.letterbox(image, specs.BLAZEFACE_PRE_SHORT)
    assert tensor.shape == (1, 3, 128, 128) and tensor.dtype == np.float32
    corners = np.array([[placement.pad_left, placement.pad_top],
                        [placement.pad_left + width, placement.pad_top + height]]) / placement.square
    assert np.allclose(placement.to_pixels(corners), [[0, 0], [width, height]])


def test_weighted_nms_blends_overlaps_and_keeps_separate_faces() -> None:
    boxes = np.array([[0.10, 0.10, 0.30, 0.30], [0.12, 0.10, 0.32, 0.30], [0.60, 0.60, 0.80, 0.80]])
    keypoints = np.zeros((3, 6, 2))
    scores = np.array([0.9, 0.6, 0.8])
    kept = blazeface.weighted_nms(blazeface.Faces(boxes, keypoints, scores), 0.3)
    assert len(kept) == 2
    assert kept.scores.tolist() == [0.9, 0.8]
    assert kept.boxes[0, 0] == pytest.approx((0.10 * 0.9 + 0.12 * 0.6) / 1.5)
    assert np.allclose(kept.boxes[1], boxes[2])


def test_decode_with_no_candidates_gives_empty_faces() -> None:
    post = specs.BLAZEFACE_POST_SHORT
    anchors = blazeface.anchor_centers(128, post)
    faces = blazeface.decode(np.zeros((1, 896, 16), np.float32), np.full((1, 896, 1), -50.0, np.float32),
                             anchors, 128, post)
    assert len(blazeface.weighted_nms(faces, 0.3)) == 0


@settings(max_examples=60, deadline=None)
@given(height=st.integers(60, 720), width=st.integers(60, 1280), fraction=st.sampled_from([0.5, 0.75, 1.0]),
       fx=st.floats(0, 1), fy=st.floats(0, 1), fs=st.floats(0.05, 1.0))
def test_square_tiles_hold_every_face_up_to_half_a_tile(height: int, width: int, fraction: float,
                                                         fx: float, fy: float, fs: float) -> None:
    tiles = blazeface.square_tiles(height, width, fraction)
    side = tiles[0][2] - tiles[0][0]
    assert all(x1 - x0 == side and y1 - y0 == side for x0, y0, x1, y1 in tiles)
    assert all(x0 >= 0 and y0 >= 0 and x1 <= width and y1 <= height for x0, y0, x1, y1 in tiles)
    face = fs * side / 2  # any face up to half a tile lies whole inside some tile
    x, y = fx * (width - face), fy * (height - face)
    assert any(x0 <= x and x + face <= x1 and y0 <= y and y + face <= y1 for x0, y0, x1, y1 in tiles)


@settings(max_examples=60, deadline=None)
@given(height=st.integers(60, 1080), width=st.integers(60, 1920), fx=st.floats(0, 1), fy=st.floats(0, 1))
def test_tile_levels_cover_the_frame_coarse_to_fine(height: int, width: int, fx: float, fy: float) -> None:
    levels = blazeface.tile_levels(height, width, 0.75, min_side=128)
    assert levels[0] == blazeface.square_tiles(height, width, 0.75)
    sides = [level[0][2] - level[0][0] for level in levels]
    assert sides == sorted(sides, reverse=True) and len(set(sides)) == len(sides)
    if len(levels) > 1:
        assert 128 <= sides[-1] <= 1.25 * 128 < sides[-2]
    x, y = fx * (width - 1), fy * (height - 1)
    for level, side in zip(levels, sides):
        assert all(x1 - x0 == side and y1 - y0 == side for x0, y0, x1, y1 in level)
        assert all(x0 >= 0 and y0 >= 0 and x1 <= width and y1 <= height for x0, y0, x1, y1 in level)
        assert any(x0 <= x < x1 and y0 <= y < y1 for x0, y0, x1, y1 in level)  # every pixel in some tile


def test_tile_levels_layouts() -> None:
    levels = blazeface.tile_levels(480, 640, 0.75, min_side=128)
    assert [(level[0][2] - level[0][0], len(level)) for level in levels] == [(360, 6), (216, 9), (130, 20)]
    demo = blazeface.tile_levels(240, 320, 0.75, min_side=128)
    assert sorted(demo[1]) == sorted((x, y, x + 128, y + 128) for y in (0, 112) for x in (0, 96, 192))
    assert demo[1][:2] == [(96, 0, 224, 128), (96, 112, 224, 240)]  # centre first
    assert blazeface.tile_levels(150, 150, 0.75, min_side=128) == [[(0, 0, 112, 112), (38, 0, 150, 112),
                                                                     (0, 38, 112, 150), (38, 38, 150, 150)]]
    assert blazeface.grid_tiles(100, 300, 100, overlap=0.5) == [(x, 0, x + 100, 100) for x in (0, 50, 100, 150, 200)]
    with pytest.raises(ValueError, match="overlap"):
        blazeface.grid_tiles(100, 300, 100, overlap=1.0)
    with pytest.raises(ValueError, match="ratio"):
        blazeface.tile_levels(240, 320, 0.75, min_side=128, ratio=1.0)


def test_presence_needed_by_score() -> None:
    rule = ((0.7, 0.9), (0.85, 0.3))
    assert [landmarks.presence_needed(s, rule) for s in (0.5, 0.69, 0.7, 0.84, 0.85, 0.99)] == [0.9, 0.9, 0.3, 0.3, 0, 0]
    assert landmarks.presence_needed(0.1, ()) == 0.0
    with pytest.raises(ValueError, match="ascend"):
        landmarks.presence_needed(0.5, ((0.8, 0.3), (0.7, 0.9)))


def test_square_tiles_layouts() -> None:
    assert blazeface.square_tiles(240, 320, 1.0) == [(0, 0, 240, 240), (80, 0, 320, 240)]
    assert blazeface.square_tiles(240, 320, 0.75) == [(x, y, x + 180, y + 180) for y in (0, 60) for x in (0, 70, 140)]
    assert blazeface.square_tiles(100, 100, 1.0) == [(0, 0, 100, 100)]
    with pytest.raises(ValueError, match="fraction"):
        blazeface.square_tiles(240, 320, 0.0)


def test_tile_candidates_land_in_frame_pixels_and_merge_across_tiles() -> None:
    post = msgspec.structs.replace(specs.BLAZEFACE_POST_SHORT, min_score=0.5)
    pre = specs.BLAZEFACE_PRE_SHORT
    anchors = blazeface.anchor_centers(128, post)
    target = int(np.argmin(np.abs(anchors - 0.5).sum(axis=1)))  # the anchor nearest the square's centre
    regressors = np.zeros((1, 896, 16), np.float32)
    regressors[0, target, 2:4] = 32.0  # a 32 px (input) box on that anchor
    scores = np.full((1, 896, 1), -50.0, np.float32)
    scores[0, target, 0] = 3.0
    center = anchors[target] * 180  # in tile pixels: a 180 px tile fills the square
    parts = []
    for tile in [(0, 0, 180, 180), (70, 0, 250, 180)]:
        _, placement = blazeface.letterbox(np.zeros((180, 180, 3), np.uint8), pre)
        part = blazeface.tile_candidates(regressors, scores, placement, tile, pre, post)
        assert len(part) == 1
        assert np.allclose((part.boxes[0, :2] + part.boxes[0, 2:]) / 2, center + tile[:2])
        assert part.boxes[0, 2] - part.boxes[0, 0] == pytest.approx(32 / 128 * 180)
        parts.append(part)
    assert len(blazeface.merge_tiles(parts, post)) == 2  # 70 px apart: two faces
    parts[1] = blazeface.Faces(parts[1].boxes - [70, 0, 70, 0], parts[1].keypoints - [70, 0], parts[1].scores * 0.5)
    merged = blazeface.merge_tiles(parts, post)  # the same face seen by both tiles: one, best score kept
    assert len(merged) == 1 and merged.scores[0] == pytest.approx(parts[0].scores[0])


@pytest.mark.parametrize("angle", [0.0, 0.4, -1.0])
def test_face_crop_maps_back_to_the_frame(angle: float) -> None:
    image = np.zeros((300, 400, 3), np.uint8)
    image[140:160, 190:210] = 255  # a bright square at the box centre (200, 150)
    box = np.array([150.0, 100.0, 250.0, 200.0])
    crop, placement = landmarks.crop_face(image, box, specs.LANDMARK_PRE, angle=angle)
    assert crop.shape == (1, 3, 192, 192)
    assert np.allclose(placement.to_frame(np.array([96.0, 96.0])), [200.0, 150.0])
    assert placement.side == pytest.approx(150.0)
    assert crop[0, 0, 96, 96] == pytest.approx(1.0)  # the square sits in the crop centre
    raw = np.zeros((1, 1404, 1, 1), np.float32)
    mesh = landmarks.postprocess(raw, np.array([[[[5.0]]]]), placement, specs.LANDMARK_POST)
    assert np.allclose(mesh.points[0, :2], placement.to_frame(np.zeros(2)))
    assert mesh.presence > 0.99


def test_imagenet_preprocess_crops_centre_and_normalises() -> None:
    image = np.full((100, 200, 3), 255, np.uint8)
    image[:, :50] = 0  # outside the centre crop
    tensor = imagenet.preprocess(image, specs.EFFICIENTNET_PRE)
    assert tensor.shape == (1, 3, 224, 224)
    assert np.allclose(tensor, (255 - 127) / 128, atol=1e-5)


def test_top_k_is_sorted_and_labelled() -> None:
    logits = np.zeros(1000, np.float32)
    logits[[967, 5]] = [9.0, 4.0]
    labels = [f"class {i}" for i in range(1000)]
    best = imagenet.top_k(logits, labels, 2)
    assert [b.index for b in best] == [967, 5] and best[0].probability > best[1].probability


def test_tokenizer_pads_to_the_batch_not_to_128(tmp_path: Path) -> None:
    from sensorfuse.models.sources import MINILM_TOKENIZER

    tokenizer = text.load_tokenizer(MINILM_TOKENIZER.locate(), mf.TokenizerPre(file="t", max_length=16))
    feeds = text.encode(tokenizer, ["a cat", "a much longer sentence " * 20])
    assert feeds["input_ids"].shape == (2, 16)  # truncated at max_length
    single = text.encode(tokenizer, ["a cat"])
    assert single["input_ids"].tolist() == [[101, 1037, 4937, 102]]
    assert feeds["attention_mask"][0].tolist() == [1, 1, 1, 1] + [0] * 12
    with pytest.raises(ValueError):
        text.encode(tokenizer, [])
