"""Replay through real graphs (one process per node): `sensorfuse replay --rate max`, and
identical downstream outputs at rates 1, 4 and max."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
from sfhelpers import REPO, read_jsonl

from replay import sample
from replay.cli import replay_graph

pytestmark = pytest.mark.timeout(150)

#: Fields that are wall-clock by definition, excluded by name from the comparison.
WALL_CLOCK_FIELDS = ("t_pub_ns", "t_recv_ns")


@pytest.fixture(scope="module")
def short_session(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("replay") / "s.mcap"
    sample.generate(path, seed=21, duration_s=3.0)
    return path


def _downstream(out: Path) -> dict[str, Any]:
    """relay on frames (a processing node) plus a JSONL sink of its output and the other streams."""
    return {
        "name": "det",
        "nodes": {
            "relay": {"kind": "relay", "inputs": {"in": {"stream": "cam0/frame", "policy": "block", "queue": 4}},
                      "outputs": {"out": "relay/frame"}},
            "sink": {"kind": "jsonl", "params": {"path": str(out)},
                     "inputs": {f"in{i}": {"stream": s, "policy": "block", "queue": 64}
                                for i, s in enumerate(["relay/frame", "mic0/audio16k", "text/in", "labels"])}},
        },
    }


def _per_stream(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(r["stream"], []).append({k: v for k, v in r.items() if k not in WALL_CLOCK_FIELDS})
    return out


def test_same_outputs_at_rate_1_4_and_max(tmp_path: Path, short_session: Path,
                                          graph_run: Callable[..., Any]) -> None:
    results = {}
    for rate in (1.0, 4.0, "max"):
        out = tmp_path / f"out-{rate}.jsonl"
        g = replay_graph(str(short_session), rate=rate, graph=_downstream(out),
                         streams=["cam0/frame", "mic0/audio16k", "text/in", "labels"])
        run = graph_run(g)
        assert run.wait_exit(120) == 0, run.stderr()
        results[rate] = _per_stream(read_jsonl(out))
    reference = results["max"]
    assert len(reference["relay/frame"]) == 45 and len(reference["mic0/audio16k"]) == 150
    for rate, got in results.items():
        assert got == reference, f"rate {rate} differs from rate max"


def test_cli_sample_then_replay_max(tmp_path: Path) -> None:
    s = tmp_path / "s.mcap"
    cli = [sys.executable, "-m", "engine.cli"]
    done = subprocess.run([*cli, "sample", "-o", str(s), "--duration", "2"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "events.jsonl"
    done = subprocess.run([*cli, "replay", str(s), "--rate", "max", "--out", str(out),
                           "--run-dir", str(tmp_path / "run")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = read_jsonl(out)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["stream"]] = counts.get(r["stream"], 0) + 1
    assert counts["cam0/frame"] == 30 and counts["mic0/audio16k"] == 100 and counts["mic0/audio"] == 100
    assert all(r["session"] == "sample-0" for r in rows)


def test_cli_user_errors_exit_2(tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "engine.cli"]
    for args in (["replay", str(tmp_path / "missing.mcap")], ["replay", "x.mcap", "--rate", "fast"],
                 ["log", "info", str(tmp_path / "missing.mcap")], ["sample", "-o", "x.mcap", "--size", "big"]):
        done = subprocess.run([*cli, *args], cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
