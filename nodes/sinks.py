"""Sinks: JSONL file and console.

JsonlSink — ports: in (any number of wired ports, any kind). One JSON object per
message: the header fields, `t_recv_ns`, and the payload as `record` (records), `text`
(UTF-8 bytes) or `sha256` + `nbytes` (arrays, other bytes; `digest: false` writes only
`nbytes`, for a sink that logs frame timing and should not hash ~1 MB a frame). Flushed
per line, so a killed sink leaves every line it acknowledged. The file is overwritten
at start (`append: true` adds to it instead; a sink restarted within a run always
appends, keeping its predecessor's lines). A path that cannot be opened (missing
directory, no permission) is a startup error: one line, the run exits 1. A write that
fails later (disk full) is reported once (`NodeContext.write_failed`: the run exits 1);
the sink keeps running and counts the messages it could not write as rejected
(``write_error``). Config::

    sink: {kind: jsonl, params: {path: out.jsonl, append: false}, inputs: {in: perceive/events}}

ConsoleSink — prints one readable line per message (records' `type`/`event` first).
`simulate_work_ms` on either sink spends that long per message, to model a slow consumer.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from collections.abc import Iterable
from typing import Any, TextIO

import msgspec

from sensorfuse.engine import wire
from sensorfuse.engine.node import InputSpec, Node, Out


def message_to_json(msg: wire.Message, *, digest: bool = True) -> dict[str, Any]:
    h = msg.header
    obj: dict[str, Any] = {f: getattr(h, f) for f in h.__struct_fields__ if getattr(h, f) not in (None, {})}
    obj["t_recv_ns"] = msg.t_recv_ns
    if h.kind == wire.KIND_RECORD:
        obj["record"] = msg.record
    elif h.kind == wire.KIND_BYTES and h.encoding == "utf-8":
        obj["text"] = msg.text
    elif h.kind != wire.KIND_EOS:
        buf = wire._buffer(msg.payload[0])
        if digest:
            obj["sha256"] = hashlib.sha256(buf).hexdigest()
        obj["nbytes"] = len(buf)
    return obj


def _simulate_work(ms: float) -> None:
    if ms > 0:
        time.sleep(ms / 1000.0)


class JsonlSink(Node):
    class Params(msgspec.Struct, forbid_unknown_fields=True):
        path: str
        digest: bool = True  # sha256 of array / bytes payloads
        simulate_work_ms: float = 0.0
        append: bool = False  # add to an existing file instead of overwriting it

    inputs = {"*": InputSpec(policy="drop_oldest", queue=64)}

    def start(self) -> None:
        append = self.params.append or self.ctx.restarts > 0
        self.file: TextIO | None = open(self.params.path, "a" if append else "w", encoding="utf-8")

    def step(self, port: str, msg: wire.Message) -> Iterable[Out]:
        _simulate_work(self.params.simulate_work_ms)
        if self.file is None:  # an earlier write failed
            self.ctx.reject(msg.header.stream, "write_error")
            return ()
        try:
            self.file.write(json_line(message_to_json(msg, digest=self.params.digest)) + "\n")
            self.file.flush()
        except OSError as exc:
            error = f"{type(exc).__name__}: {exc}"
            self.ctx.log.error("cannot write %s: %s (the sink keeps running, writing nothing)", self.params.path, error)
            self.ctx.write_failed(self.params.path, error)
            self.ctx.reject(msg.header.stream, "write_error")
            self._close()
        return ()

    def stop(self) -> None:
        self._close()

    def _close(self) -> None:
        file, self.file = getattr(self, "file", None), None
        if file is not None:
            try:
                file.close()
            except OSError:
                pass  # the failed flush again: already reported by write_failed


def json_line(obj: Any) -> str:
    """Strict JSON (RFC 8259): a NaN or Inf that reached a record is written as null, since
    bare `NaN` is rejected by strict parsers (Go, Rust serde, browsers' JSON.parse)."""
    try:
        return json.dumps(obj, default=_json_default, allow_nan=False)
    except ValueError:  # only non-finite floats make allow_nan=False raise
        return json.dumps(_finite_or_null(obj), default=_json_default, allow_nan=False)


def _finite_or_null(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_null(v) for v in obj]
    return obj


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj).hex()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def format_event(ev: dict[str, Any]) -> str:
    """One readable line for an event record (docs/protocol.md, "Events")."""
    subject = ev.get("subject") or {}
    what = (subject.get("query") and f"query {subject['query']!r}"
            or subject.get("text") and f"said {subject['text']!r}" or ev.get("key", ""))
    mods = "+".join(ev.get("modalities") or []) or "-"
    extra = f" lasted {ev['duration_ns'] / 1e9:.2f} s" if ev.get("phase") == "end" and "duration_ns" in ev else ""
    return f"{ev['type']:<17} {ev['phase']:<6} {what:<24} score {ev.get('score', 0.0):.2f}  [{mods}]{extra}"


class ConsoleSink(Node):
    class Params(msgspec.Struct, forbid_unknown_fields=True):
        simulate_work_ms: float = 0.0
        every: int = 1  # print one message in `every` per stream (frames are many)

    inputs = {"*": InputSpec(policy="drop_oldest", queue=64)}

    def step(self, port: str, msg: wire.Message) -> Iterable[Out]:
        _simulate_work(self.params.simulate_work_ms)
        h = msg.header
        if h.seq % max(1, self.params.every):
            return ()
        t = h.t_ns / 1e9
        if h.kind == wire.KIND_RECORD:
            rec = msg.record
            if isinstance(rec, dict) and "phase" in rec and "type" in rec:
                line = f"{t:12.3f}  {h.stream:<20} {format_event(rec)}"
            else:
                head = rec.get("type") or rec.get("event") if isinstance(rec, dict) else None
                body = json.dumps(rec, default=_json_default)[:160]
                line = f"{t:12.3f}  {h.stream:<20} {head or ''} {body}"
        elif h.kind == wire.KIND_BYTES and h.encoding == "utf-8":
            line = f"{t:12.3f}  {h.stream:<20} {msg.text!r}"
        else:
            line = f"{t:12.3f}  {h.stream:<20} {h.kind} {h.dtype}{h.shape} seq={h.seq}"
        print(line, file=sys.stdout, flush=True)
        return ()
