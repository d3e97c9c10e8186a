"""`sensorfuse log view`: recorded logs shown in the same viewer as `--view`.

The logs' messages (a session's inputs and, from a perception recording, perceive's
outputs) are merged in capture-time order and logged as the live viewer node logs them
(`sensorfuse.nodes.view_rerun`), into a web or native viewer or an .rrd file
(`sensorfuse.nodes.view.session`). Damaged messages are counted and skipped.
"""

from __future__ import annotations

import heapq
import os
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack

from sensorfuse.engine import wire
from sensorfuse.nodes.view import ViewSession
from sensorfuse.nodes.view_rerun import DrawSettings, RerunLog, open_recording
from sensorfuse.replay.mcap_io import LogMessage, LogReader


def _topics(path: str) -> set[str]:
    with LogReader(path) as reader:
        if reader.summary is not None:
            return {c.topic for c in reader.summary.channels.values()}
        return {m.topic for m in reader.iter_messages()}  # not finalised: no channel list


def _messages(paths: list[str], topics: set[str]) -> Iterator[LogMessage]:
    with ExitStack() as stack:
        readers = [stack.enter_context(LogReader(p)) for p in paths]
        yield from heapq.merge(*(r.iter_messages(topics) for r in readers), key=lambda m: m.log_time)


def view_logs(paths: list[str], view: ViewSession) -> Counter[str]:
    """Log every message of `paths` to the viewer of `view` (`sensorfuse.nodes.view.session`);
    returns the count of messages drawn per stream, and of damaged ones (``damaged``)."""
    counts: Counter[str] = Counter()
    # the streams a live viewer node would be wired to (one audio stream of two, ...)
    drawn = set(view.node(set().union(*map(_topics, paths)))["inputs"].values())
    recording_id = "log-" + "+".join(os.path.basename(p) for p in paths)
    rec = open_recording(recording_id, **view.params)
    draw = RerunLog(rec, DrawSettings())
    try:
        for m in _messages(paths, drawn):
            try:
                header, _, payload = m.decode()
            except ValueError:
                counts["damaged"] += 1
                continue
            if draw.log(wire.Message(header, [payload])):
                counts[header.stream] += 1
    finally:
        rec.flush()
        rec.disconnect()
    return counts
