"""log info / export / import."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile as sf

from sensorfuse.replay import logtools
from sensorfuse.replay.mcap_io import LogReader

pytestmark = pytest.mark.timeout(60)


def test_info_counts_rates_and_gaps(recorded: Path, session_msgs: list) -> None:
    d = logtools.info(recorded)
    assert d["finalised"] and d["messages"] == len(session_msgs) and not d["problems"]
    rows = {s["topic"]: s for s in d["streams"]}
    assert rows["cam0/frame"]["count"] == 12 and rows["cam0/frame"]["rate_hz"] == pytest.approx(30, rel=0.01)
    assert rows["mic0/audio16k"]["rate_hz"] == pytest.approx(50, rel=0.01)
    assert all(s["seq_gaps"] == 0 for s in d["streams"])
    assert "cam0/frame" in logtools.render_info(d)


def test_info_on_truncated_log_reports_prefix_and_problem(tmp_path: Path, recorded: Path) -> None:
    data = recorded.read_bytes()
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(data[: len(data) // 2])
    d = logtools.info(cut)
    assert not d["finalised"] and d["problems"] and 0 < d["messages"]


def test_export_png_wav_jsonl(tmp_path: Path, recorded: Path, session_msgs: list) -> None:
    written, problems = logtools.export(recorded, tmp_path / "out")
    assert not problems
    pngs = sorted((tmp_path / "out" / "cam0_frame").glob("*.png"))
    assert len(pngs) == written["cam0/frame"] == 12
    first = next(m for m in session_msgs if m.stream == "cam0/frame" and m.seq == 0)
    assert np.array_equal(cv2.imread(str(pngs[0])), first.array)
    audio, rate = sf.read(tmp_path / "out" / "mic0_audio16k.wav", dtype="float32")
    blocks = [m for m in session_msgs if m.stream == "mic0/audio16k"]
    assert rate == 16000 and len(audio) == len(blocks) * 320
    assert np.array_equal(audio[:320], blocks[0].array[:, 0])
    lines = [json.loads(x) for x in (tmp_path / "out" / "perceive_events.jsonl").read_text().splitlines()]
    assert lines[0]["record"]["type"] == "speaking"
    texts = [json.loads(x)["text"] for x in (tmp_path / "out" / "text_in.jsonl").read_text().splitlines()]
    assert "héllo ünïcode ✓" in texts


def test_import_video_wav_text(tmp_path: Path) -> None:
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    for i in range(10):
        writer.write(np.full((48, 64, 3), i * 20, np.uint8))
    writer.release()
    wav = tmp_path / "clip.wav"
    sf.write(wav, np.zeros((48000, 2), np.float32), 48000)
    text = tmp_path / "lines.txt"
    text.write_text("0.25 is there a cat?\n0.75\twho is speaking\n")
    out = tmp_path / "imported.mcap"
    counts = logtools.import_session(out, video=str(video), wav=str(wav), text=str(text))
    assert counts == {"text/in": 2, "mic0/audio": 50, "mic0/audio16k": 50, "cam0/frame": 10}
    with LogReader(out) as reader:
        frames = [m.decode()[0] for m in reader.iter_messages(["cam0/frame"])]
    assert [h.t_ns for h in frames] == [i * 100_000_000 for i in range(10)]
    bad = tmp_path / "bad.txt"
    bad.write_text("no time here\n")
    with pytest.raises(ValueError, match="SECONDS"):
        logtools.import_session(tmp_path / "x.mcap", text=str(bad))
