"""Transport benchmark: the engine's publisher→subscriber hop against raw pyzmq.

Run::

    .venv/bin/python bench/transport.py            # full run, ~1.5 min on 2 cores
    .venv/bin/python bench/transport.py --quick    # smoke run, ~20 s
    .venv/bin/python bench/transport.py --json out.json   # also dump every sample

Three transports side by side: raw pyzmq, the engine inline (as today for tcp, `expose`
and plain subscribers) and the engine through shared memory (`sensorfuse.engine.shm`:
the payload in a pool slot, a descriptor on the stream's shm channel, the receiver
leasing the slot as `engine.runtime` does); plus a fan-in trial (four 640×480×3 streams at
30 Hz into one consumer, inline vs shm) and, when a dora-rs venv is there
(`--dora-venv`, bench/dora_hop.py), dora-rs's Python-node hop measured in the same run.

For each payload in `PAYLOADS` (1 KB events @100 Hz, 64 KiB audio blocks @50 Hz,
640×480×3 and 1920×1080×3 uint8 frames @30 Hz) one run measures:

- **paced one-way latency**: a sender process publishes at the stream's rate; a receiver
  process stamps CLOCK_MONOTONIC once the payload is usable (an ndarray view or a decoded
  record). Latency = that stamp − the sender's stamp taken just before encoding, carried
  in the header frame. CLOCK_MONOTONIC is shared by all processes of one host.
- **throughput at saturation**: the sender publishes as fast as it can for a fixed time
  with back-pressure, so nothing may be lost; the receiver counts.

Both sides use the same socket pattern: XPUB binds, SUB connects, ipc://, multipart
``[topic, header, payload]``, zero-copy send when the message is ≥ 64 KiB (pyzmq copies
smaller frames anyway), ``recv(copy=False)``, SNDHWM 64 (what engine.runtime uses) and the
subscriber's RCVHWM, a readiness handshake on the XPUB subscription instead of sleeps.

- raw: header = 16 bytes (seq, t_send_ns); the receiver blocks in ``recv_multipart``,
  then builds ``np.frombuffer`` (frames, audio) or msgspec-decodes the record (events).
  Saturation: XPUB_NODROP and a blocking send.
- engine: `sensorfuse.engine.transport.Publisher` → `sensorfuse.engine.transport.Subscriber` with
  `wire.encode_message` / `wire.decode_message`; the receiver polls, `drain()`s and
  `pop()`s like `sensorfuse.engine.runtime`, then reads `Message.array` / `Message.record`. Paced:
  policy drop_oldest with the queue in `PAYLOADS` (deep enough that nothing drops).
  Saturation: policy block, so the Publisher runs with XPUB_NODROP.

Sender and receiver are two long-lived processes (multiprocessing, spawn); each trial
gets fresh sockets on a fresh endpoint, and the sender closes its socket only after the
receiver has seen the end marker (see `_hold_until_received`). Raw and engine trials
alternate in ABBA order (raw, engine, engine, raw, ...) so linear drift on a noisy VM
cancels; latency percentiles pool all samples of a (payload, transport) pair, the first
`WARMUP` messages of each trial excluded. A trial where either side stalls for `STALL_S`
or fails is rerun on fresh worker processes and listed at the end of the report.

To measure a candidate engine change against raw pyzmq, run this script with the Python
of a venv where the candidate checkout is installed (``pip install -e /path/to/other``):
the engine is imported as ``sensorfuse.engine`` from wherever that venv installed it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing as mp
import os
import shutil
import struct
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import msgspec
import numpy as np
import zmq
from _common import machine_description, markdown_table, percentiles_us, sleep_until

from sensorfuse.engine import shm, wire
from sensorfuse.engine.metrics import Counters
from sensorfuse.engine.transport import ZERO_COPY_MIN_BYTES, Publisher, Subscriber


@dataclass(frozen=True)
class Payload:
    name: str
    stream: str
    kind: str  # wire.KIND_RECORD | KIND_AUDIO | KIND_TENSOR
    rate_hz: float
    shape: tuple[int, ...] = ()
    dtype: str = "uint8"
    #: Engine subscriber queue (drop_oldest when paced, block at saturation); raw RCVHWM matches.
    queue: int = 16
    #: Issue 2's target for this payload: "ratio" (p50 ≤ 1.2× raw) or "delta" (≤ raw + 100 µs).
    target: str = "ratio"


#: Queues follow engine.streams (events 256, audio 100); frames use drop_oldest with a
#: small queue instead of the table's `latest` so a paced run loses nothing.
PAYLOADS: tuple[Payload, ...] = (
    Payload("1 KB event", "bench/events", wire.KIND_RECORD, 100.0, queue=256, target="delta"),
    Payload("64 KiB audio", "bench/audio", wire.KIND_AUDIO, 50.0, (2048, 8), "float32", queue=100, target="none"),
    Payload("320×240×3", "cam_qvga/frame", wire.KIND_TENSOR, 30.0, (240, 320, 3), "uint8", queue=4, target="none"),
    Payload("640×480×3", "cam_vga/frame", wire.KIND_TENSOR, 30.0, (480, 640, 3), "uint8", queue=4),
    Payload("1920×1080×3", "cam_hd/frame", wire.KIND_TENSOR, 30.0, (1080, 1920, 3), "uint8", queue=4),
)
PAYLOAD_BY_NAME = {p.name: p for p in PAYLOADS}

RATIO_TARGET = 1.2
DELTA_TARGET_US = 100.0
EVENT_BYTES = 1024
SNDHWM = 64  # engine.runtime builds every Publisher with hwm=64
WARMUP = 5  # messages sent before each paced trial's measured ones
SETUP_TIMEOUT_S = 10.0
#: Slack over a trial's expected length before a side is declared stalled (then retried).
STALL_S = 2.0
#: A trial that stalls or fails is rerun on fresh worker processes this many times.
MAX_RETRIES = 3
RAW_HEADER = struct.Struct("<qq")  # seq (-1 ends the trial), t_send_ns
RAW_END = -1
#: Transports compared: raw pyzmq, the engine inline (the plain channel), the engine through
#: shared memory (descriptors on the shm channel, payloads in a pool of SHM_SLOTS slots).
MODES = ("raw", "engine", "shm")
SHM_SLOTS = 8
#: The fan-in trial: this many 640×480×3 streams at 30 Hz into one consumer.
FANIN_STREAMS = 4


# -- payload data ---------------------------------------------------------------------------
def _event_record(nbytes: int = EVENT_BYTES) -> dict[str, Any]:
    """A fused-event-like record whose msgpack encoding is exactly `nbytes` long."""
    record: dict[str, Any] = {
        "event": "speaker_identified", "track_id": 7, "label": "person", "score": 0.93,
        "box": [412.5, 118.0, 96.25, 140.75], "members": ["cam0/frame", "mic0/audio16k"], "text": "",
    }
    base = len(msgspec.msgpack.encode(record))
    record["text"] = "x" * (nbytes - base)
    # A str longer than 31 bytes needs a longer msgpack length prefix: trim to fit.
    record["text"] = "x" * (len(record["text"]) - (len(msgspec.msgpack.encode(record)) - nbytes))
    assert len(msgspec.msgpack.encode(record)) == nbytes
    return record


def _payload_data(p: Payload) -> Any:
    if p.kind == wire.KIND_RECORD:
        return _event_record()
    # Non-constant contents so no layer can shortcut zero pages; allocated (and faulted
    # in) once and reused, so both transports measure moving bytes, not allocating them.
    n = int(np.prod(p.shape))
    return (np.arange(n, dtype=np.int64) % 251).astype(p.dtype).reshape(p.shape)


# -- sender -----------------------------------------------------------------------------------
def _wait_for_subscription(sock: zmq.Socket, subscribed: Any) -> None:
    """Readiness handshake: block until `subscribed()` is true (XPUB saw the SUB)."""
    deadline = time.monotonic() + SETUP_TIMEOUT_S
    while not subscribed():
        if time.monotonic() > deadline:
            raise TimeoutError("no subscription reached the publisher")
        sock.poll(10, zmq.POLLIN)


def _hold_until_received(conn: Connection) -> None:
    """Keep the publisher open until the parent says the receiver has everything.

    Closing an XPUB right after the last send lost the tail of the stream, end marker
    included, in 2-5 of 20 saturated trials with plain pyzmq, linger or not (see
    docs/benchmarks.md, Transport), so the sender closes only after the receiver is done.
    """
    conn.send(("sent",))
    if not conn.poll(SETUP_TIMEOUT_S + 60.0):
        raise TimeoutError("parent never allowed the publisher to close")
    cmd = conn.recv()
    if cmd != ("close",):
        raise RuntimeError(f"expected ('close',), got {cmd!r}")


def _send_loop(trial: dict[str, Any], rate_hz: float, saturate: bool,
               send_one: Callable[[int, int], None]) -> tuple[int, float, float]:
    """The one sending schedule both transports run: paced at `rate_hz` for warm-up + n
    messages, or as fast as possible for `duration_s`. Returns (sent, wall s, CPU s)."""
    period = 1.0 / rate_hz
    count = WARMUP + trial["n"] if not saturate else 0
    cpu0, t0 = time.process_time(), time.monotonic()
    t_end = t0 + trial["duration_s"]
    seq = 0
    while (seq < count) if not saturate else (time.monotonic() < t_end):
        if not saturate:
            sleep_until(t0 + seq * period)
        send_one(seq, time.monotonic_ns())
        seq += 1
    return seq, time.monotonic() - t0, time.process_time() - cpu0


def _send_raw(zctx: zmq.Context, trial: dict[str, Any], conn: Connection) -> dict[str, Any]:
    p = PAYLOAD_BY_NAME[trial["payload"]]
    data = _payload_data(p)
    saturate = trial["pattern"] == "saturate"
    sock = zctx.socket(zmq.XPUB)
    try:
        sock.sndhwm = SNDHWM
        sock.sndtimeo = int(STALL_S * 1000)  # a stalled consumer fails the trial instead of hanging it
        if saturate:
            sock.setsockopt(zmq.XPUB_NODROP, 1)  # a full pipe blocks send() instead of dropping
        sock.bind(trial["endpoint"])
        conn.send(("bound",))
        subs = [0]

        def subscribed() -> bool:
            while True:
                try:
                    msg = sock.recv(zmq.NOBLOCK)
                except zmq.Again:
                    return subs[0] > 0
                if msg[:1] == b"\x01":
                    subs[0] += 1

        _wait_for_subscription(sock, subscribed)
        topic = p.stream.encode("utf-8")
        encoder = msgspec.msgpack.Encoder()

        def send_one(seq: int, t_send: int) -> None:
            body = encoder.encode(data) if p.kind == wire.KIND_RECORD else memoryview(data).cast("B")
            copy = len(body) < ZERO_COPY_MIN_BYTES
            sock.send_multipart([topic, RAW_HEADER.pack(seq, t_send), body], copy=copy)

        seq, wall, cpu = _send_loop(trial, p.rate_hz, saturate, send_one)
        sock.send_multipart([topic, RAW_HEADER.pack(RAW_END, 0), b""])
        _hold_until_received(conn)
    finally:
        sock.close(linger=int(STALL_S * 1000))
    return {"sent": seq, "wall_s": wall, "cpu_s": cpu}


def _send_engine(zctx: zmq.Context, trial: dict[str, Any], conn: Connection) -> dict[str, Any]:
    p = PAYLOAD_BY_NAME[trial["payload"]]
    data = _payload_data(p)
    saturate = trial["pattern"] == "saturate"
    k = trial.get("streams", 1)
    pubs = []
    for i in range(k):
        out = None
        if trial["mode"] == "shm":
            out = shm.ShmOutput(f"{shm.PREFIX}bench-{os.getpid()}-{trial['endpoint'].rsplit('/', 1)[-1]}-{i}",
                                slots=SHM_SLOTS, block=[saturate], min_bytes=trial["shm_min_bytes"])
        pubs.append(Publisher(zctx, _stream(p, i), [_endpoint(trial, i)], nodrop=saturate, hwm=SNDHWM, shm=out))
    try:
        conn.send(("bound",))
        for pub in pubs:
            _wait_for_subscription(pub.sock, lambda pub=pub: pub.poll_subscriptions() > 0)
        audio_frames = p.shape[0] if p.kind == wire.KIND_AUDIO else 0

        def send_one(seq: int, t_send: int) -> None:
            # The call engine.runtime.publish makes; t_ns is the capture stamp.
            for pub in pubs:
                frames = wire.encode_message(
                    pub.stream, p.kind, data, seq=seq, t_ns=t_send, t_pub_ns=time.monotonic_ns(), src="bench",
                    session="bench", layout="HWC/bgr8" if p.kind == wire.KIND_TENSOR else None,
                    rate=48_000 if audio_frames else None, sample0=seq * audio_frames if audio_frames else None,
                )
                if not pub.send(frames, block_until=time.monotonic() + STALL_S):
                    raise TimeoutError(f"engine publisher blocked for {STALL_S} s")

        seq, wall, cpu = _send_loop(trial, p.rate_hz, saturate, send_one)
        for pub in pubs:
            eos = wire.encode_message(pub.stream, wire.KIND_EOS, None, seq=seq, t_ns=time.monotonic_ns())
            if not pub.send(eos, block_until=time.monotonic() + STALL_S):
                raise TimeoutError(f"engine publisher could not send EOS within {STALL_S} s")
        _hold_until_received(conn)
    finally:
        for pub in pubs:
            pub.close(linger_ms=int(STALL_S * 1000))
    return {"sent": seq * k, "wall_s": wall, "cpu_s": cpu}


def _endpoint(trial: dict[str, Any], i: int) -> str:
    return trial["endpoint"] if i == 0 else f"{trial['endpoint']}-{i}"


def _stream(p: Payload, i: int) -> str:
    """The fan-in's i-th stream (each its own end of stream)."""
    return p.stream if i == 0 else f"{p.stream}{i}"


