"""Checks before launch: `graph check` and `run` refuse the same mistakes, in one line, exit 2,
before any node process starts (issue 18); a model whose manifest disagrees with it fails
its node at start, not on every frame."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from sensorfuse.engine import manifest as mf

REPO = Path(__file__).resolve().parents[2]
CHECK_AND_RUN = [["graph", "check"], ["run", "--duration", "2"]]


def cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sensorfuse.engine.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=90)


def refused(args: list[str], graph: Path | str, *extra: str) -> str:
    """The one line `sensorfuse ARGS GRAPH EXTRA` printed, asserting exit 2 and no traceback."""
    with tempfile.TemporaryDirectory(prefix="sf", dir="/tmp") as run_dir:
        run_args = ["--run-dir", run_dir] if args[0] == "run" else []
        out = cli(*args, str(graph), *extra, *run_args)
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        assert "Traceback" not in out.stderr
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1, lines
        if args[0] == "run":
            assert not (Path(run_dir) / "status.json").exists()  # no supervisor, no node started
    return lines[0]


def write(tmp_path: Path, graph: dict[str, Any] | str, name: str = "g.yaml") -> Path:
    path = tmp_path / name
    path.write_text(graph if isinstance(graph, str) else yaml.safe_dump(graph, sort_keys=False))
    return path


def tiny(**producer_params: Any) -> dict[str, Any]:
    return {"name": "tiny", "nodes": {
        "producer": {"kind": "synthetic", "params": {"rate_hz": 20, "shape": [4, 4, 3], **producer_params},
                     "outputs": {"out": "cam0/frame"}},
        "sink": {"kind": "console", "params": {"every": 1000}, "inputs": {"in": "cam0/frame"}}}}


# -- 1. typed, validated parameters ------------------------------------------------------------

@pytest.mark.parametrize(("cmd", "graph", "extra"), [
    (["graph", "check"], tiny(rate_hz=-5), []),
    (["run", "--duration", "2"], tiny(rate_hz=-5), []),
    (["run", "--duration", "2"], tiny(), ["--set", "producer.rate_hz=-5"]),  # overrides are checked too
])
def test_a_param_out_of_range_is_refused_before_launch(tmp_path: Path, cmd: list[str], graph: dict[str, Any],
                                                       extra: list[str]) -> None:
    line = refused(cmd, write(tmp_path, graph), *extra)
    assert line == "sensorfuse: graph tiny: node producer: rate_hz: expected a number > 0, got -5"


@pytest.mark.parametrize(("params", "expected"), [
    ({"rate": 3}, "rate: unknown parameter (known: rate_hz, count, shape, dtype, layout)"),
    ({"rate_hz": "fast"}, "rate_hz: expected a number > 0, got 'fast'"),
    ({"shape": [4, -1]}, "shape[1]: expected an integer >= 0, got -1"),
    ({"dtype": "uint9"}, "dtype: expected a numpy dtype name (uint8, float32, ...), got 'uint9'"),
])
def test_wrong_params_name_node_field_and_value(tmp_path: Path, params: dict[str, Any], expected: str) -> None:
    assert refused(["graph", "check"], write(tmp_path, tiny(**params))) == \
        f"sensorfuse: graph tiny: node producer: {expected}"


# -- 2. files a node needs ---------------------------------------------------------------------

@pytest.fixture
def labelless_manifest(model_cache: Path, tmp_path: Path) -> Path:
    """blazeface_short's manifest (absolute paths to the cached files) naming a labels file
    that is not there: the encoder used to crash on it at start, with restarts."""
    source = model_cache / f"blazeface_short{mf.MANIFEST_SUFFIX}"
    manifest = mf.load(source)
    path = tmp_path / f"faces{mf.MANIFEST_SUFFIX}"
    path.write_bytes(mf.encode(msgspec.structs.replace(
        manifest, file=str(model_cache / manifest.file), reference=None,
        labels=mf.ExtraFile(file="no-such-labels.txt", sha256="0" * 64))))
    return path


def encoder_graph(model: str) -> dict[str, Any]:
    graph = tiny(shape=[128, 128, 3])
    graph["nodes"]["enc"] = {"kind": "encoder", "params": {"model": model},
                             "inputs": {"in": "cam0/frame"}, "outputs": {"out": "faces/out"}}
    return graph


@pytest.mark.parametrize("cmd", CHECK_AND_RUN)
def test_a_missing_labels_file_is_refused_before_launch(tmp_path: Path, labelless_manifest: Path,
                                                         cmd: list[str]) -> None:
    line = refused(cmd, write(tmp_path, encoder_graph(str(labelless_manifest))))
    assert line.startswith(f"sensorfuse: graph tiny: node enc: model: {labelless_manifest}: file 'no-such-labels.txt'")
    assert "is missing" in line


def test_missing_input_files_are_refused_naming_the_param(tmp_path: Path) -> None:
    graph = {"name": "files", "nodes": {
        "cam": {"kind": "camera", "params": {"source": "nope.mp4"}, "outputs": {"frame": "cam0/frame"}}}}
    assert refused(["graph", "check"], write(tmp_path, graph)) == \
        "sensorfuse: graph files: node cam: source: video file 'nope.mp4' does not exist"
    graph["nodes"] = {"player": {"kind": "player", "params": {"path": "gone.mcap"},
                                 "outputs": {"cam0/frame": "cam0/frame"}}}
    assert refused(["graph", "check"], write(tmp_path, graph)) == \
        "sensorfuse: graph files: node player: path: log 'gone.mcap' does not exist"


def test_a_face_veto_class_that_is_not_tracked_is_one_line(demo_session: Path) -> None:
    line = refused(["run"], "demo", "--set", f"player.path={demo_session}", "--set", "perceive.face_veto=[cat, giraffe]")
    assert line.startswith("sensorfuse: graph demo: node perceive: face_veto: giraffe not among the tracked classes")


# -- 3. --set values ---------------------------------------------------------------------------

def test_a_set_value_that_is_not_yaml_is_one_line(tmp_path: Path) -> None:
    line = refused(["run"], write(tmp_path, tiny()), "--set", "producer.shape=[4, 4")
    assert line.startswith("sensorfuse: --set producer.shape=[4, 4: the value is not valid YAML at line 1")


# -- 4. YAML 1.2 booleans, duplicate keys ------------------------------------------------------

RULES = """\
name: rules
external: {inputs: {align/ticks: "tcp://127.0.0.1:6001"}}
nodes:
  perceive:
    kind: perceive
    params:
      cache: %s
      rules:
        face: {on: 0.7, off: %s}
    inputs: {ticks: align/ticks}
