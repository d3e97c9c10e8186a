"""`sensorfuse record` on a graph of file sources (camera, microphone, text), read back with
the `mcap` library alone: the stream set and counts match what the sources published
(from the run's status.json), payloads match the media, every CRC validates."""

from __future__ import annotations

import collections
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import cv2
import msgspec
import numpy as np
import pytest
import soundfile
import yaml
from mcap.reader import make_reader
from mcap.stream_reader import StreamReader
from mcap_protobuf.decoder import DecoderFactory
from sfhelpers import REPO, SENSORFUSE

pytestmark = pytest.mark.timeout(90)

FPS, N_FRAMES, RATE, SECONDS = 30, 24, 48_000, 0.8
LINES = [(0.1, "where is the cat?"), (0.5, "who is speaking")]


def _media(d: Path) -> tuple[Path, Path, Path, list[np.ndarray], np.ndarray]:
    video, wav, text = d / "clip.avi", d / "clip.wav", d / "lines.txt"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (64, 48))
    for k in range(N_FRAMES):
        writer.write(np.full((48, 64, 3), (k * 10) % 256, np.uint8))
    writer.release()
    cap = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    audio = (np.random.default_rng(0).standard_normal(int(RATE * SECONDS)) * 0.1).astype(np.float32)
    soundfile.write(str(wav), audio, RATE, subtype="FLOAT")
    text.write_text("".join(f"{t}\t{line}\n" for t, line in LINES))
    return video, wav, text, frames, audio


def test_record_file_sources_read_back_with_mcap_alone(tmp_path: Path) -> None:
    video, wav, text, frames, audio = _media(tmp_path)
    graph = {
        "name": "filesources",
        "nodes": {
            "cam": {"kind": "camera", "params": {"source": str(video), "pace": "native"},
                    "outputs": {"frame": "cam0/frame", "status": "cam0/status"}},
            "mic": {"kind": "microphone", "params": {"file": str(wav), "pace": "native", "block_ms": 20},
                    # every port wired: the runtime refuses a publish on an unwired declared port
                    "outputs": {"audio": "mic0/audio", "audio16k": "mic0/audio16k", "status": "mic0/status"}},
            "text": {"kind": "text", "params": {"source": "file", "path": str(text), "pace": "native"},
                     "outputs": {"text": "text/in"}},
        },
    }
    graph_path = tmp_path / "g.yaml"
    graph_path.write_text(yaml.safe_dump(graph))
    out, run_dir = tmp_path / "x.mcap", Path(tempfile.mkdtemp(prefix="sfrec", dir="/tmp"))  # short: ipc paths
    try:
        done = subprocess.run([*SENSORFUSE, "record", "-o", str(out), "--graph", str(graph_path),
                               "--run-dir", str(run_dir)], cwd=REPO, capture_output=True, text=True, timeout=45)
        assert done.returncode == 0, done.stderr
        status = json.loads((run_dir / "status.json").read_text())
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    published = {stream: s["published"] for name in ("cam", "mic", "text")
                 for stream, s in status["nodes"][name]["streams"].items() if s.get("published", 0) > 0}
    assert set(published) == {"cam0/frame", "mic0/audio", "mic0/audio16k", "text/in"}
    assert (published["cam0/frame"], published["mic0/audio"], published["text/in"]) == (
        len(frames), round(SECONDS * 1000 / 20), len(LINES))
    recorder = status["nodes"]["recorder"]["streams"]
    assert all(not s.get("dropped") or not any(s["dropped"].values()) for s in recorder.values()), recorder

    got: dict[str, list] = collections.defaultdict(list)
    with open(out, "rb") as f:
        reader = make_reader(f, validate_crcs=True, decoder_factories=[DecoderFactory()])
        summary = reader.get_summary()
        assert summary is not None and summary.statistics is not None
        for schema, channel, message, decoded in reader.iter_decoded_messages(log_time_order=False):
            got[channel.topic].append((schema.name, message, decoded))
    assert {topic: len(items) for topic, items in got.items()} == published
    assert summary.statistics.message_count == sum(published.values())

    # Payloads: the decoded video frames, the WAV samples, the text lines — byte for byte.
    for k, (schema, message, decoded) in enumerate(got["cam0/frame"]):
        assert schema == "foxglove.RawImage" and decoded.sensorfuse.seq == k == message.sequence
        assert decoded.data == frames[k].tobytes()
    samples = np.concatenate([np.frombuffer(d.sensorfuse_payload, np.float32) for _, _, d in got["mic0/audio"]])
    assert np.array_equal(samples, audio)
    assert [d.message for _, _, d in got["text/in"]] == [line for _, line in LINES]
    # Capture times survive: file clock, so frame k is at k / FPS and line i at its stamp.
    assert [m.log_time for _, m, _ in got["cam0/frame"]] == [round(k * 1e9 / FPS) for k in range(len(frames))]
    assert [m.log_time for _, m, _ in got["text/in"]] == [round(t * 1e9) for t, _ in LINES]
    assert all(d.sensorfuse.session == status["session"] for items in got.values() for _, _, d in items)

    with open(out, "rb") as f:
        records = list(StreamReader(f, validate_crcs=True).records)
    assert type(records[-1]).__name__ == "Footer"


def test_record_builtin_graph_name_and_user_errors(tmp_path: Path) -> None:
    """A built-in graph name resolves (msgspec.to_builtins of the declaration); asking for a
    stream it does not produce, or an existing output, is a one-line usage error."""
    existing = tmp_path / "x.mcap"
    existing.write_bytes(b"")
    for args, needle in ((["-o", str(tmp_path / "y.mcap"), "--graph", "live", "--streams", "no/such"], "no/such"),
                         (["-o", str(existing), "--graph", "live"], "--force"),
                         (["-o", str(tmp_path / "z.mcap"), "--graph", "no-such-graph"], "built-in graphs")):
        done = subprocess.run([*SENSORFUSE, "record", *args], cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, (args, done.stderr)
        assert needle in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_builtin_graph_declaration_round_trips_through_builtins() -> None:
    from sensorfuse.engine import graph as graph_mod

    decl = graph_mod.load_decl("live")
    as_dict = msgspec.to_builtins(decl)
    assert graph_mod.load_decl(as_dict) == decl  # the round trip cmd_record relies on
