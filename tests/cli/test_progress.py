"""Progress bars on the long commands: drawn on a terminal, absent when stderr is piped.

`sensorfuse sample` is the cheap one to run for real: once with stderr piped (as in CI and
every other test) and once on a pseudo-terminal with a known width.
"""

from __future__ import annotations

import fcntl
import io
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

from tqdm import tqdm

from sensorfuse.engine import progressbar

SAMPLE = [sys.executable, "-m", "sensorfuse.engine.cli", "sample", "-o", "s.mcap", "--duration", "2"]


def test_piped_stderr_carries_no_bar(tmp_path: Path) -> None:
    out = subprocess.run(SAMPLE, capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stderr == "", "no bar, no carriage returns on a pipe"
    assert out.stdout.startswith("wrote s.mcap: ")


def test_a_terminal_gets_a_bar(tmp_path: Path) -> None:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a 0-column tty draws nothing
    try:
        proc = subprocess.Popen(SAMPLE, stdout=subprocess.PIPE, stderr=slave, cwd=tmp_path)
        os.close(slave)
        seen = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        stdout, _ = proc.communicate(timeout=60)
    finally:
        os.close(master)
    assert proc.returncode == 0
    text = seen.decode("utf-8", "replace")
    assert "sample:" in text and "%|" in text and "/2.0 [" in text, text
    assert b"wrote s.mcap" in stdout and b"\r" not in stdout, "the bar stays on stderr"


def test_bar_is_off_on_a_file_and_lines_still_print() -> None:
    err, out = io.StringIO(), io.StringIO()
    with progressbar.bar(total=3, desc="x", file=err) as bar:
        progressbar.reach(bar, 2)
        progressbar.say("a line", file=out)
    assert err.getvalue() == "" and out.getvalue() == "a line\n"


def test_reach_moves_forward_only_and_learns_the_total() -> None:
    with tqdm(total=3, file=io.StringIO(), disable=False) as bar:
        progressbar.reach(bar, 2)
        progressbar.reach(bar, 1)
        assert bar.n == 2
        progressbar.reach(bar, 5, total=10)
        assert (bar.n, bar.total) == (5, 10)
