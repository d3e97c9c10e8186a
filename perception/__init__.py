"""Runtime perception (no torch): encoders, tracking, per-tick features, the fusion head.

    encoders = Encoders(cache)                      # the pack's ONNX models
    perception = Perception(encoders, label_embeddings(encoders))
    feats = perception.process(tick_from_record(record))
    scores = FusionHead(path).run(feats.inputs)

See `features` for the feature contract the fusion head is trained on.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile

import numpy as np

from sensorfuse.perception.encoders import Encoders
from sensorfuse.perception.features import FEATURES, Perception, TickFeatures
from sensorfuse.perception.fusion import FusionHead, mask_modalities
from sensorfuse.perception.ticks import Ports, Ref, TickInput, tick_from_record

__all__ = ["Encoders", "FEATURES", "FusionHead", "Perception", "Ports", "Ref", "TickFeatures", "TickInput",
           "label_embeddings", "mask_modalities", "tick_from_record"]
log = logging.getLogger(__name__)


def label_embeddings(encoders: Encoders) -> np.ndarray:
    """The scene labels in the text encoder's space [1000, 384], cached next to the models.

    Embedding 1000 labels takes ~2 s on one core; the cache file is keyed by the text
    model's and the label file's hashes, so a rebuilt model never reads stale vectors.
    """
    text_sha = encoders.text.manifest.sha256
    labels = encoders.scene.manifest.labels
    key = hashlib.sha256(f"{text_sha}:{labels.sha256 if labels else ''}".encode()).hexdigest()[:16]
    path = encoders.text.manifest_path.parent / f"derived-label-embeddings-{key}.npy"
    if path.is_file():
        cached = np.load(path)
        if cached.shape == (len(encoders.labels), 384):
            return cached.astype(np.float32)
        log.warning("ignoring %s: shape %s", path, cached.shape)
    vectors = encoders.embed_texts(encoders.labels)
    try:  # write-then-rename: a concurrent reader never sees half a file
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npy")
        with os.fdopen(fd, "wb") as f:
            np.save(f, vectors)
        os.replace(tmp, path)
    except OSError as exc:  # a read-only cache still works, just slower to start
        log.warning("cannot cache label embeddings in %s: %s", path.parent, exc)
    return vectors
