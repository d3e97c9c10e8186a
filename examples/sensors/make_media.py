"""Write the media examples/sensors.yaml plays: flash.avi (a white frame every second at
30 fps, 64x48) and clicks.wav (48 kHz, a click at each flash) next to this file."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import soundfile

HERE = Path(__file__).resolve().parent
FPS, SECONDS, RATE = 30, 5, 48_000
FLASHES = [k * FPS + 15 for k in range(SECONDS)]  # frames 15, 45, ...: at 0.5 s, 1.5 s, ...


def main() -> None:
    writer = cv2.VideoWriter(str(HERE / "flash.avi"), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (64, 48))
    for k in range(FPS * SECONDS):
        writer.write(np.full((48, 64, 3), 255 if k in FLASHES else 16, np.uint8))
    writer.release()
    audio = (np.random.default_rng(0).standard_normal(RATE * SECONDS) * 1e-3).astype(np.float32)
    for k in FLASHES:
        i = round(k / FPS * RATE)
        audio[i : i + 64] += 0.9 * np.exp(-np.arange(64) / 8.0).astype(np.float32)
    soundfile.write(str(HERE / "clicks.wav"), audio, RATE, subtype="FLOAT")
    print(f"wrote {HERE / 'flash.avi'} and {HERE / 'clicks.wav'}")


if __name__ == "__main__":
    main()
