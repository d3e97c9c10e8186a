"""`sensorfuse status`: a run's state, node and stream table, from its metrics stream or status.json.

- A run ends with a final state in status.json (`FINAL_STATES`, written by the supervisor's
  `close`); a run whose supervisor is gone without one is `stale`, never shown as running.
- `watch` refreshes until the run ends (final or stale), or, following, for good.
- The default table fits the terminal (80 columns at least): one line per node stream
  with rate, messages, a drop total and p50/p99; `wide=True` adds the per-reason detail.

Liveness per stream follows the declared rate (engine.streams), as openpilot's
SubMaster does: a stream whose measured rate is far below its nominal rate is flagged.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import zmq

from sensorfuse.engine import control, rundir, wire
from sensorfuse.engine.errors import SensorfuseError
from sensorfuse.engine.streams import stream_type

FINAL_STATES = ("finished", "stopped", "failed")
#: A status.json from a supervisor that did not record its pid counts as stale this long after its last write.
UNNAMED_STALE_AFTER_S = 10.0
#: Narrowest width the default table is laid out for.
MIN_WIDTH = 80


def ended(status: dict[str, Any]) -> bool:
    return status["state"] in (*FINAL_STATES, "stale")


def exit_code(status: dict[str, Any]) -> int:
    """`sensorfuse status`'s exit code once the run ended: 0 if it finished or was stopped."""
    return 0 if status["state"] in ("finished", "stopped") else 1


def judge(status: dict[str, Any], written_at: float, now: float) -> dict[str, Any]:
    """`status` as read from status.json (written at `written_at`), marked `stale` when its
    supervisor is gone and it holds no final state: that run will never say more."""
    if status.get("state") in FINAL_STATES:
        return status
    who = status.get("supervisor")
    if isinstance(who, dict) and "pid" in who and "started_at" in who:
        gone = not rundir.supervisor_alive(who)
    else:
        gone = now - written_at > UNNAMED_STALE_AFTER_S
    if not gone:
        return status
    return {**status, "state": "stale", "reported_state": status.get("state"), "stale_since": written_at}


