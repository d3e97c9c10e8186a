"""Fault: the recorder on a slow disk held about twice `cache_mb` (issue 16, item 8, the
memory part): the batch being written was no longer counted, so the cache refilled to
the cap meanwhile. Now the cap covers queued and in-flight bytes together; what does not
fit is dropped and counted (`cache_full`).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from sensorfuse.engine import wire
from sensorfuse.engine.testing import NodeHarness
from sensorfuse.replay.recorder import RecorderNode
from tests.replay.replay_helpers import GatedFile

KB = 1000


def frame(seq: int, nbytes: int) -> wire.Message:
    return wire.build_message("cam0/frame", wire.KIND_TENSOR, np.zeros(nbytes, np.uint8), seq=seq, t_ns=seq * 10**6)


def test_queued_plus_in_flight_bytes_stay_under_the_cap(tmp_path: Path) -> None:
    gate, entered = threading.Event(), threading.Event()

    class SlowDiskRecorder(RecorderNode):
        opener = staticmethod(lambda path: GatedFile(path, gate, entered))

    cap = 100 * KB
    h = NodeHarness(SlowDiskRecorder, {"path": str(tmp_path / "slow.mcap"), "cache_mb": cap / 1e6})
    h.send("in", frame(0, 90 * KB))  # taken by the writer, stuck in the write
    assert entered.wait(10)
    for seq in range(1, 40):
        h.send("in", frame(seq, 10 * KB))
    writer = h.node.writer
    queued = sum(size for *_, size in writer.cache)
    held = queued + 90 * KB  # plus the frame being written
    assert held <= cap + 10 * KB, f"{held / KB:.0f} kB held for a {cap / KB:.0f} kB cache"
    dropped = writer.stats.dropped[("cam0/frame", "cache_full")]
    gate.set()
    summary = h.finish()[-1].record
    h.close()
    assert sum(summary["written"].values()) + dropped == 40
