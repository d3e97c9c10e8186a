"""Microphone source (sounddevice / PortAudio), or an audio file that behaves the same.

Ports
    audio    (out) audio float32 [frames, channels] at the device rate, ``rate`` and
             ``sample0`` set -> ``mic0/audio``. ``t_ns`` is the ADC time of the block's
             first sample on the session clock, sample-exact within the stream
             (``anchor + sample0 * 1e9 / rate``; `sensorfuse.nodes.audio_stamps`).
    audio16k (out) audio float32 [frames, 1] at 16 kHz (soxr streaming resampler, mono
             downmix); ``sample0`` counts 16 kHz samples -> ``mic0/audio16k``.
    status   (out) records ``{event: discontinuity, gap_samples, reason}`` -> ``mic0/status``.
    A block after a gap carries ``meta = {"discontinuity": True, "gap_samples": n}``
    (``overflow: true`` when the driver said so, ``reanchor_ns`` when the clock was
    re-anchored); its ``sample0`` and ``t_ns`` jump over the missing samples.

Rates
    Blocks of ``block_ms`` (10-32 ms) at the device's default rate unless ``rate`` is set.
    A file plays at its own rate, paced like a device (``pace: native``: a block is
    published when its last sample would have been captured) or as fast as the graph
    takes it (``pace: max``). File stamps follow ``clock`` (`sensorfuse.nodes.media_clock`).

Failure behaviour
    No PortAudio library, no such device, or a stream that cannot open: the node stops
    at start with one line naming what is missing and how to install or list it (not
    restarted). Input overflows and blocks the node had to drop are counted
    (``mic_overflows``, ``mic_gaps`` gauges) and published as discontinuities; the
    sample clock's drift against the host clock is the ``mic_clock_drift_ppm`` gauge.
    A device's first ``warmup_ms`` of audio is discarded: host APIs settle their
    latency, and with it the ADC time, while a stream starts.

Config example::

    mic:
      kind: microphone
      params: {device: default, block_ms: 20}        # or {file: speech.wav, pace: native}
      outputs: {audio: mic0/audio, audio16k: mic0/audio16k, status: mic0/status}
"""

from __future__ import annotations

import os
import queue
from collections.abc import Iterable
from typing import Annotated, Any

import msgspec
import numpy as np

from sensorfuse.engine.errors import StartupError
from sensorfuse.engine.node import Node, Out, OutputSpec
from sensorfuse.engine.params import NonNegativeFloat, PositiveInt, require_file
from sensorfuse.nodes.audio_stamps import NS, BlockStamper, Resampler16k, Stamp
from sensorfuse.nodes.media_clock import ClockMode, MediaClock, PaceMode

PORTAUDIO_HINT = "install it with `sudo apt-get install libportaudio2` (macOS: `brew install portaudio`)"


def import_sounddevice() -> Any:
    """sounddevice, or a StartupError naming the missing PortAudio library."""
    try:
        import sounddevice
    except OSError as exc:  # raised at import when libportaudio cannot be loaded
        raise StartupError(f"microphone: the PortAudio library is missing ({exc}); {PORTAUDIO_HINT}") from None
    return sounddevice


