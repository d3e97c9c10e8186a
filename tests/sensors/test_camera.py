"""Camera node logic through NodeHarness: file timestamps and pacing, live stamps,
reconnect with capped backoff, resolution changes, clear start-up errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sensorfuse.engine.errors import StartupError
from sensorfuse.engine.testing import NodeHarness
from sensorfuse.nodes.camera import CameraNode, Capture
from sfhelpers import record_errors
from tests.sensors.conftest import FLASH_FRAMES, FPS

pytestmark = pytest.mark.timeout(30)
STREAMS = {"frame": "cam0/frame", "status": "cam0/status"}
MS = 1_000_000


def test_file_frames_carry_the_files_timestamps_not_a_counter(flash_video: Path) -> None:
    h = NodeHarness(CameraNode, {"source": str(flash_video), "pace": "max"}, streams=STREAMS)
    msgs = h.produce_all()
    assert len(msgs) == 70
    for k, m in enumerate(msgs):
        assert abs(m.t_ns - k * 1e9 / FPS) < 1000, (k, m.t_ns)
        assert m.header.shape == [48, 64, 3] and m.header.layout == "HWC/bgr8" and m.array.dtype == np.uint8
        assert m.header.meta["t_source"] == "file"
    bright = [k for k, m in enumerate(msgs) if m.array.mean() > 128]
    assert bright == list(FLASH_FRAMES)


def test_native_pace_publishes_each_frame_when_its_time_comes(flash_video: Path) -> None:
    h = NodeHarness(CameraNode, {"source": str(flash_video), "clock": "live"}, streams=STREAMS)
    t0 = 5_000_000_000
    first = h.produce(now_ns=t0)
    assert first is not None and len(first) == 1 and first[0].t_ns == t0  # live clock: start + media time
    assert h.produce(now_ns=t0 + MS) == []  # frame 1 is due at 33.3 ms
    assert h.node.next_due_ns is not None and abs(h.node.next_due_ns - (t0 + 1e9 / FPS)) < 1000
    second = h.produce(now_ns=h.node.next_due_ns)
    assert second is not None and abs(second[0].t_ns - (t0 + 1e9 / FPS)) < 1000


class FlakyCapture:
    """Frames of `shape` until `fail_after` reads, then every read fails."""

    def __init__(self, fail_after: int, shape: tuple[int, int, int] = (4, 6, 3), driver_ms: float = 0.0) -> None:
        self.fail_after = fail_after
        self.reads = 0
        self.shape = shape
        self.driver_ms = driver_ms
        self.released = False

    def read(self) -> tuple[bool, np.ndarray | None]:
        self.reads += 1
        if self.reads > self.fail_after:
            return False, None
        return True, np.full(self.shape, self.reads, np.uint8)

    def timestamp_ms(self) -> float:
        return self.driver_ms

    def release(self) -> None:
        self.released = True


class FlakyCamera(CameraNode):
    """A device that fails after 3 frames, refuses 2 reopen attempts, then comes back."""

    script: list[Capture | None] = []

    def open_capture(self) -> Capture | None:
        return self.script.pop(0)


def flaky_harness(script: list[Capture | None], **params: object) -> NodeHarness:
    FlakyCamera.script = list(script)
    return NodeHarness(FlakyCamera, {"source": 0, "backoff_initial_s": 0.1, "backoff_max_s": 0.3, **params},
                       streams=STREAMS)


def test_a_failing_source_is_lost_reconnected_with_capped_backoff_and_resumes() -> None:
    h = flaky_harness([FlakyCapture(3), None, None, None, FlakyCapture(100)], reconnect_attempts=10)
    now = 1_000 * MS
    events: list[str] = []
    frames = 0
    retry_times: list[int] = []
    for _ in range(40):
        out = h.produce(now_ns=now)
        assert out is not None
        for m in out:
            if m.stream == "cam0/status":
                events.append(m.record["event"])
            else:
                frames += 1
        if h.node.next_due_ns is not None and h.node.next_due_ns > now:
            retry_times.append(h.node.next_due_ns - now)
            now = h.node.next_due_ns
        else:
            now += 33 * MS
    assert events == ["source_lost", "source_restored"]
    assert retry_times[:4] == [100 * MS, 200 * MS, 300 * MS, 300 * MS]  # doubling, capped at backoff_max
    restored = next(m for m in h.published if m.stream == "cam0/status" and m.record["event"] == "source_restored")
    assert restored.record["attempts"] == 4 and restored.record["down_ms"] == pytest.approx(900)
    assert [e for m in h.published if m.stream == "cam0/status" for e in record_errors(m.stream, m.record)] == []
    assert frames > 3 + 20, "frames resume after the source is back"
    seqs = [m.seq for m in h.published if m.stream == "cam0/frame"]
    assert seqs == list(range(len(seqs)))


def test_gives_up_after_the_configured_attempts_and_ends_the_stream() -> None:
    h = flaky_harness([FlakyCapture(1), None, None], reconnect_attempts=2)
    now = 0
    for _ in range(10):
        out = h.produce(now_ns=now)
        if out is None:
            break
        now = max(now + MS, h.node.next_due_ns or 0)
    else:
        pytest.fail("the camera never gave up")
    events = [m.record["event"] for m in h.published if m.stream == "cam0/status"]
    assert events == ["source_lost", "gave_up"]
    assert [e for m in h.published if m.stream == "cam0/status" for e in record_errors(m.stream, m.record)] == []


def test_live_stamps_are_driver_time_when_plausible_else_read_time_minus_delay() -> None:
    h = flaky_harness([FlakyCapture(5)], pipeline_delay_ms=25)
    before = h.ctx.clock.now_ns()
    (msg,) = h.produce(now_ns=before) or []
    after = h.ctx.clock.now_ns()
    assert msg.header.meta["t_source"] == "read"
    assert before - 25 * MS <= msg.t_ns <= after - 25 * MS
    driver_ms = (h.ctx.clock.now_ns() - 40 * MS) / 1e6
    h2 = flaky_harness([FlakyCapture(5, driver_ms=driver_ms)])
    (msg,) = h2.produce(now_ns=0) or []
    assert msg.header.meta["t_source"] == "driver" and msg.t_ns == round(driver_ms * 1e6)


class ResizingCapture(FlakyCapture):
    def read(self) -> tuple[bool, np.ndarray | None]:
        self.shape = (4, 6, 3) if self.reads < 2 else (8, 12, 3)
        return super().read()


@pytest.mark.parametrize("on_resize", ["resize", "refuse"])
def test_a_resolution_change_is_resized_or_refused_with_a_status(on_resize: str) -> None:
    h = flaky_harness([ResizingCapture(4)], on_resize=on_resize)
    for _ in range(4):
        h.produce(now_ns=0)
    frames = [m for m in h.published if m.stream == "cam0/frame"]
    changes = [m.record for m in h.published if m.stream == "cam0/status"]
    assert [c["event"] for c in changes] == ["resolution_changed"] * 2
    assert changes[0]["from"] == [4, 6, 3] and changes[0]["to"] == [8, 12, 3]
    assert [e for c in changes for e in record_errors("cam0/status", c)] == []
    if on_resize == "resize":
        assert len(frames) == 4 and all(m.header.shape == [4, 6, 3] for m in frames)
    else:
        assert len(frames) == 2 and h.ctx.rejected == {("cam0/frame", "resolution_changed"): 2}


def test_start_up_errors_are_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(StartupError, match="does not exist"):
        NodeHarness(CameraNode, {"source": str(tmp_path / "nope.mp4")}, streams=STREAMS)
    with pytest.raises(StartupError, match="sensorfuse devices"):
        flaky_harness([None])
    with pytest.raises(StartupError, match="on_resize"):
        NodeHarness(CameraNode, {"source": 0, "on_resize": "stretch"}, streams=STREAMS)
