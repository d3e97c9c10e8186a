"""Supervisor <-> node control channel (ROUTER/DEALER over ipc, msgpack maps).

node → supervisor: {"type": "ready"}, {"type": "heartbeat", "metrics": {...}},
                    {"type": "done"}, {"type": "failed", "error": "..."}
supervisor → node: {"type": "start"}, {"type": "stop"}
"""

from __future__ import annotations

from typing import Any

import msgspec

_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder()


def encode(msg: dict[str, Any]) -> bytes:
    return _enc.encode(msg)


def decode(buf: bytes) -> dict[str, Any]:
    out = _dec.decode(buf)
    if not isinstance(out, dict) or "type" not in out:
        raise ValueError("control message is not a map with a 'type'")
    return out


def control_endpoint(run_dir: str) -> str:
    return f"ipc://{run_dir}/control"


def metrics_endpoint(run_dir: str) -> str:
    return f"ipc://{run_dir}/metrics"
