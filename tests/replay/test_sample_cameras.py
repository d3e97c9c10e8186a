"""`sensorfuse sample --cameras N`: N frame streams over one world, faces that walk between
views, per-camera truth; one camera stays byte for byte the session it always was."""

from __future__ import annotations

import hashlib
import itertools
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest

from sensorfuse.engine.errors import UsageError
from sensorfuse.replay import cli, logtools, sample, sample_rig, scene
from sensorfuse.replay.mcap_io import LogReader
from tests.replay.replay_helpers import load_log

pytestmark = pytest.mark.timeout(120)
SIZE = (160, 120)
CAMS = [f"cam{k}" for k in range(4)]


def _records(streams: dict[str, list[tuple[Any, Any]]], topic: str) -> list[dict[str, Any]]:
    return [{**msgspec.msgpack.decode(p), "t_ns": h.t_ns} for h, p in streams[topic]]


@pytest.fixture(scope="module")
def four(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[tuple[Any, Any]]]]:
    path = tmp_path_factory.mktemp("cams") / "c4.mcap"
    sample.generate(path, seed=0, duration_s=20.0, size=SIZE, cameras=4)
    return path, load_log(path)


def test_every_camera_has_the_same_frames_and_its_own_truth(four: tuple[Path, Any]) -> None:
    path, streams = four
    assert {f"{c}/frame" for c in CAMS} | {"mic0/audio", "mic0/audio16k", "text/in", "labels", "labels/boxes"} \
        == set(streams)
    times = [[h.t_ns for h, _ in streams[f"{c}/frame"]] for c in CAMS]
    assert len(times[0]) == 20 * 15 and all(t == times[0] for t in times)
    assert all(h.shape == [120, 160, 3] and len(p) == 120 * 160 * 3 for c in CAMS for h, p in streams[f"{c}/frame"])
    boxes = _records(streams, "labels/boxes")
    assert len(boxes) == 4 * len(times[0])
    per_time: dict[int, list[str]] = {}
    for r in boxes:
        assert set(r) == {"frame", "camera", "boxes", "t_ns"}
        per_time.setdefault(r["t_ns"], []).append(r["camera"])
    assert sorted(per_time) == times[0] and all(cams == CAMS for cams in per_time.values())
    with LogReader(path) as reader:
        assert reader.metadata()["sensorfuse"]["cameras"] == "4"
    assert next(s for s in logtools.info(path)["streams"] if s["topic"] == "labels/boxes")["time_gaps"] == 0


def test_a_face_walks_from_one_camera_into_the_next(four: tuple[Path, Any]) -> None:
    """Within one scene, a face wholly in camera i's view only is later wholly in its
    neighbour j's only (further than the cameras' mild pans could carry a standing face)."""
    _, streams = four
    seen: dict[str, dict[int, set[int]]] = {}  # subject -> frame -> cameras
    for r in _records(streams, "labels/boxes"):
        for b in r["boxes"]:
            if b["kind"] == "face" and b["visible"] >= 0.99:
                seen.setdefault(b["subject"], {}).setdefault(r["frame"], set()).add(int(r["camera"][3:]))
    cuts = [math.ceil(seg.start_s * 15) for seg in sample._Session(0, 20.0, SIZE, 15.0, 48_000, 4).segments]
    moves = []
    for subject, frames in seen.items():
        alone = sorted((f, next(iter(c))) for f, c in frames.items() if len(c) == 1)
        for (fa, ca), (fb, cb) in itertools.pairwise(alone):
            same_scene = not any(fa < cut <= fb for cut in cuts)
            if ca != cb and same_scene:
                moves.append((subject, fa, ca, fb, cb))
    assert moves, seen
    assert all(abs(ca - cb) == 1 for _, _, ca, _, cb in moves)  # walked into the neighbour, no jumps


