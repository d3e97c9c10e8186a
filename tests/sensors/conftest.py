"""Fixtures for sensor tests: generated media (flash video, click WAV, text files) in tmp dirs."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile

FPS = 30
FLASH_FRAMES = (10, 25, 40, 55)  # frame k is shown at k / FPS seconds


def write_flash_video(path: Path, *, frames: int = 70, fps: int = FPS, size: tuple[int, int] = (64, 48),
                      flashes: tuple[int, ...] = FLASH_FRAMES) -> Path:
    """Dark frames, white at `flashes`; MJPG in AVI (decodable by every OpenCV build)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert writer.isOpened(), "OpenCV cannot write MJPG/AVI here"
    for k in range(frames):
        value = 255 if k in flashes else 16
        writer.write(np.full((size[1], size[0], 3), value, np.uint8))
    writer.release()
    return path


def write_click_wav(path: Path, *, seconds: float, rate: int = 48_000, clicks_s: tuple[float, ...] = (),
                    offset_s: float = 0.0, channels: int = 1) -> Path:
    """Low noise with a one-sample click (then a short decay) at each time + offset."""
    rng = np.random.default_rng(7)
    audio = (rng.standard_normal((round(seconds * rate), channels)) * 1e-3).astype(np.float32)
    for t in clicks_s:
        i = round((t + offset_s) * rate)
        decay = np.exp(-np.arange(64) / 8.0).astype(np.float32)
        audio[i : i + 64] += 0.9 * decay[: len(audio[i : i + 64]), None]
    soundfile.write(str(path), audio, rate, subtype="FLOAT")
    return path


@pytest.fixture
def flash_video(tmp_path: Path) -> Path:
    return write_flash_video(tmp_path / "flash.avi")


@pytest.fixture
def click_wav(tmp_path: Path) -> Path:
    return write_click_wav(tmp_path / "clicks.wav", seconds=70 / FPS + 0.2,
                           clicks_s=tuple(k / FPS for k in FLASH_FRAMES))