# -- receiver ---------------------------------------------------------------------------------
def _recv_raw(zctx: zmq.Context, trial: dict[str, Any], conn: Connection) -> dict[str, Any]:
    p = PAYLOAD_BY_NAME[trial["payload"]]
    decoder = msgspec.msgpack.Decoder()
    is_record = p.kind == wire.KIND_RECORD
    latencies: list[int] = []
    seqs: list[int] = []
    t_first = t_last = 0
    cpu0 = time.process_time()
    sock = zctx.socket(zmq.SUB)
    try:
        sock.rcvhwm = max(2, p.queue)  # what engine.transport.Subscriber sets for this queue
        sock.rcvtimeo = int(STALL_S * 1000)
        sock.connect(trial["endpoint"])
        sock.setsockopt(zmq.SUBSCRIBE, p.stream.encode("utf-8"))
        while True:
            try:
                parts = sock.recv_multipart(copy=False)
            except zmq.Again:
                raise TimeoutError(f"raw receiver got nothing for {STALL_S} s after {len(seqs)} messages") from None
            seq, t_send = RAW_HEADER.unpack(parts[1].buffer)
            if seq == RAW_END:
                break
            # Keep the usable payload alive like a consumer would (the engine side does too).
            usable = decoder.decode(parts[2].buffer) if is_record else (  # noqa: F841
                np.frombuffer(parts[2].buffer, dtype=p.dtype).reshape(p.shape))
            t_recv = time.monotonic_ns()
            latencies.append(t_recv - t_send)
            seqs.append(seq)
            t_first = t_first or t_recv
            t_last = t_recv
    finally:
        sock.close(linger=0)
    return {"lat_ns": latencies, "seqs": seqs, "t_first_ns": t_first, "t_last_ns": t_last,
            "cpu_s": time.process_time() - cpu0, "dropped": 0}


