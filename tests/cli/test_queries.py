"""`graph check` refuses wrong query params of perceive in one line, exit 2 (docs/queries.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GRAPH = """\
name: queries
external: {inputs: {align/ticks: "tcp://127.0.0.1:6001"}}
nodes:
  perceive:
    kind: perceive
    params: {cache: %s, %s}
    inputs: {ticks: align/ticks}
"""


def check(tmp_path: Path, model_cache: Path, params: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "g.yaml"
    path.write_text(GRAPH % (model_cache, params))
    return subprocess.run([sys.executable, "-m", "sensorfuse.engine.cli", "graph", "check", str(path)],
                          capture_output=True, text=True, cwd=REPO, timeout=90)


def test_query_params_that_hold_are_accepted(tmp_path: Path, model_cache: Path) -> None:
    out = check(tmp_path, model_cache, "query_ttl_ms: 0, query_delay_ms: 800, query_score: head, max_queries: 3")
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize(("params", "expected"), [
    ("query_ttl_ms: 1000, query_delay_ms: 1000",
     "query_delay_ms: expected a query delay below query_ttl_ms (1000.0), got 1000.0"),
    ("query_score: clip", "query_score: expected one of 'head', 'labels', got 'clip'"),
    ("query_ttl_ms: -1", "query_ttl_ms: expected a number >= 0, got -1"),
])
def test_wrong_query_params_are_one_line(tmp_path: Path, model_cache: Path, params: str, expected: str) -> None:
    out = check(tmp_path, model_cache, params)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sensorfuse: graph queries: node perceive: ")
    assert expected in lines[0], lines[0]
