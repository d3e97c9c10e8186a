"""The wall-clock anchor every log carries: MCAP metadata `clock` (docs/time.md).

Log times stay capture times on the session's time base (deterministic replay: they are
never rewritten); the anchor maps them to real dates. It is one pair — a log time
`t_ns` and the wall-clock time `wall_ns` (Unix epoch, UTC) it corresponds to — plus the
clock `domain` the log times are on:

- ``host_monotonic``: the recording host's CLOCK_MONOTONIC (live graphs); every log time
  maps to a date as ``wall_ns + (log_time - t_ns)``;
- any other domain (e.g. ``replayed``: stamps of an earlier log) may carry no `wall_ns`:
  those log times map to no date.

Writers: the recorder (`host_anchor`), the sample generator and log import (`clock_anchor`
with their own domain). Readers: `wall_ns_at`.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sensorfuse.engine.clock import Clock
from sensorfuse.engine.metrics import CAPTURE_LATENCY_MAX_NS

CLOCK_METADATA = "clock"
HOST_MONOTONIC = "host_monotonic"
REPLAYED = "replayed"


def clock_anchor(t_ns: int, wall_ns: int | None, domain: str) -> dict[str, str]:
    """The `clock` metadata record: log time `t_ns` is wall-clock `wall_ns` (None: unknown)."""
    anchor = {"domain": domain, "t_ns": str(t_ns)}
    if wall_ns is not None:
        anchor["wall_ns"] = str(wall_ns)
        anchor["wall_utc"] = datetime.fromtimestamp(wall_ns / 1e9, timezone.utc).isoformat(timespec="milliseconds")
    return anchor


def host_anchor(t_ns: int, clock: Clock | None = None) -> dict[str, str]:
    """The anchor of a log whose message at `t_ns` was stamped by this host's monotonic
    clock (a live capture, recorded within `CAPTURE_LATENCY_MAX_NS`). A `t_ns` further from
    now is not on this clock (a replayed log's stamps): domain ``replayed``, no date."""
    clock = clock or Clock()
    if 0 <= clock.now_ns() - t_ns <= CAPTURE_LATENCY_MAX_NS:
        return clock_anchor(t_ns, clock.to_wall_ns(t_ns), HOST_MONOTONIC)
    return clock_anchor(t_ns, None, REPLAYED)


def wall_ns_at(metadata: dict[str, dict[str, str]], log_time_ns: int) -> int | None:
    """The wall-clock time (Unix ns) of a log time, through the log's `clock` anchor
    (`LogReader.metadata()`); None when the log has no anchor with a date."""
    anchor = metadata.get(CLOCK_METADATA, {})
    if "wall_ns" not in anchor:
        return None
    return int(anchor["wall_ns"]) + log_time_ns - int(anchor["t_ns"])