def _recv_engine(zctx: zmq.Context, trial: dict[str, Any], conn: Connection) -> dict[str, Any]:
    p = PAYLOAD_BY_NAME[trial["payload"]]
    policy = "block" if trial["pattern"] == "saturate" else "drop_oldest"
    counters = Counters()
    timeout_ms = int(STALL_S * 1000)
    is_record = p.kind == wire.KIND_RECORD
    latencies: list[int] = []
    seqs: list[int] = []
    t_first = t_last = 0
    cpu0 = time.process_time()
    k = trial.get("streams", 1)
    ended = 0
    subs = [Subscriber(zctx, "in", _stream(p, i), [_endpoint(trial, i)], policy=policy, queue=p.queue, counters=counters,
                       shm=shm.PoolReader(0, policy == "block") if trial["mode"] == "shm" else None)
            for i in range(k)]
    try:
        # The shape of engine.runtime's node loop: one Poller, poll, drain, then pop and use
        # (a payload in shared memory under a lease, as `NodeRunner._step` holds it).
        poller = zmq.Poller()
        for sub in subs:
            poller.register(sub.sock, zmq.POLLIN)
        while ended < k:
            if not any(sub.pending for sub in subs) and not poller.poll(timeout_ms):
                raise TimeoutError(f"engine receiver got nothing for {STALL_S} s after {len(seqs)} messages")
            for sub in subs:
                sub.drain()
                while (msg := sub.pop()) is not None:
                    if msg.header.kind == wire.KIND_EOS:
                        ended += 1
                        break
                    lease = sub.hold(msg) if msg.shm is not None else None
                    if msg.shm is not None and lease is None:
                        continue  # recycled: counted in `dropped`
                    usable = msg.record if is_record else msg.array  # the work a consumer does
                    t_recv = time.monotonic_ns()
                    del usable  # before `let_go`: a view kept past it would pin the slot
                    if lease is not None:
                        sub.let_go(msg, lease)
                    latencies.append(t_recv - msg.header.t_ns)
                    seqs.append(msg.header.seq)
                    t_first = t_first or t_recv
                    t_last = t_recv
    finally:
        for sub in subs:
            sub.close()
    dropped = sum(sum(s.dropped.values()) + sum(s.malformed.values()) for s in counters.streams.values())
    return {"lat_ns": latencies, "seqs": seqs, "t_first_ns": t_first, "t_last_ns": t_last,
            "cpu_s": time.process_time() - cpu0, "dropped": dropped}


