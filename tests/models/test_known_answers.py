"""Known answers on shipped photos, through the runtime path (ONNX + numpy pre/post)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from sensorfuse.engine import inference
from sensorfuse.perception.prepost import blazeface, imagenet, landmarks, text
from sensorfuse.models import specs

ModelOpener = Callable[..., inference.ModelSession]
CAT_CLASSES = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}


def detect(model: inference.ModelSession, image: np.ndarray) -> blazeface.Faces:
    pre, post = model.manifest.preprocessing, model.manifest.postprocessing
    tensor, placement = blazeface.letterbox(image, pre)
    out = model.run({"image": tensor})
    return blazeface.postprocess(out["regressors"], out["scores"], placement, pre, post)


@pytest.mark.parametrize("name", ["blazeface_short", "blazeface_full"])
def test_astronaut_face_and_its_mirror(name: str, open_model: ModelOpener,
                                       photos: dict[str, np.ndarray]) -> None:
    model = open_model(name)
    image = photos["astronaut"]
    faces = detect(model, image)
    assert len(faces) == 1
    x0, y0, x1, y1 = faces.boxes[0]
    # Eileen Collins' face in skimage's astronaut: roughly x 180-270, y 70-180 px.
    assert 160 < x0 < 200 and 250 < x1 < 290 and 55 < y0 < 100 and 160 < y1 < 195
    assert faces.keypoints[0, 0, 0] < faces.keypoints[0, 1, 0]  # right eye left of left eye

    width = image.shape[1]
    mirrored = detect(model, image[:, ::-1].copy())
    assert len(mirrored) == 1
    expected = np.array([width - x1, y0, width - x0, y1])
    assert blazeface.box_iou(expected, mirrored.boxes)[0] >= 0.9


@pytest.mark.parametrize("name", ["blazeface_short", "blazeface_full"])
def test_no_face_on_coffee(name: str, open_model: ModelOpener, photos: dict[str, np.ndarray]) -> None:
    assert len(detect(open_model(name), photos["coffee"])) == 0


def test_landmarks_fall_on_the_detected_face(open_model: ModelOpener,
                                             photos: dict[str, np.ndarray]) -> None:
    image = photos["astronaut"]
    faces = detect(open_model("blazeface_short"), image)
    model = open_model("face_landmarks")
    pre, post = model.manifest.preprocessing, model.manifest.postprocessing
    crop, placement = landmarks.crop_face(image, faces.boxes[0], pre,
                                          angle=landmarks.eye_angle(faces.keypoints[0]))
    out = model.run({"image": crop})
    mesh = landmarks.postprocess(out["landmarks"], out["face_flag"], placement, post)
    assert mesh.presence > 0.9
    assert mesh.points.shape == (468, 3)
    x0, y0, x1, y1 = faces.boxes[0]
    inside = ((mesh.points[:, 0] > x0 - 10) & (mesh.points[:, 0] < x1 + 10)
              & (mesh.points[:, 1] > y0 - 25) & (mesh.points[:, 1] < y1 + 10))
    assert inside.mean() > 0.95
    nose_tip = mesh.points[1, :2]  # mesh index 1 is the nose tip
    assert np.linalg.norm(nose_tip - faces.keypoints[0, 2]) < 12


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite0_int8", "mobilenet_v2"])
def test_imagenet_labels(name: str, open_model: ModelOpener, model_cache: Path,
                         photos: dict[str, np.ndarray]) -> None:
    model = open_model(name)
    assert model.manifest.labels is not None
    labels = imagenet.load_labels(model_cache / model.manifest.labels.file, expected=1000)
    batch = imagenet.preprocess_batch([photos["coffee"], photos["chelsea"]], model.manifest.preprocessing)
    logits = model.run({"image": batch})["logits"]
    coffee = imagenet.top_k(logits[0], labels, 1)[0]
    assert coffee.name == "espresso" and coffee.index == 967
    assert {guess.name for guess in imagenet.top_k(logits[1], labels, 3)} & CAT_CLASSES


def test_label_file_indices() -> None:
    labels = imagenet.load_labels(Path(__file__).parents[2] / "models" / "data" / "imagenet_labels.txt",
                                  expected=1000)
    known = {0: "tench", 1: "goldfish", 281: "tabby", 282: "tiger cat", 285: "Egyptian cat",
             967: "espresso", 999: "toilet tissue"}
    assert all(labels[i] == name for i, name in known.items())
    assert len(set(labels)) == 1000


@pytest.mark.parametrize("name", ["minilm_l6_v2", "minilm_l6_v2_int8"])
def test_sentence_similarities(name: str, open_model: ModelOpener, model_cache: Path) -> None:
    model = open_model(name)
    tokenizer = text.load_tokenizer(model_cache / specs.MINILM_TOKENIZER_FILE, specs.MINILM_PRE)
    feeds = text.encode(tokenizer, ["a cat", "tabby cat", "someone talking", "speech"])
    assert feeds["input_ids"].shape[1] < 10  # padded to the batch, not to 128
    cat, tabby, talking, speech = model.run(feeds)["embedding"]
    assert cat @ tabby == pytest.approx(0.68, abs=0.04)
    assert talking @ speech == pytest.approx(0.55, abs=0.04)
    assert cat @ speech < 0.2
