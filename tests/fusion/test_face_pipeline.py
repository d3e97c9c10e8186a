"""FacePipeline over several cameras: one batched step equals one pipeline per camera, in
three model calls at most, with per-camera tracks whose ids no two cameras share."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import skimage.data as sk

from sensorfuse.perception import Encoders
from sensorfuse.perception.faces import CameraFaces, FacePipeline
from sensorfuse.replay import scene

pytestmark = pytest.mark.timeout(120)
STEPS = 6
BLIND_FROM = 4  # the detector finds nothing from this step on: faces are followed by landmarks alone


@pytest.fixture(scope="module")
def encoders(model_cache: Path) -> Encoders:
    return Encoders(model_cache)


@pytest.fixture
def calls(encoders: Encoders, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """Counts the model calls and their batch sizes; `blind` True: the detector scores nothing."""
    state: dict[str, Any] = {"detector": [], "landmarks": [], "blind": False}

    def counted(key: str, run: Callable[..., dict[str, np.ndarray]]) -> Callable[..., dict[str, np.ndarray]]:
        def wrapper(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            state[key].append(len(feeds["image"]))
            out = run(feeds)
            if key == "detector" and state["blind"]:
                out = {**out, "scores": np.full_like(out["scores"], -100.0)}
            return out
        return wrapper

    monkeypatch.setattr(encoders.face_model, "run", counted("detector", encoders.face_model.run))
    monkeypatch.setattr(encoders.landmark_model, "run", counted("landmarks", encoders.landmark_model.run))
    yield state


def shifted(rgb: np.ndarray, dx: float, dy: float) -> np.ndarray:
    return cv2.warpAffine(rgb, np.float32([[1, 0, dx], [0, 1, dy]]), (rgb.shape[1], rgb.shape[0]))


def camera_frames() -> list[np.ndarray]:
    """Four different cameras: a large face, a small profile face (tiles needed), two faces
    at 640×480, and a cat."""
    astronaut = np.ascontiguousarray(cv2.resize(sk.astronaut(), (320, 320))[40:280])
    sprite = scene.sprite("cameraman")
    small = np.full((240, 320, 3), 90, np.uint8)
    face = cv2.resize(cv2.cvtColor(sprite.image, cv2.COLOR_BGR2RGB), None, fx=0.4, fy=0.4)
    small[60:60 + face.shape[0], 200:200 + face.shape[1]] = face
    pair = np.full((480, 640, 3), 60, np.uint8)
    pair[100:356, 40:296] = cv2.resize(sk.astronaut(), (256, 256))
    pair[200:392, 400:592] = cv2.cvtColor(cv2.resize(sk.camera(), (192, 192)), cv2.COLOR_GRAY2RGB)
    cat = cv2.resize(sk.chelsea(), (640, 480))
    return [astronaut, small, pair, cat]


def run_steps(pipeline: FacePipeline, cameras: list[int], calls: dict[str, Any]) -> list[list[CameraFaces | None]]:
    """STEPS ticks of the given cameras (their frames moving a pixel a tick) through one pipeline."""
    frames = camera_frames()
    results = []
    for step in range(STEPS):
        calls["blind"] = step >= BLIND_FROM
        results.append(pipeline.step([shifted(frames[c], step, step % 2) for c in cameras]))
    return results


def first_seen(ids: list[list[int]]) -> list[list[int]]:
    """Track ids renumbered by first appearance (the shared counter numbers them differently)."""
    order: dict[int, int] = {}
    return [[order.setdefault(i, len(order)) for i in step] for step in ids]


def test_a_batched_step_equals_one_pipeline_per_camera(encoders: Encoders, calls: dict[str, Any]) -> None:
    batched = run_steps(FacePipeline(encoders, cameras=4), [0, 1, 2, 3], calls)
    assert len(calls["detector"]) == STEPS, "one detector call per step for all four cameras"
    assert len(calls["landmarks"]) <= 2 * STEPS, "confirmation and tracking: one call each at most"
    assert all(size > 4 for size in calls["detector"])  # whole frames, regions and tiles of every camera
    for camera in range(4):
        calls["detector"].clear()
        alone = run_steps(FacePipeline(encoders), [camera], calls)
        mine = [step[camera] for step in batched]
        theirs = [step[0] for step in alone]
        assert all(m is not None and t is not None for m, t in zip(mine, theirs))
        for m, t in zip(mine, theirs):
            assert len(m.observations) == len(t.observations), camera
            for a, b in zip(m.observations, t.observations):
                assert np.abs(a.box - b.box).max() <= 1e-3 and abs(a.score - b.score) <= 1e-5
                assert a.tracked_frames == b.tracked_frames
        assert first_seen([m.track_ids for m in mine]) == first_seen([t.track_ids for t in theirs])
    faces_seen = [len(step[c].observations) for step in batched for c in range(4)]
    assert sum(faces_seen) > 0
    followed = [o.tracked_frames for step in batched[BLIND_FROM:] for c in range(4) for o in step[c].observations]
    assert followed and min(followed) >= 1, "after the detector goes blind, faces are followed by landmarks"
    by_camera = [{i for step in batched for i in step[c].track_ids} for c in range(4)]
    assert sum(len(ids) for ids in by_camera) == len(set().union(*by_camera)), "no id on two cameras"


def test_a_camera_without_a_frame_keeps_its_tracks(encoders: Encoders, calls: dict[str, Any]) -> None:
    frames = camera_frames()
    frames[1] = np.ascontiguousarray(frames[0][:, ::-1])  # one face on each camera
    pipeline = FacePipeline(encoders, cameras=2)
    first = pipeline.step([frames[0], frames[1]])
    assert first[0] is not None and first[1] is not None
    assert first[0].appeared == first[0].track_ids and len(first[1].track_ids) == 1
    assert not set(first[0].track_ids) & set(first[1].track_ids)
    for step in range(1, 10):  # longer than the tracker keeps a missed track
        out = pipeline.step([shifted(frames[0], step, 0), None])
        assert out[1] is None and out[0] is not None and out[0].track_ids == first[0].track_ids
    back = pipeline.step([frames[0], shifted(frames[1], 1, 0)])
    assert back[1] is not None and back[1].track_ids == first[1].track_ids and back[1].appeared == []
    assert back[1].left == []
    with pytest.raises(ValueError, match="3 frames for 2 cameras"):
        pipeline.step([frames[0]] * 3)


def test_an_empty_step_runs_no_model(encoders: Encoders, calls: dict[str, Any]) -> None:
    assert FacePipeline(encoders, cameras=3).step([None, None, None]) == [None, None, None]
    assert calls["detector"] == calls["landmarks"] == []


def test_scene_batch_is_one_call_and_equals_frame_by_frame(encoders: Encoders, monkeypatch: pytest.MonkeyPatch) -> None:
    frames = camera_frames()  # 4:3 frames: two crops each
    frames.append(np.ascontiguousarray(frames[3][:240, :240]))  # square: one crop
    alone = [encoders.scene_probabilities(f) for f in frames]
    sizes: list[int] = []
    run = encoders.scene.run
    monkeypatch.setattr(encoders.scene, "run", lambda feeds: (sizes.append(len(feeds["image"])), run(feeds))[1])
    batched = encoders.scene_probabilities_batch(frames)
    assert sizes == [2 * 4 + 1]
    for a, b in zip(alone, batched):
        assert np.abs(a.probabilities - b.probabilities).max() <= 1e-5
        assert np.abs(a.embedding - b.embedding).max() <= 1e-4
    assert encoders.scene_probabilities_batch([]) == []
