"""The pack's encoders behind small typed calls: face detector, landmarks, scene, VAD, text.

Every model is opened through `sensorfuse.engine.inference.open_model` (hash, graph and warm-up
checks, one intra-op thread) from the model cache. Pre/post-processing is the pack's own
(`sensorfuse.perception.prepost`), so a detection here is exactly what the `encoder` node would give.

Why the scene encoder looks at two square crops instead of the manifest's centre crop:
the sample sessions (and real rooms) put objects near the frame edges; a 4:3 frame
centre-cropped at 87.5 % of its short side loses a third of its width. The left and
right squares cover the whole frame; per class we keep the larger probability.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import msgspec
import numpy as np

from sensorfuse.engine import inference
from sensorfuse.engine import manifest as mf
from sensorfuse.perception.prepost import imagenet, text, vad

FACE_MODEL = "blazeface_short"
LANDMARK_MODEL = "face_landmarks"
SCENE_MODEL = "efficientnet_lite0_int8"
VAD_MODEL = "silero_vad"
TEXT_MODEL = "minilm_l6_v2_int8"


@dataclass(frozen=True)
class SceneObservation:
    probabilities: np.ndarray  # [1000] float32, max over the crops
    embedding: np.ndarray  # [1280] float32, mean over the crops


class Encoders:
    """Opened pack models. `cache` None: $SENSORFUSE_MODEL_CACHE or the user cache."""

    def __init__(self, cache: Path | None = None, *, threads: int = 1) -> None:
        config = inference.SessionConfig(intra_op_threads=threads)

        def load(name: str) -> inference.ModelSession:
            return inference.open_model(mf.find_manifest(name, cache), config)

        # the face pipeline's batches (every crop of every camera) in CPU-sized chunks
        batched = replace(config, cpu_max_batch=inference.CPU_MAX_BATCH)
        self.face_model = inference.open_model(mf.find_manifest(FACE_MODEL, cache), batched)
        self.landmark_model = inference.open_model(mf.find_manifest(LANDMARK_MODEL, cache), batched)
        self.scene = load(SCENE_MODEL)
        self.vad = load(VAD_MODEL)
        self.text = load(TEXT_MODEL)
        scene_manifest = self.scene.manifest
        assert scene_manifest.labels is not None, "the scene encoder must ship its labels"
        self.labels = imagenet.load_labels(self.scene.manifest_path.parent / scene_manifest.labels.file,
                                           expected=1000)
        text_pre = self.text.manifest.preprocessing
        assert isinstance(text_pre, mf.TokenizerPre)
        self.tokenizer = text.load_tokenizer(self.text.manifest_path.parent / text_pre.file, text_pre)
        self.providers = {m.name: m.provider
                          for m in (self.face_model, self.landmark_model, self.scene, self.vad, self.text)}

    # -- vision ------------------------------------------------------------------------
    @property
    def face_input_size(self) -> int:
        """Side of the face detector's square input, in pixels."""
        pre = self.face_model.manifest.preprocessing
        assert isinstance(pre, mf.LetterboxPre)
        return pre.size

    def detect(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """The face detector on letterboxed images [N, 3, S, S] (`blazeface.letterbox`):
        `regressors` [N, anchors, 16], `scores` [N, anchors, 1]; the face pipeline is
        `sensorfuse.perception.faces`."""
        return self.face_model.run({"image": images})

    def landmarks(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        """The landmark model on face crops [N, 3, 192, 192] (`landmarks.crop_face`):
        `landmarks` [N, 1404, 1, 1], `face_flag` [N, 1, 1, 1]."""
        return self.landmark_model.run({"image": crops})

    def scene_probabilities(self, rgb: np.ndarray) -> SceneObservation:
        """`scene_probabilities_batch` of one frame."""
        return self.scene_probabilities_batch([rgb])[0]

    def scene_probabilities_batch(self, rgbs: Sequence[np.ndarray]) -> list[SceneObservation]:
        """The scene encoder on every crop of every frame in one call; one result per frame."""
        pre = self.scene.manifest.preprocessing
        assert isinstance(pre, mf.CenterCropPre)
        full_pre = msgspec.structs.replace(pre, crop_fraction=1.0)
        counts, tensors = [], []
        for rgb in rgbs:
            h, w = rgb.shape[:2]
            side = min(h, w)
            crops = [rgb[:side, :side], rgb[h - side:, w - side:]] if w != h else [rgb]
            counts.append(len(crops))
            tensors += [imagenet.preprocess(np.ascontiguousarray(c), full_pre) for c in crops]
        if not tensors:
            return []
        out = self.scene.run({"image": np.concatenate(tensors)})
        probabilities, results, at = imagenet.softmax(out["logits"]), [], 0
        for count in counts:
            probs, embedding = probabilities[at:at + count].max(axis=0), out["embedding"][at:at + count].mean(axis=0)
            results.append(SceneObservation(probs.astype(np.float32), embedding.astype(np.float32)))
            at += count
        return results

    # -- audio and text ------------------------------------------------------------------
    def vad_stream(self, probabilities: list[float]) -> vad.SileroStream:
        """A streaming VAD; each chunk's speech probability is appended to `probabilities`."""
        pre, post = self.vad.manifest.preprocessing, self.vad.manifest.postprocessing
        assert isinstance(pre, mf.AudioStreamPre) and isinstance(post, mf.VadPost)
        model = vad.silero_model(self.vad.run)

        def recording(window: np.ndarray, state: np.ndarray, rate: np.ndarray) -> tuple[float, np.ndarray]:
            probability, state = model(window, state, rate)
            probabilities.append(probability)
            return probability, state

        return vad.SileroStream(recording, pre, post)

    def embed_texts(self, texts: list[str], *, batch: int = 64) -> np.ndarray:
        """Unit-length sentence embeddings [N, 384] (float32)."""
        chunks = []
        for i in range(0, len(texts), batch):
            feeds = text.encode(self.tokenizer, texts[i:i + batch])
            chunks.append(self.text.run(feeds)["embedding"].astype(np.float32))
        return np.concatenate(chunks) if chunks else np.zeros((0, 384), np.float32)


def to_rgb(frame: np.ndarray, layout: str | None) -> np.ndarray:
    """A camera frame (HWC bgr8 by the stream table, or rgb8 / mono8) as HxWx3 RGB."""
    if frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 1):
        return cv2.cvtColor(frame.reshape(frame.shape[0], frame.shape[1]), cv2.COLOR_GRAY2RGB)
    if layout is not None and layout.endswith("rgb8"):
        return np.ascontiguousarray(frame)
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
