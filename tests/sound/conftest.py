"""Fixtures for the audio-event encoder tests: short generated sessions, read once per run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sensorfuse.models.sound import dataset
from sensorfuse.models.sound import DATA_DIR, MANIFEST_FILE
from sensorfuse.replay import sample

TRAIN_SEED = 2
HELDOUT_SEED = 1_000_001  # held-out voices and sentences: noise, speech, tone, speech, noise
DURATION_S = 12.0


def _arrays(tmp_path_factory: pytest.TempPathFactory, seed: int) -> dict[str, np.ndarray]:
    path = tmp_path_factory.mktemp("sound-sessions") / f"s{seed}.mcap"
    sample.generate(path, seed=seed, duration_s=DURATION_S)
    return dataset.session_arrays(path)


@pytest.fixture(scope="session")
def train_arrays(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    return _arrays(tmp_path_factory, TRAIN_SEED)


@pytest.fixture(scope="session")
def heldout_arrays(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    return _arrays(tmp_path_factory, HELDOUT_SEED)


@pytest.fixture(scope="session")
def shipped_manifest() -> Path:
    return DATA_DIR / MANIFEST_FILE
