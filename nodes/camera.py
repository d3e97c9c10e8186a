"""Camera source (OpenCV): a device, a video file, or a URL / GStreamer pipeline.

Ports
    frame  (out) tensor uint8 [H, W, 3], layout ``HWC/bgr8`` (BGR, C order) -> ``cam0/frame``.
           ``t_ns`` is the capture time; ``meta.t_source`` says where it came from:
           ``driver`` (the backend's buffer timestamp, V4L2 gives CLOCK_MONOTONIC like the
           session clock), ``read`` (read time minus ``pipeline_delay_ms``) or ``file``
           (the frame's presentation time in the file, see `sensorfuse.nodes.media_clock`).
           Never a counter.
    status (out) records ``{event: source_lost | source_restored | gave_up |
           resolution_changed, ...}`` -> ``cam0/status``.

Rates
    Devices and URLs deliver at their own rate (``fps``/``width``/``height`` are requests
    to the driver). Files play at their native rate (``pace: native``) or as fast as the
    graph takes frames (``pace: max``, with a ``block`` input downstream).

Failure behaviour
    A missing file, or a device that cannot be opened at start, stops the node with one
    clear error (not restarted). A live source that fails to read later publishes
    ``source_lost``, retries with capped exponential backoff (``backoff_initial_s``
    doubling up to ``backoff_max_s``), publishes ``source_restored`` when it is back,
    and ``gave_up`` (then ends its stream) after ``reconnect_attempts`` failed tries.
    The end of a file ends the stream. A resolution change mid-stream is resized to the
    first resolution (``on_resize: resize``) or refused and counted (``refuse``), with
    a ``resolution_changed`` status either way. Frames are published as H x W x 3 uint8
    BGR whatever the source gives (grey, BGRA, 16-bit are converted); an empty or
    unusable frame is counted (``bad_frame``) and skipped.

Config example::

    cam:
      kind: camera
      params: {source: 0, width: 640, height: 480, fps: 30, pipeline_delay_ms: 20}
      outputs: {frame: cam0/frame, status: cam0/status}
    clip:
      kind: camera
      params: {source: clip.mp4, pace: native}    # file: stamps from the file
      outputs: {frame: cam1/frame}
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Literal, Protocol

import cv2
import msgspec
import numpy as np

from sensorfuse.engine.errors import StartupError
from sensorfuse.engine.node import Node, Out, OutputSpec
from sensorfuse.engine.params import Count, NonNegativeFloat, PositiveFloat, PositiveInt, require_file
from sensorfuse.nodes.media_clock import ClockMode, MediaClock, PaceMode

LAYOUT = "HWC/bgr8"


class Capture(Protocol):
    def read(self) -> tuple[bool, np.ndarray | None]: ...
    def timestamp_ms(self) -> float: ...
    def release(self) -> None: ...


class OpenCVCapture:
    """`cv2.VideoCapture` behind the `Capture` protocol."""

    def __init__(self, source: str | int, *, width: int | None, height: int | None, fps: float | None) -> None:
        if isinstance(source, int):
            self.cap = cv2.VideoCapture(source)
        elif "!" in source:
            self.cap = cv2.VideoCapture(source, cv2.CAP_GSTREAMER)
        else:
            self.cap = cv2.VideoCapture(source)
        for prop, value in ((cv2.CAP_PROP_FRAME_WIDTH, width), (cv2.CAP_PROP_FRAME_HEIGHT, height),
                            (cv2.CAP_PROP_FPS, fps)):
            if value:
                self.cap.set(prop, value)

    def is_opened(self) -> bool:
        return bool(self.cap.isOpened())

    def read(self) -> tuple[bool, np.ndarray | None]:
        ok, frame = self.cap.read()
        return bool(ok), frame if ok else None

    def timestamp_ms(self) -> float:
        # After read(): the buffer timestamp (V4L2) or the frame's presentation time (files).
        return float(self.cap.get(cv2.CAP_PROP_POS_MSEC))

    def release(self) -> None:
        self.cap.release()


def parse_source(source: str | int) -> tuple[str, str | int]:
    """('device', index) | ('pipeline', str) | ('url', str) | ('file', path)."""
    if isinstance(source, int) or (isinstance(source, str) and source.isdigit()):
        return "device", int(source)
    if "!" in source:
        return "pipeline", source
    if "://" in source:
        return "url", source
    return "file", source


class CameraNode(Node):
    class Params(msgspec.Struct, forbid_unknown_fields=True):
        source: str | int = 0
        width: PositiveInt | None = None
        height: PositiveInt | None = None
        fps: PositiveFloat | None = None
        pipeline_delay_ms: NonNegativeFloat = 0.0
        clock: ClockMode = "file"
        origin_ns: int = 0
        pace: PaceMode = "native"
        on_resize: Literal["resize", "refuse"] = "resize"
        reconnect_attempts: Count = 10
        backoff_initial_s: PositiveFloat = 0.1
        backoff_max_s: PositiveFloat = 2.0
        max_frames: Count = 0  # 0: until the source ends

    outputs = {
        "frame": OutputSpec(kind="tensor", doc="uint8 [H, W, 3] HWC/bgr8, t_ns = capture time"),
        "status": OutputSpec(kind="record", doc="source_lost / source_restored / gave_up / resolution_changed"),
    }

    # -- lifecycle -------------------------------------------------------------------------
    @classmethod
    def check(cls, params: Params) -> None:
        kind, source = parse_source(params.source)
        if kind == "file":
            require_file("source", str(source), "video file")

    def start(self) -> None:
        p = self.params
        self.kind, self.source = parse_source(p.source)
        if self.kind == "file" and not os.path.exists(str(self.source)):
            raise StartupError(f"camera: video file {self.source!r} does not exist")
        try:
            self.media = MediaClock(p.clock, p.origin_ns, p.pace)  # type: ignore[arg-type]
        except ValueError as exc:
            raise StartupError(f"camera: {exc}") from None
        self.cap: Capture | None = self.open_capture()
        if self.cap is None:
            raise StartupError(f"camera: cannot open {self.kind} {self.source!r} ({self._install_hint()})")
        self.frames = 0
        self.shape: tuple[int, ...] | None = None
        self.pending: tuple[np.ndarray, int] | None = None  # file: the next frame and its media time
        self.attempts = 0
        self.lost_at_ns = 0
        self.retry_at_ns = 0
        self.gave_up = False
        self.next_due_ns = None

    def open_capture(self) -> Capture | None:
        """Open the configured source; None when it cannot be opened (tests override this)."""
        cap = OpenCVCapture(self.source, width=self.params.width, height=self.params.height, fps=self.params.fps)
        if not cap.is_opened():
            cap.release()
            return None
        return cap

    @property
    def is_live(self) -> bool:
        return self.kind != "file"

    def stop(self) -> None:
        if getattr(self, "cap", None) is not None:
            self.cap.release()  # type: ignore[union-attr]
            self.cap = None

    def _install_hint(self) -> str:
        if self.kind == "device":
            return "is a camera attached? `sensorfuse devices` lists what OpenCV can open"
        if self.kind == "pipeline":
            return "this OpenCV build may lack GStreamer; cv2.getBuildInformation() says"
        return "check the address and that the stream is reachable"

    # -- producing -------------------------------------------------------------------------
    def produce(self, now_ns: int) -> Iterable[Out] | None:
        if self.gave_up or (self.params.max_frames and self.frames >= self.params.max_frames):
            return None
        if self.cap is None:
            return self._reconnect(now_ns)
        if self.is_live:
            return self._produce_live(now_ns)
        return self._produce_file(now_ns)

    def _produce_file(self, now_ns: int) -> list[Out] | None:
        assert self.cap is not None
        self.media.begin(now_ns)
        if self.pending is None:
            self.pending = self._read_file_frame()
            if self.pending is None:
                return None  # end of file
        frame, media_ns = self.pending
        due = self.media.due(media_ns)
        if due is not None and due > now_ns:
            self.next_due_ns = due
            return []
        self.pending = None
        outs = self._publish(frame, self.media.stamp(media_ns), "file", now_ns)
        self.next_due_ns = None
        return outs

    def _read_file_frame(self) -> tuple[np.ndarray, int] | None:
        assert self.cap is not None
        ok, frame = self.cap.read()
        if not ok or frame is None:
            return None
        return frame, round(self.cap.timestamp_ms() * 1e6)

    def _produce_live(self, now_ns: int) -> list[Out]:
        assert self.cap is not None
        ok, frame = self.cap.read()
        read_ns = self.ctx.clock.now_ns()
        if not ok or frame is None:
            return self._lost(now_ns, "read failed")
        driver_ms = self.cap.timestamp_ms()
        if self.kind == "device" and driver_ms > 0 and abs(driver_ms * 1e6 - read_ns) < 1e9:
            t_ns, source = round(driver_ms * 1e6), "driver"
            self.ctx.gauge("camera_pipeline_delay_ms", (read_ns - t_ns) / 1e6)
        else:
            t_ns, source = read_ns - round(self.params.pipeline_delay_ms * 1e6), "read"
        return self._publish(frame, t_ns, source, read_ns)

    def _publish(self, frame: np.ndarray, t_ns: int, t_source: str, now_ns: int) -> list[Out]:
        outs: list[Out] = []
        stream = self.ctx.outputs.get("frame", "frame")  # counted on the stream users see
        if frame.size == 0 or frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] not in (1, 3, 4)):
            self.ctx.reject(stream, "bad_frame", f"the source gave a frame of shape {list(frame.shape)}")
            return outs
        frame = _to_bgr8(frame)
        if self.shape is None:
            self.shape = frame.shape
        elif frame.shape != self.shape:
            outs.append(Out.record("status", {
                "event": "resolution_changed", "from": list(self.shape), "to": list(frame.shape),
                "action": self.params.on_resize,
            }, now_ns))
            if self.params.on_resize == "refuse":
                self.ctx.reject(stream, "resolution_changed", f"{frame.shape} != {self.shape}")
                return outs
            frame = cv2.resize(frame, (self.shape[1], self.shape[0]), interpolation=cv2.INTER_AREA)
        self.frames += 1
        outs.append(Out.tensor("frame", frame, t_ns, layout=LAYOUT, t_source=t_source))
        return outs

    # -- losing and finding the source -------------------------------------------------------
    def _lost(self, now_ns: int, why: str) -> list[Out]:
        assert self.cap is not None
        self.cap.release()
        self.cap = None
        self.attempts = 0
        self.lost_at_ns = now_ns
        self.retry_at_ns = now_ns + self._backoff_ns()
        self.next_due_ns = self.retry_at_ns
        self.ctx.log.warning("camera %r lost (%s); reconnecting", self.source, why)
        return [Out.record("status", {"event": "source_lost", "source": str(self.source), "reason": why}, now_ns)]

    def _backoff_ns(self) -> int:
        p = self.params
        return round(min(p.backoff_initial_s * 2**self.attempts, p.backoff_max_s) * 1e9)

    def _reconnect(self, now_ns: int) -> list[Out]:
        if now_ns < self.retry_at_ns:
            self.next_due_ns = self.retry_at_ns
            return []
        self.attempts += 1
        self.cap = self.open_capture()
        if self.cap is not None:
            self.next_due_ns = None
            return [Out.record("status", {
                "event": "source_restored", "source": str(self.source), "attempts": self.attempts,
                "down_ms": (now_ns - self.lost_at_ns) / 1e6,
            }, now_ns)]
        if self.attempts >= self.params.reconnect_attempts:
            self.gave_up = True
            self.next_due_ns = None
            self.ctx.log.error("camera %r: gave up after %d attempts", self.source, self.attempts)
            return [Out.record("status", {
                "event": "gave_up", "source": str(self.source), "attempts": self.attempts,
            }, now_ns)]
        self.retry_at_ns = now_ns + self._backoff_ns()
        self.next_due_ns = self.retry_at_ns
        return []


def _to_bgr8(frame: np.ndarray) -> np.ndarray:
    """Every frame as H x W x 3 uint8 BGR (so a later resize keeps 3 channels: cv2.resize
    drops a trailing channel axis of 1)."""
    if frame.dtype != np.uint8:
        frame = cv2.convertScaleAbs(frame)
    if frame.ndim == 2 or frame.shape[2] == 1:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    return frame

