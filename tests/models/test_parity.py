"""Exported/converted ONNX models reproduce their original weights (references computed here)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from sensorfuse.engine import inference
from sensorfuse.perception.prepost import blazeface, imagenet, landmarks, text
from sensorfuse.models import mediapipe, specs

ModelOpener = Callable[..., inference.ModelSession]


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.parametrize("name", ["efficientnet_lite0", "mobilenet_v2"])
def test_image_encoder_matches_torch(name: str, open_model: ModelOpener,
                                     photos: dict[str, np.ndarray]) -> None:
    from sensorfuse.models import efficientnet, mobilenet_v2

    module = efficientnet if name == "efficientnet_lite0" else mobilenet_v2
    model = open_model(name)
    batch = imagenet.preprocess_batch(list(photos.values()), model.manifest.preprocessing)
    with torch.no_grad():
        logits_ref, embedding_ref = (t.numpy() for t in module.load_torch()(torch.from_numpy(batch)))
    out = model.run({"image": batch})
    assert np.abs(out["logits"] - logits_ref).max() <= 1e-4
    assert _cosines(out["embedding"], embedding_ref).min() >= 0.9999
    assert out["embedding"].shape == (3, 1280)


def test_minilm_matches_torch(open_model: ModelOpener, model_cache) -> None:
    from sensorfuse.models import minilm

    model = open_model("minilm_l6_v2")
    tokenizer = text.load_tokenizer(model_cache / specs.MINILM_TOKENIZER_FILE, specs.MINILM_PRE)
    sentences = ["a cat", "someone is talking near the microphone", "speech",
                 "an astronaut holding a helmet in front of a flag"]
    feeds = text.encode(tokenizer, sentences)
    with torch.no_grad():
        reference = minilm.load_torch()(torch.from_numpy(feeds["input_ids"]),
                                        torch.from_numpy(feeds["attention_mask"])).numpy()
    out = model.run(feeds)["embedding"]
    assert _cosines(out, reference).min() >= 0.9999
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(blazeface.box_iou(a, b[None])[0])


@pytest.mark.parametrize("name,tflite", [("blazeface_short", mediapipe.SHORT_RANGE),
                                         ("blazeface_full", mediapipe.FULL_RANGE)])
def test_blazeface_matches_tflite_interpreter(name: str, tflite: mediapipe.TfliteModel,
                                              open_model: ModelOpener,
                                              photos: dict[str, np.ndarray]) -> None:
    model = open_model(name)
    pre, post = model.manifest.preprocessing, model.manifest.postprocessing
    for image in (photos["astronaut"], photos["astronaut"][:, ::-1].copy()):
        tensor, placement = blazeface.letterbox(image, pre)
        ours = model.run({"image": tensor})
        reference = mediapipe.tflite_reference(tflite, tensor)
        faces = blazeface.postprocess(ours["regressors"], ours["scores"], placement, pre, post)
        faces_ref = blazeface.postprocess(reference["regressors"], reference["scores"],
                                          placement, pre, post)
        assert len(faces) == len(faces_ref) == 1
        assert _iou(faces.boxes[0], faces_ref.boxes[0]) >= 0.95
        assert abs(faces.scores[0] - faces_ref.scores[0]) < 1e-3


def test_face_landmarks_match_tflite_interpreter(open_model: ModelOpener,
                                                 photos: dict[str, np.ndarray]) -> None:
    model = open_model("face_landmarks")
    box = np.array([178.0, 81.0, 272.0, 175.0])
    crop, _ = landmarks.crop_face(photos["astronaut"], box, model.manifest.preprocessing, angle=0.1)
    ours = model.run({"image": crop})
    reference = mediapipe.tflite_reference(mediapipe.LANDMARKS, crop)
    assert np.abs(ours["landmarks"] - reference["landmarks"]).max() < 2e-3
    assert np.abs(ours["face_flag"] - reference["face_flag"]).max() < 2e-3
