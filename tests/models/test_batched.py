"""The MediaPipe models take a batch (models/mediapipe.py `batch_dynamic`): each item of a
batch of different images gives its batch-1 output, and batch 1 still matches TFLite.

Measured (onnxruntime CPU, one intra-op thread): batched and batch-1 outputs are
bit-identical (max |diff| 0.0) for all three models; the tolerance below leaves room for
another execution provider. Against the TFLite interpreter: ≤ 1.7e-4 (regressors),
≤ 1.3e-4 (scores, landmarks, face flag).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest

from sensorfuse.engine import inference
from sensorfuse.engine import manifest as mf
from sensorfuse.models import mediapipe
from sensorfuse.perception.prepost import blazeface, landmarks

ModelOpener = Callable[..., inference.ModelSession]
BATCH_ATOL = 1e-5
TFLITE_ATOL = 2e-3  # the build's own check (models/build_vision.py)
FACE_BOX = np.array([178.0, 81.0, 272.0, 175.0])  # the astronaut's face


def _inputs(name: str, model: inference.ModelSession, photos: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Four different batch-1 inputs: three photos and a mirrored one (landmarks: crops)."""
    pre = model.manifest.preprocessing
    images = [*photos.values(), photos["astronaut"][:, ::-1].copy()]
    if name == "face_landmarks":
        return [landmarks.crop_face(image, FACE_BOX + 15 * i, pre, angle=0.1 * i)[0]
                for i, image in enumerate(images)]
    return [blazeface.letterbox(image, pre)[0] for image in images]


@pytest.mark.parametrize("name,tflite", [("blazeface_short", mediapipe.SHORT_RANGE),
                                         ("blazeface_full", mediapipe.FULL_RANGE),
                                         ("face_landmarks", mediapipe.LANDMARKS)])
def test_each_item_of_a_batch_is_its_batch_one_output(name: str, tflite: mediapipe.TfliteModel,
                                                      open_model: ModelOpener,
                                                      photos: dict[str, np.ndarray]) -> None:
    model = open_model(name)
    assert [spec.shape[0] for spec in model.manifest.inputs + model.manifest.outputs] == ["batch"] * 3
    singles = _inputs(name, model, photos)
    batched = model.run({"image": np.concatenate(singles)})
    one_by_one = [model.run({"image": single}) for single in singles]
    for output, value in batched.items():
        assert value.shape[0] == len(singles)
        for i, alone in enumerate(one_by_one):
            assert np.abs(value[i:i + 1] - alone[output]).max() <= BATCH_ATOL, (output, i)
        # the items differ: a batch that repeated its first image would pass the loop above only by luck
        assert np.abs(value[0] - value[1]).max() > 1e-2
    reference = mediapipe.tflite_reference(tflite, singles[0])
    for output, value in one_by_one[0].items():
        assert np.abs(value - reference[output]).max() <= TFLITE_ATOL, output


def test_batch_dynamic_frees_reshape_and_resize_of_the_batch(model_cache) -> None:
    """No op of the converted graphs keeps a batch of 1 (the full-range detector has both kinds)."""
    graph = onnx.load(str(model_cache / "blazeface_full.onnx")).graph
    constants = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
    reshapes = [constants[n.input[1]].tolist() for n in graph.node if n.op_type == "Reshape"]
    resizes = [n for n in graph.node if n.op_type == "Resize"]
    assert reshapes and all(target[0] == 0 for target in reshapes)
    assert resizes and all(len(n.input) == 3 and constants[n.input[2]].tolist() == [1, 1, 2, 2] for n in resizes)
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == mediapipe.BATCH


def test_a_cpu_batch_runs_in_chunks_with_the_same_outputs(model_cache: Path) -> None:
    """`SessionConfig.cpu_max_batch`: 9 crops in chunks of 4 give what 9 single calls give."""
    path = mf.find_manifest("blazeface_short", model_cache)
    chunked = inference.open_model(path, inference.SessionConfig(cpu_max_batch=4))
    whole = inference.open_model(path)
    assert chunked.provider == inference.CPU and chunked.max_batch == 4 and whole.max_batch is None
    runs: list[int] = []
    session_run = chunked.session.run
    chunked.session.run = lambda names, feeds: runs.append(len(feeds["image"])) or session_run(names, feeds)
    images = np.random.default_rng(3).random((9, 3, 128, 128), dtype=np.float32)
    out = chunked.run({"image": images})
    assert runs == [4, 4, 1]
    for i in range(9):
        one = whole.run({"image": images[i:i + 1]})
        for name in ("regressors", "scores"):
            np.testing.assert_allclose(out[name][i:i + 1], one[name], atol=1e-5)
