"""The encoder node: pack models on streams, and a corrupt model that fails once, clearly."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile

from sensorfuse.engine import manifest as mf
from sensorfuse.engine.errors import StartupError
from sensorfuse.engine.node import Out
from sensorfuse.engine.testing import NodeHarness
from sensorfuse.nodes.encoder import EncoderNode
from sfhelpers import wait_for

SPEECH = Path(__file__).parent / "data" / "speech.flac"


def harness(model: str, cache: Path) -> NodeHarness:
    return NodeHarness(EncoderNode, {"model": model, "cache": str(cache)})


def test_scene_labels_and_embedding_from_bgr_frames(model_cache: Path,
                                                    photos: dict[str, np.ndarray]) -> None:
    h = harness("efficientnet_lite0_int8", model_cache)
    bgr = cv2.cvtColor(photos["coffee"], cv2.COLOR_RGB2BGR)
    published = h.send("in", Out.tensor("in", bgr, t_ns=1_000, layout="HWC/bgr8"))
    by_port = {m.stream: m for m in published}
    assert by_port["out"].record["labels"][0][1] == "espresso"
    assert by_port["out"].t_ns == 1_000
    assert by_port["embedding"].array.shape == (1280,)


def test_faces_in_frame_pixels(model_cache: Path, photos: dict[str, np.ndarray]) -> None:
    h = harness("blazeface_short", model_cache)
    rgb = photos["astronaut"]
    (faces,) = h.send("in", Out.tensor("in", rgb, t_ns=5, layout="HWC/rgb8"))
    boxes = faces.record["boxes"]
    assert len(boxes) == 1 and 160 < boxes[0][0] < 200
    (none,) = h.send("in", Out.tensor("in", photos["coffee"], t_ns=6, layout="HWC/rgb8"))
    assert none.record["boxes"] == []


def test_wrong_input_is_rejected_and_counted(model_cache: Path) -> None:
    h = harness("blazeface_short", model_cache)
    assert h.send("in", Out.tensor("in", np.zeros((4, 4), np.float32), t_ns=1)) == []
    assert h.ctx.rejected == {("in", "not_a_frame"): 1}


def test_speech_segments_from_audio_blocks(model_cache: Path) -> None:
    h = harness("silero_vad", model_cache)
    audio, rate = soundfile.read(SPEECH, dtype="float32", always_2d=True)
    t0 = 7_000_000_000
    segments, activity = [], []
    for start in range(0, len(audio), 1600):  # 100 ms blocks, as the microphone sends
        block = np.ascontiguousarray(audio[start:start + 1600])
        t_ns = t0 + start * 1_000_000_000 // rate
        for m in h.send("in", Out.audio("in", block, t_ns, rate=rate, sample0=start)):
            (segments if m.stream == "out" else activity).append(m.record)
    assert len(activity) == -(-len(audio) // 1600)
    assert not activity[0]["speech"] and any(a["speech"] for a in activity)
    segments += [m.record for m in h.finish() if m.stream == "out"]
    assert [(s["start_sample"], s["end_sample"]) for s in segments] == [
        (13344, 26592), (30240, 45024), (69664, 120288), (139296, 170976)]  # == silero's own
    assert segments[0]["start_ns"] == t0 + 13344 * 1_000_000_000 // rate


def test_text_embedding(model_cache: Path) -> None:
    h = harness("minilm_l6_v2_int8", model_cache)
    (cat,) = h.send("in", Out.text("in", "a cat", t_ns=1))
    (tabby,) = h.send("in", Out.text("in", "tabby cat", t_ns=2))
    assert cat.array.shape == (384,)
    assert float(cat.array @ tabby.array) == pytest.approx(0.68, abs=0.05)


def test_corrupt_model_fails_before_ready(small_model_copy: Path) -> None:
    (small_model_copy.parent / "blazeface_short.onnx").write_bytes(b"\x00" * 64)
    with pytest.raises(StartupError, match="blazeface_short.onnx"):
        NodeHarness(EncoderNode, {"model": str(small_model_copy)})
    with pytest.raises(StartupError, match="not found"):
        NodeHarness(EncoderNode, {"model": "no_such_model", "cache": str(small_model_copy.parent)})


def test_corrupt_model_node_is_failed_not_restarted(graph_run, small_model_copy: Path) -> None:
    """As a real process under the supervisor: one start, exit code 3, state failed."""
    model_file = small_model_copy.parent / "blazeface_short.onnx"
    model_file.write_bytes(model_file.read_bytes()[:5000])
    graph = {
        "name": "corrupt-model",
        "supervisor": {"heartbeat_interval_s": 0.1, "backoff_initial_s": 0.1, "backoff_max_s": 0.2,
                       "max_restarts": 3, "restart_window_s": 30, "stop_deadline_s": 5},
        "nodes": {
            "camera": {"kind": "synthetic", "params": {"rate_hz": 5, "count": 1000, "shape": [64, 64, 3]},
                       "outputs": {"out": "cam0/frame"}},
            "faces": {"kind": "encoder", "params": {"model": str(small_model_copy)},
                      "inputs": {"in": {"stream": "cam0/frame", "policy": "latest"}},
                      "outputs": {"out": "faces/detections"}},
        },
    }
    run = graph_run(graph)
    failed = wait_for(lambda: (run.status() or {}).get("nodes", {}).get("faces", {}).get("state") == "failed",
                      30, "the encoder node to be marked failed")
    assert failed
    status = run.status()
    assert status["nodes"]["faces"]["restarts"] == 0
    # A node that cannot start stops the graph: the camera is stopped, the run exits 1.
    assert run.wait_exit(30) == 1
    assert run.status()["nodes"]["camera"]["state"] in ("done", "stopped")
    assert "node 'faces' failed at start" in run.stderr()
    assert "blazeface_short.onnx" in run.stderr() and "corrupt" in run.stderr()
    assert "Traceback" not in run.stderr()


def test_bring_your_own_model_with_a_hand_written_manifest(model_cache: Path, tmp_path: Path,
                                                           photos: dict[str, np.ndarray]) -> None:
    """A user's ONNX file plus a manifest written by hand runs in the same node kind."""
    onnx_file = tmp_path / "my_encoder.onnx"
    onnx_file.write_bytes((model_cache / "mobilenet_v2.onnx").read_bytes())
    labels = tmp_path / "my_labels.txt"
    labels.write_bytes((model_cache / "imagenet_labels.txt").read_bytes())
    manifest = {
        "name": "my_encoder", "task": "image_classification", "file": onnx_file.name,
        "sha256": mf.sha256_file(onnx_file),
        "inputs": [{"name": "image", "dtype": "float32", "shape": ["batch", 3, 224, 224]}],
        "outputs": [{"name": "logits", "dtype": "float32", "shape": ["batch", 1000]},
                    {"name": "embedding", "dtype": "float32", "shape": ["batch", 1280]}],
        "preprocessing": {"kind": "center_crop", "size": 224, "crop_fraction": 0.875,
                          "interpolation": "bilinear", "mean": [123.675, 116.28, 103.53],
                          "std": [58.395, 57.12, 57.375]},
        "postprocessing": {"kind": "classifier", "logits": "logits", "embedding": "embedding"},
        "labels": {"file": labels.name, "sha256": mf.sha256_file(labels)},
        "license": "MIT",
        "source": {"package": "my-own", "version": "1", "path": "my_encoder.onnx",
                   "sha256": mf.sha256_file(onnx_file)},
    }
    manifest_path = tmp_path / "my_encoder.manifest.json"
    manifest_path.write_text(json.dumps(manifest))
    h = NodeHarness(EncoderNode, {"model": str(manifest_path)})
    published = h.send("in", Out.tensor("in", photos["coffee"], t_ns=1, layout="HWC/rgb8"))
    labels_out = next(m for m in published if m.stream == "out").record["labels"]
    assert labels_out[0][1] == "espresso"
