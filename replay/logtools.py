"""Log tools: `info` (streams, counts, rates, duration, gaps), `export` (PNG / WAV / JSONL)
and `import_session` (video + WAV + timed text → a session log).

All of them read through `sensorfuse.replay.mcap_io.LogReader`, so damaged logs give their readable
prefix and a list of problems instead of a crash.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sensorfuse.engine import files, fingerprint, wire
from sensorfuse.replay.mcap_io import HeaderStamper, LogReader, LogWriter

#: An interval this many times the stream's median spacing counts as a time gap.
GAP_FACTOR = 3.0


@dataclass
class StreamInfo:
    topic: str
    kind: str = ""
    schema: str = ""
    count: int = 0
    bytes: int = 0
    first_ns: int = 0
    last_ns: int = 0
    seq_gaps: int = 0  # messages missing according to seq
    damaged: int = 0
    damage_reason: str = ""  # why the first damaged message could not be read
    intervals: list[int] = field(default_factory=list)
    _last_seq: int | None = None

    def as_dict(self) -> dict[str, Any]:
        span = (self.last_ns - self.first_ns) / 1e9
        gaps = []
        if len(self.intervals) > 2:
            median = float(np.median(self.intervals))
            gaps = [g for g in self.intervals if g > GAP_FACTOR * median]
        return {
            "topic": self.topic, "kind": self.kind, "schema": self.schema, "count": self.count, "bytes": self.bytes,
            "first_s": self.first_ns / 1e9, "last_s": self.last_ns / 1e9,
            "rate_hz": round((self.count - 1) / span, 3) if span > 0 else None,
            "seq_gaps": self.seq_gaps, "time_gaps": len(gaps), "largest_gap_s": max(gaps) / 1e9 if gaps else 0.0,
            "damaged": self.damaged, "damage_reason": self.damage_reason,
        }


def info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Everything `sensorfuse log info` prints, as a dict (bounded memory: one pass)."""
    streams: dict[str, StreamInfo] = {}
    with LogReader(path) as reader:
        metadata = reader.metadata()
        for m in reader.iter_messages():
            s = streams.setdefault(m.topic, StreamInfo(m.topic, schema=m.schema))
            s.count += 1
            s.bytes += len(m.data)
            if s.count == 1:
                s.first_ns = m.log_time
            elif m.log_time != s.last_ns:  # records of one instant (one per camera) are no spacing
                s.intervals.append(m.log_time - s.last_ns)
            s.last_ns = m.log_time
            try:
                header, _, _ = m.decode()
            except ValueError as exc:  # names the field: foreign schema, protocol version, ...
                s.damaged += 1
                s.damage_reason = s.damage_reason or str(exc)
                continue
            s.kind = header.kind
            if s._last_seq is not None and header.seq > s._last_seq + 1:
                s.seq_gaps += header.seq - s._last_seq - 1
            s._last_seq = header.seq
        rows = [s.as_dict() for s in sorted(streams.values(), key=lambda s: s.topic)]
        first = min((s.first_ns for s in streams.values()), default=0)
        last = max((s.last_ns for s in streams.values()), default=0)
        return {"path": os.fspath(path), "finalised": reader.finalised, "bytes": reader.size,
                "duration_s": (last - first) / 1e9, "messages": sum(s.count for s in streams.values()),
                "streams": rows, "metadata": metadata, "problems": list(reader.problems)}


def render_info(d: dict[str, Any]) -> str:
    lines = [f"{d['path']}: {d['messages']} messages, {d['duration_s']:.3f} s, {d['bytes'] / 1e6:.1f} MB"
             f"{'' if d['finalised'] else ' (not finalised: read by scan)'}"]
    for name, meta in d["metadata"].items():
        if name == "fingerprint":  # what recorded it: software, machine, models (engine/fingerprint.py)
            lines.append("  fingerprint (what recorded this log):")
            lines += [f"    {line}" for line in fingerprint.render(meta)]
            continue
        lines.append(f"  {name}: " + ", ".join(f"{k}={v}" for k, v in sorted(meta.items())))
    lines.append(f"  {'stream':<22} {'kind':<7} {'count':>7} {'rate Hz':>8} {'MB':>7} {'seq gaps':>8} "
                 f"{'time gaps':>9} {'largest s':>9}")
    for s in d["streams"]:
        rate = f"{s['rate_hz']:.2f}" if s["rate_hz"] is not None else "-"
        lines.append(f"  {s['topic']:<22} {s['kind']:<7} {s['count']:>7} {rate:>8} {s['bytes'] / 1e6:>7.2f} "
                     f"{s['seq_gaps']:>8} {s['time_gaps']:>9} {s['largest_gap_s']:>9.3f}"
                     + (f"  ({s['damaged']} damaged: {s['damage_reason']})" if s["damaged"] else ""))
    lines += [f"  problem: {p}" for p in d["problems"]]
    return "\n".join(lines)


