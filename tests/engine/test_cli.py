"""The command line as a user meets it: help with examples, one-line errors, exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sfhelpers import wait_for


def sf(*args: str, cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sensorfuse.engine.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout)


def test_help_lists_the_commands() -> None:
    out = sf("--help")
    assert out.returncode == 0
    for cmd in ("run", "status", "graph", "keys", "demo"):
        assert cmd in out.stdout


@pytest.mark.parametrize("cmd", [["run"], ["status"], ["graph", "check"], ["keys", "generate"], ["demo"]])
def test_every_command_has_help_with_an_example(cmd: list[str]) -> None:
    out = sf(*cmd, "--help")
    assert out.returncode == 0, out.stderr
    assert "example" in out.stdout


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["run", "no/such/graph.yaml"], 2, "no graph file"),
        (["run"], 2, "run needs a GRAPH"),
        (["frobnicate"], 2, "invalid choice"),
        (["run", "examples/relay.yaml", "--set", "oops"], 2, "--set wants NODE.PARAM=VALUE"),
        (["run", "examples/relay.yaml", "--set", "ghost.rate_hz=3"], 2, "no node 'ghost'"),
        (["status", "--once", "--run", "/nonexistent/run"], 1, "no run found"),
    ],
)
def test_user_mistakes_give_one_line_and_an_exit_code(args: list[str], code: int, needle: str) -> None:
    out = sf(*args, cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == code, out.stderr
    assert needle in out.stderr
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) <= 2


def test_bad_node_params_are_refused_before_any_node_starts(graph_run) -> None:
    run = graph_run({"name": "bad", "nodes": {"p": {"kind": "synthetic", "params": {"rate": 3},
                                                    "outputs": {"out": "cam0/frame"}}}})
    assert run.wait_exit(30) == 2
    assert run.stderr().strip() == ("sensorfuse: graph bad: node p: rate: unknown parameter "
                                    "(known: rate_hz, count, shape, dtype, layout)")
    assert run.status() is None  # no supervisor, no node process


def test_graph_check_prints_endpoints() -> None:
    out = sf("graph", "check", "examples/relay.yaml", cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr
    assert "ipc://RUN/s/cam0.frame" in out.stdout and "policy=block" in out.stdout


def test_status_shows_nodes_restarts_and_streams(graph_run) -> None:
    run = graph_run({"name": "st", "nodes": {
        "producer": {"kind": "synthetic", "params": {"rate_hz": 30, "count": 0, "shape": [8, 8, 3]},
                     "outputs": {"out": "cam0/frame"}},
        "sink": {"kind": "jsonl", "params": {"path": "o.jsonl"}, "inputs": {"in": "cam0/frame"}}}})
    run.wait_running()
    wait_for(lambda: run.node("sink").get("streams", {}).get("cam0/frame", {}).get("received", 0) > 10, 20,
             "frames at the sink")
    out = sf("status", "--once", "--run", str(run.run_dir))
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "RUNNING" in text and "producer" in text and "sink" in text and "cam0/frame" in text
    assert "restarts" in text and "p99 ms" in text


@pytest.mark.parametrize("nodes, on_cycle", [
    ({"a": {"kind": "relay", "inputs": {"in": "b/out"}, "outputs": {"out": "a/out"}},
      "b": {"kind": "relay", "inputs": {"in": "a/out"}, "outputs": {"out": "b/out"}},
      "sink": {"kind": "jsonl", "inputs": {"in": "a/out"}}}, "a, b"),
    ({"r": {"kind": "relay", "inputs": {"in": "r/out"}, "outputs": {"out": "r/out"}}}, "r"),
])
def test_graph_check_and_run_refuse_a_cycle_in_one_line(tmp_path: Path, nodes: dict, on_cycle: str) -> None:
    import yaml

    graph = tmp_path / "cycle.yaml"
    graph.write_text(yaml.safe_dump({"name": "cycle", "nodes": nodes}))
    for cmd in (["graph", "check"], ["run"]):
        out = sf(*cmd, str(graph))
        assert out.returncode == 2, (cmd, out.stderr)
        assert out.stderr.strip().splitlines() == [
            f"sensorfuse: graph has a cycle through node(s) {on_cycle}: a node's inputs must not come from its "
            "own outputs, directly or through others"], cmd
