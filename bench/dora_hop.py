"""dora-rs Python-node hop, for the side-by-side row of bench/transport.py.

dora-rs is not a dependency of sensorfuse: install it into a separate venv,

    python3 -m venv /tmp/dora-venv && /tmp/dora-venv/bin/pip install dora-rs dora-rs-cli numpy pyarrow

and bench/transport.py runs `dora run` on a two-node dataflow per payload (a sender paced
at the payload's rate, stamping CLOCK_MONOTONIC in the metadata just before
`send_output`, and a receiver that stamps it again once the payload is a numpy array),
the same one-way latency the transport bench measures. `measure` returns
{payload name: {p50_us, p99_us, n}} and a `note`, or only a note when dora is absent.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

SENDER = """
import os, time
import numpy as np, pyarrow as pa
from dora import Node
n, rate, size = int(os.environ["N"]), float(os.environ["RATE"]), int(os.environ["SIZE"])
data = pa.array((np.arange(size, dtype=np.int64) % 251).astype(np.uint8))
node = Node()
time.sleep(1.0)  # the receiver's subscription (dora has no readiness handshake for this)
t0 = time.monotonic()
for i in range(n):
    wait = t0 + i / rate - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    node.send_output("data", data, {"t_ns": time.monotonic_ns()})
"""
RECEIVER = """
import json, os, time
from dora import Node
n, lat = int(os.environ["N"]), []
for event in Node():
    if event["type"] == "INPUT":
        usable = event["value"].to_numpy(zero_copy_only=False)
        lat.append(time.monotonic_ns() - event["metadata"]["t_ns"])
        if len(lat) >= n:
            break
    elif event["type"] == "STOP":
        break
json.dump(lat, open(os.environ["OUT"], "w"))
"""
DATAFLOW = """
nodes:
  - id: sender
    path: sender.py
    outputs: [data]
    env: {{N: "{n}", RATE: "{rate}", SIZE: "{size}"}}
  - id: receiver
    path: receiver.py
    inputs: {{data: sender/data}}
    env: {{N: "{n}", OUT: "{out}"}}
"""


def measure(venv: str, payloads: list[tuple[str, float, int]], *, n: int, warmup: int,
            timeout_s: float = 120.0) -> dict[str, Any]:
    """payloads: (name, rate Hz, bytes). Runs each as one dataflow of `warmup` + `n` messages."""
    dora = Path(venv) / "bin" / "dora"
    if not dora.exists():
        return {"note": f"not installed (no {dora})"}
    out: dict[str, Any] = {}
    env = {**os.environ, "PATH": f"{Path(venv) / 'bin'}:{os.environ['PATH']}", "RUST_LOG": "error"}
    version = subprocess.run([str(dora), "--version"], capture_output=True, text=True, env=env,
                             check=False).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="sf-dora-") as tmp:
        Path(tmp, "sender.py").write_text(SENDER)
        Path(tmp, "receiver.py").write_text(RECEIVER)
        for name, rate, size in payloads:
            result = Path(tmp, "lat.json")
            result.unlink(missing_ok=True)
            Path(tmp, "df.yml").write_text(DATAFLOW.format(n=warmup + n, rate=rate, size=size, out=result))
            try:
                subprocess.run([str(dora), "run", "df.yml"], cwd=tmp, env=env, capture_output=True,
                               timeout=timeout_s, check=False)
            except subprocess.TimeoutExpired:
                continue
            if result.exists():
                lat = np.asarray(json.loads(result.read_text())[warmup:], np.int64)
                if lat.size:
                    p50, p99 = np.percentile(lat, [50, 99]) / 1e3
                    out[name] = {"p50_us": float(p50), "p99_us": float(p99), "n": int(lat.size)}
    out["note"] = (f"{version} Python nodes (`dora run`, default shared-memory settings), measured in this run "
                   f"on this machine: {', '.join(k for k in out if k != 'note') or 'no payload completed'}")
    return out
