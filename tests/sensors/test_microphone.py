"""Microphone node logic: the audio-file source, the device path through a fake
sounddevice (callback, ADC time, gaps, drift), sample-exact stamps and clear errors."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

import sensorfuse.nodes.microphone as microphone
from sensorfuse.engine.errors import StartupError
from sensorfuse.engine.testing import NodeHarness
from sensorfuse.nodes.audio_stamps import BlockStamper
from sensorfuse.nodes.microphone import MicrophoneNode
from sfhelpers import record_errors
from tests.sensors.conftest import write_click_wav

pytestmark = pytest.mark.timeout(30)
STREAMS = {"audio": "mic0/audio", "audio16k": "mic0/audio16k", "status": "mic0/status"}
NS = 1_000_000_000


def by_stream(msgs: list, stream: str) -> list:
    return [m for m in msgs if m.stream == stream]


def check_sample_exact(msgs: list, rate: int) -> None:
    sample = msgs[0].header.sample0
    t0 = msgs[0].t_ns - sample * NS // rate
    for m in msgs:
        assert m.header.rate == rate and m.header.sample0 == sample
        assert m.t_ns == t0 + m.header.sample0 * NS // rate
        assert m.array.dtype == np.float32 and m.array.ndim == 2
        sample += m.array.shape[0]


def test_file_source_publishes_sample_exact_blocks_and_a_16k_stream(tmp_path: Path) -> None:
    wav = write_click_wav(tmp_path / "c.wav", seconds=1.0, rate=48_000, channels=2, clicks_s=(0.5,))
    h = NodeHarness(MicrophoneNode, {"file": str(wav), "pace": "max"}, streams=STREAMS)
    msgs = h.produce_all() + h.finish()
    audio, audio16k = by_stream(msgs, "mic0/audio"), by_stream(msgs, "mic0/audio16k")
    assert [m.header.shape for m in audio[:2]] == [[960, 2], [960, 2]]  # 20 ms blocks, both channels
    check_sample_exact(audio, 48_000)
    assert audio[0].t_ns == 0 and sum(len(m.array) for m in audio) == 48_000
    check_sample_exact(audio16k, 16_000)
    assert all(m.header.shape[1] == 1 for m in audio16k)
    assert sum(len(m.array) for m in audio16k) == 16_000
    full = np.concatenate([m.array[:, 0] for m in audio16k])
    assert abs(int(np.argmax(full)) - 8000) <= 2, "the resampler keeps the click at its time"
    assert not by_stream(msgs, "mic0/status")


def test_file_source_paces_blocks_at_their_capture_time(tmp_path: Path) -> None:
    wav = write_click_wav(tmp_path / "c.wav", seconds=0.2, rate=16_000)
    h = NodeHarness(MicrophoneNode, {"file": str(wav), "clock": "live"}, streams=STREAMS)
    t0 = 7 * NS
    assert h.produce(now_ns=t0) == []  # the first 20 ms block is complete at t0 + 20 ms
    assert h.node.next_due_ns == t0 + 20_000_000
    out = h.produce(now_ns=t0 + 20_000_000)
    assert out is not None and by_stream(out, "mic0/audio")[0].t_ns == t0


class FakeStream:
    def __init__(self, **kw: Any) -> None:
        self.kw = kw
        self.callback = kw["callback"]
        self.latency = 0.01
        self.started = self.closed = False

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        self.closed = True


class FakeSoundDevice:
    class PortAudioError(Exception):
        pass

    def __init__(self, rate: int = 16_000) -> None:
        self.rate = rate
        self.stream: FakeStream | None = None
        self.default = SimpleNamespace(device=[0, 0])

    def query_devices(self, device: Any = None, kind: str | None = None) -> Any:
        if device == "missing":
            raise ValueError("No input device matching 'missing'")
        return {"name": "fake input", "default_samplerate": float(self.rate), "max_input_channels": 1}

    def InputStream(self, **kw: Any) -> FakeStream:  # noqa: N802 (sounddevice's name)
        self.stream = FakeStream(**kw)
        return self.stream


@pytest.fixture
def fake_sd(monkeypatch: pytest.MonkeyPatch) -> FakeSoundDevice:
    sd = FakeSoundDevice()
    monkeypatch.setattr(microphone, "import_sounddevice", lambda: sd)
    return sd


def deliver(sd: FakeSoundDevice, block: np.ndarray, adc_s: float, *, overflow: bool = False) -> None:
    """What PortAudio's thread does: call back with the block and its ADC time."""
    assert sd.stream is not None
    info = SimpleNamespace(inputBufferAdcTime=adc_s, currentTime=time.monotonic_ns() / NS)
    sd.stream.callback(block, len(block), info, SimpleNamespace(input_overflow=overflow))


def test_device_blocks_are_stamped_from_adc_time_sample_exact_despite_jitter(fake_sd: FakeSoundDevice) -> None:
    h = NodeHarness(MicrophoneNode, {"device": "fake", "block_ms": 20, "warmup_ms": 0}, streams=STREAMS)
    assert fake_sd.stream is not None and fake_sd.stream.kw["blocksize"] == 320 and fake_sd.stream.started
    base = time.monotonic_ns() / NS
    rng = np.random.default_rng(1)
    for k in range(50):  # ADC times jitter by up to +-0.3 ms around the true block starts
        deliver(fake_sd, np.full((320, 1), k, np.float32), base + k * 0.02 + rng.uniform(-3e-4, 3e-4))
    msgs = h.produce(now_ns=0) or []
    audio = by_stream(msgs, "mic0/audio")
    assert len(audio) == 50
    check_sample_exact(audio, 16_000)
    assert abs(audio[0].t_ns - base * NS) < 2_000_000, "first block: its ADC time on the session clock"
    assert not by_stream(msgs, "mic0/status")
    h.close()
    assert fake_sd.stream.closed


