"""Int8 variants and the accuracy deltas written into their manifests.

- EfficientNet-Lite0: static QDQ, per-channel int8 weights, uint8 activations, calibrated
  on crops of the photos shipped in scikit-image / scikit-learn. `reduce_range=True`
  (7-bit weights): without it, top-1 agreement on confident images fell to 7/9 on this
  AVX2 machine — the u8s8 VPMADDUBSW path saturates (onnxruntime's quantization docs) —
  with it, 9/9. Dynamic int8 was 6× slower and wrong (MODELS.md): not offered.
- MiniLM: dynamic per-channel int8 (cosine to fp32 ≥ 0.98); static QDQ lost too much.

The deltas are measured on held-out crops/sentences (different seeds from calibration)
by comparing the int8 ONNX model with the fp32 ONNX model, so tests and `verify` can
recompute them without torch.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort

from sensorfuse.perception.prepost import imagenet, text
from sensorfuse.models import media, specs

CALIBRATION_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle",
                      "hubble", "retina", "china", "flower")
CALIBRATION_CROPS_PER_PHOTO = 4
EVALUATION_CROPS_PER_PHOTO = 3
EVALUATION_SENTENCES = (
    "a cat", "tabby cat", "someone talking", "speech", "a dog runs in the park",
    "the quick brown fox jumps over the lazy dog", "a man wearing a helmet",
    "a cup of coffee on a table", "music is playing loudly", "a rocket launch",
    "nobody is in the room", "two people are having a conversation",
    "is anyone at the door?", "turn the lights off", "a red car parked outside",
    "the baby is crying", "a face close to the camera", "applause from the audience",
)


def calibration_batches() -> Iterator[np.ndarray]:
    """Preprocessed [1, 3, 224, 224] crops used to choose activation ranges."""
    for seed, name in enumerate(CALIBRATION_PHOTOS):
        image = media.load_rgb(name)
        for crop in media.crops(image, count=CALIBRATION_CROPS_PER_PHOTO, seed=seed):
            yield imagenet.preprocess(crop, specs.EFFICIENTNET_PRE)


def evaluation_images() -> np.ndarray:
    """Held-out crops (other seeds than calibration), one [N, 3, 224, 224] batch."""
    batches = []
    for seed, name in enumerate(media.PHOTOS):
        image = media.load_rgb(name)
        for crop in media.crops(image, count=EVALUATION_CROPS_PER_PHOTO, seed=100 + seed):
            batches.append(imagenet.preprocess(crop, specs.EFFICIENTNET_PRE))
    return np.concatenate(batches, axis=0)


def quantize_efficientnet(fp32_path: Path, int8_path: Path, work_dir: Path) -> None:
    """Static QDQ per-channel quantisation, calibrated on shipped photos."""
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = calibration_batches()

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {"image": batch}

    prepared = work_dir / "efficientnet_prepared.onnx"
    quant_pre_process(str(fp32_path), str(prepared))
    quantize_static(
        str(prepared), str(int8_path), Reader(), quant_format=QuantFormat.QDQ,
        per_channel=True, reduce_range=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
    )


def quantize_minilm(fp32_path: Path, int8_path: Path) -> None:
    """Dynamic per-channel int8 weights for the MatMuls."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # quantize_dynamic logs a root-logger warning suggesting shape pre-processing, which
    # only matters for static quantisation.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(str(fp32_path), str(int8_path), per_channel=True, reduce_range=True,
                         weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return (a64 * b64).sum(1) / (np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1))


def image_int8_deltas(fp32_path: Path, int8_path: Path) -> dict[str, float]:
    """Agreement and embedding similarity of int8 vs fp32 on held-out photo crops."""
    images = evaluation_images()
    logits32, embed32 = _session(fp32_path).run(["logits", "embedding"], {"image": images})
    logits8, embed8 = _session(int8_path).run(["logits", "embedding"], {"image": images})
    agree = logits32.argmax(1) == logits8.argmax(1)
    confident = imagenet.softmax(logits32).max(1) > 0.5
    cosines = _row_cosines(embed32, embed8)
    return {
        "eval_images": float(len(images)),
        "top1_agreement": float(agree.mean()),
        "top1_agreement_confident": float(agree[confident].mean()) if confident.any() else 1.0,
        "confident_images": float(confident.sum()),
        "embedding_cosine_min": float(cosines.min()),
        "embedding_cosine_mean": float(cosines.mean()),
    }


def text_int8_deltas(fp32_path: Path, int8_path: Path, tokenizer_path: Path) -> dict[str, float]:
    """Cosine of int8 vs fp32 sentence embeddings and drift of pairwise similarities."""
    tokenizer = text.load_tokenizer(tokenizer_path, specs.MINILM_PRE)
    feeds = text.encode(tokenizer, list(EVALUATION_SENTENCES))
    (embed32,) = _session(fp32_path).run(["embedding"], feeds)
    (embed8,) = _session(int8_path).run(["embedding"], feeds)
    cosines = _row_cosines(embed32, embed8)
    similarity_drift = np.abs(embed32 @ embed32.T - embed8 @ embed8.T).max()
    return {
        "eval_sentences": float(len(EVALUATION_SENTENCES)),
        "embedding_cosine_min": float(cosines.min()),
        "embedding_cosine_mean": float(cosines.mean()),
        "pairwise_similarity_max_abs_delta": float(similarity_drift),
    }
