"""Fault: a zero-size tensor (issue 16, item 6).

Before: publishing an array with a 0 in its shape (an empty detection list as [0, 4], a
camera that delivers an empty frame) crashed the publisher in `wire.encode_payload`
(memoryview cannot cast a view with zeros in its shape), and the node crash-looped. Now
it travels as an empty payload and arrives with its shape.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sensorfuse.engine import wire
from sfhelpers import read_jsonl

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("shape", [(0,), (0, 4), (2, 0, 3)])
def test_zero_size_arrays_round_trip(shape: tuple[int, ...]) -> None:
    msg = wire.build_message("s", wire.KIND_TENSOR, np.zeros(shape, np.float32), seq=0, t_ns=1)
    assert msg.array.shape == shape and msg.array.dtype == np.float32


def test_a_source_of_empty_tensors_runs_through_a_graph(graph_run, tmp_path: Path) -> None:
    graph = {"name": "empty", "nodes": {
        "producer": {"kind": "synthetic", "params": {"rate_hz": 200, "count": 20, "shape": [0, 4],
                                                      "dtype": "float32", "layout": None},
                     "outputs": {"out": "dets/empty"}},
        "relay": {"kind": "relay", "inputs": {"in": {"stream": "dets/empty", "policy": "block", "queue": 4}},
                  "outputs": {"out": "relay/empty"}},
        "sink": {"kind": "jsonl", "params": {"path": str(tmp_path / "out.jsonl")},
                 "inputs": {"in": {"stream": "relay/empty", "policy": "block", "queue": 4}}}}}
    run = graph_run(graph)
    assert run.wait_exit(timeout=45) == 0, run.stderr()
    lines = [line for line in read_jsonl(tmp_path / "out.jsonl") if line["kind"] == "tensor"]
    assert [line["seq"] for line in lines] == list(range(20))
    assert all(line["shape"] == [0, 4] and line["dtype"] == "float32" for line in lines)
    assert all(node["restarts"] == 0 for node in run.status()["nodes"].values())
