"""A run's outcome is honest: READY only when every node is ready, config errors in `start`
are one-line startup errors, the exit code says whether anything failed or was lost, and
`run` ends with a one-screen summary (docs/engine.md, "Exit codes")."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from sensorfuse.engine import summary
from sensorfuse.engine.errors import StartupError
from sensorfuse.engine.node import Out
from sensorfuse.engine.runtime import startup_error
from sensorfuse.engine.testing import NodeHarness
from sensorfuse.nodes.sinks import JsonlSink
from sfhelpers import SENSORFUSE, read_jsonl

FAULTS = str(Path(__file__).resolve().parents[1] / "engine" / "fault_nodes.py")
FAST_SUPERVISION = {"heartbeat_interval_s": 0.1, "backoff_initial_s": 0.1, "backoff_max_s": 0.4, "max_restarts": 3,
                    "restart_window_s": 30, "stop_deadline_s": 5}
PRODUCER = {"kind": "synthetic", "params": {"rate_hz": 30, "count": 0, "shape": [8, 8, 3]},
            "outputs": {"out": "cam0/frame"}}


def run(tmp_path: Path, nodes: dict[str, Any], *args: str, name: str = "outcome") -> subprocess.CompletedProcess[str]:
    graph = tmp_path / f"{name}.yaml"
    graph.write_text(yaml.safe_dump({"name": name, "supervisor": FAST_SUPERVISION, "nodes": nodes}))
    cmd = [*SENSORFUSE, "run", str(graph), "--duration", "2", "--run-dir", str(tmp_path / "run"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=60)


def sensorfuse_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("sensorfuse: ")]


def summary_lines(stderr: str) -> list[str]:
    lines = stderr.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("── run summary"))
    return [line for line in lines[start:] if not line.startswith("sensorfuse: ")]


def test_a_clean_run_exits_0_and_ends_with_the_summary(tmp_path: Path) -> None:
    out = run(tmp_path, {"producer": PRODUCER, "sink": {"kind": "jsonl", "params": {"path": "o.jsonl"},
                                                          "inputs": {"in": "cam0/frame"}}})
    assert out.returncode == 0, out.stderr
    assert "READY" in out.stderr and "Traceback" not in out.stderr
    lines = summary_lines(out.stderr)
    assert lines[0].startswith("── run summary: graph 'outcome', exit 0")
    assert all(len(line) <= 80 for line in lines), lines
    assert any(line.split()[:4] == ["producer", "done", "0", "finished"] for line in lines), lines
    assert any(line.split()[:4] == ["sink", "done", "0", "finished"] for line in lines), lines
    (stream,) = [line.split() for line in lines if line.startswith("cam0/frame")]
    received = len(read_jsonl(tmp_path / "o.jsonl"))
    assert received > 10 and stream[1:] == [str(received), str(received), "none"], stream
    assert sensorfuse_lines(out.stderr) == [line for line in out.stderr.splitlines() if "READY" in line]


def test_a_sink_path_in_a_missing_directory_fails_the_start_in_one_line(tmp_path: Path) -> None:
    out = run(tmp_path, {"producer": PRODUCER, "sink": {"kind": "jsonl", "params": {"path": "nodir/o.jsonl"},
                                                          "inputs": {"in": "cam0/frame"}}})
    assert out.returncode == 1
    assert "READY" not in out.stderr and "Traceback" not in out.stderr and "run summary" not in out.stderr
    assert sensorfuse_lines(out.stderr) == [
        "sensorfuse: node 'sink' failed at start: FileNotFoundError: [Errno 2] No such file or directory: "
        "'nodir/o.jsonl'"]
    node_lines = [line for line in out.stderr.splitlines() if line.startswith("[sink]")]
    assert len(node_lines) == 1 and "cannot start" in node_lines[0] and "nodir/o.jsonl" in node_lines[0]
    status = yaml.safe_load((tmp_path / "run" / "status.json").read_text())
    assert status["nodes"]["sink"]["restarts"] == 0 and status["nodes"]["sink"]["exit_codes"] == [3]
    assert status["nodes"]["producer"]["state"] in ("done", "stopped"), "the rest of the graph is stopped"


def test_every_node_that_failed_at_start_is_named(tmp_path: Path) -> None:
    out = run(tmp_path, {"producer": PRODUCER,
                         "sink": {"kind": "jsonl", "params": {"path": "/proc/nope/o.jsonl"}, "inputs": {"in": "cam0/frame"}},
                         "sink2": {"kind": "jsonl", "params": {"path": str(tmp_path / "no" / "dir" / "o.jsonl")},
                                   "inputs": {"in": "cam0/frame"}}})
    assert out.returncode == 1 and "READY" not in out.stderr and "Traceback" not in out.stderr
    lines = sensorfuse_lines(out.stderr)
    assert len(lines) == 2, out.stderr
    assert lines[0].startswith("sensorfuse: node 'sink' failed at start: FileNotFoundError"), lines
    assert lines[1].startswith("sensorfuse: node 'sink2' failed at start: FileNotFoundError"), lines


def test_a_node_crashing_on_every_message_makes_the_run_exit_1(tmp_path: Path) -> None:
    """Before, the supervisor restarted it, it handled nothing, and `run` exited 0."""
    out = run(tmp_path, {"producer": PRODUCER, "crashy": {"kind": f"{FAULTS}:CrashOnStep",
                                                          "inputs": {"in": "cam0/frame"}}})
    assert out.returncode == 1, out.stderr
    lines = summary_lines(out.stderr)
    (crashy,) = [line.split() for line in lines if line.startswith("crashy")]
    assert int(crashy[2]) >= 1 and "simulated" in " ".join(crashy[3:])
    last = out.stderr.splitlines()[-1]
    assert last.startswith("sensorfuse: node 'crashy' ") and ("restarted" in last or "failed" in last), last


def test_a_sink_that_cannot_write_makes_the_run_exit_1(tmp_path: Path) -> None:
    out = run(tmp_path, {"producer": PRODUCER, "full": {"kind": "jsonl", "params": {"path": "/dev/full"},
                                                          "inputs": {"in": "cam0/frame"}}})
    assert out.returncode == 1, out.stderr
    assert "READY" in out.stderr and "Traceback" not in out.stderr
    (full,) = [line for line in summary_lines(out.stderr) if line.startswith("full")]
    assert full.split()[:4] == ["full", "done", "0", "could"] and "/dev/full" in full
    (stream,) = [line for line in summary_lines(out.stderr) if line.startswith("cam0/frame")]
    assert "rej:write_error=" in stream
    assert out.stderr.splitlines()[-1] == ("sensorfuse: node 'full' could not write /dev/full: "
                                           "OSError: [Errno 28] No space left on device")


def test_a_recording_that_cannot_be_written_makes_the_run_exit_1(tmp_path: Path) -> None:
    """`record -o /proc/x.mcap` is refused before launch (exit 2); a recorder node in a graph
    that cannot write its file makes the run exit 1, naming it (before: exit 0)."""
    graph = tmp_path / "g.yaml"
    graph.write_text(yaml.safe_dump({"name": "rec", "nodes": {"producer": PRODUCER}}))
    out = subprocess.run([*SENSORFUSE, "record", "-o", "/proc/x.mcap", "--graph", str(graph), "--duration", "2",
                          "--run-dir", str(tmp_path / "run")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stderr.startswith("sensorfuse: cannot write /proc/x.mcap"), out.stderr
    assert len(out.stderr.splitlines()) == 1
    out = run(tmp_path, {"producer": PRODUCER,
                         "recorder": {"kind": "recorder", "params": {"path": "/proc/x.mcap"},
                                      "inputs": {"in": "cam0/frame"}, "outputs": {"status": "recorder/status"}}})
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr
    assert out.stderr.splitlines()[-1].startswith("sensorfuse: node 'recorder' could not write /proc/x.mcap: ")


def test_run_graph_callers_with_their_own_summary_opt_out(tmp_path: Path, capfd: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from sensorfuse.engine.cli import run_graph

    monkeypatch.chdir(tmp_path)
    graph = {"name": "quiet", "supervisor": FAST_SUPERVISION, "nodes": {"producer": {**PRODUCER, "params": {
        "rate_hz": 30, "count": 5, "shape": [8, 8, 3]}}}}
    assert run_graph(graph, run_dir=str(tmp_path / "run"), summary=False) == 0
    err = capfd.readouterr().err
    assert "READY" in err and "run summary" not in err


# -- logic, without processes ---------------------------------------------------------------


def test_config_errors_become_one_line_startup_errors() -> None:
    exc = startup_error(PermissionError(13, "Permission denied", "/root/o.jsonl"))
    assert isinstance(exc, StartupError)
    assert str(exc) == "PermissionError: [Errno 13] Permission denied: '/root/o.jsonl'"
    assert str(startup_error(ValueError("rate_hz must be > 0\n  got -5"))) == "ValueError: rate_hz must be > 0; got -5"
    assert str(startup_error(StartupError("model 'x' missing"))) == "model 'x' missing"


def _write_one(path: Path, params: dict[str, Any], *, restarts: int = 0) -> None:
    h = NodeHarness(JsonlSink, {"path": str(path), **params}, streams={"in": "text/in"}, start=False)
    h.ctx.restarts = restarts
    h.node.start()
    h.send("in", Out.text("in", "x", t_ns=1))
    h.close()


def test_jsonl_sink_overwrites_unless_append_or_restarted(tmp_path: Path) -> None:
    path = tmp_path / "o.jsonl"
    _write_one(path, {})
    _write_one(path, {})
    assert len(read_jsonl(path)) == 1, "a new run overwrites"
    _write_one(path, {"append": True})
    assert len(read_jsonl(path)) == 2
    _write_one(path, {}, restarts=1)
    assert len(read_jsonl(path)) == 3, "a restarted sink keeps its predecessor's lines"


def test_jsonl_sink_reports_a_failed_write_and_keeps_going() -> None:
    h = NodeHarness(JsonlSink, {"path": "/dev/full"}, streams={"in": "cam0/frame"})
    for t in range(3):
        assert h.send("in", Out.tensor("in", np.zeros((2, 2), np.uint8), t_ns=t)) == []
    h.close()
    assert list(h.ctx.write_errors) == ["/dev/full"] and "No space left" in h.ctx.write_errors["/dev/full"]
    assert h.ctx.rejected == {("cam0/frame", "write_error"): 3}


def test_summary_fits_80_columns_and_sums_drops_over_consumers() -> None:
    status = {"graph": "g" * 90, "nodes": {
        "a_node_with_a_very_long_name_indeed": {"state": "failed", "restarts": 3, "last_error": "boom " * 40,
                                                "streams": {"cam0/frame": {"published": 10}}},
        "s1": {"state": "done", "restarts": 0, "streams": {"cam0/frame": {
            "received": 8, "lost": 2, "dropped": {"overflow": 1}, "rejected": {"bad_frame": 1}}}},
        "s2": {"state": "done", "restarts": 0, "write_errors": {"/x.jsonl": "OSError: full"},
               "streams": {"cam0/frame": {"received": 9, "lost": 1, "dropped": {"overflow": 2}}}},
    }}
    text = summary.render(status, exit_code=1)
    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines), text
    assert len(lines) == 1 + 1 + 3 + 1 + 1  # title, node header, nodes, stream header, streams
    assert lines[-1].split() == ["cam0/frame", "10", "17", "lost=3", "overflow=3", "rej:bad_frame=1"]
    assert "could not write /x.jsonl: OSError: full" in text
