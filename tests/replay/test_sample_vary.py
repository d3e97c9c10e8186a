"""`sensorfuse sample --vary`: the seed's session under other lighting, sizes, insets, camera,
voices and faces; deterministic; truth that still holds; and without it, the bytes of old."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import msgspec
import numpy as np
import pytest

from sensorfuse.engine.errors import UsageError
from sensorfuse.replay import sample, sample_vary, scene
from sensorfuse.replay.mcap_io import LogReader
from tests.replay.replay_helpers import load_log, mouth_and_loudness

pytestmark = pytest.mark.timeout(180)
SIZE = (320, 240)

#: sha256 of sessions written by main before `--vary` existed (commit 6527cb3): the
#: training corpus, the shipped heads and the demo's golden events all stand on them.
PINNED = {(0, 2.0): "c6e56b37e6611b10284555f377a21caf65e6b02f76d17288690af2a4590830c5",
          (1_000_003, 2.0): "4397b8fda7fd4749c2e3faa362c7cffaadf1627a5b6d0f601bdc67d4cb3763dd",
          (1_000_042, 20.0): "59a51a6c12a89bc813d06c97d12e7ecb4e6fec7ba3f5619ba0c25b87a1838d92"}  # the demo's


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _records(streams: dict[str, list[tuple[Any, Any]]], topic: str) -> list[dict[str, Any]]:
    return [{**msgspec.msgpack.decode(p), "t_ns": h.t_ns} for h, p in streams[topic]]


def _frames(streams: dict[str, list[tuple[Any, Any]]]) -> list[np.ndarray]:
    return [np.frombuffer(p, np.uint8).reshape(h.shape) for h, p in streams["cam0/frame"]]


def _seed_where(want: Any, first: int = 0) -> int:
    """The first seed from `first` whose drawn variety satisfies `want` (draws only, no session)."""
    for seed in range(first, first + 500):
        if want(sample_vary.draw(seed, frozenset(sample_vary.AXES), 6.0)[0]):
            return seed
    raise AssertionError("no seed in 500 draws that variety")


@pytest.mark.parametrize(("seed", "duration_s"), sorted(PINNED))
def test_without_vary_a_session_is_byte_for_byte_what_it_was(tmp_path: Path, seed: int, duration_s: float) -> None:
    default, off = tmp_path / "d.mcap", tmp_path / "off.mcap"
    sample.generate(default, seed=seed, duration_s=duration_s)
    sample.generate(off, seed=seed, duration_s=duration_s, vary=False)
    assert _sha(default) == _sha(off) == PINNED[(seed, duration_s)]
    with LogReader(default) as reader:
        assert not {"vary", "variety"} & set(reader.metadata()["sensorfuse"])


def test_same_seed_same_bytes_and_every_axis_changes_the_session(tmp_path: Path) -> None:
    digests = {}
    for name, vary in (("all", True), ("all_again", "all"), ("none", False), *((a, a) for a in sample_vary.AXES)):
        path = tmp_path / f"{name}.mcap"
        sample.generate(path, seed=1_000_011, duration_s=3.0, vary=vary)
        digests[name] = _sha(path)
    assert digests["all"] == digests["all_again"]
    assert len({digests[n] for n in ("all", "none", *sample_vary.AXES)}) == 2 + len(sample_vary.AXES)
    with LogReader(tmp_path / "all.mcap") as reader:
        meta = reader.metadata()["sensorfuse"]
    assert meta["vary"] == ",".join(sorted(sample_vary.AXES))
    assert msgspec.json.decode(meta["variety"])["axes"] == sorted(sample_vary.AXES)


def test_parse_axes() -> None:
    assert sample_vary.parse_axes(True) == sample_vary.parse_axes("all") == frozenset(sample_vary.AXES)
    assert sample_vary.parse_axes(False) == sample_vary.parse_axes(None) == sample_vary.parse_axes("") == frozenset()
    assert sample_vary.parse_axes("lighting, sizes") == sample_vary.parse_axes(["sizes", "lighting"]) \
        == frozenset({"lighting", "sizes"})
    with pytest.raises(UsageError, match="got 'light'"):
        sample_vary.parse_axes("light,sizes")


def test_lighting_and_camera_change_pixels_and_nothing_else(tmp_path: Path) -> None:
    seed = _seed_where(lambda v: v.lighting.change == "step" and not v.lighting.grey and v.camera.blur_sigma > 0)
    paths = {k: tmp_path / f"{k}.mcap" for k in ("plain", "varied")}
    sample.generate(paths["plain"], seed=seed, duration_s=6.0)
    summary = sample.generate(paths["varied"], seed=seed, duration_s=6.0, vary="lighting,camera")
    plain, varied = load_log(paths["plain"]), load_log(paths["varied"])
    for topic in ("labels", "labels/boxes", "mic0/audio16k", "text/in"):
        assert [p for _, p in plain[topic]] == [p for _, p in varied[topic]], topic
    lighting = summary["variety"]["lighting"]
    a, b = _frames(plain), _frames(varied)
    # the light is switched: the varied/plain brightness ratio moves by the switch's gain
    ratio = [float(y.mean()) / max(1.0, float(x.mean())) for x, y in zip(a, b)]
    before = float(np.median([r for i, r in enumerate(ratio) if i / 15 < lighting["change_s"] - 0.1]))
    after = float(np.median([r for i, r in enumerate(ratio) if i / 15 > lighting["change_s"] + 0.5]))
    step = lighting["change_gain"]
    assert abs(np.log(after / before) - np.log(step)) < 0.5 * abs(np.log(step)), (before, after, step)
    # blurred: less high-frequency energy than the plain frames
    sharp = np.mean([cv2.Laplacian(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY), cv2.CV_64F).var() for f in a[:15]])
    soft = np.mean([cv2.Laplacian(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY), cv2.CV_64F).var() / max(1e-6, r ** 2)
                    for f, r in zip(b[:15], ratio[:15])])
    assert soft < sharp


def test_a_grey_session_is_grey(tmp_path: Path) -> None:
    seed = _seed_where(lambda v: v.lighting.grey)
    path = tmp_path / "g.mcap"
    sample.generate(path, seed=seed, duration_s=1.0, vary="lighting")
    for f in _frames(load_log(path)):
        spread = f.astype(np.int16).max(axis=2) - f.astype(np.int16).min(axis=2)
        assert np.percentile(spread, 99) <= 8  # JPEG's chroma rounding, no colour


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64) - a.mean(), b.astype(np.float64) - b.mean()
    return float((a * b).sum() / max(1e-9, np.sqrt((a * a).sum() * (b * b).sum())))


def _covered(b: dict[str, Any], boxes: list[dict[str, Any]]) -> bool:
    """Whether a face's photo, pasted over everything else, may cover `b`: its box, grown
    by one box size on every side (an inset's margin is at most 0.9), meets `b`'s."""
    x0, y0, x1, y1 = b["box"]
    for f in boxes:
        if f is b or f["kind"] != "face":
            continue
        fx0, fy0, fx1, fy1 = f["box"]
        w, h = fx1 - fx0, fy1 - fy0
        if fx0 - w < x1 and x0 < fx1 + w and fy0 - h < y1 and y0 < fy1 + h:
            return True
    return False


def test_truth_boxes_sit_on_their_subjects_whatever_the_size_inset_and_face(tmp_path: Path) -> None:
    """Every fully visible subject's truth box holds its photo's subject: the frame inside
    the box matches the sprite's subject region better than the box shifted by a third of
    its size in any direction."""
    checked = {"face": 0, "cat": 0, "object": 0}
    sprites: set[str] = set()
    for seed in (1_000_205, 1_000_208, 1_000_209):
        path = tmp_path / f"{seed}.mcap"
        sample.generate(path, seed=seed, duration_s=12.0, vary="sizes,insets,faces")
        streams = load_log(path)
        for frame, truth in zip(_frames(streams)[::3], _records(streams, "labels/boxes")[::3]):
            grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            for b in truth["boxes"]:
                x0, y0, x1, y1 = (int(round(v)) for v in b["box"])
                w, h = x1 - x0, y1 - y0
                if b["visible"] < 0.99 or w < 20 or h < 20 or b["speaking"] or _covered(b, truth["boxes"]):
                    continue
                s = scene.sprite(b["sprite"])
                sx0, sy0, sx1, sy1 = (int(round(v)) for v in s.box)
                want = cv2.resize(cv2.cvtColor(s.image[sy0:sy1, sx0:sx1], cv2.COLOR_BGR2GRAY), (w, h),
                                  interpolation=cv2.INTER_AREA)
                here = _ncc(grey[y0:y1, x0:x1], want)
                shifted = []
                for dx, dy in ((w // 3, 0), (-w // 3, 0), (0, h // 3), (0, -h // 3)):
                    if 0 <= x0 + dx and x1 + dx <= SIZE[0] and 0 <= y0 + dy and y1 + dy <= SIZE[1]:
                        shifted.append(_ncc(grey[y0 + dy:y1 + dy, x0 + dx:x1 + dx], want))
                # (a soft inset's feather blends a cat's or object's box edges into the background)
                assert here > 0.4 and all(here > o + 0.2 for o in shifted), (seed, truth["frame"], b, here, shifted)
                checked[b["kind"]] += 1
                sprites.add(b["sprite"])
    assert checked["face"] >= 10 and checked["cat"] + checked["object"] >= 10, checked
    assert {"grace_hopper", "grace_hopper_mirror"} & sprites, sprites


def test_sizes_reach_beyond_the_usual_range_and_stay_in_the_world() -> None:
    def face_widths(vary: frozenset[str]) -> list[float]:
        out = []
        for seed in range(1_000_100, 1_000_130):
            sess = sample._Session(seed, 20.0, SIZE, 15.0, 0, 1, vary)
            for seg in sess.segments:
                for p in [*seg.faces, *seg.static]:
                    x0, y0, x1, y1 = p.world_box()
                    h, w = p.look().image.shape[:2]
                    assert -1e-6 <= p.x and p.x + w * p.scale <= sess.world[0] + 1e-6
                    assert -1e-6 <= p.y and p.y + h * p.scale <= sess.world[1] + 1e-6
                    if p in seg.faces:
                        out.append(x1 - x0)
        return out

    plain, varied = face_widths(frozenset()), face_widths(frozenset({"sizes"}))
    assert min(varied) < 0.7 * min(plain) and max(varied) > 1.3 * max(plain), (min(plain), max(plain))


def test_voices_change_speed_and_level_and_the_speech_truth_follows(tmp_path: Path) -> None:
    seed = 1_000_007
    paths = {k: tmp_path / f"{k}.mcap" for k in ("plain", "voices")}
    sample.generate(paths["plain"], seed=seed, duration_s=20.0)
    sample.generate(paths["voices"], seed=seed, duration_s=20.0, vary="voices")
    plain, varied = load_log(paths["plain"]), load_log(paths["voices"])
    def where(streams: dict[str, list[tuple[Any, Any]]]) -> list[list[Any]]:  # `speaking` follows the clips
        return [[(b["subject"], b["box"]) for b in r["boxes"]] for r in _records(streams, "labels/boxes")]

    assert where(plain) == where(varied) and [p for _, p in plain["text/in"]] == [p for _, p in varied["text/in"]]
    audio = np.concatenate([np.frombuffer(p, np.float32) for _, p in varied["mic0/audio16k"]])
    labels = [msgspec.msgpack.decode(p) for _, p in varied["labels"]]
    speech = [r for r in labels if r["label"] == "speech"]
    plain_speech = [msgspec.msgpack.decode(p) for _, p in plain["labels"]]
    plain_speech = [r for r in plain_speech if r["label"] == "speech"]
    assert [r["start_ns"] for r in speech] == [r["start_ns"] for r in plain_speech]
    assert any(r["end_ns"] != p["end_ns"] for r, p in zip(speech, plain_speech))

    def rms(i0: int, i1: int) -> float:
        return float(np.sqrt(np.mean(audio[i0:i1] ** 2)))

    def span(r: dict[str, Any]) -> tuple[int, int]:
        return ((r["start_ns"] - sample.T0_NS) * 16_000 // 10**9, (r["end_ns"] - sample.T0_NS) * 16_000 // 10**9)

    sounds = sorted((r for r in labels if r["label"] in ("speech", "sound")), key=lambda r: r["start_ns"])
    for r, nxt in zip(sounds, sounds[1:]):
        assert r["end_ns"] <= nxt["start_ns"]  # a slowed clip never runs into the next sound
    blocks = np.sqrt(np.mean(audio[: len(audio) // 320 * 320].reshape(-1, 320) ** 2, axis=1))
    floor = float(np.percentile(blocks[blocks > 0], 30))  # the room tone (silence events are 0)
    clips = {c["clip"]: c for c in sample.speech_clips("heldout")}
    speeds = []
    for r in speech:
        i0, i1 = span(r)
        speeds.append(len(sample.load_clip(clips[r["clip"]])) / (i1 - i0))
        assert rms(i0, i1) > 2 * floor, r
        if i1 + 800 <= len(audio):  # the truth does not end before the clip: room tone only after it
            assert rms(i1 + 160, i1 + 800) < 1.6 * floor, (r, floor)
        assert r["end_ns"] <= sample.T0_NS + 20 * 10**9
    assert all(0.87 <= v <= 1.16 for v in speeds) and np.ptp(speeds) > 0.03, speeds


def test_the_faces_axis_brings_a_held_out_face_to_held_out_seeds_only() -> None:
    def sprites(seed: int) -> set[str]:
        sess = sample._Session(seed, 20.0, SIZE, 15.0, 0, 1, frozenset({"faces"}))
        return {p.sprite for seg in sess.segments for p in seg.faces}

    held_out = set().union(*(sprites(s) for s in range(1_000_300, 1_000_306)))
    train = set().union(*(sprites(s) for s in range(6)))
    assert {"grace_hopper", "grace_hopper_mirror"} & held_out
    assert train <= set(scene.MEDIA_SPLIT["train"]["faces"])


def test_varied_cameras_and_the_speaking_mouth(tmp_path: Path) -> None:
    """Variety composes with --cameras, and the speaking face's mouth still moves with the speech."""
    path = tmp_path / "c.mcap"
    sample.generate(path, seed=3, duration_s=20.0, vary="sizes,insets,voices")
    darkness, loudness = mouth_and_loudness(load_log(path), min_width=24)
    assert len(darkness) > 20 and np.corrcoef(darkness, loudness)[0, 1] > 0.3
    cams = tmp_path / "cams.mcap"
    sample.generate(cams, seed=3, duration_s=2.0, size=(160, 120), cameras=2, vary=True)
    two = load_log(cams)
    assert {"cam0/frame", "cam1/frame"} <= set(two)
    assert {r["camera"] for r in _records(two, "labels/boxes")} == {"cam0", "cam1"}


def test_cli_vary(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "sensorfuse.engine.cli", "sample", "-o", "s.mcap", "--duration",
                               "1", *args], cwd=tmp_path, capture_output=True, text=True, timeout=60)

    done = run("--vary", "lighting,glare")
    assert done.returncode == 2 and not (tmp_path / "s.mcap").exists()
    assert done.stderr.strip() == ("sensorfuse: --vary wants all or a comma list of lighting, sizes, insets, camera, "
                                   "voices, faces; got 'glare'")
    assert "Traceback" not in done.stderr
    done = run("--vary", "--seed", "1000003")
    assert done.returncode == 0, done.stderr
    assert "varied: camera, faces, insets, lighting, sizes, voices" in done.stdout
    api = tmp_path / "api.mcap"
    sample.generate(api, seed=1_000_003, duration_s=1.0, vary=True)
    assert _sha(api) == _sha(tmp_path / "s.mcap")
    helptext = subprocess.run([sys.executable, "-m", "sensorfuse.engine.cli", "sample", "--help"],
                              capture_output=True, text=True, timeout=60).stdout
    assert all(axis in " ".join(helptext.split()) for axis in sample_vary.AXES)
