"""The microphone through real PortAudio: a PulseAudio null sink's monitor is the input
(the test starts PulseAudio if none runs, and plays a tone into the sink). At 16 kHz for
10 s: no overflow, no sample lost or repeated, monotonic stamps, sample-exact between
anchors. On this VM a freshly loaded null sink steps its clock by ~0.3 s once or twice
while playback settles; the node follows with flagged ``clock_reanchor`` records
(gap_samples 0), which the test allows and checks, rather than hiding the step."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from sensorfuse.engine.testing import NodeHarness
from sensorfuse.nodes.microphone import MicrophoneNode
from sfhelpers import pactl, wait_for

pytestmark = pytest.mark.timeout(90)
RATE = 16_000
SECONDS = 10
NS = 1_000_000_000


def test_microphone_via_portaudio_is_sample_exact_with_no_overflow(null_sink: str, tmp_path: Path) -> None:
    # The tone is written at the null sink's own rate (44.1 kHz): a 16 kHz player makes
    # PulseAudio rate-adapt the sink, and its clock then wanders by milliseconds.
    tone = tmp_path / "tone.wav"
    t = np.arange(44_100 * (SECONDS + 4)) / 44_100
    soundfile.write(str(tone), (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 44_100)
    player = subprocess.Popen(["paplay", f"--device={null_sink}", str(tone)], stderr=subprocess.PIPE)
    try:
        wait_for(lambda: f"{null_sink}\t" in pactl("list", "short", "sinks").stdout
                 and "RUNNING" in next(line for line in pactl("list", "short", "sinks").stdout.splitlines()
                                       if f"\t{null_sink}\t" in line), 10, "the null sink to run")
        h = NodeHarness(MicrophoneNode, {"device": "pulse", "rate": RATE, "block_ms": 20, "warmup_ms": 2000},
                        streams={"audio": "mic0/audio", "audio16k": "mic0/audio16k", "status": "mic0/status"})
        started = time.monotonic_ns()
        msgs = []
        deadline = time.monotonic() + SECONDS + 20
        while sum(m.array.shape[0] for m in msgs if m.stream == "mic0/audio") < SECONDS * RATE:
            assert time.monotonic() < deadline, "PortAudio stopped delivering"
            q = h.node.callbacks
            with q.not_empty:  # wait for PortAudio's callback, not a fixed sleep
                q.not_empty.wait_for(lambda: len(q.queue) > 0, timeout=1.0)
            msgs += h.produce(now_ns=h.ctx.clock.now_ns()) or []
        drift = h.node.stamper.drift_ppm()
        h.close()
    finally:
        player.kill()
        player.wait()
    audio = [m for m in msgs if m.stream == "mic0/audio"]
    status = [m.record for m in msgs if m.stream == "mic0/status"]
    assert h.node.overflows == 0 and h.node.dropped_in_node == 0
    # A freshly loaded null sink steps its clock once or twice while playback settles
    # (~0.3 s, no sample lost): the node follows with flagged re-anchors, never a gap.
    assert all(r["reason"] == "clock_reanchor" and r["gap_samples"] == 0 for r in status), status
    assert len(status) <= 3, status
    t0 = audio[0].t_ns
    assert abs(t0 - started) < 3 * NS, "stamps are on the session (monotonic) clock"
    sample = 0
    for m in audio:
        assert m.header.rate == RATE and m.header.sample0 == sample, "no sample lost or repeated"
        if m.header.meta.get("reanchor_ns"):
            t0 = m.t_ns - sample * NS // RATE  # a new anchor; sample-exact again from here
        assert m.t_ns == t0 + sample * NS // RATE, "sample-exact within an anchor"
        sample += m.array.shape[0]
    assert [m.t_ns for m in audio] == sorted(m.t_ns for m in audio)
    assert all(300 <= m.array.shape[0] <= 340 for m in audio[1:-1]), "20 ms blocks"
    assert drift is None or abs(drift) < 2000, drift
    loud = [m for m in audio if float(np.sqrt(np.mean(m.array**2))) > 0.05]
    assert len(loud) > len(audio) // 2, "the tone played into the sink was captured"
    assert os.environ["PULSE_SOURCE"].endswith(".monitor")
