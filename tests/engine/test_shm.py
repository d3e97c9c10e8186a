"""Shared-memory frame plane with real processes: byte identity, no torn frame under any
policy, a tcp consumer's inline bytes, the status view (faults: tests/faults/test_shm_faults.py)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from sensorfuse.engine import shm
from sfhelpers import read_jsonl

HERE = Path(__file__).parent
NODES = HERE / "shm_nodes.py"


def pools(run_dir: Path, node: str = "") -> list[str]:
    head = f"{shm.PREFIX}{shm.run_tag(str(run_dir))}-{node}"
    return sorted(n for n in os.listdir(shm.SHM_DIR) if n.startswith(head))


def streams(status: dict, node: str) -> dict:
    return status["nodes"][node]["streams"]


def test_every_dtype_and_kind_byte_identical_through_shm(graph_run, tmp_path: Path) -> None:
    """Every wire dtype in three shapes, audio and bytes go through the pool; a payload over
    the slot size goes inline (counted too_large); the sink sees the very bytes sent."""
    import sys

    sys.path.insert(0, str(HERE))
    from shm_nodes import payloads

    g = {"name": "dtypes",
         "shm": {"min_bytes": 65536, "streams": {"t/all": {"slots": 4, "slot_bytes": 2 * 1024 * 1024}}},
         "nodes": {"src": {"kind": f"{NODES}:AllDtypes", "outputs": {"out": "t/all"}},
                   "sink": {"kind": "jsonl", "params": {"path": "all.jsonl"},
                            "inputs": {"in": {"stream": "t/all", "policy": "block", "queue": 2}}}}}
    run = graph_run(g)
    assert run.wait_exit(60) == 0, run.stderr()
    rows = read_jsonl(tmp_path / "all.jsonl")
    sent = payloads()
    assert len(rows) == len(sent)
    for row, (kind, data) in zip(rows, sent):
        raw = data if isinstance(data, bytes) else np.ascontiguousarray(data).tobytes()
        assert row["kind"] == kind and row["sha256"] == hashlib.sha256(raw).hexdigest(), row
        assert "ref" not in row  # a node sees the inline message's header
        if isinstance(data, np.ndarray):
            assert (row["dtype"], row["shape"]) == (str(data.dtype), list(data.shape))
    st = run.status()
    out = streams(st, "src")["t/all"]["shm"]
    assert out["plane"] == "shm" and out["slots"] == 4 and out["fallback"] == {"too_large": 1}
    assert streams(st, "sink")["t/all"]["shm"]["plane"] == "shm"
    assert pools(run.run_dir) == []


def test_slow_consumers_never_see_a_torn_frame(graph_run, tmp_path: Path) -> None:
    """Producers at full speed for 10 s; a slow consumer under each policy checks every
    frame (and one kept message / one kept view, a step later): none is torn, and what the
    latest and drop_oldest consumers lost is counted."""
    frames = {"kind": "synthetic", "params": {"rate_hz": 5000, "shape": [240, 320, 3]}}

    def checker(stream: str, policy: str, keep: str) -> dict:
        return {"kind": f"{NODES}:FrameChecker", "params": {"path": f"{policy}.json", "work_ms": 20, "keep": keep},
                "inputs": {"in": {"stream": stream, "policy": policy, "queue": 4}}}

    g = {"name": "torn", "shm": {"min_bytes": 65536}, "nodes": {
        "fast": {**frames, "outputs": {"out": "a/frame"}},
        "paced": {**frames, "outputs": {"out": "b/frame"}},
        "latest": checker("a/frame", "latest", "array"),
        "drop_oldest": checker("a/frame", "drop_oldest", "message"),
        "block": checker("b/frame", "block", "array")}}
    run = graph_run(g, ["--duration", "10"])
    run.wait_exit(60)
    st = run.status()
    for policy in ("latest", "drop_oldest", "block"):
        counts = json.loads((tmp_path / f"{policy}.json").read_text())
        assert counts["checked"] > 50 and counts["rechecked"] == counts["checked"] - 1, (policy, counts)
        assert counts["torn"] == 0, (policy, counts)
    published = streams(st, "fast")["a/frame"]["published"]
    for policy in ("latest", "drop_oldest"):
        s = streams(st, policy)["a/frame"]
        assert s["shm"]["plane"] == "shm"
        lost = sum(s["dropped"].values()) + s["lost"]
        assert s["received"] - sum(s["dropped"].values()) < published and lost > 0, (policy, s)
    blocked = streams(st, "block")["b/frame"]
    assert blocked["lost"] == 0 and not blocked["dropped"].get("slot_recycled"), blocked
    assert pools(run.run_dir) == []


def test_tcp_consumer_in_the_same_graph_gets_inline_bytes(graph_run, tmp_path: Path) -> None:
    """A consumer on another host gets inline bytes from the producer that feeds its
    same-host consumer through the pool; both see the same frames."""
    from sfhelpers import free_port

    g = {"name": "mixed", "hosts": {"a": "127.0.0.1", "b": "127.0.0.1"}, "ports_base": free_port(),
         "nodes": {"cam": {"kind": "synthetic", "host": "a", "params": {"rate_hz": 50, "count": 40},
                           "outputs": {"out": "cam0/frame"}},
                   "near": {"kind": "jsonl", "host": "a", "params": {"path": "near.jsonl"},
                            "inputs": {"in": {"stream": "cam0/frame", "policy": "block"}}},
                   "far": {"kind": "jsonl", "host": "b", "params": {"path": "far.jsonl"},
                           "inputs": {"in": {"stream": "cam0/frame", "policy": "block"}}}}}
    run_a = graph_run(g, ["--host", "a"])
    run_b = graph_run(g, ["--host", "b"])
    assert run_b.wait_exit(60) == 0, run_b.stderr()
    assert run_a.wait_exit(30) == 0, run_a.stderr()
    near, far = (read_jsonl(tmp_path / f"{n}.jsonl") for n in ("near", "far"))
    assert [r["sha256"] for r in near] == [r["sha256"] for r in far] and len(near) == 40
    assert streams(run_a.status(), "near")["cam0/frame"]["shm"]["plane"] == "shm"
    assert "shm" not in streams(run_b.status(), "far")["cam0/frame"]
    assert pools(run_a.run_dir) == []


def test_status_shows_the_plane_slots_in_use_and_recycled() -> None:
    from sensorfuse.engine import status

    st = {"graph": "g", "state": "running", "nodes": {
        "cam": {"state": "running", "restarts": 0, "streams": {
            "cam0/frame": {"published": 9, "shm": {"plane": "shm", "slots": 6, "slot_bytes": 921600, "in_use": 2}}}},
        "sink": {"state": "running", "restarts": 0, "streams": {
            "cam0/frame": {"received": 9, "dropped": {"slot_recycled": 3}, "shm": {"plane": "shm", "pinned": 0}},
            "text/in": {"received": 1}}}}}
    wide = status.render(st, wide=True)
    assert "shm 2/6" in wide and "drop:slot_recycled=3" in wide and "inline" in wide
    assert "shared memory: cam0/frame 2/6 slots in use, slot_recycled 3" in status.render(st, width=120)