class StatusSource:
    """The newest status of one run: the file once the run ended, else the metrics stream
    while the supervisor publishes, else status.json."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self._sub = zmq.Context.instance().socket(zmq.SUB)
        self._sub.linger = 0
        self._sub.setsockopt(zmq.SUBSCRIBE, b"")
        try:
            self._sub.connect(control.metrics_endpoint(str(run_dir)))
        except zmq.ZMQError:
            pass  # a path too long for ipc:// (no run made it): status.json alone

    def _from_file(self) -> dict[str, Any] | None:
        f = self.run_dir / "status.json"
        try:
            written_at = f.stat().st_mtime
            status = json.loads(f.read_text())
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise SensorfuseError(f"{f}: not a status file ({exc})") from None
        if not isinstance(status, dict) or not {"graph", "state", "nodes"} <= status.keys():
            raise SensorfuseError(f"{f}: not a status file (no graph, state and nodes)")
        return judge(status, written_at, time.time())

    def _from_stream(self, timeout_s: float) -> dict[str, Any] | None:
        newest = None
        try:
            if self._sub.poll(int(timeout_s * 1000)):
                while self._sub.poll(0):  # a backlog: only the newest matters
                    newest = wire.decode_message(self._sub.recv_multipart(copy=False)).record
        except wire.ProtocolError:
            pass  # not a status: fall back to the file
        return newest

    def read(self, timeout_s: float) -> dict[str, Any] | None:
        status = self._from_file()
        if status is not None and ended(status):
            return status
        return self._from_stream(timeout_s) or self._from_file()

    def close(self) -> None:
        self._sub.close(0)


def read_once(run_dir: Path, timeout_s: float = 2.0) -> dict[str, Any] | None:
    source = StatusSource(run_dir)
    try:
        return source.read(timeout_s)
    finally:
        source.close()


def statuses(run_dir: Path, *, follow: bool = False, newest: Callable[[], Path | None] | None = None,
             interval_s: float = 1.0, first_timeout_s: float = 10.0) -> Iterator[tuple[Path, dict[str, Any] | None]]:
    """(run dir, status or None while there is none yet) every `interval_s` until the run
    ends (final or stale): that status comes last. Following, it goes on, and moves to the
    run `newest()` names when that changes. Without one, no status in `first_timeout_s`
    raises SensorfuseError."""
    source = StatusSource(run_dir)
    t0 = time.monotonic()
    try:
        while True:
            tick = time.monotonic()
            status = source.read(interval_s)
            yield source.run_dir, status
            if status is None and not follow and tick - t0 > first_timeout_s:
                raise SensorfuseError(f"no status from {run_dir} in {first_timeout_s:.0f} s: is a run there?")
            if status is not None and ended(status) and not follow:
                return
            if follow and newest is not None and (latest := newest()) not in (None, source.run_dir):
                source.close()
                source = StatusSource(latest)
            time.sleep(max(0.0, interval_s - (time.monotonic() - tick)))
    finally:
        source.close()


def watch(run_dir: Path, *, follow: bool = False, newest: Callable[[], Path | None] | None = None,
          as_json: bool = False, wide: bool = False, is_newest: bool = False,
          interval_s: float = 1.0) -> dict[str, Any] | None:
    """Print the status every `interval_s` (see `statuses`): JSON lines, or the table, on a
    terminal redrawn in place (ANSI), else one table after the other. Returns the last one."""
    tty = sys.stdout.isatty()
    last = None
    for shown_dir, status in statuses(run_dir, follow=follow, newest=newest, interval_s=interval_s):
        last = status
        if as_json:
            if status is not None:
                print(json.dumps(status), flush=True)
            continue
        width = shutil.get_terminal_size().columns
        text = (render(status, width=width, wide=wide, is_newest=is_newest) if status
                else clip(f"waiting for a status from {shown_dir}", width))
        print(("\x1b[H\x1b[J" if tty else "") + text + ("" if tty else "\n"), flush=True)
    return last


# -- the table ----------------------------------------------------------------------------


def _ms(v: float) -> str:
    """Three significant digits, never wider than the number needs: 0.12, 1.23, 12.3, 123, 4567."""
    return f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 100 else f"{v:.0f}"


def _clock(t: float) -> str:
    same_day = time.localtime(t)[:3] == time.localtime()[:3]
    return time.strftime("%H:%M:%S" if same_day else "%Y-%m-%d %H:%M:%S", time.localtime(t))


def _ago(seconds: float) -> str:
    s = max(0, int(seconds))
    for unit, size, up_to in (("s", 1, 120), ("min", 60, 7200), ("h", 3600, 172800)):
        if s < up_to:
            return f"{s // size} {unit}"
    return f"{s // 86400} d"


def _state_line(status: dict[str, Any]) -> str:
    """RUNNING · up 2 min; FINISHED (exit 0) at 14:03:22; STALE (supervisor gone since ...)."""
    state = status["state"]
    if state == "stale":
        since = status["stale_since"]
        word = (f"STALE (supervisor gone since {_clock(since)}, {_ago(time.time() - since)} ago,"
                f" was {str(status.get('reported_state')).upper()})")
    elif state in FINAL_STATES:
        code = status.get("exit_code")
        at = f" at {_clock(status['ended_at'])}" if status.get("ended_at") else ""
        word = f"{state.upper()} (exit {'?' if code is None else code}){at}"
    else:
        word = state.upper()
        started = (status.get("supervisor") or {}).get("started_at")
        if started:
            word += f" · up {_ago(time.time() - started)}"
    return word


def _fingerprint_line(fp: dict[str, Any]) -> str:
    git = f" (git {fp['git'][:12]})" if fp.get("git") else ""
    return (f"sensorfuse {fp.get('sensorfuse')}{git} · onnxruntime {fp.get('onnxruntime')} on "
            f"{', '.join(fp.get('providers') or ['-'])} · {fp.get('cpu')} [{' '.join(fp.get('isa') or [])}]"
            f" · {len(fp.get('models') or {})} models")


def host_lines(status: dict[str, Any]) -> list[str]:
    """One line per host and the nodes on it, for a graph whose nodes run elsewhere (`--ray`:
    the Ray node each landed on); none when every node runs on this host."""
    by_host: dict[str, list[str]] = {}
    for name, node in status["nodes"].items():
        if node.get("host") not in (None, "", "local"):
            by_host.setdefault(node["host"], []).append(name)
    return [f"host {host}: {', '.join(names)}" for host, names in by_host.items()]


def drop_reasons(s: dict[str, Any], dropped: str = "drop:") -> dict[str, int]:
    """A stream's drops by reason, one key each: `dropped` + reason (the node's own policy
    drops), `bad:` + reason (malformed), `rej:` + reason (rejected by the node)."""
    return {**{f"{dropped}{k}": v for k, v in (s.get("dropped") or {}).items()},
            **{f"bad:{k}": v for k, v in (s.get("malformed") or {}).items()},
            **{f"rej:{k}": v for k, v in (s.get("rejected") or {}).items()}}


def _latency(s: dict[str, Any]) -> tuple[float | None, float | None, str]:
    """p50, p99 and a mark: capture → receipt, or publish → receipt marked `*` where capture
    times are not on this host's clock (the footnote)."""
    if s.get("latency_p50_ms") is not None:
        return s["latency_p50_ms"], s["latency_p99_ms"], ""
    if s.get("transit_p50_ms") is not None:
        return s["transit_p50_ms"], s["transit_p99_ms"], "*"
    return None, None, ""