"""


def test_rule_params_named_on_and_off_are_keys_not_booleans(tmp_path: Path, model_cache: Path) -> None:
    out = cli("graph", "check", str(write(tmp_path, RULES % (model_cache, "0.3"))))
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("graph 'rules': 1 nodes")
    assert refused(["graph", "check"], write(tmp_path, RULES % (model_cache, "0.9"))) == \
        "sensorfuse: graph rules: node perceive: rules.face.off: expected a score <= on (0.7), got 0.9"


def test_yes_is_a_string_in_graph_yaml(tmp_path: Path) -> None:
    graph = write(tmp_path, "name: y\nnodes:\n  p: {kind: player, params: {path: x.mcap, loop: yes}}\n")
    assert refused(["graph", "check"], graph) == "sensorfuse: graph y: node p: loop: expected true or false, got 'yes'"


@pytest.mark.parametrize("cmd", CHECK_AND_RUN)
def test_duplicate_node_names_are_refused_with_both_lines(tmp_path: Path, cmd: list[str]) -> None:
    graph = write(tmp_path, """\
name: dup
nodes:
  producer: {kind: synthetic, outputs: {out: cam0/frame}}
  sink: {kind: console, inputs: {in: cam0/frame}}
  producer: {kind: synthetic, outputs: {out: cam1/frame}}
""")
    assert refused(cmd, graph) == (f"sensorfuse: {graph}: duplicate key 'producer' at lines 3 and 5 "
                                   "(the second would silently replace the first)")


def test_a_param_given_twice_is_refused(tmp_path: Path) -> None:
    graph = write(tmp_path, "nodes:\n  p: {kind: synthetic, params: {rate_hz: 5, rate_hz: 50}}\n")
    assert refused(["graph", "check"], graph) == (f"sensorfuse: {graph}: duplicate key 'rate_hz' on line 2 "
                                                  "(the second would silently replace the first)")


# -- 5. one endpoint bound twice ---------------------------------------------------------------

@pytest.mark.parametrize("cmd", CHECK_AND_RUN)
def test_two_nodes_exposing_one_tcp_endpoint_are_refused(tmp_path: Path, cmd: list[str]) -> None:
    graph = {"name": "exp", "nodes": {
        "a": {"kind": "synthetic", "outputs": {"out": "cam0/frame"}, "expose": {"cam0/frame": "tcp://127.0.0.1:6101"}},
        "b": {"kind": "synthetic", "outputs": {"out": "cam1/frame"}, "expose": {"cam1/frame": "tcp://127.0.0.1:6101"}}}}
    assert refused(cmd, write(tmp_path, graph)) == (
        "sensorfuse: node 'a' (stream 'cam0/frame') and node 'b' (stream 'cam1/frame') both bind "
        "tcp://127.0.0.1:6101: give each its own endpoint")


# -- 6. a manifest that disagrees with its model -----------------------------------------------

def test_a_manifest_naming_a_missing_output_fails_its_node_at_start(tmp_path: Path, model_cache: Path) -> None:
    source = model_cache / f"efficientnet_lite0{mf.MANIFEST_SUFFIX}"
    manifest = mf.load(source)
    path = tmp_path / f"scene{mf.MANIFEST_SUFFIX}"
    path.write_bytes(mf.encode(msgspec.structs.replace(
        manifest, file=str(model_cache / manifest.file), reference=None,
        labels=mf.ExtraFile(str(model_cache / manifest.labels.file), manifest.labels.sha256),
        postprocessing=mf.ClassifierPost(logits="probs", embedding="embedding"))))
    graph = encoder_graph(str(path))
    graph["nodes"]["enc"]["outputs"] = {"out": "scene/labels"}
    with tempfile.TemporaryDirectory(prefix="sf", dir="/tmp") as run_dir:
        out = cli("run", str(write(tmp_path, graph)), "--duration", "2", "--run-dir", run_dir)
        status = json.loads((Path(run_dir) / "status.json").read_text())
    expected = f"{path}: postprocessing.logits 'probs' is not an output of the model (outputs: logits, embedding)"
    assert expected in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert status["nodes"]["enc"]["restarts"] == 0 and status["nodes"]["enc"]["state"] == "failed"


# -- 7. graph check's output -------------------------------------------------------------------

def test_graph_check_output_is_unchanged() -> None:
    out = cli("graph", "check", "examples/relay.yaml")
    assert out.returncode == 0 and out.stderr == ""
    assert out.stdout.splitlines() == [
        "graph 'relay': 3 nodes, start order producer → relay → sink",
        "  producer     publishes cam0/frame           at ipc://RUN/s/cam0.frame",
        "  relay        publishes relay/frame          at ipc://RUN/s/relay.frame",
        "  relay        reads     cam0/frame           policy=block queue=4",
        "  sink         reads     relay/frame          policy=block queue=4",
    ]
