"""The replay progress line: pure formatting and reading the player's gauges from status."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from sensorfuse.replay.cli import replay_summary
from sensorfuse.replay.progress import Position, ProgressWatcher, format_progress, progress_from_status

pytestmark = pytest.mark.timeout(30)


def _status(position_s: float, published: int, loop_pass: int = 0) -> dict:
    return {"graph": "replay", "state": "running", "nodes": {"player": {
        "state": "running", "streams": {"cam0/frame": {"published": published}},
        "gauges": {"replay_position_s": position_s, "replay_published": published, "replay_pass": loop_pass,
                   "replay_published:cam0/frame": published}}}}


def test_format_progress() -> None:
    assert format_progress(4.3, start_s=0.0, end_s=10.0, published=280, total=659, speed=1.24) == (
        "replay  43% 4.3/10.0 s (1.2x) 280/659 msgs")
    assert format_progress(10.0, start_s=0.0, end_s=10.0, published=659, total=659, speed=None) == (
        "replay 100% 10.0/10.0 s 659/659 msgs")
    # seek: percent of [start, end]; no total known
    assert format_progress(3.0, start_s=2.0, end_s=6.0, published=12, total=None, speed=4.0) == (
        "replay  25% 3.0/6.0 s (4.0x) 12 msgs")
    assert format_progress(1.0, start_s=0.0, end_s=2.0, published=900, total=None, speed=None, loop_pass=2) == (
        "replay  50% 1.0/2.0 s 900 msgs pass 3")
    assert format_progress(-1.0, start_s=0.0, end_s=0.0, published=0, total=0, speed=None).startswith("replay   0%")


def test_position_from_status_needs_the_player_gauges() -> None:
    assert progress_from_status(None) is None
    assert progress_from_status({"nodes": {"player": {"state": "starting"}}}) is None
    assert progress_from_status(_status(2.5, 40, 1)) == Position(2.5, 40, 1)


def test_watcher_plain_lines_when_not_a_tty(tmp_path: Path) -> None:
    out = io.StringIO()  # not a TTY
    w = ProgressWatcher(tmp_path, out, start_s=0.0, end_s=4.0, total=100)
    assert w.interval_s == 2.0 and not w.tty
    assert w.poll() is None  # no status.json yet
    (tmp_path / "status.json").write_text("{not json")  # caught mid-write
    assert w.poll() is None
    (tmp_path / "status.json").write_text(json.dumps(_status(1.0, 25)))
    assert w.poll() == "replay  25% 1.0/4.0 s 25/100 msgs"
    assert out.getvalue() == "replay  25% 1.0/4.0 s 25/100 msgs\n"


def test_watcher_redraws_one_line_on_a_tty(tmp_path: Path) -> None:
    out = io.StringIO()
    w = ProgressWatcher(tmp_path, out, start_s=0.0, end_s=4.0, total=100, tty=True)
    (tmp_path / "status.json").write_text(json.dumps(_status(1.0, 25)))
    w.poll()
    (tmp_path / "status.json").write_text(json.dumps(_status(2.0, 50)))
    w.poll()
    assert out.getvalue().count("\r") == 2 and "\n" not in out.getvalue()
    w.start()
    w.stop()  # a last poll and the newline that ends the redrawn line
    assert out.getvalue().endswith("50/100 msgs\x1b[K\n")


def test_summary_line() -> None:
    player = _status(4.9, 75)["nodes"]["player"]
    assert replay_summary(0, ["cam0/frame"], player, 3.21) == (
        "replay finished (exit 0): 75 messages in 3.2 s, log position 4.9 s; cam0/frame 75")
    assert replay_summary(1, ["cam0/frame"], {}, 0.5) == "replay finished (exit 1): 0 messages in 0.5 s; cam0/frame 0"
