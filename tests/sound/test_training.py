"""A tiny model trained for a few epochs, exported, checked against torch and loaded at run time."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from sensorfuse.engine.errors import StartupError
from sensorfuse.perception.sound import SOUND_CLASSES, WINDOW_SAMPLES, SoundClassifier
from sensorfuse.models.sound import dataset, evaluate, train


@pytest.fixture(scope="module")
def tiny_model(train_arrays: dict[str, np.ndarray], tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = train.TrainConfig(epochs=3, stride_frames=4, channels=(4, 8, 8), hidden=16)
    model = train.train({0: train_arrays}, cfg, log=lambda _: None)
    example = dataset.windows(train_arrays, stride_frames=9).features
    return train.export(model, tmp_path_factory.mktemp("tiny"), example, trained={"test": True})


def test_export_writes_a_manifest_with_parity_and_contract(tiny_model: Path) -> None:
    manifest = json.loads(tiny_model.read_text())
    assert manifest["classes"] == list(SOUND_CLASSES)
    assert manifest["trained"]["parity_max_abs_diff"] <= train.PARITY_ATOL
    assert (tiny_model.parent / manifest["file"]).is_file()


def test_exported_model_has_a_dynamic_batch(tiny_model: Path, train_arrays: dict[str, np.ndarray]) -> None:
    classifier = SoundClassifier(tiny_model)
    feats = dataset.windows(train_arrays, stride_frames=25).features
    probs = classifier.session.run(["probabilities"], {"log_mel": feats})[0]
    assert probs.shape == (feats.shape[0], len(SOUND_CLASSES))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_probabilities_of_one_window(tiny_model: Path) -> None:
    classifier = SoundClassifier(tiny_model)
    assert classifier.classes == SOUND_CLASSES and classifier.window_samples == WINDOW_SAMPLES
    p = classifier.probabilities(np.zeros(WINDOW_SAMPLES, np.float32))
    assert p.shape == (len(SOUND_CLASSES),) and p.dtype == np.float32
    assert abs(float(p.sum()) - 1.0) < 1e-5


def test_evaluation_report_is_consistent(tiny_model: Path, train_arrays: dict[str, np.ndarray]) -> None:
    result = evaluate.evaluate(SoundClassifier(tiny_model), {0: train_arrays})
    confusion = np.asarray(result["confusion"])
    assert confusion.sum() == result["n"]
    assert result["accuracy"] == pytest.approx(np.trace(confusion) / confusion.sum(), abs=1e-4)
    assert "| background |" in evaluate.markdown(result, [0])


def _copy(manifest: Path, dest: Path) -> Path:
    data = json.loads(manifest.read_text())
    shutil.copy(manifest.parent / data["file"], dest / data["file"])
    return Path(shutil.copy(manifest, dest / manifest.name))


def test_missing_or_altered_files_are_refused_at_load(tiny_model: Path, tmp_path: Path) -> None:
    with pytest.raises(StartupError, match="not found"):
        SoundClassifier(tmp_path / "nothing.manifest.json")
    copy = _copy(tiny_model, tmp_path)
    onnx_file = tmp_path / json.loads(copy.read_text())["file"]
    onnx_file.write_bytes(onnx_file.read_bytes() + b"\0")
    with pytest.raises(StartupError, match="corrupt or was replaced"):
        SoundClassifier(copy)
    onnx_file.unlink()
    with pytest.raises(StartupError, match="missing"):
        SoundClassifier(copy)


def test_a_model_of_another_contract_is_refused(tiny_model: Path, tmp_path: Path) -> None:
    copy = _copy(tiny_model, tmp_path)
    data = json.loads(copy.read_text())
    data["features"]["n_mels"] = 64
    copy.write_text(json.dumps(data))
    with pytest.raises(StartupError, match="retrain"):
        SoundClassifier(copy)
    copy.write_text("{}")
    with pytest.raises(StartupError, match="not a sound model manifest"):
        SoundClassifier(copy)
