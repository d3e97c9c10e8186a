"""Re-run models on their stored reference inputs and compare with stored expectations.

Needs onnxruntime and numpy only — no torch, no weight packages — so a deployed machine
can check its cache. The expectations were computed at build time from the original
weights (torch, or the TFLite interpreter); see each manifest's `reference.origin`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sensorfuse.engine import inference
from sensorfuse.engine import manifest as mf


@dataclass(frozen=True)
class Comparison:
    """How one output compares with its expectation."""

    output: str
    max_abs_diff: float
    cosine: float
    ok: bool


@dataclass(frozen=True)
class VerifyResult:
    """Verification of one model: ok, details per output, or the error that stopped it."""

    name: str
    ok: bool
    provider: str
    comparisons: tuple[Comparison, ...] = ()
    error: str = ""


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of two flattened arrays in float64 (1.0 for two all-zero arrays)."""
    a64, b64 = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    norm = np.linalg.norm(a64) * np.linalg.norm(b64)
    return 1.0 if norm == 0 else float(a64 @ b64 / norm)


def compare(outputs: dict[str, np.ndarray], expected: dict[str, np.ndarray], *,
            atol: float, min_cosine: float) -> list[Comparison]:
    """Per output: max |difference| ≤ atol and cosine ≥ min_cosine."""
    results = []
    for name, want in expected.items():
        got = outputs[name]
        if got.shape != want.shape:
            results.append(Comparison(name, float("inf"), 0.0, False))
            continue
        diff = float(np.abs(got.astype(np.float64) - want.astype(np.float64)).max(initial=0.0))
        cos = cosine(got, want)
        results.append(Comparison(name, diff, cos, diff <= atol and cos >= min_cosine))
    return results


def load_reference(path: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(inputs, expected outputs) from a reference .npz."""
    with np.load(path) as data:
        feeds = {k.split("/", 1)[1]: data[k] for k in data.files if k.startswith("input/")}
        expected = {k.split("/", 1)[1]: data[k] for k in data.files if k.startswith("output/")}
    return feeds, expected


def verify_model(manifest_path: Path, config: inference.SessionConfig | None = None) -> VerifyResult:
    """Check hashes, load the model, run its reference inputs, compare."""
    name = manifest_path.name.removesuffix(mf.MANIFEST_SUFFIX)
    try:
        manifest = mf.load(manifest_path)
        mf.check_files(manifest_path, manifest)
        if manifest.reference is None:
            return VerifyResult(name, False, "", error="manifest has no reference inputs")
        model = inference.open_model(manifest_path, config or inference.SessionConfig(warmup_runs=0))
    except mf.ManifestError as err:
        return VerifyResult(name, False, "", error=str(err))
    feeds, expected = load_reference(manifest_path.parent / manifest.reference.file)
    outputs = model.run(feeds)
    comparisons = compare(outputs, expected, atol=manifest.reference.atol,
                          min_cosine=manifest.reference.min_cosine)
    return VerifyResult(name, all(c.ok for c in comparisons), model.provider, tuple(comparisons))


def verify_cache(cache: Path, only: list[str] | None = None) -> list[VerifyResult]:
    """Verify every model in the cache (or the named ones)."""
    paths = mf.list_manifests(cache)
    if only:
        paths = [mf.find_manifest(name, cache) for name in only]
    return [verify_model(path) for path in paths]
