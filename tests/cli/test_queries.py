"""`graph check` refuses wrong query params of perceive in one line, exit 2 (docs/queries.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.cli.test_graph_checks import cli, refused


def graph(tmp_path: Path, model_cache: Path, **params: object) -> Path:
    """A one-node graph: perceive on external ticks, with `params`."""
    perceive = {"kind": "perceive", "params": {"cache": str(model_cache), **params}, "inputs": {"ticks": "align/ticks"}}
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump({"name": "queries", "external": {"inputs": {"align/ticks": "tcp://127.0.0.1:6001"}},
                                    "nodes": {"perceive": perceive}}))
    return path


def test_query_params_that_hold_are_accepted(tmp_path: Path, model_cache: Path) -> None:
    out = cli("graph", "check", str(graph(tmp_path, model_cache, query_ttl_ms=0, query_delay_ms=800,
                                          query_score="head", max_queries=3)))
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize(("params", "expected"), [
    ({"query_ttl_ms": 1000, "query_delay_ms": 1000},
     "query_delay_ms: expected a query delay below query_ttl_ms (1000.0), got 1000.0"),
    ({"query_score": "clip"}, "query_score: expected one of 'head', 'labels', got 'clip'"),
    ({"query_ttl_ms": -1}, "query_ttl_ms: expected a number >= 0, got -1"),
    ({"heard_window_ms": 1000, "heard_delay_ms": 1000},
     "heard_delay_ms: expected a delay below heard_window_ms (1000.0), got 1000.0"),
])
def test_wrong_query_params_are_one_line(tmp_path: Path, model_cache: Path, params: dict[str, object],
                                         expected: str) -> None:
    line = refused(["graph", "check"], graph(tmp_path, model_cache, **params))
    assert line == f"sensorfuse: graph queries: node perceive: {expected}"
