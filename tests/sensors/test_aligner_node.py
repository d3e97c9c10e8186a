"""The aligner node through NodeHarness, fed by the camera and microphone file sources."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sensorfuse.engine.testing import NodeHarness
from sensorfuse.engine.wire import Message
from sensorfuse.nodes.aligner import AlignerNode
from sensorfuse.nodes.camera import CameraNode
from sensorfuse.nodes.microphone import MicrophoneNode
from tests.sensors.av_sync import click_offsets_ms, flash_ticks
from tests.sensors.conftest import FLASH_FRAMES, FPS, write_click_wav

pytestmark = pytest.mark.timeout(60)
ALIGN = {
    "trigger": "frame", "lateness_ms": 200,
    "streams": {"frame": {"policy": "nearest", "slop_ms": 5},
                "audio": {"policy": "window", "window_ms": 200}},
}


def capture(flash_video: Path, wav: Path) -> tuple[list[Message], list[Message]]:
    cam = NodeHarness(CameraNode, {"source": str(flash_video), "pace": "max"}, streams={"frame": "cam0/frame"})
    mic = NodeHarness(MicrophoneNode, {"file": str(wav), "pace": "max"},
                      streams={"audio": "mic0/audio", "audio16k": "mic0/audio16k"})
    audio = [m for m in mic.produce_all() + mic.finish() if m.stream == "mic0/audio16k"]
    return cam.produce_all(), audio


def align(frames: list[Message], audio: list[Message], params: dict[str, Any] = ALIGN) -> tuple[NodeHarness, list]:
    h = NodeHarness(AlignerNode, params, streams={"ticks": "align/ticks"})
    arrivals = sorted([("frame", m) for m in frames] + [("audio", m) for m in audio], key=lambda pm: pm[1].t_ns)
    for port, msg in arrivals:
        h.send(port, msg)
    h.finish()
    return h, [m.record for m in h.published]


@pytest.mark.parametrize("offset_ms", [0.0, 40.0])
def test_flash_and_click_line_up_and_a_real_offset_is_measured(
    flash_video: Path, tmp_path: Path, offset_ms: float
) -> None:
    wav = write_click_wav(tmp_path / "c.wav", seconds=2.5, clicks_s=tuple(k / FPS for k in FLASH_FRAMES),
                          offset_s=offset_ms / 1000)
    h, ticks = align(*capture(flash_video, wav))
    assert len(ticks) == 70 and [t["tick"] for t in ticks] == list(range(70))
    assert len(flash_ticks(ticks)) == len(FLASH_FRAMES)
    offsets = click_offsets_ms(ticks)
    assert len(offsets) == len(FLASH_FRAMES)
    assert all(abs(o - offset_ms) <= 1.0 for o in offsets), offsets
    assert h.ctx.rejected == {}
    assert ticks[40]["mask"] == {"frame": True, "audio": True} and ticks[40]["emitted_by"] == "watermark"


def test_unlisted_ports_join_as_optional_and_drops_are_counted_by_stream(flash_video: Path, click_wav: Path) -> None:
    frames, audio = capture(flash_video, click_wav)
    params = {"trigger": "frame", "streams": {"frame": {"policy": "nearest", "slop_ms": 5, "embed": False}}}
    h = NodeHarness(AlignerNode, params, streams={"ticks": "align/ticks"})
    for m in audio[:20]:  # ~400 ms of audio, on a port the params do not list
        h.send("audio", m)
    for m in frames[:10]:
        h.send("frame", m)
    h.send("frame", frames[3])  # a duplicate
    h.finish()
    ticks = [m.record for m in h.published]
    assert h.ctx.rejected[("cam0/frame", "duplicate_seq")] == 1
    assert "data" not in ticks[0]["members"]["frame"]
    assert all(t["status"]["audio"] == "ok" and t["mask"]["audio"] for t in ticks)
    assert ticks[-1]["streams"] == {"audio": "mic0/audio16k", "frame": "cam0/frame"}
    window = ticks[-1]["members"]["audio"]
    assert window["rate"] == 16_000 and window["n"] == 16_000 and window["channels"] == 1
    assert np.frombuffer(window["data"], np.float32).shape == (16_000,)
