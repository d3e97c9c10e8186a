"""`sensorfuse status`: a live table of a running graph from its metrics stream.

Liveness per stream follows the declared rate (engine.streams), as openpilot's
SubMaster does: a stream whose measured rate is far below its nominal rate is flagged.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import zmq

from sensorfuse.engine import control, wire
from sensorfuse.engine.streams import stream_type


def read_once(run_dir: Path, timeout_s: float = 2.0) -> dict[str, Any] | None:
    """The newest status: from the metrics stream if it speaks in time, else status.json."""
    zctx = zmq.Context.instance()
    sub = zctx.socket(zmq.SUB)
    sub.linger = 0
    sub.connect(control.metrics_endpoint(str(run_dir)))
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    try:
        if sub.poll(int(timeout_s * 1000)):
            msg = wire.decode_message(sub.recv_multipart(copy=False))
            return msg.record
    except wire.ProtocolError:
        pass  # fall back to the file below
    finally:
        sub.close(0)
    f = run_dir / "status.json"
    return json.loads(f.read_text()) if f.exists() else None


def _fmt_reasons(d: dict[str, int]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(d.items()) if v)


def render(status: dict[str, Any]) -> str:
    lines = [f"graph {status['graph']!r}  state {status['state'].upper()}  session {status.get('session', '')}"]
    fp = status.get("fingerprint")
    if fp:
        git = f" (git {fp['git'][:12]})" if fp.get("git") else ""
        lines.append(f"sensorfuse {fp.get('sensorfuse')}{git} · onnxruntime {fp.get('onnxruntime')} on "
                     f"{', '.join(fp.get('providers') or ['-'])} · {fp.get('cpu')} [{' '.join(fp.get('isa') or [])}]"
                     f" · {len(fp.get('models') or {})} models")
    transit_shown = False
    header = f"{'node':<14}{'state':<10}{'restarts':>8}  {'stream':<22}{'rate/s':>8}{'recv':>8}{'pub':>8}{'lost':>6}  {'p50 ms':>7}{'p99 ms':>7}  drops/malformed"
    lines.append(header)
    lines.append("-" * len(header))
    for name, n in status["nodes"].items():
        streams = n.get("streams") or {"-": {}}
        first = True
        for stream, s in streams.items():
            st = stream_type(stream)
            rate = s.get("rate_hz", 0.0)
            flag = ""
            if st and st.rate_hz and s and rate < 0.5 * st.rate_hz and n.get("state") == "running":
                flag = " (slow)"
            drops = _fmt_reasons({**{f"drop:{k}": v for k, v in s.get("dropped", {}).items()},
                                  **{f"bad:{k}": v for k, v in s.get("malformed", {}).items()},
                                  **{f"rej:{k}": v for k, v in s.get("rejected", {}).items()}})
            p50, p99, mark = s.get("latency_p50_ms"), s.get("latency_p99_ms"), " "
            if p50 is None and s.get("transit_p50_ms") is not None:  # not on this host's clock: see the footnote
                p50, p99, mark = s["transit_p50_ms"], s["transit_p99_ms"], "*"
                transit_shown = True
            lines.append(
                (f"{name:<14}{n['state']:<10}{n['restarts']:>8}  " if first else " " * 34)
                + f"{stream:<22}{rate:>8.1f}{s.get('received', 0):>8}{s.get('published', 0):>8}{s.get('lost', 0):>6}  "
                + (f"{p50:>7.2f}{p99:>6.2f}{mark}" if p50 is not None else f"{'-':>7}{'-':>7}")
                + f"  {drops}{flag}"
            )
            first = False
        if n.get("last_error"):
            lines.append(f"{'':<14}last error: {n['last_error']}")
    lines.append("p50/p99: capture → receipt" + ("; * publish → receipt (capture times not on this host's clock,"
                                                   " e.g. replay)" if transit_shown else ""))
    return "\n".join(lines)


def watch(run_dir: Path, interval_s: float = 1.0) -> None:
    while True:
        status = read_once(run_dir)
        print("\x1b[2J\x1b[H" + (render(status) if status else f"no status from {run_dir}"), flush=True)
        time.sleep(interval_s)
