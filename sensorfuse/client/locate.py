"""Where a stream of a run is published, and the CurveZMQ keys to reach it.

A run directory holds the graph's resolved plan (``plan.json``): for each stream the node
that produces it (``""`` for a stream an outside program publishes, `external.inputs`)
and the endpoints that node binds, derived as `sensorfuse graph check` prints them. The
newest run is ``RUNS_ROOT/current`` (engine/rundir.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from sensorfuse.engine import rundir
from sensorfuse.engine.errors import StartupError, UsageError
from sensorfuse.engine.security import CurveKeys, is_loopback

#: Run states after which nothing is published any more (status.json `state`).
ENDED_STATES = frozenset({"finished", "stopped", "failed"})
SCHEMES = ("tcp", "ipc", "inproc")

KeysArg = CurveKeys | str | os.PathLike[str] | None


def find_run(run_dir: str | os.PathLike[str] | None) -> tuple[Path, dict[str, Any]]:
    """The run directory (default: the newest run) and its plan; UsageError when there is
    none, it is not a run directory, or the run has ended."""
    if run_dir is None:
        found = rundir.current_run_dir()
        if found is None:
            raise UsageError("no current run: start one with `sensorfuse run GRAPH`, "
                             "or name a run directory (--run-dir) or an endpoint (--endpoint)")
        run_dir = found
    d = Path(run_dir)
    try:
        plan = json.loads((d / "plan.json").read_text())
    except (OSError, ValueError):
        raise UsageError(f"{d} is not a sensorfuse run directory (no readable plan.json)") from None
    try:
        state = json.loads((d / "status.json").read_text()).get("state")
    except (OSError, ValueError, AttributeError):
        state = None  # not written yet: the run is starting
    if state in ENDED_STATES:
        raise UsageError(f"the run in {d} has ended ({state}); start one with `sensorfuse run GRAPH`")
    return d, plan


def stream_endpoint(stream: str, run_dir: str | os.PathLike[str] | None = None) -> tuple[str, str | None]:
    """The endpoint to subscribe to `stream` of a run, and the graph's keys directory.

    The ipc endpoint when its socket is on this host, else a tcp one (`expose:`, or the
    stream crosses hosts); an outside program's stream: the endpoint it binds."""
    d, plan = find_run(run_dir)
    producers: dict[str, str] = plan["producers"]
    if stream not in producers:
        raise UsageError(f"no stream {stream!r} in the run in {d} (its streams: {', '.join(sorted(producers))})")
    keys_dir = plan.get("keys_dir")
    node = producers[stream]
    if node == "":
        return plan["decl"]["external"]["inputs"][stream], keys_dir
    endpoints: list[str] = plan["nodes"][node]["bind"][stream]
    ipc = [ep for ep in endpoints if ep.startswith("ipc://")]
    if any(Path(ep[len("ipc://"):]).exists() for ep in ipc) or len(ipc) == len(endpoints):
        return ipc[0], keys_dir
    return next(ep for ep in endpoints if not ep.startswith("ipc://")), keys_dir


def check_endpoint(endpoint: str) -> str:
    """Refuse what is not a ZeroMQ endpoint (`tcp://HOST:PORT`, `ipc://PATH`) in one line."""
    scheme, sep, rest = endpoint.partition("://")
    if not sep or scheme not in SCHEMES or not rest:
        raise UsageError(f"bad endpoint {endpoint!r}: expected tcp://HOST:PORT or ipc://PATH")
    return endpoint


def load_keys(keys: KeysArg, endpoint: str) -> CurveKeys | None:
    """CurveZMQ keys for a non-loopback endpoint (a keys directory from `sensorfuse keys
    generate DIR`, or loaded keys); None for loopback endpoints, which need none."""
    if keys is None or is_loopback(endpoint):
        return None
    if isinstance(keys, CurveKeys):
        return keys
    try:
        return CurveKeys.load(keys)
    except StartupError as exc:
        raise UsageError(str(exc)) from None
