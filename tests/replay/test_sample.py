"""Sample-session generator: reproducible, labelled, split-respecting, mouth moves with speech."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest

from sensorfuse.replay import sample, scene
from sensorfuse.replay.mcap_io import LogReader
from tests.replay.replay_helpers import load_log, mouth_and_loudness

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    path = tmp_path_factory.mktemp("sample") / "s.mcap"
    summary = sample.generate(path, seed=7, duration_s=12.0)
    return path, summary


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    digests = []
    for name, seed in (("a", 11), ("b", 11), ("c", 12)):
        sample.generate(tmp_path / f"{name}.mcap", seed=seed, duration_s=3.0)
        digests.append(hashlib.sha256((tmp_path / f"{name}.mcap").read_bytes()).hexdigest())
    assert digests[0] == digests[1] != digests[2]


def test_streams_shapes_and_time_base(session: tuple[Path, dict[str, Any]]) -> None:
    path, summary = session
    streams = load_log(path)
    assert {"cam0/frame", "mic0/audio", "mic0/audio16k", "text/in", "labels", "labels/boxes"} <= set(streams)
    frames = streams["cam0/frame"]
    assert len(frames) == 12 * 15 and frames[0][0].shape == [240, 320, 3] and frames[0][0].layout == "HWC/bgr8"
    assert len(frames[0][1]) == 240 * 320 * 3
    audio = streams["mic0/audio16k"]
    assert [h.sample0 for h, _ in audio] == [i * 320 for i in range(len(audio))]
    assert all(h.t_ns == sample.T0_NS + h.sample0 * 1_000_000_000 // 16_000 for h, _ in audio)
    device = streams["mic0/audio"]
    assert device[0][0].rate == 48_000 and device[0][0].shape == [960, 1]
    for topic, items in streams.items():
        assert [h.seq for h, _ in items] == list(range(len(items))), topic
        assert all(h.session == "sample-7" for h, _ in items)


def test_labels_are_consistent_with_audio_and_boxes(session: tuple[Path, dict[str, Any]]) -> None:
    path, _ = session
    streams = load_log(path)
    labels = [msgspec.msgpack.decode(p) for _, p in streams["labels"]]
    kinds = {r["label"] for r in labels}
    assert {"face_visible", "speech", "sound", "query"} <= kinds
    audio = np.concatenate([np.frombuffer(p, np.float32) for _, p in streams["mic0/audio16k"]])

    def rms(r: dict[str, Any]) -> float:
        i0 = (r["start_ns"] - sample.T0_NS) * 16_000 // 1_000_000_000
        i1 = (r["end_ns"] - sample.T0_NS) * 16_000 // 1_000_000_000
        return float(np.sqrt(np.mean(audio[i0:i1] ** 2)))

    speech = [r for r in labels if r["label"] == "speech"]
    assert speech and all(rms(r) > 0.05 for r in speech)
    assert all(r["split"] == "train" for r in speech)
    for r in labels:
        if r["label"] == "sound" and r["sound"] == "silence":
            assert rms(r) == 0.0
    for r in labels:
        if r["label"] in ("speaker_visible", "offscreen_speech"):
            assert any(s["start_ns"] - 70_000_000 <= r["start_ns"] and r["end_ns"] <= s["end_ns"] + 70_000_000
                       for s in speech), r


def test_speaking_mouth_moves_with_the_speech_envelope(tmp_path: Path) -> None:
    """Mouth-region darkness of the speaking face correlates with audio loudness."""
    path = tmp_path / "m.mcap"
    sample.generate(path, seed=3, duration_s=20.0)
    darkness, loudness = mouth_and_loudness(load_log(path))
    assert len(darkness) > 20
    assert np.corrcoef(darkness, loudness)[0, 1] > 0.3


def test_heldout_seeds_use_only_heldout_media(tmp_path: Path) -> None:
    path = tmp_path / "h.mcap"
    summary = sample.generate(path, seed=sample.HELDOUT_SEED_BASE + 5, duration_s=10.0)
    assert summary["split"] == "heldout"
    with LogReader(path) as reader:
        assert reader.metadata()["sensorfuse"]["split"] == "heldout"
    streams = load_log(path)
    train = scene.MEDIA_SPLIT["train"]
    shared = set(scene.MEDIA_SPLIT["heldout"]["cats"])
    train_media = (set(train["faces"]) | set(train["objects"]) | set(train["backgrounds"])) - shared
    for _, p in streams["labels/boxes"]:
        for b in msgspec.msgpack.decode(p)["boxes"]:
            assert b["sprite"] not in train_media
    for _, p in streams["labels"]:
        r = msgspec.msgpack.decode(p)
        if r["label"] == "speech":
            assert r["split"] == "heldout"
