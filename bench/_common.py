"""Helpers shared by the benchmark scripts in bench/.

Benchmarks are run as files (``.venv/bin/python bench/NAME.py``), so this module is
imported as ``_common`` from the script's own directory. It holds only what more than
one benchmark needs: percentiles in microseconds, pacing, a machine description for
docs/benchmarks.md, and Markdown tables. It imports nothing from sensorfuse.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Sequence
from typing import Any

import numpy as np


def percentiles_us(samples_ns: Sequence[int] | np.ndarray, qs: Sequence[float] = (50, 99)) -> list[float]:
    """Percentiles of nanosecond samples, in microseconds (NaN when there are none)."""
    arr = np.asarray(samples_ns, dtype=np.int64)
    if arr.size == 0:
        return [float("nan")] * len(qs)
    return [float(v) / 1e3 for v in np.percentile(arr, qs)]


def sleep_until(t_monotonic_s: float) -> None:
    """Sleep (never spin) until a time.monotonic() deadline.

    Spinning would keep the core awake and flatter latencies that a real sensor loop,
    which sleeps between captures, does not get (see shared/TRANSPORT.md, pitfalls).
    """
    remaining = t_monotonic_s - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)


def machine_description() -> str:
    """One line: CPU model and count, memory, kernel, Python and pyzmq/libzmq versions."""
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gib = float("nan")
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            mem_gib = int(f.readline().split()[1]) / 2**20
    except (OSError, ValueError, IndexError):
        pass
    import zmq  # local: only the description needs it

    return (
        f"{os.cpu_count()}× {model}, {mem_gib:.0f} GiB RAM, Linux {platform.release()}, "
        f"Python {platform.python_version()}, pyzmq {zmq.__version__} / libzmq {zmq.zmq_version()}, "
        f"numpy {np.__version__}"
    )


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table; cells are str()-ed as given."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
