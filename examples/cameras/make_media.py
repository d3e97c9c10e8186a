"""Write the media examples/cameras.yaml plays: a generated two-camera session (faces walk
from one view into the other) as cam0.avi and cam1.avi (MJPG, 320x240, 15 fps) and
speech.wav (16 kHz), next to this file or in the directory given.

    .venv/bin/python examples/cameras/make_media.py [DIR [SECONDS]]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import soundfile

from sensorfuse.replay import sample
from sensorfuse.replay.mcap_io import LogReader

SEED, SECONDS, FPS, CAMERAS = 1_000_042, 10.0, 15.0, 2


def main(out: Path, seconds: float = SECONDS) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        session = Path(tmp) / "cams.mcap"
        sample.generate(session, seed=SEED, duration_s=seconds, fps=FPS, cameras=CAMERAS)
        writers: dict[str, cv2.VideoWriter] = {}
        audio = []
        with LogReader(session) as reader:
            for msg in reader.iter_messages([*(f"cam{k}/frame" for k in range(CAMERAS)), "mic0/audio16k"]):
                header, _, payload = msg.decode()
                data = np.frombuffer(payload, np.dtype(header.dtype)).reshape(header.shape)
                if header.stream == "mic0/audio16k":
                    audio.append(data[:, 0])
                    continue
                camera = header.stream.split("/")[0]
                if camera not in writers:
                    height, width = data.shape[:2]
                    writers[camera] = cv2.VideoWriter(str(out / f"{camera}.avi"), cv2.VideoWriter_fourcc(*"MJPG"),
                                                      FPS, (width, height))
                writers[camera].write(data)
        for writer in writers.values():
            writer.release()
    soundfile.write(str(out / "speech.wav"), np.concatenate(audio), 16_000, subtype="FLOAT")
    print(f"wrote {', '.join(f'{c}.avi' for c in writers)} and speech.wav in {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent,
         float(sys.argv[2]) if len(sys.argv) > 2 else SECONDS)