def _slow(node: dict[str, Any], stream: str, s: dict[str, Any]) -> bool:
    st = stream_type(stream)
    return bool(st and st.rate_hz and s and s.get("rate_hz", 0.0) < 0.5 * st.rate_hz and node.get("state") == "running")


def alarms(stream: str | None, s: dict[str, Any]) -> list[str]:
    """Liveness alarms of one stream's counters: an input silent past its liveness bound (its
    publisher is gone or the network to it is cut) and graph consumers not connected."""
    out = []
    if s.get("silent_s"):
        out.append(f"{stream}: nothing heard for {s['silent_s']:.1f} s (publisher gone or network cut)")
    if s.get("consumers_missing"):
        out.append(f"{stream}: {s['consumers_missing']} graph consumer(s) not connected")
    return out


def plane(s: dict[str, Any]) -> str:
    """How a stream's payloads travel as this end sees it: `shm IN_USE/SLOTS` (a producer's
    pool: slots readers hold now of all), `shm` (a reader), or `inline`."""
    info = s.get("shm") or {}
    if info.get("plane") != "shm":
        return "inline"
    return f"shm {info['in_use']}/{info['slots']}" if "slots" in info else "shm"


def _shm_lines(status: dict[str, Any]) -> list[str]:
    """One line: every stream a producer sends through shared memory, slots in use, and
    what its readers lost to recycled slots."""
    recycled: dict[str, int] = {}
    for _, _, stream, s, _, _ in _rows(status):
        if stream:
            recycled[stream] = recycled.get(stream, 0) + (s.get("dropped") or {}).get("slot_recycled", 0)
    parts = [f"{stream} {plane(s)[4:]} slots in use, slot_recycled {recycled.get(stream, 0)}"
             for _, _, stream, s, _, _ in _rows(status) if stream and "slots" in (s.get("shm") or {})]
    return [f"shared memory: {' · '.join(parts)}"] if parts else []


def _rows(status: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], str | None, dict[str, Any], bool, bool]]:
    """(node name, node, stream or None for a node without streams, its counters, first, last)
    for every stream of every node."""
    for name, node in status["nodes"].items():
        streams = list((node.get("streams") or {None: {}}).items())
        for i, (stream, s) in enumerate(streams):
            yield name, node, stream, s, i == 0, i == len(streams) - 1


