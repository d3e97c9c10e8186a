"""`sensorfuse devices`: list the cameras OpenCV can open and the audio inputs PortAudio sees.

Ports / rates: none (a CLI command, contributed through the ``sensorfuse.commands``
entry point as ``register(subparsers)``).

Failure behaviour: a missing PortAudio library is one line saying how to install it
(exit code 1 only when neither cameras nor audio could be listed); probing a camera
index that does not exist is silent.

Example::

    $ sensorfuse devices
    cameras:
      0  640x480 @ 30 fps  (V4L2)
    audio inputs:
      4  pulse  (2 ch, 44100 Hz)  [default]
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from sensorfuse.engine.errors import StartupError
from sensorfuse.nodes.microphone import import_sounddevice


def list_cameras(max_index: int) -> list[dict[str, Any]]:
    import cv2

    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    found = []
    for index in range(max_index):
        if os.name == "posix" and not os.path.exists(f"/dev/video{index}"):
            continue  # opening absent V4L2 nodes is slow; skip what cannot exist
        cap = cv2.VideoCapture(index)
        try:
            if cap.isOpened():
                found.append({
                    "index": index, "width": int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
                    "height": int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), "fps": cap.get(cv2.CAP_PROP_FPS),
                    "backend": cap.getBackendName(),
                })
        finally:
            cap.release()
    return found


def list_audio_inputs() -> list[dict[str, Any]]:
    """Audio input devices; raises StartupError when PortAudio is missing."""
    sd = import_sounddevice()
    default_in = sd.default.device[0] if sd.default.device else -1
    return [
        {"index": i, "name": d["name"], "channels": d["max_input_channels"],
         "rate": int(d["default_samplerate"]), "default": i == default_in}
        for i, d in enumerate(sd.query_devices()) if d["max_input_channels"] > 0
    ]


def run(args: argparse.Namespace) -> int:
    cameras = list_cameras(args.max_cameras)
    print("cameras:")
    for c in cameras:
        print(f"  {c['index']}  {c['width']}x{c['height']} @ {c['fps']:g} fps  ({c['backend']})")
    if not cameras:
        print("  (none found)")
    print("audio inputs:")
    try:
        inputs = list_audio_inputs()
    except StartupError as exc:
        print(f"  {exc}")
        return 0 if cameras else 1
    for d in inputs:
        mark = "  [default]" if d["default"] else ""
        print(f"  {d['index']}  {d['name']}  ({d['channels']} ch, {d['rate']} Hz){mark}")
    if not inputs:
        print("  (none found)")
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "devices", help="list cameras and audio inputs",
        description="List the cameras OpenCV can open and the audio inputs PortAudio sees "
                    "(use the index or name as `camera.source` / `microphone.device`).",
    )
    p.add_argument("--max-cameras", type=int, default=10, help="probe camera indices below this (default 10)")
    p.set_defaults(func=run)
