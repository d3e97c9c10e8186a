"""`sensorfuse echo` and `sensorfuse hz` run for real against running graphs, and what they
print (sensorfuse.client.render) checked on its own."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from sensorfuse.client import Publisher
from sensorfuse.client.render import RateWindow, rate_line
from sfhelpers import SENSORFUSE, free_port

FAST = {"heartbeat_interval_s": 0.1, "backoff_initial_s": 0.1, "stop_deadline_s": 5}


def sensorfuse(*args: str, timeout: float = 60, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SENSORFUSE, *args], capture_output=True, text=True, timeout=timeout, env=env)


def one_line_error(out: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert out.returncode == code, out.stderr
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sensorfuse: "), out.stderr
    for word in words:
        assert word in lines[0]


def test_echo_and_hz_on_a_running_graph(graph_run) -> None:
    ep = f"tcp://127.0.0.1:{free_port()}"
    run = graph_run({"name": "echo", "supervisor": FAST, "nodes": {"camera": {
        "kind": "synthetic", "params": {"rate_hz": 50, "count": 0, "shape": [4, 4, 3]},
        "outputs": {"out": "cam0/frame"}, "expose": {"cam0/frame": ep}}}})
    run.wait_running()
    rd = str(run.run_dir)

    out = sensorfuse("echo", "cam0/frame", "--run-dir", rd, "--count", "3")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 3
    seqs = [int(re.match(r"cam0/frame seq=(\d+) t_ns=\d+ tensor uint8\[4x4x3\] HWC/bgr8 mean=", x)[1]) for x in lines]
    assert seqs == list(range(seqs[0], seqs[0] + 3))

    out = sensorfuse("echo", "cam0/frame", "--endpoint", ep, "--raw", "--count", "2")
    assert out.returncode == 0, out.stderr
    for line in out.stdout.splitlines():
        header, payload = line.rsplit(" payload=", 1)
        h = json.loads(header)
        assert (h["proto"], h["stream"], h["kind"], h["shape"], h["src"]) == (1, "cam0/frame", "tensor", [4, 4, 3], "camera")
        assert json.loads(payload) == [48]

    out = sensorfuse("hz", "cam0/frame", "--run-dir", rd, "--duration", "2.5", "--window", "40")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert 2 <= len(lines) <= 4, out.stdout  # one a second, and one at the end
    rate = re.match(r"cam0/frame: rate ([\d.]+) Hz  jitter [\d.]+ ms  min [\d.]+ ms  max [\d.]+ ms  window (\d+)  "
                    r"lost 0  malformed 0$", lines[-1])
    assert rate, lines[-1]
    assert 25 <= float(rate[1]) <= 75 and int(rate[2]) == 40, "50 Hz on a busy 2-core machine"

    one_line_error(sensorfuse("echo", "cam0/nope", "--run-dir", rd), 2, "cam0/nope", "cam0/frame")


def test_echo_prints_text_and_records_and_ends_with_the_stream(graph_run, tmp_path: Path) -> None:
    eps = {"robot/text": f"tcp://127.0.0.1:{free_port()}", "robot/info": f"tcp://127.0.0.1:{free_port()}"}
    run = graph_run({"name": "echoin", "supervisor": FAST, "external": {"inputs": eps}, "nodes": {"sink": {
        "kind": "jsonl", "params": {"path": "out.jsonl"}, "inputs": {"text": "robot/text", "info": "robot/info"}}}})
    with Publisher("robot/text", eps["robot/text"]) as text, Publisher("robot/info", eps["robot/info"]) as info:
        text.wait_for_consumers(1)
        info.wait_for_consumers(1)
        run.wait_running()
        echoes = [subprocess.Popen([*SENSORFUSE, "echo", stream, "--run-dir", str(run.run_dir)], text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE) for stream in eps]
        try:
            text.wait_for_subscribers(2)  # the sink's and echo's
            info.wait_for_subscribers(2)
        except TimeoutError:
            for p in echoes:
                p.kill()
            raise AssertionError([p.communicate()[1] for p in echoes]) from None
        text.send_text("pick up the red cup")
        info.send_record({"event": "dock", "ok": True})
    outs = [p.communicate(timeout=30) for p in echoes]
    assert [p.returncode for p in echoes] == [0, 0], [err for _, err in outs]
    text_lines, info_lines = (stdout.splitlines() for stdout, _ in outs)
    assert len(text_lines) == 2 and len(info_lines) == 2
    assert re.fullmatch(r'robot/text seq=0 t_ns=\d+ text "pick up the red cup"', text_lines[0])
    assert re.fullmatch(r'robot/info seq=0 t_ns=\d+ record \{"event":"dock","ok":true\}', info_lines[0])
    for stream, last in zip(eps, (text_lines[1], info_lines[1])):
        assert re.fullmatch(rf"{stream} seq=1 t_ns=\d+ eos \(end of stream\)", last)
    assert run.wait_exit(30) == 0, run.stderr()


def test_user_errors_are_one_line_exit_2(tmp_path: Path) -> None:
    import os

    env = {**os.environ, "SENSORFUSE_RUNS": str(tmp_path / "no-runs")}
    one_line_error(sensorfuse("echo", "cam0/frame", env=env), 2, "no current run", "--run-dir", "--endpoint")
    one_line_error(sensorfuse("hz", "cam0/frame", "--endpoint", "localhost:5600"), 2, "bad endpoint", "localhost:5600")
    one_line_error(sensorfuse("echo", "cam0/frame", "--run-dir", str(tmp_path)), 2, str(tmp_path), "plan.json")
    one_line_error(sensorfuse("echo", "cam0/frame", "--endpoint", "tcp://127.0.0.1:1", "--count", "0"), 2, "--count")


def test_a_silent_endpoint_is_reported_as_a_lost_publisher() -> None:
    ep = f"tcp://127.0.0.1:{free_port()}"
    one_line_error(sensorfuse("echo", "cam0/frame", "--endpoint", ep, "--timeout", "0.5"), 1, "cam0/frame", ep, "gone")


def test_rate_window_measures_rate_and_jitter_over_the_last_intervals() -> None:
    window = RateWindow(size=4)
    assert window.rate() is None
    for t_ms in (0, 500, 510, 520, 530, 540):  # the first gap falls out of the window
        window.add(t_ms * 1_000_000)
    rate = window.rate()
    assert (rate.rate_hz, rate.jitter_ms, rate.min_ms, rate.max_ms, rate.window) == pytest.approx((100, 0, 10, 10, 4))
    window.add(560 * 1_000_000)
    assert window.rate().jitter_ms == pytest.approx(4.330127, rel=1e-5)  # std of 10, 10, 10, 20 ms
    line = rate_line("cam0/frame", rate, lost=2, malformed=1)
    assert line == ("cam0/frame: rate 100.00 Hz  jitter 0.00 ms  min 10.0 ms  max 10.0 ms  window 4  "
                    "lost 2  malformed 1")
    assert rate_line("cam0/frame", rate, lost=0, malformed=0, new=False).startswith("cam0/frame: no new messages")
