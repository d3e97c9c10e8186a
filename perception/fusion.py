"""The fusion head at run time: an ONNX file plus a small JSON manifest, no torch.

The manifest (``fusion_<strategy>.manifest.json``, written by `sensorfuse fusion train`)
records the strategy, the ONNX file and its sha256, and the feature contract the head was
trained on (`features.FEATURES`, `FEATURE_VERSION`); a head trained on other features is
refused at load with both contracts named, instead of producing quietly wrong scores.

Outputs per tick (probabilities): ``speaking`` [1, F] — each face slot is the active
speaker; ``offscreen`` [1, 1] — speech with no visible speaker; ``relevance`` [1, 1] — the
active text query is true of what is seen and heard now.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from sensorfuse.engine import inference
from sensorfuse.engine import manifest as mf
from sensorfuse.engine.errors import StartupError
from sensorfuse.perception.features import FEATURES, MODALITY_INPUTS

FEATURE_VERSION = 6  # 3: scene vector SCENE_DELAY_NS after its frame; 4: tiled faces; 5: rotating tiles; 6: tiles only add faces
OUTPUTS = ("speaking", "offscreen", "relevance")
STRATEGIES = ("early", "late", "attention")


class FusionManifest(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    strategy: str
    file: str
    sha256: str
    feature_version: int
    inputs: dict[str, list[int]]
    outputs: list[str]
    thresholds: dict[str, float] = {}
    trained: dict[str, Any] = {}


def manifest_path_for(directory: Path, strategy: str) -> Path:
    return directory / f"fusion_{strategy}{mf.MANIFEST_SUFFIX}"


class FusionHead:
    def __init__(self, manifest_path: str | Path, *, threads: int = 1) -> None:
        path = Path(manifest_path)
        try:
            self.manifest = msgspec.json.decode(path.read_bytes(), type=FusionManifest)
        except FileNotFoundError:
            raise StartupError(f"fusion head manifest not found: {path}") from None
        except msgspec.ValidationError as exc:
            raise StartupError(f"{path}: not a fusion head manifest: {exc}") from None
        m = self.manifest
        expected = {k: list(v) for k, v in FEATURES.items()}
        if m.feature_version != FEATURE_VERSION or m.inputs != expected:
            raise StartupError(
                f"{path}: head trained on features v{m.feature_version} {m.inputs}, runtime has "
                f"v{FEATURE_VERSION} {expected}: retrain with `sensorfuse fusion train`")
        self.session = inference.checked_session(path.parent / m.file, m.sha256, threads=threads)
        self.path = path
        self.strategy = m.strategy

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outs = dict(zip(OUTPUTS, self.session.run(list(OUTPUTS), {k: inputs[k] for k in FEATURES})))
        inference.check_finite(self.manifest.name, outs)
        return outs


def mask_modalities(inputs: dict[str, np.ndarray], drop: set[str] | frozenset[str]) -> dict[str, np.ndarray]:
    """A copy of the head inputs with the named modalities (vision/audio/text) absent."""
    out = dict(inputs)
    for modality in drop:
        for name in MODALITY_INPUTS[modality]:
            out[name] = np.zeros_like(inputs[name])
    return out
