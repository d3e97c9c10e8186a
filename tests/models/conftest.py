"""Fixtures for the model-pack tests. The pack itself (`model_cache`, built once per
session) is shared from tests/conftest.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from sensorfuse.engine import inference
from sensorfuse.engine import manifest as mf
from sensorfuse.models import media


@pytest.fixture(scope="session")
def open_model(model_cache: Path) -> Callable[..., inference.ModelSession]:
    """Open a pack model by name (one intra-op thread, as in production)."""
    def opener(name: str, **config: object) -> inference.ModelSession:
        return inference.open_model(mf.find_manifest(name, model_cache),
                                    inference.SessionConfig(**config))
    return opener


@pytest.fixture(scope="session")
def photos() -> dict[str, np.ndarray]:
    """The shipped test photos as RGB arrays."""
    return {name: media.load_rgb(name) for name in ("astronaut", "chelsea", "coffee")}


@pytest.fixture
def small_model_copy(model_cache: Path, tmp_path: Path) -> Path:
    """A private copy of blazeface_short (manifest + files) that a test may damage."""
    source = model_cache / f"blazeface_short{mf.MANIFEST_SUFFIX}"
    manifest = mf.load(source)
    names = [source.name, manifest.file]
    if manifest.reference is not None:
        names.append(manifest.reference.file)
    for name in names:
        (tmp_path / name).write_bytes((model_cache / name).read_bytes())
    return tmp_path / source.name
