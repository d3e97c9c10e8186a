"""Per-run directories: ipc sockets, the resolved plan, status.json, logs.

Kept short (under /tmp) because ipc:// paths are limited to ~107 bytes by the kernel.
``RUNS_ROOT/current`` points at the newest run so `sensorfuse status` finds it.
status.json names the supervisor that writes it (pid and process start time), so a
reader can tell a live run from one whose supervisor died without a final word.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path
from typing import Any


def runs_root() -> Path:
    root = os.environ.get("SENSORFUSE_RUNS") or os.path.join(tempfile.gettempdir(), f"sf-{os.getuid()}")
    return Path(root)


def new_run_dir(explicit: str | None = None) -> Path:
    if explicit:
        d = Path(explicit).absolute()
    else:
        d = runs_root() / secrets.token_hex(4)
    (d / "s").mkdir(parents=True, exist_ok=True)
    if len(f"ipc://{d}/s/") > 80:
        raise ValueError(f"run dir {d} is too long for ipc:// endpoints (keep it under ~70 characters)")
    if not explicit:
        link = runs_root() / "current"
        tmp = runs_root() / f".current-{os.getpid()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(d)
        os.replace(tmp, link)
    return d


def current_run_dir() -> Path | None:
    link = runs_root() / "current"
    return link.resolve() if link.exists() else None


def supervisor_identity() -> dict[str, Any]:
    """This process as the writer of a run's status: pid and start time (Unix seconds)."""
    import psutil  # here, not at the top: `sensorfuse.client` finds runs without it

    me = psutil.Process()
    return {"pid": me.pid, "started_at": me.create_time()}


def supervisor_alive(identity: dict[str, Any]) -> bool:
    """Whether the process `supervisor_identity()` described still runs: the same pid with
    the same start time (a pid reused by a later process does not count)."""
    import psutil

    try:
        proc = psutil.Process(int(identity["pid"]))
        # create_time is derived from boot time and clock ticks: equal to well under a second
        return proc.status() != psutil.STATUS_ZOMBIE and abs(proc.create_time() - float(identity["started_at"])) < 1.0
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True  # another user's live process: it exists