def _compact(status: dict[str, Any], width: int) -> list[str]:
    """One line per node stream in `width` (>= MIN_WIDTH) columns; what is left over past 80
    goes to long node and stream names."""
    rows = list(_rows(status))
    spare = width - MIN_WIDTH
    node_w = max(9, min(max((len(r[0]) for r in rows), default=0), 9 + spare // 2))
    stream_w = max(19, min(max((len(r[2] or "-") for r in rows), default=0), 19 + spare - (node_w - 9)))
    row = f"{{:<{node_w}}} {{:<9}} {{:>3}} {{:<{stream_w}}} {{:>6}} {{:>8}} {{:>6}}  {{:>12}}"
    lines = [row.format("node", "state", "rst", "stream", "rate/s", "msgs", "drops", "p50/p99 ms")]
    lines.append("-" * len(lines[0]))
    slow_shown = False
    for name, node, stream, s, first, last in rows:
        p50, p99, mark = _latency(s)
        slow = _slow(node, stream or "", s)
        slow_shown |= slow
        counts = (f"{s.get('rate_hz', 0.0):.1f}" + ("!" if slow else ""), s.get("received", 0) + s.get("published", 0),
                  sum(drop_reasons(s).values()) + s.get("lost", 0)) if s else ("", "", "")
        lines.append(row.format(*((clip(name, node_w), node["state"], node["restarts"]) if first else ("", "", "")),
                                clip(stream or "-", stream_w), *counts,
                                f"{_ms(p50)}/{_ms(p99)}{mark}" if p50 is not None else "-"))
        lines += [f"{'':<{node_w}} {alarm}" for alarm in alarms(stream, s)]
        if last and node.get("last_error"):
            lines.append(f"{'':<{node_w}} last error: {node['last_error']}")
    lines += _shm_lines(status)
    lines.append("rst restarts · msgs received+published · drops dropped+lost+malformed+rejected")
    lines.append(("!: under half its declared rate · " if slow_shown else "") + "--wide: drops by reason, all columns")
    return lines


def clip(text: str, width: int | None) -> str:
    """`text` cut to `width` columns, ending in … when cut."""
    return text if width is None or len(text) <= width else text[: width - 1] + "…"


def _wide(status: dict[str, Any]) -> list[str]:
    """Every column, drops by reason, nothing cut."""
    rows = list(_rows(status))
    node_w = max(14, *(len(r[0]) + 2 for r in rows))
    stream_w = max(22, *(len(r[2] or "-") + 2 for r in rows))
    row = f"{{:<{node_w}}}{{:<10}}{{:>8}}  {{:<{stream_w}}}{{:<10}}{{:>8}}{{:>9}}{{:>9}}{{:>7}}  {{:>8}} {{:>8}}  {{}}"
    lines = [row.format("node", "state", "restarts", "stream", "plane", "rate/s", "recv", "pub", "lost", "p50 ms",
                        "p99 ms", "drops/malformed/rejected")]
    lines.append("-" * len(lines[0]))
    for name, node, stream, s, first, last in rows:
        p50, p99, mark = _latency(s)
        reasons = ",".join(f"{k}={v}" for k, v in sorted(drop_reasons(s).items()) if v)
        lines.append(row.format(
            *((name, node["state"], node["restarts"]) if first else ("", "", "")), stream or "-",
            plane(s) if stream else "", f"{s.get('rate_hz', 0.0):.1f}", s.get("received", 0), s.get("published", 0), s.get("lost", 0),
            f"{_ms(p50)}{mark}" if p50 is not None else "-", f"{_ms(p99)}{mark}" if p99 is not None else "-",
            reasons + (" (slow)" if _slow(node, stream or "", s) else "")).rstrip())
        lines += [f"{'':<{node_w}}{alarm}" for alarm in alarms(stream, s)]
        if last and node.get("last_error"):
            lines.append(f"{'':<{node_w}}last error: {node['last_error']}")
    return lines


def render(status: dict[str, Any], *, width: int | None = MIN_WIDTH, wide: bool = False,
           is_newest: bool = False) -> str:
    """The status as text: the default table fits `width` columns (at least `MIN_WIDTH` are
    laid out; narrower terminals get lines cut with …); `wide` has every detail, any width."""
    run = f"run {status['run_dir']}{' (the newest)' if is_newest else ''} · " if status.get("run_dir") else ""
    lines = [f"{run}graph {status['graph']!r} · session {status.get('session', '-')}", _state_line(status)]
    if status.get("fingerprint"):
        lines.append(_fingerprint_line(status["fingerprint"]))
    lines += host_lines(status)
    lines += _wide(status) if wide else _compact(status, max(width or MIN_WIDTH, MIN_WIDTH))
    transit = any(_latency(r[3])[2] for r in _rows(status))
    lines.append("p50/p99: capture → receipt" + ("; * publish → receipt (capture not on this host's clock)"
                                                 if transit else ""))
    return "\n".join(lines if wide else [clip(line, width) for line in lines])
