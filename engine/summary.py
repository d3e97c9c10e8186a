"""The one-screen summary `sensorfuse run` prints when a graph ends (stderr, 80 columns).

One line per node (final state, restarts, why it ended) and one per stream (messages
published and received, losses and drops by reason), from the supervisor's merged status
(`Supervisor.status()`): a big graph stays one line per node and per stream.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sensorfuse.engine.status import clip, drop_reasons

WIDTH = 80
#: what a node's final state says when nothing went wrong
_CLEAN_ENDS = {"done": "finished", "stopped": "stopped", "finishing": "finishing"}


def node_ending(node: dict[str, Any]) -> str:
    """Why a node ended, in a few words: its write failure, its error, or its clean end."""
    writes = node.get("write_errors") or {}
    if writes:
        target, error = next(iter(writes.items()))
        return f"could not write {target}: {error}"
    state = node.get("state", "")
    if state == "killed":
        return "killed at the stop deadline"
    if state == "failed" or node.get("restarts"):
        return node.get("last_error") or f"exit codes {node.get('exit_codes')}"
    return _CLEAN_ENDS.get(state, state)


def stream_totals(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per stream: published (its producers), received (all consumers together), and every
    loss and drop by reason (`lost`, `overflow`, `bad:REASON`, `rej:REASON`)."""
    totals: dict[str, dict[str, Any]] = defaultdict(lambda: {"sent": 0, "recv": 0, "drops": defaultdict(int)})
    for node in status.get("nodes", {}).values():
        for stream, s in (node.get("streams") or {}).items():
            t = totals[stream]
            t["sent"] += s.get("published", 0)
            t["recv"] += s.get("received", 0)
            t["drops"]["lost"] += s.get("lost", 0)
            for reason, n in drop_reasons(s, dropped="").items():
                t["drops"][reason] += n
    return dict(totals)


def render(status: dict[str, Any], *, exit_code: int) -> str:
    nodes = status.get("nodes", {})
    streams = stream_totals(status)
    name_w = min(max([len(n) for n in nodes] + [4]), 20)
    stream_w = min(max([len(s) for s in streams] + [6]), 28)
    lines = [clip(f"── run summary: graph {status.get('graph', '')!r}, exit {exit_code} ", WIDTH).ljust(WIDTH, "─")]
    lines.append(f"{'node':<{name_w}}  {'state':<9}{'restarts':>8}  ended")
    for name, node in nodes.items():
        head = f"{clip(name, name_w):<{name_w}}  {node.get('state', '?'):<9}{node.get('restarts', 0):>8}  "
        lines.append(head + clip(node_ending(node), WIDTH - len(head)))
    if streams:
        lines.append(f"{'stream':<{stream_w}}{'sent':>9}{'recv':>9}  lost and drops")
        for stream, t in sorted(streams.items()):
            drops = " ".join(f"{reason}={n}" for reason, n in sorted(t["drops"].items()) if n) or "none"
            head = f"{clip(stream, stream_w):<{stream_w}}{t['sent']:>9}{t['recv']:>9}  "
            lines.append(head + clip(drops, WIDTH - len(head)))
    return "\n".join(lines)
