"""`sensorfuse status` through the real command line: it ends with the run, marks stale
runs, fits an 80x24 terminal, and speaks JSON lines without ANSI."""

from __future__ import annotations

import json
import os
import re
import select
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sensorfuse.engine import rundir
from sfhelpers import SENSORFUSE

TINY = {"name": "tiny", "nodes": {
    "producer": {"kind": "synthetic", "params": {"rate_hz": 30, "count": 0, "shape": [8, 8, 3]},
                 "outputs": {"out": "cam0/frame"}},
    "sink": {"kind": "jsonl", "params": {"path": "o.jsonl"}, "inputs": {"in": "cam0/frame"}}}}
P50_P99 = re.compile(r"\d+(?:\.\d+)?/\d+(?:\.\d+)?\*?$")  # e.g. 0.61/19.7, never run together


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "COLUMNS": "80", "LINES": "24", **extra}  # an 80x24 terminal


def status(*args: str, timeout: float = 30, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SENSORFUSE, "status", *args], capture_output=True, text=True, timeout=timeout,
                          env=_env(**env))


def _start_status(*args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*SENSORFUSE, "status", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(**env))


def _communicate(proc: subprocess.Popen[str], timeout: float) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"sensorfuse status still running after {timeout} s:\n{out[-2000:]}\n{err}") from None


def _write_status(run_dir: Path, **fields: Any) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    st = {"graph": "tiny", "state": "running", "session": f"tiny-{run_dir.name}", "run_dir": str(run_dir),
          "nodes": {"producer": {"state": "running", "restarts": 0}}, **fields}
    (run_dir / "status.json").write_text(json.dumps(st))


def _read_until(proc: subprocess.Popen[str], done: Callable[[str], bool], timeout: float = 30) -> list[str]:
    """stdout up to a line that is `done`, as lines (read from the pipe itself: nothing of
    the rest is held in a Python buffer, so `communicate` gets it)."""
    lines: list[str] = []
    pending = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while not any(done(line) for line in lines):
            if not sel.select(deadline - time.monotonic()):
                proc.kill()
                raise AssertionError(f"sensorfuse status did not print what was expected in {timeout} s: {lines[-20:]}")
            chunk = os.read(proc.stdout.fileno(), 65536)
            assert chunk, f"sensorfuse status ended early ({proc.wait()}): {lines[-20:]}"
            *complete, pending = (pending + chunk).split(b"\n")
            lines += [line.decode() + "\n" for line in complete]
    return lines + ([pending.decode()] if pending else [])  # the start of a line the rest of which comes later


def _last_table(stdout: str) -> list[str]:
    return stdout.rstrip("\n").split("\n\n")[-1].splitlines()


def test_status_follows_a_run_to_its_end_in_80_columns(graph_run) -> None:
    run = graph_run(TINY)
    run.wait_running()
    table, lines = _start_status("--run", str(run.run_dir)), _start_status("--run", str(run.run_dir), "--json")
    seen = _read_until(table, lambda line: line.startswith("RUNNING"))
    first = _read_until(lines, lambda line: True)
    assert json.loads(first[0])["state"] == "running"
    os.kill(run.proc.pid, signal.SIGINT)  # Ctrl-C on the run: both views end with it, by themselves
    out, err = _communicate(table, 30)
    json_out, json_err = _communicate(lines, 30)
    assert run.wait_exit(10) == 0
    assert table.returncode == 0 and lines.returncode == 0, (err, json_err)
    assert "Traceback" not in err + json_err

    out = "".join(seen) + out
    final = _last_table(out)
    assert final[0].startswith(f"run {run.run_dir} · graph 'tiny'")
    assert final[1].startswith("STOPPED (exit 0) at ")
    assert all(len(line) <= 80 for line in out.splitlines()), max(out.splitlines(), key=len)
    assert "\x1b" not in out  # not a terminal: no ANSI
    sink = next(line for line in final if line.startswith("sink "))
    assert sink.split()[1] in ("done", "stopped") and P50_P99.search(sink), sink

    records = [json.loads(line) for line in first + json_out.splitlines()]  # one object per line, nothing else
    assert "\x1b" not in json_out
    assert records[-1]["state"] == "stopped" and records[-1]["exit_code"] == 0 and records[-1]["ended_at"]
    assert records[-1]["supervisor"]["pid"] == run.proc.pid
    assert all(r["state"] in ("running", "stopping") for r in records[:-1])


def test_status_of_a_run_that_finished_shows_how_and_exits(graph_run) -> None:
    run = graph_run({**TINY, "nodes": {**TINY["nodes"], "producer": {
        **TINY["nodes"]["producer"], "params": {"rate_hz": 30, "count": 10, "shape": [8, 8, 3]}}}})
    assert run.wait_exit(30) == 0
    out = status("--run", str(run.run_dir))
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[1].startswith("FINISHED (exit 0) at ")
    assert re.search(r"^sink +done +0 cam0/frame +[\d.]+ +10 +0 ", out.stdout, re.MULTILINE), out.stdout


def test_a_killed_supervisor_is_stale_not_running(graph_run) -> None:
    run = graph_run(TINY)
    run.wait_running()
    os.kill(run.proc.pid, signal.SIGKILL)  # the supervisor only: it cannot say how the run ended
    run.proc.wait()
    t0 = time.monotonic()
    out = status("--run", str(run.run_dir))
    assert out.returncode == 1, out.stderr
    assert time.monotonic() - t0 < 15
    lines = _last_table(out.stdout)
    assert lines[1].startswith("STALE (supervisor gone since ") and "was RUNNING" in lines[1]
    assert "RUNNING ·" not in out.stdout and "Traceback" not in out.stderr


