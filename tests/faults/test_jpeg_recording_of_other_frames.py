"""Fault: the player crashed on the recorder's own JPEG logs of BGRA, uint16 or float32
frames (issue 16, item 5): JPEG cannot give those back at their dtype and shape. Now the
recorder stores such frames raw (losslessly) even on a `jpeg:` stream, and they replay
exactly; uint8 BGR and grey frames still go to JPEG.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from sensorfuse.nodes.synthetic import synthetic_payload
from sensorfuse.replay.mcap_io import LogReader
from sfhelpers import GraphRun, read_jsonl

pytestmark = pytest.mark.timeout(120)
FRAMES = {"bgra": ([16, 16, 4], "uint8"), "depth": ([16, 16], "uint16"), "flow": ([16, 16, 3], "float32"),
          "bgr": ([16, 16, 3], "uint8")}


def test_jpeg_streams_of_other_frames_record_and_replay(tmp_path: Path) -> None:
    nodes: dict = {}
    for name, (shape, dtype) in FRAMES.items():
        nodes[name] = {"kind": "synthetic", "params": {"rate_hz": 100, "count": 10, "shape": shape, "dtype": dtype,
                                                       "layout": None}, "outputs": {"out": f"cam/{name}"}}
    log = tmp_path / "rec.mcap"
    nodes["recorder"] = {"kind": "recorder", "params": {"path": str(log), "jpeg": [f"cam/{n}" for n in FRAMES]},
                         "inputs": {n: {"stream": f"cam/{n}", "policy": "block", "queue": 16} for n in FRAMES}}
    run = GraphRun({"name": "rec", "nodes": nodes}, tmp_path)
    try:
        assert run.wait_exit(timeout=60) == 0, run.stderr()
    finally:
        run.cleanup()
    with LogReader(log) as reader:
        schemas = {m.topic: m.schema for m in reader.iter_messages()}
    assert schemas["cam/bgr"] == "foxglove.CompressedImage"  # still JPEG where it can be
    assert all(schemas[f"cam/{n}"] != "foxglove.CompressedImage" for n in ("bgra", "depth", "flow"))
    out = tmp_path / "replay.jsonl"
    done = subprocess.run([sys.executable, "-m", "sensorfuse.engine.cli", "replay", str(log), "--rate", "max",
                           "--out", str(out)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = read_jsonl(out)
    for name, (shape, dtype) in FRAMES.items():
        got = [line for line in lines if line["stream"] == f"cam/{name}" and line["kind"] == "tensor"]
        assert len(got) == 10 and all(line["shape"] == shape and line["dtype"] == dtype for line in got), name
        if name != "bgr":  # raw: bit-exact (the sink logs a digest of each payload)
            want = hashlib.sha256(synthetic_payload(3, tuple(shape), dtype).tobytes()).hexdigest()
            assert got[3]["sha256"] == want, name