RUNNERS = {
    ("sender", "raw"): _send_raw, ("sender", "engine"): _send_engine, ("sender", "shm"): _send_engine,
    ("receiver", "raw"): _recv_raw, ("receiver", "engine"): _recv_engine, ("receiver", "shm"): _recv_engine,
}


def _worker(role: str, conn: Connection) -> None:
    """A long-lived sender or receiver process: run trials until told to quit.

    A failed trial is reported as ("error", traceback); the parent then replaces both
    workers, so no socket or context state leaks into the next trial.
    """
    zctx = zmq.Context()
    try:
        while True:
            cmd, *args = conn.recv()
            if cmd == "quit":
                return
            trial = args[0]
            try:
                result = RUNNERS[(role, trial["mode"])](zctx, trial, conn)
            except Exception:
                conn.send(("error", traceback.format_exc()))
                continue
            conn.send(("done", result))
    finally:
        zctx.destroy(linger=0)


# -- orchestration ------------------------------------------------------------------------------
class TrialFailed(RuntimeError):
    pass


class Bench:
    """Owns the two worker processes and runs trials on them."""

    def __init__(self) -> None:
        self.rundir = tempfile.mkdtemp(prefix="sf-bench-transport-")
        self.shm_min_bytes = shm.DEFAULT_MIN_BYTES
        self.conns: dict[str, Connection] = {}
        self.procs: dict[str, Any] = {}
        self.trial_no = 0
        #: One line per trial that had to be rerun: reported with the results.
        self.retries: list[str] = []
        self._start_workers()

    def _start_workers(self) -> None:
        spawn = mp.get_context("spawn")
        for role in ("sender", "receiver"):
            parent_end, child_end = spawn.Pipe()
            proc = spawn.Process(target=_worker, args=(role, child_end), name=f"bench-{role}", daemon=True)
            proc.start()
            child_end.close()
            self.conns[role], self.procs[role] = parent_end, proc

    def _stop_workers(self, *, graceful: bool) -> None:
        for role, conn in self.conns.items():
            proc = self.procs[role]
            if graceful:
                try:
                    conn.send(("quit",))
                except OSError:
                    pass  # already gone
                proc.join(timeout=10)
            if proc.exitcode is None:
                proc.terminate()
                proc.join(timeout=5)
            if proc.exitcode is None:
                proc.kill()
                proc.join()
            conn.close()

    def _expect(self, role: str, what: str, timeout_s: float) -> Any:
        conn = self.conns[role]
        if not conn.poll(timeout_s):
            raise TrialFailed(f"{role} sent no {what!r} within {timeout_s:.0f} s")
        reply = conn.recv()
        if reply[0] == "error":
            raise TrialFailed(f"{role}: {reply[1].strip().splitlines()[-1]}")
        if reply[0] != what:
            raise TrialFailed(f"{role} sent {reply[0]!r}, expected {what!r}")
        return reply[1] if len(reply) > 1 else None

    def run(self, mode: str, payload: Payload, pattern: str, *, n: int = 0, duration_s: float = 0.0,
            streams: int = 1) -> dict[str, Any]:
        """One trial; a trial that stalls or fails is rerun on fresh workers (MAX_RETRIES)."""
        for attempt in range(MAX_RETRIES + 1):
            try:
                return self._run_once(mode, payload, pattern, n=n, duration_s=duration_s, streams=streams)
            except TrialFailed as exc:
                note = f"{pattern} {payload.name} {mode}: {exc}"
                if attempt == MAX_RETRIES:
                    raise TrialFailed(f"gave up after {MAX_RETRIES + 1} attempts: {note}") from None
                self.retries.append(note)
                print(f"\nretrying ({note})", file=sys.stderr, flush=True)
                self._stop_workers(graceful=False)
                self._start_workers()
        raise AssertionError("unreachable")

    def _run_once(self, mode: str, payload: Payload, pattern: str, *, n: int, duration_s: float,
                  streams: int) -> dict[str, Any]:
        self.trial_no += 1
        expected_s = (WARMUP + n) / payload.rate_hz if pattern != "saturate" else duration_s
        trial = {
            "mode": mode, "payload": payload.name, "pattern": pattern, "n": n, "duration_s": duration_s,
            "endpoint": f"ipc://{self.rundir}/t{self.trial_no}", "streams": streams,
            "shm_min_bytes": self.shm_min_bytes,
        }
        limit_s = SETUP_TIMEOUT_S + expected_s + 3 * STALL_S
        # Bind before connect: a SUB connecting to a missing ipc path waits a reconnect interval.
        self.conns["sender"].send(("run", trial))
        self._expect("sender", "bound", SETUP_TIMEOUT_S + 20.0)
        self.conns["receiver"].send(("run", trial))
        # Collect both sides before judging; the sender closes only once the receiver is done.
        replies: dict[str, Any] = {}
        errors: list[str] = []
        for role, what in (("sender", "sent"), ("receiver", "done")):
            try:
                replies[role] = self._expect(role, what, limit_s)
            except TrialFailed as exc:
                errors.append(str(exc))
        if errors:
            raise TrialFailed("; ".join(errors))
        self.conns["sender"].send(("close",))
        replies["sender"] = self._expect("sender", "done", limit_s)
        sent, got = replies["sender"], replies["receiver"]
        skip = WARMUP if pattern != "saturate" else 0
        got["lost"] = sent["sent"] - len(got["seqs"])
        got["lat_ns"] = [lat for lat, seq in zip(got["lat_ns"], got["seqs"]) if seq >= skip]
        return {"mode": mode, "payload": payload.name, "pattern": pattern, "sender": sent, "receiver": got}

    def close(self) -> None:
        self._stop_workers(graceful=True)
        shutil.rmtree(self.rundir, ignore_errors=True)


