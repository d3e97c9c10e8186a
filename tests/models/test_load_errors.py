"""Missing, corrupt or mismatching models fail at load time with the path in the message."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import numpy as np
import pytest

from sensorfuse.engine import inference
from sensorfuse.engine import manifest as mf
from sensorfuse.engine.errors import StartupError


def _rewrite(manifest_path: Path, **changes: object) -> None:
    manifest = mf.load(manifest_path)
    manifest_path.write_bytes(mf.encode(msgspec.structs.replace(manifest, **changes)))


def test_missing_model_file_names_the_path(small_model_copy: Path) -> None:
    model_file = small_model_copy.parent / "blazeface_short.onnx"
    model_file.unlink()
    with pytest.raises(inference.ModelLoadError, match="missing") as caught:
        inference.open_model(small_model_copy)
    assert str(model_file) in str(caught.value)
    assert isinstance(caught.value, StartupError)  # the supervisor will not restart it


def test_corrupt_model_file_is_refused_by_hash(small_model_copy: Path) -> None:
    model_file = small_model_copy.parent / "blazeface_short.onnx"
    model_file.write_bytes(model_file.read_bytes()[:1000])
    with pytest.raises(inference.ModelLoadError, match="corrupt") as caught:
        inference.open_model(small_model_copy)
    assert str(model_file) in str(caught.value)


def test_unparseable_model_file_names_the_path(small_model_copy: Path) -> None:
    """Even with a matching hash (a user's manifest written for a broken file)."""
    model_file = small_model_copy.parent / "blazeface_short.onnx"
    model_file.write_bytes(b"this is not an onnx protobuf" * 10)
    _rewrite(small_model_copy, sha256=mf.sha256_file(model_file))
    with pytest.raises(inference.ModelLoadError, match="cannot load model file") as caught:
        inference.open_model(small_model_copy)
    assert str(model_file) in str(caught.value)


def test_manifest_shape_that_disagrees_with_the_graph(small_model_copy: Path) -> None:
    _rewrite(small_model_copy, inputs=[mf.TensorSpec("image", "float32", [1, 3, 224, 224])])
    with pytest.raises(inference.ModelLoadError) as caught:
        inference.open_model(small_model_copy)
    message = str(caught.value)
    assert "blazeface_short.onnx" in message
    assert "[1, 3, 224, 224]" in message and "['batch', 3, 128, 128]" in message


def test_input_shape_mismatch_at_run_time(small_model_copy: Path) -> None:
    model = inference.open_model(small_model_copy)
    with pytest.raises(inference.InputShapeError) as caught:
        model.run({"image": np.zeros((1, 3, 192, 192), np.float32)})
    message = str(caught.value)
    assert "expected float32['batch', 3, 128, 128]" in message and "got float32[1, 3, 192, 192]" in message
    with pytest.raises(inference.InputShapeError, match="float64"):
        model.run({"image": np.zeros((1, 3, 128, 128), np.float64)})


def test_manifest_typos_are_refused_with_the_field(small_model_copy: Path) -> None:
    raw = json.loads(small_model_copy.read_text())
    raw["postprocessing"]["min_scor"] = 0.5
    small_model_copy.write_text(json.dumps(raw))
    with pytest.raises(mf.ManifestError, match="min_scor"):
        mf.load(small_model_copy)
    with pytest.raises(mf.ManifestError, match="not found"):
        mf.load(small_model_copy.parent / "nope.manifest.json")


def test_provider_choice_and_io_binding_on_cpu(small_model_copy: Path) -> None:
    assert inference.choose_providers(inference.DEFAULT_PROVIDERS)[-1] == inference.CPU
    plain = inference.open_model(small_model_copy)
    bound = inference.open_model(small_model_copy, inference.SessionConfig(io_binding=True))
    assert plain.provider == bound.provider == inference.CPU and bound.io_binding
    image = np.random.default_rng(0).uniform(-1, 1, (1, 3, 128, 128)).astype(np.float32)
    a, b = plain.run({"image": image}), bound.run({"image": image})
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_find_manifest_names_the_cache(tmp_path: Path) -> None:
    with pytest.raises(mf.ManifestError, match=str(tmp_path)):
        mf.find_manifest("efficientnet_lite0", tmp_path)


def test_postprocessing_reading_a_missing_output_fails_at_load(small_model_copy: Path) -> None:
    _rewrite(small_model_copy, outputs=[mf.TensorSpec("regressors", "float32", [1, 896, 16])])
    with pytest.raises(inference.ModelLoadError) as caught:
        inference.open_model(small_model_copy)
    assert str(caught.value) == (f"{small_model_copy}: postprocessing 'ssd_faces' reads output 'scores', which is "
                                 "not an output of the model (outputs: regressors)")


def test_preprocessing_size_that_is_not_the_input_size_fails_at_load(small_model_copy: Path) -> None:
    manifest = mf.load(small_model_copy)
    _rewrite(small_model_copy, preprocessing=msgspec.structs.replace(manifest.preprocessing, size=192))
    with pytest.raises(inference.ModelLoadError) as caught:
        inference.open_model(small_model_copy)
    assert str(caught.value) == (f"{small_model_copy}: preprocessing.size 192 does not match the model's input "
                                 "'image' ['batch', 3, 128, 128] (N, C, height, width)")


def test_a_missing_labels_file_fails_at_load(small_model_copy: Path) -> None:
    _rewrite(small_model_copy, labels=mf.ExtraFile("labels.txt", "0" * 64))
    with pytest.raises(inference.ModelLoadError, match=r"file 'labels.txt' it names is missing") as caught:
        inference.open_model(small_model_copy)
    assert isinstance(caught.value, StartupError)
