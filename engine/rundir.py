"""Per-run directories: ipc sockets, the resolved plan, status.json, logs.

Kept short (under /tmp) because ipc:// paths are limited to ~107 bytes by the kernel.
``RUNS_ROOT/current`` points at the newest run so `sensorfuse status` finds it.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path


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