def test_an_overflow_gap_is_a_counted_discontinuity_never_concatenated(fake_sd: FakeSoundDevice) -> None:
    h = NodeHarness(MicrophoneNode, {"device": 0, "warmup_ms": 0}, streams=STREAMS)
    base = time.monotonic_ns() / NS
    for k in [0, 1, 2, 8, 9]:  # blocks 3..7 never arrived; the driver flagged an overflow
        deliver(fake_sd, np.zeros((320, 1), np.float32), base + k * 0.02, overflow=(k == 8))
    msgs = h.produce(now_ns=0) or []
    audio = by_stream(msgs, "mic0/audio")
    assert [m.header.sample0 for m in audio] == [0, 320, 640, 8 * 320, 9 * 320]
    after_gap = audio[3]
    assert after_gap.header.meta == {"discontinuity": True, "gap_samples": 5 * 320, "overflow": True}
    assert after_gap.t_ns - audio[0].t_ns == 8 * 20_000_000
    (status,) = by_stream(msgs, "mic0/status")
    assert status.record["event"] == "discontinuity" and status.record["gap_samples"] == 1600
    assert record_errors("mic0/status", status.record) == []
    resampled = by_stream(msgs, "mic0/audio16k")
    gap_blocks = [m for m in resampled if m.header.meta.get("discontinuity")]
    assert gap_blocks and gap_blocks[0].header.sample0 == 8 * 320


def test_drift_is_estimated_and_only_a_persistent_skew_reanchors() -> None:
    stamper = BlockStamper(16_000, max_skew_ns=20_000_000)
    slow = 1 + 150e-6  # the device's sample clock runs 150 ppm slow against the host
    for k in range(500):
        stamper.stamp(320, round(k * 0.02 * slow * NS))
    assert stamper.drift_ppm() == pytest.approx(150, abs=1)
    # One outlier, and a jump without an overflow, move nothing: PortAudio lost no sample.
    assert not stamper.stamp(320, round(500 * 0.02 * slow * NS) + 60_000_000).discontinuity
    stamps = [stamper.stamp(320, round(k * 0.02 * slow * NS) + 60_000_000) for k in range(501, 540)]
    moved = [s for s in stamps if s.discontinuity]
    assert len(moved) == 1 and moved[0].gap_samples == 0
    assert moved[0].reanchor_ns == pytest.approx(60_000_000 + 150e-6 * 10.5 * NS, abs=1_000_000)


def test_blocks_dropped_in_the_node_are_an_exact_gap(fake_sd: FakeSoundDevice) -> None:
    h = NodeHarness(MicrophoneNode, {"device": 0, "warmup_ms": 0, "queue_blocks": 2}, streams=STREAMS)
    base = time.monotonic_ns() / NS
    for k in range(5):  # the queue holds 2: blocks 2..4 are dropped before the node runs
        deliver(fake_sd, np.zeros((320, 1), np.float32), base + k * 0.02)
    first = by_stream(h.produce(now_ns=0) or [], "mic0/audio")
    deliver(fake_sd, np.zeros((320, 1), np.float32), base + 5 * 0.02)
    (after,) = by_stream(h.produce(now_ns=0) or [], "mic0/audio")
    assert [m.header.sample0 for m in first] == [0, 320] and after.header.sample0 == 5 * 320
    assert after.header.meta == {"discontinuity": True, "gap_samples": 3 * 320}


def test_device_warmup_blocks_are_discarded(fake_sd: FakeSoundDevice) -> None:
    h = NodeHarness(MicrophoneNode, {"device": 0, "warmup_ms": 10_000}, streams=STREAMS)
    deliver(fake_sd, np.zeros((320, 1), np.float32), time.monotonic_ns() / NS)
    assert h.produce(now_ns=0) == [] and h.node.warmup_blocks == 1


def test_missing_portaudio_or_device_is_one_clear_error(monkeypatch: pytest.MonkeyPatch, fake_sd: FakeSoundDevice) -> None:
    with pytest.raises(StartupError, match="sensorfuse devices"):
        NodeHarness(MicrophoneNode, {"device": "missing"}, streams=STREAMS)

    def no_portaudio() -> Any:
        raise StartupError("microphone: the PortAudio library is missing (PortAudio library not found); "
                           + microphone.PORTAUDIO_HINT)

    monkeypatch.setattr(microphone, "import_sounddevice", no_portaudio)
    with pytest.raises(StartupError, match="libportaudio2"):
        NodeHarness(MicrophoneNode, {}, streams=STREAMS)
    with pytest.raises(StartupError, match="block_ms"):
        NodeHarness(MicrophoneNode, {"block_ms": 5}, streams=STREAMS)


def test_import_sounddevice_turns_a_missing_library_into_a_startup_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def fake_import(name: str, *args: Any, **kw: Any) -> Any:
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
        return real_import(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(StartupError, match="PortAudio library is missing.*apt-get install libportaudio2"):
        microphone.import_sounddevice()
