"""Fault: a model that outputs NaN/Inf (issue 16, item 2).

Before: perceive turned a NaN fusion head into hundreds of events with NaN scores (a NaN
is neither above nor below a threshold), a bring-your-own encoder published NaN labels,
and the JSONL sink wrote bare `NaN`. Now model outputs are checked for finite values in
one place (`inference.check_finite`, called by every model runner); a non-finite result
is counted as `bad_output` and treated as missing.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from sensorfuse.engine import inference
from sensorfuse.perception.features import FEATURES
from sensorfuse.perception.fusion import OUTPUTS
from sensorfuse.nodes.perceive import default_heads_dir
from sensorfuse.nodes.sinks import json_line
from sensorfuse.replay import sample
from sfhelpers import GraphRun, read_jsonl
from tests.fusion.conftest import demo_graph

pytestmark = pytest.mark.timeout(180)
#: which head input each NaN output is shaped like (speaking [1, slots], the others [1, 1])
SHAPED_LIKE = {"speaking": "face_mask", "offscreen": "audio_mask", "relevance": "query_mask"}


def nan_head(directory: Path) -> Path:
    """A fusion head with the shipped manifest's contract whose every output is NaN."""
    directory.mkdir()
    nodes, outputs = [], []
    nan = helper.make_tensor("nan", TensorProto.FLOAT, [], [float("nan")])
    for out in OUTPUTS:
        nodes.append(helper.make_node("Mul", [SHAPED_LIKE[out], "nan"], [out]))
        outputs.append(helper.make_tensor_value_info(out, TensorProto.FLOAT, list(FEATURES[SHAPED_LIKE[out]])))
    inputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape)) for name, shape in FEATURES.items()]
    graph = helper.make_graph(nodes, "nan_head", inputs, outputs, initializer=[nan])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx_path = directory / "fusion_late.onnx"
    onnx.save(model, onnx_path)
    manifest = json.loads((default_heads_dir() / "fusion_late.manifest.json").read_text())
    manifest["sha256"] = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    (directory / "fusion_late.manifest.json").write_text(json.dumps(manifest))
    shutil.copy(default_heads_dir() / "fusion_default.json", directory / "fusion_default.json")
    return directory


def test_check_finite_names_model_and_output() -> None:
    inference.check_finite("m", {"a": np.ones(3, np.float32), "ids": np.array([1, 2])})
    with pytest.raises(inference.NonFiniteOutput, match=r"model m: output 'b' has 2 of 4 values NaN/Inf"):
        inference.check_finite("m", {"b": np.array([1.0, np.nan, np.inf, 2.0], np.float32)})


def test_a_nan_fusion_head_gives_no_events_and_counts_every_tick(tmp_path: Path, model_cache: Path) -> None:
    session = tmp_path / "short.mcap"
    sample.generate(session, seed=1_000_003, duration_s=4.0)
    graph = demo_graph(session, tmp_path, model_cache)
    graph["nodes"]["perceive"]["params"].update(heads_dir=str(nan_head(tmp_path / "heads")), head="late")
    run = GraphRun(graph, tmp_path)
    try:
        assert run.wait_exit(timeout=120) == 0, run.stderr()
        status = run.status()
    finally:
        run.cleanup()
    rejected = status["nodes"]["perceive"]["streams"]["align/ticks"]["rejected"]
    ticks = len(read_jsonl(tmp_path / "frames.jsonl"))
    assert rejected == {"bad_output": ticks}, rejected  # every tick, named, nothing else
    assert read_jsonl(tmp_path / "events.jsonl") == []  # before: 285 events, 273 with NaN scores


def test_the_jsonl_sink_writes_strict_json() -> None:
    line = json_line({"score": float("nan"), "box": [1.0, float("inf")], "n": 2})
    assert json.loads(line, parse_constant=lambda c: pytest.fail(f"bare {c} in {line}")) == {
        "score": None, "box": [1.0, None], "n": 2}
