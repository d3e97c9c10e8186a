"""Fault: a log with no readable message, and nodes with no inputs (issue 16, item 3).

Before: `sensorfuse replay` of a log cut before its first complete chunk (12.8 % of the
truncation offsets of a small log, 27 % of the demo sample) hung forever: no stream was
readable, so its JSONL sink had no inputs, and a node with no inputs never ended. Now the
CLI refuses such a log in one line, and any non-source node with no inputs ends at once.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from sensorfuse.replay import sample
from sensorfuse.replay.mcap_io import LogReader
from sfhelpers import read_jsonl

pytestmark = pytest.mark.timeout(120)


def _readable_topics(path: Path) -> set[str]:
    with LogReader(path) as reader:
        return {m.topic for m in reader.iter_messages()}


def test_replay_of_a_log_with_nothing_readable_ends_in_one_line(tmp_path: Path) -> None:
    log = tmp_path / "s.mcap"
    sample.generate(log, seed=1_000_005, duration_s=2.0)
    data = log.read_bytes()
    # the longest prefix from which nothing can be read: cut inside the first chunk
    offset = max(n for n in range(64, len(data), 997)
                 if not _readable_topics(_cut(tmp_path, data, n)))
    cut = _cut(tmp_path, data, offset)
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "sensorfuse.engine.cli", "replay", str(cut), "--rate", "max",
                          "--out", str(tmp_path / "replay.jsonl")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert time.monotonic() - t0 < 30
    assert "Traceback" not in out.stderr
    lines = [line for line in out.stderr.strip().splitlines() if line.startswith("sensorfuse:")]
    assert len(lines) == 1 and "no readable message" in lines[0] and "log info" in lines[0]


def _cut(tmp_path: Path, data: bytes, n: int) -> Path:
    path = tmp_path / "cut.mcap"
    path.write_bytes(data[:n])
    return path


def test_a_node_with_no_inputs_ends(graph_run, tmp_path: Path) -> None:
    graph = {"name": "idle-sink", "nodes": {
        "producer": {"kind": "synthetic", "params": {"rate_hz": 100, "count": 5, "shape": [4]},
                     "outputs": {"out": "a/b"}},
        "sink": {"kind": "jsonl", "params": {"path": str(tmp_path / "a.jsonl")}, "inputs": {"in": "a/b"}},
        "idle": {"kind": "jsonl", "params": {"path": str(tmp_path / "idle.jsonl")}}}}
    run = graph_run(graph)
    assert run.wait_exit(timeout=30) == 0, run.stderr()
    assert len([x for x in read_jsonl(tmp_path / "a.jsonl") if x["kind"] == "tensor"]) == 5
    assert run.status()["nodes"]["idle"]["state"] == "done"