def test_a_dead_supervisors_status_file_is_stale_and_a_final_one_is_not(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run_dir = tmp_path / "r1"
    _write_status(run_dir, state="stopping", supervisor={"pid": dead.pid, "started_at": time.time() - 700})
    once = status("--once", "--run", str(run_dir))
    assert once.returncode == 0 and "STALE (supervisor gone since " in once.stdout and "was STOPPING" in once.stdout
    assert json.loads(status("--once", "--json", "--run", str(run_dir)).stdout)["state"] == "stale"

    _write_status(run_dir, state="failed", exit_code=1, ended_at=time.time(),
                  supervisor={"pid": dead.pid, "started_at": time.time() - 700})
    out = status("--run", str(run_dir))
    assert out.returncode == 1 and _last_table(out.stdout)[1].startswith("FAILED (exit 1) at "), out.stdout


def test_without_run_it_shows_the_newest_and_says_so(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    _write_status(root / "old", state="finished", exit_code=0, ended_at=time.time())
    _write_status(root / "new", state="finished", exit_code=0, ended_at=time.time())
    (root / "current").symlink_to(root / "new")
    out = status(SENSORFUSE_RUNS=str(root), COLUMNS="300")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].startswith(f"run {root / 'new'} (the newest) · graph 'tiny'")
    assert out.stdout.splitlines()[1].startswith("FINISHED (exit 0)")


@pytest.mark.parametrize(("args", "code"), [([], 130), (["--follow"], 0), (["--json"], 130)])
def test_ctrl_c_leaves_a_live_view_cleanly(tmp_path: Path, args: list[str], code: int) -> None:
    run_dir = tmp_path / "live"
    _write_status(run_dir, supervisor=rundir.supervisor_identity())  # this test process: a live "supervisor"
    proc = _start_status("--run", str(run_dir), *args)
    first = _read_until(proc, lambda line: True)[0]
    if "--json" in args:
        assert json.loads(first)["state"] == "running"
    else:
        assert first.startswith(f"run {run_dir}")
    proc.send_signal(signal.SIGINT)
    out, err = _communicate(proc, 10)
    assert proc.returncode == code and err == "", err
    assert "\x1b" not in first + out


def test_a_finished_run_followed_keeps_watching(tmp_path: Path) -> None:
    run_dir = tmp_path / "done"
    _write_status(run_dir, state="finished", exit_code=0, ended_at=time.time())
    proc = _start_status("--run", str(run_dir), "--follow", "--json")
    shown = _read_until(proc, lambda line: True)
    while len(shown) < 2:  # a second record: still watching after the end
        shown += _read_until(proc, lambda line: True)
    assert [json.loads(line)["state"] for line in shown][-2:] == ["finished", "finished"]
    proc.send_signal(signal.SIGINT)
    _, err = _communicate(proc, 10)
    assert proc.returncode == 0 and err == "", err


def test_once_and_follow_do_not_mix() -> None:
    out = status("--once", "--follow")
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and "--follow" in out.stderr


@pytest.mark.parametrize("text", ["{not json", "[1, 2]"])
def test_a_damaged_status_file_is_one_line(tmp_path: Path, text: str) -> None:
    (tmp_path / "status.json").write_text(text)
    out = status("--once", "--run", str(tmp_path))
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.startswith(f"sensorfuse: {tmp_path / 'status.json'}: not a status file")
    assert len(out.stderr.splitlines()) == 1 and "Traceback" not in out.stderr


def test_status_of_a_failed_run_says_so_and_exits_1(graph_run) -> None:
    run = graph_run({"name": "bad", "nodes": {
        "p": {"kind": "synthetic", "params": {"rate_hz": 30}, "outputs": {"out": "cam0/frame"}},
        "sink": {"kind": "jsonl", "params": {"path": "/proc/nope/o.jsonl"}, "inputs": {"in": "cam0/frame"}}}})
    assert run.wait_exit(30) == 1
    out = status("--run", str(run.run_dir))
    assert out.returncode == 1, out.stderr
    assert out.stdout.splitlines()[1].startswith("FAILED (exit 1) at ")
    assert re.search(r"^sink +failed ", out.stdout, re.MULTILINE) and "last error: " in out.stdout


def test_follow_moves_on_to_a_newer_run(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    _write_status(root / "r1", state="finished", exit_code=0, ended_at=time.time())
    (root / "current").symlink_to(root / "r1")
    proc = _start_status("--follow", "--json", SENSORFUSE_RUNS=str(root))
    assert json.loads(_read_until(proc, lambda line: True)[0])["run_dir"] == str(root / "r1")
    _write_status(root / "r2", state="failed", exit_code=1, ended_at=time.time())
    (root / "next").symlink_to(root / "r2")
    os.replace(root / "next", root / "current")  # what `sensorfuse run` does for a new run
    _read_until(proc, lambda line: line.endswith("}\n") and json.loads(line)["run_dir"] == str(root / "r2"))
    proc.send_signal(signal.SIGINT)
    _, err = _communicate(proc, 10)
    assert proc.returncode == 0 and err == "", err


def test_on_a_terminal_the_table_is_redrawn_in_place(tmp_path: Path) -> None:
    import pty

    _write_status(tmp_path / "r", state="finished", exit_code=0, ended_at=time.time())
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen([*SENSORFUSE, "status", "--run", str(tmp_path / "r")], stdout=follower,
                                stderr=subprocess.PIPE, env=_env())
        assert proc.wait(30) == 0, proc.stderr.read()
        shown = ""
        while select.select([leader], [], [], 0.5)[0]:  # all it wrote, however the pty splits it
            shown += os.read(leader, 65536).decode()
    finally:
        os.close(leader)
        os.close(follower)
    assert shown.startswith("\x1b[H\x1b[J") and "FINISHED (exit 0)" in shown
