"""Fusion head: every strategy trains, exports with torch-vs-ONNX parity and runs in the node;
masking a modality lowers the scores the way docs/fusion.md's table says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sensorfuse.perception.fusion import STRATEGIES, FusionHead, manifest_path_for
from sensorfuse.models.fusion import evaluate, train
from sensorfuse.nodes.perceive import default_heads_dir, resolve_head
from tests.fusion.test_perceive_node import by_stream, feed, harness

pytestmark = pytest.mark.timeout(180)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_train_export_parity_and_run_in_node(strategy: str, short_features: dict[str, np.ndarray],
                                             short_ticks: list[dict[str, Any]], model_cache: Path,
                                             tmp_path: Path) -> None:
    data = train.stack({0: short_features})
    model = train.train(strategy, data, train.TrainConfig(epochs=2, batch=128), log=lambda *_: None)
    path = train.export(model, tmp_path, data)  # raises if ONNX and torch differ by > 1e-4
    head = FusionHead(path)
    inputs = train.example_inputs(data, 64, seed=3)
    assert train.parity(model, tmp_path / f"fusion_{strategy}.onnx", inputs) <= train.PARITY_ATOL
    got = head.run(inputs)
    assert got["speaking"].shape == (64, 3) and got["relevance"].shape == (64, 1)
    assert np.all(got["speaking"][inputs["face_mask"] == 0] == 0)  # empty slots never speak
    h = harness(model_cache, heads_dir=str(tmp_path), head=strategy)
    msgs = feed(h, short_ticks[:30])
    assert len(by_stream(msgs, "perceive/detections")) == 30


def test_shipped_heads_match_their_manifests() -> None:
    for strategy in STRATEGIES:
        assert FusionHead(manifest_path_for(default_heads_dir(), strategy)).strategy == strategy
    assert resolve_head("default", default_heads_dir()).is_file()


def test_masking_lowers_scores_as_the_eval_table_says(short_features: dict[str, np.ndarray]) -> None:
    head = FusionHead(resolve_head("default", default_heads_dir()))
    data = train.stack({0: short_features})
    results = {name: evaluate.evaluate(head.run, data, drop) for name, drop in evaluate.CONDITIONS.items()}
    full = results["all"]
    assert full["speaking"]["f1"] > 0 and full["offscreen"]["f1"] > 0 and full["relevance"]["f1"] > 0
    # docs/fusion.md: no vision → no face can be named (and offscreen cannot be told apart)
    assert results["no_vision"]["speaking"]["recall"] == 0.0
    assert results["no_vision"]["offscreen"]["f1"] < full["offscreen"]["f1"]
    # no audio → offscreen speech cannot be heard; speaking falls back to mouth motion (lower)
    assert results["no_audio"]["offscreen"]["recall"] == 0.0
    assert results["no_audio"]["speaking"]["f1"] < full["speaking"]["f1"]
    # no text → no query to score; the other outputs do not depend on it
    assert results["no_text"]["relevance"]["recall"] == 0.0
    assert results["no_text"]["offscreen"]["f1"] == pytest.approx(full["offscreen"]["f1"], abs=0.05)
    for output in ("speaking", "offscreen", "relevance"):
        for cond in ("no_vision", "no_audio", "no_text"):
            assert results[cond][output]["f1"] <= full[output]["f1"] + 0.05, (cond, output)