class MicrophoneNode(Node):
    class Params(msgspec.Struct, forbid_unknown_fields=True):
        device: str | int | None = None  # name (substring) or index; None: the default input
        file: str | None = None  # WAV/FLAC/...: play this instead of a device
        rate: PositiveInt | None = None
        channels: PositiveInt = 1
        block_ms: Annotated[float, msgspec.Meta(ge=10, le=32)] = 20.0
        clock: ClockMode = "file"
        origin_ns: int = 0
        pace: PaceMode = "native"
        max_skew_ms: NonNegativeFloat = 20.0
        warmup_ms: NonNegativeFloat = 1000.0  # device only: discard the stream's first blocks (unsettled timing)
        queue_blocks: PositiveInt = 200  # callback -> node queue (4 s of 20 ms blocks)

    outputs = {
        "audio": OutputSpec(kind="audio", doc="float32 [frames, channels] at the device rate"),
        "audio16k": OutputSpec(kind="audio", doc="float32 [frames, 1] at 16 kHz"),
        "status": OutputSpec(kind="record", doc="discontinuity records"),
    }

    @classmethod
    def check(cls, params: Params) -> None:
        if params.file is not None:
            require_file("file", params.file, "audio file")

    def start(self) -> None:
        p = self.params
        self.overflows = 0
        self.gaps = 0
        self.blocks = 0
        self.stream: Any = None
        self.sound_file: Any = None
        self.next_due_ns = None
        if p.file is not None:
            self._open_file(p.file)
        else:
            self._open_device()
        self.block_frames = max(1, round(self.rate * p.block_ms / 1000))
        self.stamper = BlockStamper(self.rate, max_skew_ns=round(p.max_skew_ms * 1e6))
        self.resampler = Resampler16k(self.rate)

    # -- sources ---------------------------------------------------------------------------
    def _open_file(self, path: str) -> None:
        import soundfile

        if not os.path.exists(path):
            raise StartupError(f"microphone: audio file {path!r} does not exist")
        try:
            self.sound_file = soundfile.SoundFile(path)
        except (RuntimeError, soundfile.LibsndfileError) as exc:
            raise StartupError(f"microphone: cannot read {path!r}: {exc}") from None
        self.rate = int(self.sound_file.samplerate)
        self.channels = int(self.sound_file.channels)
        try:
            self.media = MediaClock(self.params.clock, self.params.origin_ns, self.params.pace)  # type: ignore[arg-type]
        except ValueError as exc:
            raise StartupError(f"microphone: {exc}") from None
        self.file_sample = 0

    def _open_device(self) -> None:
        sd = import_sounddevice()
        p = self.params
        try:
            info = sd.query_devices(p.device, "input")
        except (ValueError, sd.PortAudioError) as exc:
            raise StartupError(
                f"microphone: no input device {p.device!r} ({exc}); `sensorfuse devices` lists the inputs"
            ) from None
        self.rate = int(p.rate or info["default_samplerate"])
        self.channels = p.channels
        # (samples, ADC time, callback time, monotonic ns, overflow, frames dropped before it)
        self.callbacks: queue.Queue[tuple[np.ndarray, float, float, int, bool, int]] = queue.Queue(p.queue_blocks)
        self.offsets: list[int] = []  # monotonic - stream time, per callback (min = best estimate)
        self.dropped_in_node = 0
        self.dropped_frames = 0  # frames lost to a full queue: a gap we can count exactly
        self.accounted_frames = 0
        self.warmup_blocks = 0
        block = max(1, round(self.rate * p.block_ms / 1000))
        try:
            self.stream = sd.InputStream(
                device=p.device, samplerate=self.rate, channels=self.channels, dtype="float32",
                blocksize=block, callback=self._callback,
            )
            self.stream.start()
            self.stream_started_ns = self.ctx.clock.now_ns()
        except sd.PortAudioError as exc:
            raise StartupError(f"microphone: cannot open input {info['name']!r} at {self.rate} Hz: {exc}") from None
        self.ctx.log.info("microphone %r at %d Hz, %d ch, %d-frame blocks", info["name"], self.rate,
                          self.channels, block)

    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        # PortAudio's thread: copy and hand over, nothing else (no logging, no allocation-heavy work).
        mono_ns = self.ctx.clock.now_ns()
        item = (indata.copy(), float(time_info.inputBufferAdcTime), float(time_info.currentTime), mono_ns,
                bool(status.input_overflow), self.dropped_frames)
        try:
            self.callbacks.put_nowait(item)
        except queue.Full:
            self.dropped_in_node += 1
            self.dropped_frames += frames

    def stop(self) -> None:
        if self.stream is not None:
            self.stream.stop()
            self.stream.close()
            self.stream = None
        if self.sound_file is not None:
            self.sound_file.close()
            self.sound_file = None

    # -- producing -------------------------------------------------------------------------
    def produce(self, now_ns: int) -> Iterable[Out] | None:
        if self.sound_file is not None:
            return self._produce_file(now_ns)
        outs: list[Out] = []
        for _ in range(64):
            try:
                data, adc_s, current_s, mono_ns, overflow, dropped_before = self.callbacks.get_nowait()
            except queue.Empty:
                break
            adc_ns = self._adc_ns(data, adc_s, current_s, mono_ns)
            if mono_ns - self.stream_started_ns < self.params.warmup_ms * 1e6:
                # Host APIs settle their latency (and so the ADC time) during the first blocks.
                self.warmup_blocks += 1
                continue
            lost = dropped_before - self.accounted_frames
            self.accounted_frames = dropped_before
            outs += self._block(data, adc_ns, overflow=overflow, lost_frames=lost)
        self.next_due_ns = now_ns + round(self.params.block_ms * 1e6 / 2)
        return outs

    def _adc_ns(self, data: np.ndarray, adc_s: float, current_s: float, mono_ns: int) -> int:
        """The block's first-sample ADC time on the session clock."""
        # PortAudio's stream clock may differ from CLOCK_MONOTONIC: estimate the offset from
        # the callback's own (current time, monotonic read) pairs; the smallest is the least delayed.
        self.offsets.append(mono_ns - round(current_s * NS))
        del self.offsets[:-256]
        offset = min(self.offsets)
        if adc_s > 0:
            return round(adc_s * NS) + offset
        # Host APIs that report no ADC time: callback time minus the block and the input latency.
        latency_s = float(self.stream.latency) if self.stream is not None else 0.0
        return round(current_s * NS) + offset - len(data) * NS // self.rate - round(latency_s * NS)

    def _produce_file(self, now_ns: int) -> list[Out] | None:
        self.media.begin(now_ns)
        media_end_ns = (self.file_sample + self.block_frames) * NS // self.rate
        due = self.media.due(media_end_ns)
        if due is not None and due > now_ns:
            self.next_due_ns = due
            return []
        data = self.sound_file.read(self.block_frames, dtype="float32", always_2d=True)
        if len(data) == 0:
            return None if self.blocks or self.file_sample else None
        t_ns = self.media.stamp(self.file_sample * NS // self.rate)
        self.file_sample += len(data)
        self.next_due_ns = None
        return self._block(data, t_ns, overflow=False)

    def _block(self, data: np.ndarray, measured_ns: int, *, overflow: bool, lost_frames: int = 0) -> list[Out]:
        lost = lost_frames if self.blocks else 0  # nothing is "missing" before the first block
        stamp = self.stamper.stamp(len(data), measured_ns, overflow=overflow, lost_frames=lost)
        outs: list[Out] = []
        meta: dict[str, Any] = {}
        if overflow:
            self.overflows += 1
            self.ctx.gauge("mic_overflows", self.overflows)
        if stamp.discontinuity and self.blocks:
            outs += self._discontinuity(stamp, meta)
        self.blocks += 1
        outs.append(Out.audio("audio", data, stamp.t_ns, rate=self.rate, sample0=stamp.sample0, **meta))
        samples16, s16, t16 = self.resampler.push(data, stamp.t_ns, stamp.sample0, new_segment=bool(meta))
        if len(samples16):
            outs.append(Out.audio("audio16k", samples16, t16, rate=16_000, sample0=s16, **meta))
        if self.blocks % max(1, round(1000 / self.params.block_ms)) == 0:
            drift = self.stamper.drift_ppm()
            if drift is not None:
                self.ctx.gauge("mic_clock_drift_ppm", drift)
        return outs

    def _discontinuity(self, stamp: Stamp, meta: dict[str, Any]) -> list[Out]:
        """Close the resampler's segment and describe the gap (meta is filled in place)."""
        meta.update(discontinuity=True, gap_samples=stamp.gap_samples)
        if stamp.overflow:
            meta["overflow"] = True
        if stamp.reanchor_ns:
            meta["reanchor_ns"] = stamp.reanchor_ns
        self.gaps += 1
        self.ctx.gauge("mic_gaps", self.gaps)
        outs = []
        tail, s16, t16 = self.resampler.flush()
        if len(tail):
            outs.append(Out.audio("audio16k", tail, t16, rate=16_000, sample0=s16))
        reason = "overflow" if stamp.overflow else "clock_reanchor" if stamp.reanchor_ns else "dropped_in_node"
        outs.append(Out.record("status", {"event": "discontinuity", "reason": reason, **meta}, stamp.t_ns))
        return outs

    def finish(self) -> Iterable[Out]:
        tail, s16, t16 = self.resampler.flush()
        return [Out.audio("audio16k", tail, t16, rate=16_000, sample0=s16)] if len(tail) else []