def _abba(rounds: int, modes: tuple[str, ...] = MODES) -> list[str]:
    """raw, engine, shm, shm, engine, raw, ... (`rounds` trials of each mode)."""
    order: list[str] = []
    for r in range(rounds):
        order += list(modes) if r % 2 == 0 else list(reversed(modes))
    return order


def run_all(payloads: list[Payload], *, n: int, rounds: int, sat_s: float, sat_rounds: int,
            fanin: bool = True, shm_min_bytes: int = shm.DEFAULT_MIN_BYTES) -> tuple[list[dict[str, Any]], list[str]]:
    """All trials: paced ones first, then saturation, then the fan-in; returns results and
    retried trials."""
    bench = Bench()
    bench.shm_min_bytes = shm_min_bytes
    results: list[dict[str, Any]] = []
    try:
        for p in payloads:
            per_trial = max(1, n // rounds)
            for mode in _abba(rounds):
                results.append(bench.run(mode, p, "paced", n=per_trial))
                print(".", end="", file=sys.stderr, flush=True)
        for p in payloads:
            for mode in _abba(sat_rounds):
                results.append(bench.run(mode, p, "saturate", duration_s=sat_s))
                print(".", end="", file=sys.stderr, flush=True)
        vga = PAYLOAD_BY_NAME["640×480×3"]
        for mode in _abba(rounds, ("engine", "shm")) if fanin and vga in payloads else ():
            results.append(bench.run(mode, vga, "fanin", n=max(1, n // rounds), streams=FANIN_STREAMS))
            print(".", end="", file=sys.stderr, flush=True)
    finally:
        print(file=sys.stderr)
        bench.close()
    return results, bench.retries


# -- reporting ----------------------------------------------------------------------------------
def _verdict(p: Payload, ratio: float, delta_us: float) -> str:
    if p.target == "ratio":
        return f"{'met' if ratio <= RATIO_TARGET else 'NOT met'} (≤ {RATIO_TARGET}×)"
    if p.target == "delta":
        return f"{'met' if delta_us <= DELTA_TARGET_US else 'NOT met'} (≤ +{DELTA_TARGET_US:.0f} µs)"
    return "no target"


def _trials(results: list[dict[str, Any]], p: Payload, pattern: str, mode: str) -> list[dict[str, Any]]:
    return [r for r in results if r["payload"] == p.name and r["pattern"] == pattern and r["mode"] == mode]


def _lost(trials: list[dict[str, Any]]) -> int:
    return sum(r["receiver"]["lost"] + r["receiver"]["dropped"] for r in trials)


def _pooled(trials: list[dict[str, Any]]) -> np.ndarray:
    return np.concatenate([np.asarray(r["receiver"]["lat_ns"], np.int64) for r in trials])


def _latency_rows(results: list[dict[str, Any]], p: Payload, dora: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(summary row, per-trial p50 row) for one payload's paced trials."""
    paced = {m: _trials(results, p, "paced", m) for m in MODES}
    pct = {m: percentiles_us(_pooled(rs)) for m, rs in paced.items()}
    (raw50, raw99), (eng50, eng99), (shm50, shm99) = pct["raw"], pct["engine"], pct["shm"]
    d = dora.get(p.name)
    summary = [
        f"{p.name} @{p.rate_hz:.0f} Hz", f"{raw50:.0f} / {raw99:.0f}", f"{eng50:.0f} / {eng99:.0f}",
        f"{shm50:.0f} / {shm99:.0f}", f"{shm50 / raw50:.2f}× / {shm99 / raw99:.2f}×", f"{shm50 - raw50:+.0f}",
        f"{d['p50_us']:.0f} / {d['p99_us']:.0f}" if d else "-",
        " / ".join(str(_lost(paced[m])) for m in MODES),
    ]
    per_trial = [p.name] + [
        " ".join(f"{percentiles_us(r['receiver']['lat_ns'], [50])[0]:.0f}" for r in paced[m]) for m in MODES
    ]
    return summary, per_trial


def _rate_and_cpu(trials: list[dict[str, Any]], nbytes: int) -> tuple[float, str, float, float]:
    """(median receiver rate, its cell, CPU µs per message sent, received)."""
    rate = float(np.median([
        (len(r["receiver"]["seqs"]) - 1) * 1e9 / max(1, r["receiver"]["t_last_ns"] - r["receiver"]["t_first_ns"])
        for r in trials
    ]))
    # CPU per message rather than CPU %: on a shared 2-core VM a thread waiting for a
    # core looks idle, but the work each message costs does not depend on the load.
    sent = sum(r["sender"]["sent"] for r in trials)
    received = sum(len(r["receiver"]["seqs"]) for r in trials)
    cpu_send_us = 1e6 * sum(r["sender"]["cpu_s"] for r in trials) / max(1, sent)
    cpu_recv_us = 1e6 * sum(r["receiver"]["cpu_s"] for r in trials) / max(1, received)
    return rate, f"{rate:,.0f} ({rate * nbytes / 1e6:,.0f} MB/s)", cpu_send_us, cpu_recv_us


def _saturation_row(results: list[dict[str, Any]], p: Payload) -> list[str]:
    nbytes = EVENT_BYTES if p.kind == wire.KIND_RECORD else int(np.prod(p.shape)) * np.dtype(p.dtype).itemsize
    got = {m: _rate_and_cpu(_trials(results, p, "saturate", m), nbytes) for m in MODES}
    lost = " / ".join(str(_lost(_trials(results, p, "saturate", m))) for m in MODES)
    return [p.name, *(got[m][1] for m in MODES), f"{got['shm'][0] / got['raw'][0]:.2f}×",
            *(f"{got[m][2]:.0f} / {got[m][3]:.0f}" for m in MODES), f"{got['shm'][3] / got['engine'][3]:.2f}×", lost]


def _fanin_rows(results: list[dict[str, Any]]) -> list[list[str]]:
    vga = PAYLOAD_BY_NAME["640×480×3"]
    rows = []
    for m in ("engine", "shm"):
        trials = _trials(results, vga, "fanin", m)
        if not trials:
            return []
        p50, p99 = percentiles_us(_pooled(trials))
        _, _, _, cpu_recv = _rate_and_cpu(trials, 0)
        rows.append([{"engine": "engine inline", "shm": "engine shm"}[m], f"{p50:.0f} / {p99:.0f}", f"{cpu_recv:.0f}",
                     str(_lost(trials))])
    return rows


def report(results: list[dict[str, Any]], dora: dict[str, Any]) -> str:
    measured = [p for p in PAYLOADS if any(r["payload"] == p.name for r in results)]
    latency = [_latency_rows(results, p, dora) for p in measured]
    fanin = _fanin_rows(results)
    return "\n".join([
        f"Paced one-way latency, µs (pooled over all trials; first {WARMUP} messages of each trial excluded):",
        "",
        markdown_table(["payload", "raw pyzmq p50 / p99", "engine inline p50 / p99", "engine shm p50 / p99",
                        "shm/raw p50 / p99", "shm Δ p50 µs", "dora-rs Python p50 / p99",
                        "lost raw / inline / shm"], [row for row, _ in latency]),
        "",
        "dora-rs: " + dora.get("note", "not installed"),
        "",
        "Per-trial p50, µs, in run order (drift and noise check):",
        "",
        markdown_table(["payload", "raw", "engine inline", "engine shm"], [row for _, row in latency]),
        "",
        "Throughput at saturation, messages/s at the receiver (median of trials), with back-pressure:",
        "",
        markdown_table(["payload", "raw", "engine inline", "engine shm", "shm/raw", "CPU µs/msg send / recv, raw",
                        "inline", "shm", "recv CPU shm/inline", "lost raw / inline / shm"],
                       [_saturation_row(results, p) for p in measured]),
        "",
        "CPU µs/msg: process CPU time (Python thread plus ZeroMQ I/O thread) per message sent / received.",
        *([
            "",
            f"Fan-in: {FANIN_STREAMS} × 640×480×3 @30 Hz into one consumer (latency µs, receiver CPU µs per frame):",
            "",
            markdown_table(["transport", "p50 / p99", "recv CPU µs/frame", "lost"], fanin),
        ] if fanin else []),
    ])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="example: .venv/bin/python bench/transport.py --quick")
    ap.add_argument("--quick", action="store_true", help="fewer messages and shorter saturation runs (smoke test)")
    ap.add_argument("-n", type=int, default=None, help="paced messages per payload and transport (default 300; 60 with --quick)")
    ap.add_argument("--rounds", type=int, default=None, help="paced trials per transport, alternated ABBA (default 4; 2 with --quick)")
    ap.add_argument("--only", metavar="TEXT", help="run only payloads whose name contains TEXT (e.g. 640)")
    ap.add_argument("--json", metavar="PATH", help="also write every trial's raw results here")
    ap.add_argument("--shm-min-bytes", type=int, default=shm.DEFAULT_MIN_BYTES,
                    help="payloads from this size go through the pool in the shm trials (default: the engine's, "
                         f"{shm.DEFAULT_MIN_BYTES})")
    ap.add_argument("--no-dora", action="store_true", help="skip the dora-rs row")
    ap.add_argument("--dora-venv", metavar="DIR", default="/tmp/dora-venv",
                    help="venv with dora-rs and dora-rs-cli for the dora-rs row (default /tmp/dora-venv; "
                         "absent: the row says 'not installed')")
    args = ap.parse_args(argv)
    payloads = [p for p in PAYLOADS if args.only is None or args.only in p.name]
    if not payloads:
        ap.error(f"--only {args.only!r} matches none of: {', '.join(p.name for p in PAYLOADS)}")
    n = args.n if args.n is not None else (60 if args.quick else 300)
    rounds, sat_s, sat_rounds = (2, 0.5, 2) if args.quick else (4, 1.0, 2)
    rounds = args.rounds or rounds
    started = time.monotonic()
    print(f"# sensorfuse transport benchmark, {dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}", flush=True)
    print(f"machine: {machine_description()}; load average {os.getloadavg()[0]:.2f} at start", flush=True)
    print(f"paced: {n} messages per payload and transport in {rounds} alternating trials (ABBA); "
          f"saturation: {sat_rounds} × {sat_s:.1f} s per payload and transport", flush=True)
    results, retries = run_all(payloads, n=n, rounds=rounds, sat_s=sat_s, sat_rounds=sat_rounds,
                               shm_min_bytes=args.shm_min_bytes)
    from dora_hop import measure

    dora = {"note": "skipped (--no-dora)"} if args.no_dora else measure(args.dora_venv, [(p.name, p.rate_hz, EVENT_BYTES if p.kind == wire.KIND_RECORD else
                                     int(np.prod(p.shape)) * np.dtype(p.dtype).itemsize) for p in payloads],
                   n=n, warmup=WARMUP)
    print()
    print(report(results, dora))
    print(f"\nTrials rerun after a stall or failure: {len(retries)}" + "".join(f"\n- {r}" for r in retries))
    print(f"\ntotal {time.monotonic() - started:.0f} s; load average {os.getloadavg()[0]:.2f} at the end")
    if args.json:
        from sensorfuse.engine import fingerprint

        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"trials": results, "fingerprint": fingerprint.fingerprint()}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
