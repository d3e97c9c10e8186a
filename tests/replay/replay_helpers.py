"""Helpers for replay tests (fixtures are in conftest.py)."""

from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import Any

import numpy as np

from sensorfuse.engine import wire
from sensorfuse.engine.node import Out
from sensorfuse.engine.testing import NodeHarness
from sensorfuse.replay.mcap_io import LogReader
from sensorfuse.replay.recorder import RecorderNode

SESSION = "test-session"


def make_session(n_frames: int = 12, *, shape: tuple[int, int, int] = (48, 64, 3), seed: int = 0) -> list[wire.Message]:
    """Frames at 30 Hz, 20 ms audio blocks at 16 kHz, text lines, detections and events,
    interleaved roughly as a live graph would deliver them."""
    rng = np.random.default_rng(seed)
    t0 = 1_000_000_000_000
    msgs: list[tuple[int, wire.Message]] = []
    seqs: dict[str, int] = {}

    def add(stream: str, kind: str, data: Any, t_ns: int, arrive_ns: int, **fields: Any) -> None:
        seq = seqs.get(stream, 0)
        seqs[stream] = seq + 1
        msgs.append((arrive_ns, wire.build_message(stream, kind, data, seq=seq, t_ns=t_ns, t_pub_ns=arrive_ns,
                                                   src=stream.split("/")[0], session=SESSION, **fields)))

    duration_ns = n_frames * 33_333_333
    for i in range(n_frames):
        t = t0 + i * 33_333_333
        add("cam0/frame", wire.KIND_TENSOR, rng.integers(0, 255, shape, dtype=np.uint8), t, t + 5_000_000,
            layout="HWC/bgr8")
        add("perceive/detections", wire.KIND_RECORD,
            {"faces": [{"box": [1.0 + i, 2.0, 20.5, 30.0], "score": 0.9, "label": "face"}]}, t, t + 9_000_000)
    for j in range(duration_ns // 20_000_000):
        t = t0 + j * 20_000_000
        block = rng.uniform(-1, 1, (320, 1)).astype(np.float32)
        meta = {"discontinuity": True} if j == 3 else {}
        add("mic0/audio16k", wire.KIND_AUDIO, block, t, t + 20_000_000, layout="TC", rate=16000,
            sample0=j * 320, meta=meta)
    for k, line in enumerate(["where is the cat?", "who is speaking", "héllo ünïcode ✓"]):
        t = t0 + k * 100_000_000
        add("text/in", wire.KIND_BYTES, line.encode(), t, t, encoding="utf-8")
    add("text/raw", wire.KIND_BYTES, b"\xff\xfe not utf-8", t0 + 1, t0 + 1)
    add("perceive/events", wire.KIND_RECORD, {"type": "speaking", "score": 0.75, "f32": np.float32(0.5).item(),
                                              "nested": {"seqs": [1, 2, 3]}, "blob": b"\x00\x01"}, t0 + 2, t0 + 2)
    msgs.sort(key=lambda am: am[0])
    return [m for _, m in msgs]


def record(messages: list[wire.Message], path: Path, **params: Any) -> RecorderNode:
    h = NodeHarness(RecorderNode, {"path": str(path), **params})
    for m in messages:
        h.send("in", m)
    h.finish()
    h.close()
    node = h.node
    assert isinstance(node, RecorderNode)
    return node




def publish_like_runtime(out: Out, session: str = "live") -> wire.Message:
    """What engine.runtime puts on the wire for one Out (replay_header honoured)."""
    rh = out.replay_header
    seq, t_ns, src, sess = (rh.seq, rh.t_ns, rh.src, rh.session) if rh else (0, out.t_ns, "player", session)
    frames = wire.encode_message(out.port, out.kind, out.data, seq=seq, t_ns=t_ns, t_pub_ns=123, src=src,
                                 session=sess, layout=out.layout, encoding=out.encoding, rate=out.rate,
                                 sample0=out.sample0, meta=out.meta)
    return wire.decode_message([bytes(f) for f in frames])


def payload_bytes(msg: wire.Message) -> bytes:
    return bytes(getattr(msg.payload[0], "buffer", msg.payload[0])) if msg.payload else b""


class FailingFile(io.RawIOBase):
    """A file that raises ENOSPC once `capacity` bytes have been written."""

    def __init__(self, path: str, capacity: int) -> None:
        self._f = open(path, "wb")
        self.capacity = capacity
        self.written = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        n = len(b)
        if self.written + n > self.capacity:
            room = self.capacity - self.written
            if room > 0:
                self._f.write(bytes(b)[:room])
                self.written += room
            self._f.flush()
            raise OSError(28, "No space left on device")
        self._f.write(b)
        self.written += n
        return n

    def flush(self) -> None:
        self._f.flush()

    def tell(self) -> int:
        return self.written

    def close(self) -> None:
        super().close()
        self._f.close()


class GatedFile:
    """A file whose writes block until `gate` is set: a disk slower than the data."""

    def __init__(self, path: str, gate: threading.Event, entered: threading.Event) -> None:
        self._f = open(path, "wb")
        self.gate, self.entered = gate, entered

    def write(self, b: Any) -> int:
        self.entered.set()
        assert self.gate.wait(30), "test never opened the gate"
        return self._f.write(b)

    def tell(self) -> int:
        return self._f.tell()

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def load_log(path: Path) -> dict[str, list[tuple[Any, Any]]]:
    """Every message of a finalised, undamaged log: topic → [(header, payload)] in log order."""
    out: dict[str, list[tuple[Any, Any]]] = {}
    with LogReader(path) as reader:
        assert reader.finalised and not reader.problems
        for m in reader.iter_messages():
            h, _, payload = m.decode()
            out.setdefault(m.topic, []).append((h, payload))
    return out


def mouth_and_loudness(streams: dict[str, list[tuple[Any, Any]]], *, min_width: float = 0.0
                       ) -> tuple[list[float], list[float]]:
    """Per frame of a one-camera sample session, for each fully visible speaking face at least
    `min_width` px wide: the darkness of its mouth region and the audio's loudness then."""
    import msgspec

    from sensorfuse.replay import sample

    audio = np.concatenate([np.frombuffer(p, np.float32) for _, p in streams["mic0/audio16k"]])
    darkness, loudness = [], []
    for (fh, frame), (_, boxes) in zip(streams["cam0/frame"], streams["labels/boxes"]):
        img = np.frombuffer(frame, np.uint8).reshape(fh.shape)
        for b in msgspec.msgpack.decode(boxes)["boxes"]:
            if b["speaking"] and b["visible"] >= 0.99 and b["box"][2] - b["box"][0] >= min_width:
                x0, y0, x1, y1 = (int(v) for v in b["box"])
                mouth = img[y0 + (y1 - y0) * 2 // 3:y1, x0 + (x1 - x0) // 4:x1 - (x1 - x0) // 4]
                darkness.append(-float(mouth.mean()))
                i = (fh.t_ns - sample.T0_NS) * 16_000 // 1_000_000_000
                loudness.append(float(np.sqrt(np.mean(audio[i:i + 1067] ** 2))))
    return darkness, loudness