def _slug(topic: str) -> str:
    return topic.replace("/", "_")


def export(path: str | os.PathLike[str], out_dir: str | os.PathLike[str], streams: list[str] | None = None, *,
           start_s: float | None = None, end_s: float | None = None,
           on_progress: Callable[[int, int | None], None] | None = None) -> tuple[dict[str, int], list[str]]:
    """Frames → PNG per message, audio → one WAV per stream (gaps zero-filled by sample0),
    records and text → JSONL, for messages from `start_s` to before `end_s` (seconds from
    the log's first message). Returns files written per stream and the reader's problems
    (damage met on the way: what was written is the readable part). `on_progress(messages
    read, messages in the log or None when its summary does not say)`."""
    import cv2
    import soundfile as sf

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, int] = {}
    wavs: dict[str, Any] = {}
    jsonl: dict[str, Any] = {}
    try:
        with LogReader(path) as reader:
            first_ns = reader.time_range()[0] if start_s is not None or end_s is not None else 0
            start_ns = None if start_s is None else first_ns + int(start_s * 1e9)
            end_ns = None if end_s is None else first_ns + int(end_s * 1e9)
            stats = reader.summary.statistics if reader.summary is not None else None
            total = stats.message_count if stats is not None else None
            for i, m in enumerate(reader.iter_messages(streams, start_ns=start_ns, end_ns=end_ns), 1):
                if on_progress is not None:
                    on_progress(i, total)
                try:
                    h, _, payload = m.decode()
                except ValueError:
                    continue
                if h.kind == wire.KIND_TENSOR and h.dtype == "uint8" and h.shape and len(h.shape) in (2, 3):
                    d = out / _slug(m.topic)
                    d.mkdir(exist_ok=True)
                    img = np.frombuffer(payload, np.uint8).reshape(h.shape)
                    png = d / f"{h.seq:06d}_{h.t_ns}.png"
                    if not cv2.imwrite(str(png), img):
                        raise OSError(f"cannot write {png}")
                elif h.kind == wire.KIND_AUDIO and h.shape and h.rate:
                    w = wavs.get(m.topic)
                    if w is None:
                        w = wavs[m.topic] = [sf.SoundFile(out / f"{_slug(m.topic)}.wav", "w", h.rate, h.shape[1],
                                                          subtype="FLOAT"), h.sample0 or 0]
                    samples = np.frombuffer(payload, h.dtype or "float32").reshape(h.shape)
                    gap = (h.sample0 or 0) - w[1]
                    if gap > 0:
                        w[0].write(np.zeros((gap, h.shape[1]), np.float32))
                    w[0].write(samples)
                    w[1] = (h.sample0 or 0) + h.shape[0]
                elif h.kind in (wire.KIND_RECORD, wire.KIND_BYTES):
                    f = jsonl.get(m.topic)
                    if f is None:
                        f = jsonl[m.topic] = open(out / f"{_slug(m.topic)}.jsonl", "w", encoding="utf-8")
                    obj: dict[str, Any] = {k: getattr(h, k) for k in ("stream", "seq", "t_ns", "src", "session")}
                    if h.kind == wire.KIND_RECORD:
                        obj["record"] = wire.decode_record(payload)
                    elif h.encoding == "utf-8":
                        obj["text"] = payload.decode("utf-8", errors="replace")
                    else:
                        obj["hex"] = payload.hex()
                    f.write(json.dumps(obj, default=lambda o: bytes(o).hex()) + "\n")
                else:
                    continue
                written[m.topic] = written.get(m.topic, 0) + 1
    finally:
        for w in wavs.values():
            w[0].close()
        for f in jsonl.values():
            f.close()
    return written, list(reader.problems)


#: The lowest WAV sample rate `import_session` takes (20 ms blocks need at least 50 Hz;
#: below telephone rate nothing downstream can use the audio).
MIN_WAV_RATE = 8000


