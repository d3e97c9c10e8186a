"""The perceive node over a recorded session, in-process, exactly as the demo graph feeds it.

`dataset.aligned_inputs` cuts the demo aligner's ticks and hands them with the frames to
the node's own code (`NodeHarness`: the real wire encoding, no sockets), so what comes out
equals a lock-step `--rate max` run of the demo graph. For evaluations over many sessions
(`bench/speech_onset.py`, `bench/generalisation.py`) where a graph per session would cost
a process start-up and the model loads each time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sensorfuse.engine.node import Out
from sensorfuse.engine.testing import NodeHarness
from sensorfuse.models.fusion import dataset
from sensorfuse.nodes.perceive import PerceiveNode

STREAMS = {"ticks": "align/ticks", "frame": "cam0/frame", "detections": "perceive/detections",
           "objects": "perceive/objects", "scene": "perceive/scene", "speech": "perceive/speech",
           "sound": "perceive/sound", "events": "perceive/events"}


def perceive_session(session: Path, cache: Path | None = None, **params: Any) -> dict[str, list[dict[str, Any]]]:
    """stream -> its records (each with the header's `t_ns` added as `_t_ns`), in order."""
    h = NodeHarness(PerceiveNode, {**({"cache": str(cache)} if cache else {}), **params}, name="perceive",
                    streams=STREAMS)
    out = []
    try:
        for port, item in dataset.aligned_inputs(session):
            out += h.send(port, item if port == "frame" else Out.record("ticks", item, item["t_ns"]))
        out += h.finish()
    finally:
        h.close()
    by_stream: dict[str, list[dict[str, Any]]] = {}
    for m in out:
        by_stream.setdefault(m.header.stream, []).append({**m.record, "_t_ns": m.header.t_ns})
    return by_stream
