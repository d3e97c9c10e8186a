"""Fault: odd frames from a camera (issue 16, item 7). Before: with `on_resize: resize` an
empty frame crashed the node (cv2.resize), one-channel (H, W, 1) frames were published as
2-D arrays labelled `bgr8` after a resize, and refusals were counted under a pseudo-stream
`frame`. Now every published frame is H x W x 3 `bgr8`, an unusable frame is counted
(`bad_frame`) on the camera's own stream, and the node keeps going.
"""

from __future__ import annotations

import numpy as np

from sensorfuse.engine.testing import NodeHarness
from sensorfuse.nodes.camera import CameraNode

STREAMS = {"frame": "cam0/frame", "status": "cam0/status"}


class ScriptedCapture:
    """Returns the given frames in order, then fails."""

    def __init__(self, frames: list[np.ndarray]) -> None:
        self.frames = list(frames)

    def read(self) -> tuple[bool, np.ndarray | None]:
        return (True, self.frames.pop(0)) if self.frames else (False, None)

    def timestamp_ms(self) -> float:
        return 0.0

    def release(self) -> None:
        pass


class ScriptedCamera(CameraNode):
    frames: list[np.ndarray] = []

    def open_capture(self) -> ScriptedCapture:
        return ScriptedCapture(self.frames)


def test_grey_empty_and_resized_frames() -> None:
    ScriptedCamera.frames = [np.full((4, 6, 1), 7, np.uint8), np.zeros((0, 0, 3), np.uint8),
                             np.full((8, 12, 1), 9, np.uint8), np.zeros((4, 6, 5), np.uint8),
                             np.full((4, 6), 3, np.uint8)]
    h = NodeHarness(ScriptedCamera, {"source": 0, "on_resize": "resize", "reconnect_attempts": 1},
                    streams=STREAMS)
    for _ in range(5):
        h.produce(now_ns=0)
    frames = [m for m in h.published if m.stream == "cam0/frame"]
    assert len(frames) == 3
    assert all(m.header.shape == [4, 6, 3] and m.header.layout == "HWC/bgr8" for m in frames)
    assert frames[1].array.min() == 9 and frames[2].array.max() == 3
    assert h.ctx.rejected == {("cam0/frame", "bad_frame"): 2}
