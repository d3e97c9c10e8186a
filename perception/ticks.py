"""What perception takes from one aligned tick, decoded from an `align/ticks` record.

The aligner (`sensorfuse.nodes.aligner`, docs/time.md) publishes each tick as a record with the
members embedded: a frame as ``{dtype, shape, layout, data}``, an audio window as
``{sample0, n, rate, channels, data, ...}``, the latest text as ``{text}``. Perception
reads those ports (names configurable) and keeps, for provenance, the stream and `seq`s
of every member it used. The query is the newer of two text members: typed (``text``)
and said (``said``: the `transcribe` node's `text` output), so a query can be typed or
spoken.

A frame member without ``data`` (the aligner's ``embed: false``) is a reference: the
tick keeps it in `frame_wanted` and the caller attaches the frame it received itself
(`attach_frame`, joined on seq by `sensorfuse.perception.join`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from sensorfuse.engine.events import Ref


@dataclass
class TickInput:
    index: int
    t_ns: int
    frame: np.ndarray | None = None  # HxWx3 uint8 as published (layout below)
    frame_layout: str | None = None
    audio: np.ndarray | None = None  # float32 [n] mono window ending at t_ns
    audio_sample0: int = 0
    audio_rate: int = 16_000
    text: str | None = None
    status: dict[str, str] = field(default_factory=dict)  # modality -> aligner status
    refs: list[Ref] = field(default_factory=list)
    frame_ref: Ref | None = None
    text_ref: Ref | None = None
    said: bool = False  # the query was spoken (the `said` member), not typed
    frame_wanted: Ref | None = None  # a frame referenced by seq, not embedded: attach it


def attach_frame(tick: TickInput, frame: np.ndarray, layout: str | None) -> None:
    """Give a tick the frame its reference named (raises BadTick on a frame perception cannot use)."""
    if frame.dtype != np.uint8 or frame.ndim not in (2, 3):
        raise BadTick(f"frame {frame.dtype}{list(frame.shape)}: expected uint8 HxW[xC]")
    assert tick.frame_wanted is not None, "attach_frame on a tick without a frame reference"
    tick.frame, tick.frame_layout, tick.frame_ref = frame, layout, tick.frame_wanted
    tick.frame_wanted = None
    tick.refs.insert(0, tick.frame_ref)


@dataclass(frozen=True)
class Ports:
    frame: str = "frame"
    audio: str = "audio"
    text: str = "text"
    said: str = "said"


class BadTick(ValueError):
    """A tick record whose member cannot be decoded; the message says which and why."""


def tick_from_record(record: dict[str, Any], ports: Ports = Ports()) -> TickInput:
    """Decode an `align/ticks` record (raises BadTick on a malformed member)."""
    try:
        members = record.get("members") or {}
        streams = record.get("streams") or {}
        status = record.get("status") or {}
        tick = TickInput(int(record["tick"]), int(record["t_ns"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise BadTick(f"tick record without tick/t_ns: {exc}") from None
    text_port = _newest_text(members, ports)
    tick.status = {"vision": status.get(ports.frame, "absent"), "audio": status.get(ports.audio, "absent"),
                   "text": status.get(text_port, "absent")}
    frame = members.get(ports.frame)
    if frame is not None and "data" not in frame and "seq" in frame:
        tick.frame_wanted = Ref(streams.get(ports.frame, ports.frame), int(frame["seq"]), int(frame["t_ns"]), "vision")
    elif frame is not None and "data" in frame:
        shape = tuple(frame.get("shape") or ())
        if frame.get("dtype") != "uint8" or len(shape) not in (2, 3):
            raise BadTick(f"frame member {frame.get('dtype')}{list(shape)}: expected uint8 HxW[xC]")
        data = np.frombuffer(frame["data"], dtype=np.uint8)
        if data.size != int(np.prod(shape)):
            raise BadTick(f"frame member has {data.size} bytes for shape {list(shape)}")
        tick.frame, tick.frame_layout = data.reshape(shape), frame.get("layout")
        tick.frame_ref = Ref(streams.get(ports.frame, ports.frame), int(frame["seq"]), int(frame["t_ns"]), "vision")
        tick.refs.append(tick.frame_ref)
    audio = members.get(ports.audio)
    if audio is not None and "data" in audio:
        channels = int(audio.get("channels") or 1)
        samples = np.frombuffer(audio["data"], dtype=np.float32)
        if samples.size != int(audio["n"]) * channels:
            raise BadTick(f"audio member has {samples.size} samples, header says {audio['n']}×{channels}")
        if not np.isfinite(samples).all():  # the VAD would carry a NaN in its state for good
            raise BadTick(f"audio member has {int(samples.size - np.isfinite(samples).sum())} NaN/inf samples")
        tick.audio = samples.reshape(-1, channels).mean(axis=1) if channels > 1 else samples
        tick.audio_sample0, tick.audio_rate = int(audio["sample0"]), int(audio["rate"])
        stream = streams.get(ports.audio, ports.audio)
        seqs = audio.get("seqs") or []
        if seqs:  # the newest block is the one that completed this tick
            tick.refs.append(Ref(stream, int(seqs[-1]), int(audio.get("t_end_ns") or tick.t_ns), "audio"))
    text = members.get(text_port)
    if text is not None and isinstance(text.get("text"), str):
        tick.text = text["text"]
        tick.text_ref = Ref(streams.get(text_port, text_port), int(text["seq"]), int(text["t_ns"]), "text")
        tick.said = text_port == ports.said
        tick.refs.append(tick.text_ref)
    return tick


def camera_ticks(record: dict[str, Any], ports: Ports, cameras: Sequence[str]) -> list[TickInput]:
    """A multi-camera tick as each camera sees it: the frame member named by the camera,
    the same audio window and text (raises BadTick as `tick_from_record`)."""
    return [tick_from_record(record, replace(ports, frame=camera)) for camera in cameras]


def _newest_text(members: dict[str, Any], ports: Ports) -> str:
    """The port of the query this tick: the typed or the said line, whichever is newer
    (typed on a tie; typed when neither is there, for its status)."""
    said = members.get(ports.said)
    if not isinstance(said, dict) or not isinstance(said.get("text"), str):
        return ports.text
    typed = members.get(ports.text)
    if not isinstance(typed, dict) or not isinstance(typed.get("text"), str):
        return ports.said
    try:
        return ports.said if int(said["t_ns"]) > int(typed["t_ns"]) else ports.text
    except (KeyError, TypeError, ValueError) as exc:
        raise BadTick(f"text member without t_ns: {exc}") from None
