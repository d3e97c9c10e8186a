"""SIGKILL the recorder of a real running graph; recover the log with the `mcap` library alone."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any, Callable

import pytest
from mcap.exceptions import McapError
from mcap.reader import NonSeekingReader
from mcap_protobuf.decoder import DecoderFactory
from sfhelpers import wait_for

pytestmark = pytest.mark.timeout(90)

RATE_HZ = 100
FLUSH_S = 0.5


def _recover(path: Path) -> list[tuple[int, int]]:
    """(frame index, t_ns) of every message recoverable from a possibly truncated log, using
    only the mcap library: read records until the file ends mid-record."""
    out: list[tuple[int, int]] = []
    with open(path, "rb") as f:
        reader = NonSeekingReader(f, validate_crcs=True, decoder_factories=[DecoderFactory()])
        try:
            for _, _, message, decoded in reader.iter_decoded_messages(log_time_order=False):
                out.append((int.from_bytes(decoded.data[:8], "little"), message.log_time))
        except McapError:
            pass  # EndOfFile inside the last (incomplete) record: everything before it is back
    return out


def test_sigkill_mid_run_loses_at_most_the_last_chunk(tmp_path: Path, graph_run: Callable[..., Any]) -> None:
    log = tmp_path / "crash.mcap"
    run = graph_run({
        "name": "crash",
        "nodes": {
            "camera": {"kind": "synthetic", "params": {"rate_hz": RATE_HZ, "shape": [24, 32, 3]},
                       "outputs": {"out": "cam0/frame"}},
            "recorder": {"kind": "recorder", "params": {"path": str(log), "flush_s": FLUSH_S},
                         "inputs": {"frames": "cam0/frame"}},
        },
    })
    run.wait_running()
    wait_for(lambda: log.exists() and len(_recover(log)) >= RATE_HZ, 30, "a second of recorded frames")
    pid = run.node("recorder")["pid"]
    os.kill(pid, signal.SIGKILL)
    killed_at_ns = time.monotonic_ns()  # same host, same clock as the synthetic t_ns
    run.cleanup()  # stop the graph so no restarted recorder runs on (it would write crash.1.mcap anyway)

    recovered = _recover(log)
    indices = [i for i, _ in recovered]
    assert indices == list(range(len(indices))), "recovered messages must be a gap-free prefix"
    lost_window_s = (killed_at_ns - recovered[-1][1]) / 1e9
    lost_estimate = round(lost_window_s * RATE_HZ)
    print(f"\nSIGKILL recovery: {len(recovered)} messages back, last {lost_window_s:.3f} s "
          f"(~{lost_estimate} messages at {RATE_HZ} Hz) lost; flush interval {FLUSH_S} s")
    # At most the open chunk (one flush interval) plus scheduling slack on a loaded 2-core box.
    assert lost_window_s < FLUSH_S + 0.75
