"""Shared test helpers: graphs run as real `sensorfuse run` processes, always cleaned up.

Every started process is killed (whole process group) at teardown, run directories are
short (ipc:// path limits), and waiting is on conditions with deadlines, never sleeps.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SENSORFUSE = [sys.executable, "-m", "sensorfuse.engine.cli"]
#: shared-memory pools a finished run left in /dev/shm (conftest fails the session on any)
LEFT_POOLS: list[str] = []


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    """Poll `cond` until it returns something truthy; fail the test with `what` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class GraphRun:
    """A `sensorfuse run` subprocess on a graph dict, with helpers to observe it."""

    def __init__(self, graph: dict[str, Any], workdir: Path, extra_args: list[str] = ()) -> None:
        self.workdir = workdir
        self.run_dir = Path(tempfile.mkdtemp(prefix="sf", dir="/tmp"))
        tag = self.run_dir.name  # unique, so several runs can share a workdir
        self.graph_path = workdir / f"graph-{tag}.yaml"
        self.graph_path.write_text(yaml.safe_dump(graph))
        self.stdout_path = workdir / f"run-{tag}.stdout"
        self.stderr_path = workdir / f"run-{tag}.stderr"
        self._out = open(self.stdout_path, "wb")
        self._err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            [*SENSORFUSE, "run", str(self.graph_path), "--run-dir", str(self.run_dir), *extra_args],
            cwd=workdir, stdout=self._out, stderr=self._err, start_new_session=True,
        )

    def status(self) -> dict[str, Any] | None:
        f = self.run_dir / "status.json"
        try:
            return json.loads(f.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def node(self, name: str) -> dict[str, Any]:
        st = self.status()
        assert st is not None, "no status yet"
        return st["nodes"][name]

    def wait_running(self, timeout: float = 30.0) -> dict[str, Any]:
        def running() -> dict[str, Any] | None:
            st = self.status()
            if self.proc.poll() is not None:
                raise AssertionError(f"sensorfuse run exited early ({self.proc.returncode}): {self.stderr()}")
            return st if st and st["state"] in ("running", "degraded") else None

        return wait_for(running, timeout, "graph to be running")

    def wait_exit(self, timeout: float = 30.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"sensorfuse run still running after {timeout} s: {self.stderr()}") from None

    def stderr(self) -> str:
        self._err.flush()
        return self.stderr_path.read_text(errors="replace")[-4000:]

    def node_pids(self) -> list[int]:
        st = self.status() or {"nodes": {}}
        return [n["pid"] for n in st["nodes"].values() if n.get("pid")]

    def cleanup(self) -> None:
        from sensorfuse.engine import shm

        pids = self.node_pids()
        if self.proc.poll() is not None:  # it ended by itself: it must have removed its pools
            LEFT_POOLS.extend(shm.remove_pools(str(self.run_dir)))
        else:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        for pid in pids:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                continue
        shm.remove_pools(str(self.run_dir))  # what the processes killed here left
        self._out.close()
        self._err.close()
        shutil.rmtree(self.run_dir, ignore_errors=True)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The complete lines of a JSONL file, also while a sink is still writing it (a last line
    without its newline is not there yet)."""
    if not path.exists():
        return []
    text = path.read_text()
    lines = text.splitlines() if text.endswith("\n") else text.splitlines()[:-1]
    return [json.loads(line) for line in lines if line.strip()]


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def pactl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["pactl", *args], capture_output=True, text=True, timeout=10)


def record_errors(stream: str, record: Any) -> list[str]:
    """Why `record` does not match its stream's shipped JSON Schema (`sensorfuse.engine.schemas`);
    empty when it does. Fails when the stream has no schema."""
    import jsonschema

    from sensorfuse.engine import schemas

    schema = schemas.schema_for(stream)
    assert schema is not None, f"no record schema for {stream}"
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    return [f"{stream}: {'/'.join(map(str, e.absolute_path)) or '(record)'}: {e.message}"
            for e in validator.iter_errors(schemas.as_json(record))]


def recorded_records(path: Path) -> Iterator[tuple[str, Any]]:
    """(stream, decoded record) of every record message in an MCAP log."""
    from sensorfuse.engine import wire
    from sensorfuse.replay.mcap_io import LogReader

    with LogReader(path) as reader:
        for message in reader.iter_messages():
            header, _, payload = message.decode()
            if header.kind == wire.KIND_RECORD:
                yield header.stream, wire.decode_record(payload)


class ReportPage(HTMLParser):
    """An HTML report's images (attributes), table cells (row ``data-type`` → ``data-col`` →
    text) and ``<body>`` attributes (nodes/report_html.py marks them)."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str]] = []
        self.cells: dict[str, dict[str, str]] = {}
        self.body: dict[str, str] = {}
        self._row: str | None = None
        self._col: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "img":
            self.images.append(a)
        elif tag == "tr":
            self._row = a.get("data-type")
        elif tag == "td" and self._row:
            self._col = a.get("data-col")
        elif tag == "body":
            self.body = a

    def handle_data(self, data: str) -> None:
        if self._row and self._col:
            self.cells.setdefault(self._row, {})[self._col] = data

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._col = None


def parse_report_html(text: str) -> ReportPage:
    page = ReportPage()
    page.feed(text)
    return page


def rrd_rows(path: Path) -> dict[str, list[tuple[int, dict[str, Any]]]]:
    """A Rerun recording read back with the SDK: entity path -> [(capture time ns, {column:
    value})] in time order (the viewer's `capture` timeline; static rows have none)."""
    import pyarrow as pa
    from rerun.chunk import RrdReader

    rows: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for chunk in RrdReader(path).stream():
        batch = chunk.to_record_batch()
        if "capture" not in batch.schema.names:
            continue
        times = batch.column("capture").cast(pa.int64()).to_pylist()
        columns = {name: batch.column(name).to_pylist() for name in batch.schema.names if ":" in name}
        for i, t in enumerate(times):
            rows.setdefault(chunk.entity_path, []).append((t, {k: v[i] for k, v in columns.items()}))
    return {entity: sorted(r, key=lambda row: row[0]) for entity, r in rows.items()}


def ticks_with_lines(ticks: list[dict[str, Any]], lines: dict[int, tuple[int, str]], upto: int) -> list[dict[str, Any]]:
    """The ticks up to `upto` with their text replaced: from tick i on, line (seq, text) of `lines`
    (as the aligner repeats its latest text), for 6 ticks."""
    out = []
    for record in ticks[:upto]:
        record = dict(record)
        members = {k: v for k, v in record["members"].items() if k != "text"}
        for first, (seq, text) in lines.items():
            if first <= record["tick"] < first + 6:
                members["text"] = {"seq": seq, "t_ns": ticks[first]["t_ns"], "dt_ns": 0, "text": text}
        record["members"] = members
        out.append(record)
    return out
