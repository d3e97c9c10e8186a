"""The int8 accuracy deltas written into the manifests are recomputed here and hold."""

from __future__ import annotations

from pathlib import Path

import pytest

from sensorfuse.engine import manifest as mf
from sensorfuse.models import quantize, specs


def _pair(cache: Path, name: str) -> tuple[mf.Manifest, Path, Path]:
    int8 = mf.load(cache / f"{name}_int8{mf.MANIFEST_SUFFIX}")
    fp32 = mf.load(cache / f"{name}{mf.MANIFEST_SUFFIX}")
    assert int8.precision == "int8" and int8.base_model == fp32.name
    return int8, cache / fp32.file, cache / int8.file


def test_efficientnet_int8_deltas_hold(model_cache: Path) -> None:
    manifest, fp32_path, int8_path = _pair(model_cache, "efficientnet_lite0")
    claimed = manifest.accuracy
    measured = quantize.image_int8_deltas(fp32_path, int8_path)
    assert set(claimed) == set(measured)
    for key in ("top1_agreement", "top1_agreement_confident"):
        assert measured[key] >= claimed[key] - 1e-9, key
    for key in ("embedding_cosine_min", "embedding_cosine_mean"):
        assert measured[key] == pytest.approx(claimed[key], abs=2e-3), key
    # What "accuracy holds" means for the pack: every confident fp32 answer is kept.
    assert claimed["top1_agreement_confident"] == 1.0
    assert claimed["top1_agreement"] >= 0.85
    assert claimed["embedding_cosine_mean"] >= 0.95


def test_minilm_int8_deltas_hold(model_cache: Path) -> None:
    manifest, fp32_path, int8_path = _pair(model_cache, "minilm_l6_v2")
    claimed = manifest.accuracy
    measured = quantize.text_int8_deltas(fp32_path, int8_path, model_cache / specs.MINILM_TOKENIZER_FILE)
    assert set(claimed) == set(measured)
    for key in ("embedding_cosine_min", "embedding_cosine_mean"):
        assert measured[key] == pytest.approx(claimed[key], abs=1e-3), key
    assert measured["pairwise_similarity_max_abs_delta"] <= claimed["pairwise_similarity_max_abs_delta"] + 1e-3
    assert claimed["embedding_cosine_min"] >= 0.98


def test_int8_files_are_smaller(model_cache: Path) -> None:
    for name in ("efficientnet_lite0", "minilm_l6_v2"):
        _, fp32_path, int8_path = _pair(model_cache, name)
        assert int8_path.stat().st_size < 0.4 * fp32_path.stat().st_size
