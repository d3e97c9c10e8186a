"""Shared fixtures (helpers live in tests/sfhelpers.py, importable from every test)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sfhelpers import GraphRun


@pytest.fixture
def graph_run(tmp_path: Path) -> Iterator[Callable[..., GraphRun]]:
    runs: list[GraphRun] = []

    def start(graph: dict[str, Any], extra_args: list[str] = ()) -> GraphRun:
        run = GraphRun(graph, tmp_path, list(extra_args))
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.cleanup()
