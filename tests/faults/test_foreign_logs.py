"""Fault: logs sensorfuse did not write, or wrote with another protocol version (issue 16,
item 10). Before: `log info` exited 0 calling every message "damaged" with no reason,
`replay` exited 0 with 0 messages and `log export` wrote nothing, silently. Now each says
why in one line and exits non-zero.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import msgspec
import numpy as np
import pytest
from mcap.writer import Writer

from sensorfuse.engine import wire
from sensorfuse.replay.mcap_io import LogWriter

pytestmark = pytest.mark.timeout(120)


def sf(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sensorfuse.engine.cli", *args], capture_output=True, text=True,
                          timeout=60)


def ros2_log(path: Path) -> Path:
    with path.open("wb") as f:
        writer = Writer(f)
        writer.start(profile="ros2", library="someone else")
        schema = writer.register_schema("std_msgs/msg/String", "ros2msg", b"string data")
        channel = writer.register_channel("/chatter", "cdr", schema)
        for i in range(5):
            writer.add_message(channel, log_time=i * 10**8, data=b"\x00\x01\x00\x00\x03\x00\x00\x00hi\x00",
                               publish_time=i * 10**8)
        writer.finish()
    return path


def other_version_log(path: Path) -> Path:
    with path.open("wb") as f:
        log = LogWriter(f)
        for seq in range(5):
            msg = wire.build_message("cam0/frame", wire.KIND_TENSOR, np.zeros((4, 4, 3), np.uint8), seq=seq,
                                     t_ns=seq * 10**8)
            header = msgspec.structs.replace(msg.header, proto=2)
            log.write(header, wire.encode_header(header), bytes(msg.payload[0]))
        log.finish()
    return path


def _one_line(stderr: str) -> str:
    """The error: the last line, `sensorfuse: ...`, and no traceback anywhere."""
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("sensorfuse: ") and "Traceback" not in stderr, stderr
    return last


def test_a_ros2_log(tmp_path: Path) -> None:
    log = ros2_log(tmp_path / "ros.mcap")
    info = sf("log", "info", str(log))
    assert info.returncode == 1 and "not one sensorfuse writes" in info.stdout, info.stdout
    replay = sf("replay", str(log), "--rate", "max", "--out", str(tmp_path / "r.jsonl"))
    assert replay.returncode == 2
    assert "not a sensorfuse log" in _one_line(replay.stderr) and "std_msgs/msg/String" in replay.stderr
    export = sf("log", "export", str(log), "--to", str(tmp_path / "out"))
    assert export.returncode == 1 and "nothing exported" in _one_line(export.stderr)


def test_a_log_of_another_protocol_version(tmp_path: Path) -> None:
    log = other_version_log(tmp_path / "v2.mcap")
    info = sf("log", "info", str(log))
    assert info.returncode == 1 and "header field 'proto' is 2" in info.stdout, info.stdout
    replay = sf("replay", str(log), "--rate", "max", "--out", str(tmp_path / "r.jsonl"))
    assert replay.returncode == 1, replay.stderr
    assert "nothing in" in _one_line(replay.stderr) and "log info" in replay.stderr
    export = sf("log", "export", str(log), "--to", str(tmp_path / "out"))
    assert export.returncode == 1 and "proto" in _one_line(export.stderr)
