"""Fixtures for the perception/fusion tests; expensive things are built once per session.

- the model pack: `model_cache` from tests/conftest.py;
- a short held-out sample session and its features through the runtime code path;
- the demo session run once through the real multi-process demo graph at --rate max
  (used by the golden-replay and the accuracy tests).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sensorfuse.models.fusion import dataset
from sensorfuse.nodes import demo
from sensorfuse.replay import sample
from sfhelpers import GraphRun, read_jsonl

SHORT_SEED = 1_000_001  # held-out media
SHORT_DURATION_S = 8.0


@pytest.fixture(scope="session")
def short_session(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sessions") / f"short-{SHORT_SEED}.mcap"
    sample.generate(path, seed=SHORT_SEED, duration_s=SHORT_DURATION_S)
    return path


@pytest.fixture(scope="session")
def short_features(short_session: Path, model_cache: Path) -> dict[str, np.ndarray]:
    return dataset.session_features(short_session, model_cache)


@pytest.fixture(scope="session")
def short_ticks(short_session: Path) -> list[dict[str, Any]]:
    """Tick records with their frames embedded (aligner `embed: true`)."""
    return [record for port, record in dataset.aligned_inputs(short_session, embed_frames=True) if port == "ticks"]


@pytest.fixture(scope="session")
def short_inputs(short_session: Path) -> list[tuple[str, Any]]:
    """Frames and tick records referencing them, as the demo graph's perceive receives them."""
    return list(dataset.aligned_inputs(short_session))



def demo_graph(session: Path, out: Path, cache: Path, *, rate: str | float = "max", head: str = "default") -> dict[str, Any]:
    """The built-in demo graph with this session, outputs under `out` and the test model cache."""
    return demo.demo_graph(session, out, rate=rate, cache=cache, head=head)


@pytest.fixture(scope="session")
def demo_run(demo_session: Path, model_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        dict[str, Any]]:
    """The demo session through the real multi-process graph at --rate max, once; the
    recording also holds the ticks, and `statuses` the recorder's status records (every
    record stream of the demo is then on disk for the schema tests)."""
    out = tmp_path_factory.mktemp("demo-run")
    graph = demo_graph(demo_session, out, model_cache)
    graph["nodes"]["recorder"]["inputs"]["ticks"] = {"stream": "align/ticks", "policy": "block", "queue": 32}
    graph["nodes"]["statuses"] = {"kind": "jsonl", "params": {"path": str(out / "statuses.jsonl")},
                                  "inputs": {"status": {"stream": "recorder/status", "policy": "block"}}}
    run = GraphRun(graph, out)
    try:
        code = run.wait_exit(timeout=150)
        status = json.loads((run.run_dir / "status.json").read_text())
        yield {"code": code, "stderr": run.stderr(), "events": read_jsonl(out / "events.jsonl"),
               "frames": read_jsonl(out / "frames.jsonl"), "statuses": read_jsonl(out / "statuses.jsonl"),
               "status": status, "out": out}
    finally:
        run.cleanup()