def import_session(out: str | os.PathLike[str], *, video: str | None = None, wav: str | None = None,
                   text: str | None = None, session: str = "imported", jpeg_quality: int | None = None,
                   force: bool = True, on_progress: Callable[[int, int | None], None] | None = None) -> dict[str, int]:
    """Build a session log from files. Timestamps come from the files: video frame times
    from the container (CAP_PROP_POS_MSEC), audio from sample positions, text lines from a
    leading ``SECONDS`` field (``12.5<TAB>is there a cat?``); nothing is invented.
    `jpeg_quality` (1-100) stores frames as JPEG, as the recorder's `jpeg` option does.
    Inputs are checked before `out` is written (ValueError naming the file and what is
    wrong); `out` appears only when complete (`files.atomic_output`; `force`: replace it).
    `on_progress(frames read, frames in the video or None)`, per video frame."""
    import cv2
    from scipy.signal import resample_poly

    header = HeaderStamper(session)
    counts = header.counts

    items: list[tuple[int, wire.Header, bytes]] = []
    lines = _text_lines(text) if text else []
    samples, rate = _read_wav(wav) if wav else (None, 0)
    cap = None
    if video:
        cap = cv2.VideoCapture(video)
        if not cap.isOpened():
            raise ValueError(f"{video}: cannot open video")
    try:
        with files.atomic_output(out, force=force) as f:
            log = LogWriter(f, metadata={"generator": "sensorfuse log import", "video": video or "", "wav": wav or "",
                                         "text": text or ""})
            for t_ns, body in lines:
                h = header("text/in", wire.KIND_BYTES, t_ns, "text", encoding="utf-8")
                items.append((t_ns, h, body.encode("utf-8")))
            if samples is not None:
                block = rate // 50
                mono16 = resample_poly(samples.mean(axis=1), 16_000 // np.gcd(16_000, rate),
                                       rate // np.gcd(16_000, rate))
                for j in range(len(samples) // block):
                    t_ns = j * block * 1_000_000_000 // rate
                    h = header("mic0/audio", wire.KIND_AUDIO, t_ns, "microphone", dtype="float32",
                               shape=[block, samples.shape[1]], layout="TC", rate=rate, sample0=j * block)
                    items.append((t_ns, h, np.ascontiguousarray(samples[j * block:(j + 1) * block]).tobytes()))
                for j in range(len(mono16) // 320):
                    t_ns = j * 20_000_000
                    h = header("mic0/audio16k", wire.KIND_AUDIO, t_ns, "microphone", dtype="float32",
                               shape=[320, 1], layout="TC", rate=16_000, sample0=j * 320)
                    items.append((t_ns, h, mono16[j * 320:(j + 1) * 320].astype(np.float32).reshape(-1, 1).tobytes()))
            items.sort(key=lambda it: it[0])
            pending = iter(items)
            nxt = next(pending, None)
            frame_count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap is not None else 0
            frames_read = 0
            while cap is not None:
                ok, frame = cap.read()
                if not ok:
                    break
                frames_read += 1
                if on_progress is not None:
                    on_progress(frames_read, frame_count if frame_count > 0 else None)
                t_ns = int(round(cap.get(cv2.CAP_PROP_POS_MSEC) * 1e6))
                while nxt is not None and nxt[0] <= t_ns:
                    log.write(nxt[1], wire.encode_header(nxt[1]), nxt[2])
                    nxt = next(pending, None)
                h = header("cam0/frame", wire.KIND_TENSOR, t_ns, "camera", dtype="uint8", shape=list(frame.shape),
                           layout="HWC/bgr8")
                frame = np.ascontiguousarray(frame)
                if jpeg_quality is None:
                    log.write(h, wire.encode_header(h), frame.tobytes())
                else:
                    ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
                    log.write(h, wire.encode_header(h), b"", jpeg=jpeg.tobytes())
            while nxt is not None:
                log.write(nxt[1], wire.encode_header(nxt[1]), nxt[2])
                nxt = next(pending, None)
            log.finish()
    finally:
        if cap is not None:
            cap.release()
    return counts


def _text_lines(text: str) -> list[tuple[int, str]]:
    """(t_ns, line) from a file of lines 'SECONDS text' (a tab or a space after the time)."""
    try:
        content = Path(text).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{text}: not UTF-8 text (byte {exc.start})") from None
    lines = []
    for n, line in enumerate(content.splitlines(), 1):
        if not line.strip():
            continue
        stamp, _, body = line.strip().partition(" ") if "\t" not in line else line.strip().partition("\t")
        try:
            seconds = float(stamp)
        except ValueError:
            raise ValueError(f"{text}:{n}: expected 'SECONDS text', got {line!r}") from None
        # t_ns is a signed 64-bit field on the wire and in MCAP
        if not (math.isfinite(seconds) and 0 <= seconds * 1e9 < 2**63):
            raise ValueError(f"{text}:{n}: time {stamp} is out of range (0 to {2**63 / 1e9:.4g} s)")
        lines.append((int(round(seconds * 1e9)), body.strip()))
    return lines


def _read_wav(wav: str) -> tuple[np.ndarray, int]:
    import soundfile as sf

    try:
        samples, rate = sf.read(wav, dtype="float32", always_2d=True)
    except sf.SoundFileError as exc:
        raise ValueError(f"{wav}: not a readable audio file ({exc})") from None
    if rate < MIN_WAV_RATE:
        raise ValueError(f"{wav}: sample rate {rate} Hz is too low (at least {MIN_WAV_RATE} Hz)")
    return samples, rate
