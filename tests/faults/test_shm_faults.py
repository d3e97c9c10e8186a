"""Shared-memory plane faults (docs/engine.md, "Failure behaviour"): killed producer and
consumer, /dev/shm too small, payloads over a slot, readers holding every slot."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from sensorfuse.engine import shm
from sfhelpers import read_jsonl, wait_for


def pools(run_dir: Path, node: str = "") -> list[str]:
    head = f"{shm.PREFIX}{shm.run_tag(str(run_dir))}-{node}"
    return sorted(n for n in os.listdir(shm.SHM_DIR) if n.startswith(head))


def test_killed_producer_and_consumer_leave_no_segment(graph_run, tmp_path: Path) -> None:
    """SIGKILL the producer: the supervisor removes its pool, the restart makes a new
    generation that the consumer maps; SIGKILL the consumer; at the end nothing is left."""
    g = {"name": "kill", "supervisor": {"backoff_initial_s": 0.0}, "shm": {"min_bytes": 65536},
         "nodes": {"cam": {"kind": "synthetic", "params": {"rate_hz": 100, "shape": [240, 320, 3]},
                           "outputs": {"out": "cam0/frame"}},
                   "sink": {"kind": "jsonl", "params": {"path": "k.jsonl"},
                            "inputs": {"in": {"stream": "cam0/frame", "policy": "drop_oldest"}}}}}
    run = graph_run(g)
    run.wait_running()
    wait_for(lambda: pools(run.run_dir, "cam+"), 20, "the producer's pool")
    first = pools(run.run_dir, "cam+")
    assert first[0].endswith("-g0")
    os.kill(run.node("cam")["pid"], signal.SIGKILL)
    wait_for(lambda: pools(run.run_dir, "cam+") and pools(run.run_dir, "cam+") != first, 20, "a new generation")
    assert pools(run.run_dir, "cam+")[0].endswith("-g1")
    got = len(read_jsonl(tmp_path / "k.jsonl"))
    wait_for(lambda: len(read_jsonl(tmp_path / "k.jsonl")) > got + 20, 20, "frames from the new generation")
    os.kill(run.node("sink")["pid"], signal.SIGKILL)
    wait_for(lambda: run.node("sink")["restarts"] >= 1 and run.node("sink")["state"] == "running", 20,
             "the consumer back")
    run.proc.send_signal(signal.SIGINT)
    run.wait_exit(30)
    assert pools(run.run_dir) == []


def test_pool_fallbacks_are_counted_not_raised(tmp_path: Path) -> None:
    """A pool bigger than /dev/shm can hold and a payload over the slot size go inline
    with a reason; readers holding every slot too."""
    total = os.statvfs(shm.SHM_DIR)
    huge = shm.ShmOutput(f"{shm.PREFIX}test-{os.getpid()}-huge", slots=2,
                         slot_bytes=total.f_blocks * total.f_frsize + shm.PAGE, block=[False])
    assert huge.write(b"x" * 100_000, 100_000, block_until=None) is False
    assert huge.write(b"x" * 100_000, 100_000, block_until=None) is False
    assert huge.fallback == {"no_space": 2} and huge.stats()["plane"] == "inline"
    out = shm.ShmOutput(f"{shm.PREFIX}test-{os.getpid()}-tiny", slots=2, block=[False, False], min_bytes=65536)
    try:
        desc = out.write(b"a" * 70_000, 70_000, block_until=None)
        assert isinstance(desc, dict) and desc["size"] == 70_000 and desc["dev"] is None
        assert out.write(b"b" * 80_000, 80_000, block_until=None) is False
        assert out.fallback == {"too_large": 1}
        reader = shm.PoolReader(0, False)
        root, mapping = reader.resolve(desc)
        assert root.tobytes() == b"a" * 70_000
        lease = reader.acquire(mapping, desc["slot"], desc["seq"])
        second = out.write(b"c" * 70_000, 70_000, block_until=None)
        assert second["slot"] != desc["slot"]  # the held slot is skipped
        reader.release(lease, root, escaped=True)  # pinned: still held
        other = shm.PoolReader(1, False)
        _, mapping2 = other.resolve(second)
        assert other.acquire(mapping2, second["slot"], second["seq"]) is not None
        assert out.write(b"d" * 70_000, 70_000, block_until=None) is False  # both slots held
        assert out.fallback == {"too_large": 1, "no_space": 1}
        assert reader.resolve(desc) is not None
        del root
        reader.acquire(mapping, desc["slot"], desc["seq"])  # sweeps the pin: its view is gone
        assert len(reader.pins) == 0
    finally:
        out.close()
    assert not [n for n in os.listdir(shm.SHM_DIR) if n.startswith(f"{shm.PREFIX}test-{os.getpid()}")]


def test_a_block_reader_that_never_maps_the_pool_stalls_its_producer_only_for_the_grace(monkeypatch) -> None:
    """A declared block reader that died before its first descriptor: the writer waits for
    it (back-pressure) only DECLARED_GRACE_S, then writes on."""
    monkeypatch.setattr(shm, "DECLARED_GRACE_S", 0.3)
    out = shm.ShmOutput(f"{shm.PREFIX}test-{os.getpid()}-grace", slots=2, block=[True], min_bytes=1)
    try:
        import time

        assert isinstance(out.write(b"a" * 10, 10, block_until=None), dict)
        assert isinstance(out.write(b"b" * 10, 10, block_until=None), dict)
        assert out.write(b"c" * 10, 10, block_until=time.monotonic() + 0.05) is None  # waits for the reader
        desc = out.write(b"c" * 10, 10, block_until=time.monotonic() + 5)
        assert isinstance(desc, dict) and desc["seq"] == 3
    finally:
        out.close()
