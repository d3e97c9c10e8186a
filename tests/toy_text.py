"""A toy sentence space for the query matcher's tests: no model needed."""

from __future__ import annotations

import hashlib
import re

import numpy as np

STOP = {"a", "an", "is", "there", "the", "any", "do", "you", "see", "someone", "i"}


def word_vector(word: str) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "little")
    return np.random.default_rng(seed).standard_normal(64)


def embed(texts: list[str]) -> np.ndarray:
    """The mean of per-word random vectors (content words only), unit length."""
    out = []
    for text in texts:
        words = [w for w in re.findall(r"[a-z]+", text.lower()) if w not in STOP] or ["<empty>"]
        v = np.mean([word_vector(w) for w in words], axis=0)
        out.append(v / np.linalg.norm(v))
    return np.asarray(out, np.float32)