def test_visual_labels_name_their_camera_and_match_its_boxes(four: tuple[Path, Any]) -> None:
    _, streams = four
    boxes = _records(streams, "labels/boxes")
    labels = [msgspec.msgpack.decode(p) for _, p in streams["labels"]]
    period = 1_000_000_000 // 15

    def subjects(camera: str, t_ns: int, speaking: bool = False) -> set[str]:
        r = next(r for r in boxes if r["camera"] == camera and abs(r["t_ns"] - t_ns) <= period // 2)
        return {b["subject"] for b in r["boxes"] if b["speaking"] or not speaking}

    per_camera = [r for r in labels if r["label"].endswith("_visible")]
    assert {r["camera"] for r in per_camera if r["label"] == "face_visible"} >= {"cam0", "cam1", "cam2"}
    for r in per_camera:
        speaking = r["label"] == "speaker_visible"
        assert r["subject"] in subjects(r["camera"], r["start_ns"], speaking)
        assert r["subject"] in subjects(r["camera"], r["end_ns"] - period, speaking)
    assert any(r["label"] == "speaker_visible" for r in labels)
    for r in labels:
        if r["label"] in ("speech", "sound", "query", "command", "offscreen_speech"):
            assert "camera" not in r, r
        if r["label"] == "offscreen_speech":  # no camera sees a speaking face
            assert not any(subjects(c, r["start_ns"], True) for c in CAMS)
        if r["label"] == "query":
            frame = max(t for t in {b["t_ns"] for b in boxes} if t <= r["start_ns"])
            anywhere = set().union(*(subjects(c, frame) for c in CAMS))
            assert set(r["matches"]) - {"offscreen"} <= anywhere


def test_the_speaking_mouth_moves_in_the_camera_that_sees_it(four: tuple[Path, Any]) -> None:
    """Mouth darkness of a visible speaking face tracks the audio in whichever camera it is."""
    _, streams = four
    audio = np.concatenate([np.frombuffer(p, np.float32) for _, p in streams["mic0/audio16k"]])
    frames = {(c, h.t_ns): (h, p) for c in CAMS for h, p in streams[f"{c}/frame"]}
    darkness, loudness = [], []
    for r in _records(streams, "labels/boxes"):
        h, p = frames[(r["camera"], r["t_ns"])]
        img = np.frombuffer(p, np.uint8).reshape(h.shape)
        for b in r["boxes"]:
            if b["speaking"] and b["visible"] >= 0.99:
                x0, y0, x1, y1 = (int(v) for v in b["box"])
                mouth = img[y0 + (y1 - y0) * 2 // 3:y1, x0 + (x1 - x0) // 4:x1 - (x1 - x0) // 4]
                darkness.append(-float(mouth.mean()))
                i = (r["t_ns"] - sample.T0_NS) * 16_000 // 1_000_000_000
                loudness.append(float(np.sqrt(np.mean(audio[i:i + 1067] ** 2))))
    assert len(darkness) > 10
    assert np.corrcoef(darkness, loudness)[0, 1] > 0.3


def test_same_seed_same_bytes_and_sound_and_text_whatever_the_cameras(tmp_path: Path) -> None:
    paths = {}
    for name, cameras in (("a", 3), ("b", 3), ("one", 1)):
        paths[name] = tmp_path / f"{name}.mcap"
        sample.generate(paths[name], seed=5, duration_s=2.0, size=SIZE, cameras=cameras)
    digest = {k: hashlib.sha256(p.read_bytes()).hexdigest() for k, p in paths.items()}
    assert digest["a"] == digest["b"] != digest["one"]
    three, one = load_log(paths["a"]), load_log(paths["one"])
    for topic in ("mic0/audio16k", "text/in"):
        assert [p for _, p in three[topic]] == [p for _, p in one[topic]]


def test_one_camera_is_the_session_it_always_was(tmp_path: Path) -> None:
    default, explicit = tmp_path / "d.mcap", tmp_path / "e.mcap"
    sample.generate(default, seed=4, duration_s=2.0, size=SIZE)
    sample.generate(explicit, seed=4, duration_s=2.0, size=SIZE, cameras=1)
    assert default.read_bytes() == explicit.read_bytes()
    with LogReader(default) as reader:
        assert "cameras" not in reader.metadata()["sensorfuse"]
    streams = load_log(default)
    assert not any(t.startswith("cam") and t != "cam0/frame" for t in streams)
    for topic in ("labels", "labels/boxes"):
        assert all("camera" not in msgspec.msgpack.decode(p) for _, p in streams[topic])


def test_walks_cross_a_view_and_stay_in_the_world() -> None:
    rng = np.random.default_rng(1)
    view = (320, 240)
    for cameras in (2, 4, 8):
        ww, _ = sample_rig.world_size(view, cameras)
        for _ in range(20):
            faces = [scene.Placement(f"face{i}", "astronaut", float(rng.uniform(0, ww - 120)), 100.0, 0.6)
                     for i in range(2)]
            shot = sample_rig.plan(rng, cameras, view, faces)
            assert len(shot.views) == cameras
            for p in faces:
                x_from, x_to = shot.walks[p.subject]
                end = sample_rig.faces_at(shot, [p], 1.0)[0].world_box()
                assert end[0] >= -1e-6 and end[2] <= ww + 1e-6
                at_edge = min(end[0], ww - end[2]) < 1e-6
                assert abs(x_to - x_from) >= view[0] or at_edge


@pytest.mark.parametrize("n", [0, 9])
def test_cli_refuses_cameras_out_of_range(tmp_path: Path, n: int) -> None:
    done = subprocess.run([sys.executable, "-m", "sensorfuse.engine.cli", "sample", "-o", "s.mcap", "--cameras",
                           str(n)], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == f"sensorfuse: --cameras wants 1 to 8, got {n}"
    assert "Traceback" not in done.stderr and not (tmp_path / "s.mcap").exists()
    with pytest.raises(UsageError, match=f"got {n}"):
        sample.generate(tmp_path / "s.mcap", duration_s=1.0, cameras=n)
    assert cli.MAX_SAMPLE_CAMERAS == sample_rig.MAX_CAMERAS
