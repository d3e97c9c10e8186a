"""`--view` and `sensorfuse log view`: where the viewer node logs to, and its wiring.

Modes (docs/view.md):

- ``web``: the Rerun web viewer served on loopback only. The SDK's own servers listen
  on every interface with no bind option, so the `rerun` binary shipped in the wheel is
  started with ``--bind 127.0.0.1``; the viewer node connects to its gRPC proxy. The
  URL is printed; the server keeps serving after the graph ends, until Ctrl-C/SIGTERM.
- ``native``: the native viewer, spawned on loopback (needs a display); it stays open
  after the graph ends.
- ``rrd:PATH``: a Rerun recording written to PATH (an existing file is refused).

`session(mode)` owns the server process; `ViewSession.add_to(graph)` adds a ``viewer``
node wired to the streams of the graph the viewer draws (nodes/viewer.py).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from sensorfuse.engine.errors import SensorfuseError, UsageError

MODES = ("web", "native", "rrd:PATH")
LOOPBACK = "127.0.0.1"
#: what the `rerun` server keeps for viewers that connect late (it drops the oldest beyond)
SERVER_MEMORY_LIMIT = "1GiB"
#: what the native viewer keeps (it drops the oldest beyond): a long live run stays bounded
VIEWER_MEMORY_LIMIT = "2GiB"
START_TIMEOUT_S = 15.0
#: viewer port -> (stream suffixes it takes, in order of preference)
PORT_STREAMS: dict[str, tuple[str, ...]] = {
    "frame": ("frame",), "audio": ("audio16k", "audio"), "detections": ("detections",), "speech": ("speech",),
    "sound": ("sound",), "scene": ("scene",), "events": ("events",), "scores": ("scores",), "text": ("in",),
}
#: a sample session's ground-truth boxes (replay/sample.py)
TRUTH_STREAM = "labels/boxes"


def rerun_binary() -> Path:
    """The `rerun` executable inside the rerun-sdk wheel (not the Python wrapper script,
    which leaves the real binary running when it is killed)."""
    import rerun_cli

    return Path(rerun_cli.__file__).parent / ("rerun.exe" if sys.platform == "win32" else "rerun")


def has_display() -> bool:
    return sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """In the server's child process: SIGTERM when its parent dies (Linux; elsewhere the
    server is stopped on every exit path but SIGKILL)."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def check_mode(mode: str) -> tuple[str, str | None]:
    """(kind, path) of a --view value; a usage error names what is accepted."""
    if mode in ("web", "native"):
        return mode, None
    if mode.startswith("rrd:") and mode[4:]:
        path = mode[4:]
        if os.path.exists(path):
            raise UsageError(f"--view rrd:{path}: {path} exists (remove it or choose another path)")
        if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise UsageError(f"--view rrd:{path}: no directory {os.path.dirname(os.path.abspath(path))}")
        return "rrd", os.path.abspath(path)
    raise UsageError(f"--view wants one of {', '.join(MODES)}, got {mode!r}")


class ViewSession:
    """One viewer target for one command: `params` for the viewer node (`connect` or `save`)."""

    def __init__(self, kind: str, path: str | None) -> None:
        self.kind = kind
        self.url: str | None = None
        self.server: subprocess.Popen[bytes] | None = None
        self.server_log: Any = None
        if kind == "rrd":
            self.params: dict[str, Any] = {"save": path}
            return
        if kind == "native" and not has_display():
            raise UsageError("--view native needs a display (DISPLAY / WAYLAND_DISPLAY unset); "
                             "use --view web or --view rrd:PATH")
        grpc_port = _free_port()
        proxy = f"rerun+http://{LOOPBACK}:{grpc_port}/proxy"
        self.params = {"connect": proxy}
        if kind == "web":
            web_port = _free_port()
            args = ["--serve-web", "--port", str(grpc_port), "--web-viewer-port", str(web_port),
                    "--server-memory-limit", SERVER_MEMORY_LIMIT]
            self.url = f"http://{LOOPBACK}:{web_port}/?url={urllib.parse.quote(proxy, safe='')}"
        else:
            args = ["--port", str(grpc_port), "--memory-limit", VIEWER_MEMORY_LIMIT]
        self._start([str(rerun_binary()), "--bind", LOOPBACK, *args], grpc_port)

    def _start(self, argv: list[str], port: int) -> None:
        self.server_log = tempfile.TemporaryFile()
        # its own session: a Ctrl-C meant for the graph does not stop the viewer under the user;
        # a web server still dies with this process however it ends (SIGKILL included)
        self.server = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.server_log,
                                       stderr=subprocess.STDOUT, start_new_session=True,
                                       preexec_fn=_die_with_parent if self.kind == "web" else None)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                self.server_log.seek(0)
                last = (self.server_log.read().decode(errors="replace").strip().splitlines() or ["no output"])[-1]
                raise SensorfuseError(f"the rerun viewer exited at start (exit {self.server.returncode}): {last}")
            try:
                socket.create_connection((LOOPBACK, port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.close()
        raise SensorfuseError(f"the rerun viewer did not listen on {LOOPBACK}:{port} within {START_TIMEOUT_S:g} s")

    def node(self, streams: Iterable[str]) -> dict[str, Any]:
        """The viewer node's declaration, wired to those of `streams` it draws."""
        available = set(streams)
        inputs: dict[str, Any] = {}
        for port, suffixes in PORT_STREAMS.items():
            for suffix in suffixes:
                found = sorted(s for s in available if s.rsplit("/", 1)[-1] == suffix and s != TRUTH_STREAM)
                if found:
                    inputs[port] = found[0]
                    break
        if TRUTH_STREAM in available:
            inputs["truth"] = TRUTH_STREAM
        if not inputs:
            raise UsageError(f"--view: the graph has no stream the viewer draws (frames, audio, perceive outputs, "
                             f"text); it has {', '.join(sorted(available)) or 'none'}")
        return {"kind": "viewer", "params": dict(self.params), "inputs": inputs}

    def add_to(self, graph: dict[str, Any], streams: Iterable[str] | None = None) -> dict[str, Any]:
        """`graph` with a viewer node wired to the streams its nodes produce (or `streams`)."""
        nodes = graph["nodes"]
        if streams is None:
            streams = {s for nd in nodes.values() for s in (nd.get("outputs") or {}).values()}
        return {**graph, "nodes": {**nodes, self.node_name(nodes): self.node(streams)}}

    @staticmethod
    def node_name(nodes: dict[str, Any]) -> str:
        """`viewer`, or a name beside a graph's own node of that name."""
        name = "viewer"
        while name in nodes:
            name = "_" + name
        return name

    def announce(self) -> None:
        if self.url:
            print(f"viewer: open {self.url}", file=sys.stderr, flush=True)
        elif self.kind == "native":
            print("viewer: the native Rerun viewer is open", file=sys.stderr, flush=True)

    def linger(self) -> None:
        """After the graph: the web viewer keeps serving what was logged until Ctrl-C / SIGTERM."""
        if self.kind != "web" or self.server is None or self.server.poll() is not None:
            return
        print(f"viewer: still serving {self.url} (Ctrl-C stops it)", file=sys.stderr, flush=True)

        def on_term(_signum: int, _frame: Any) -> None:
            raise KeyboardInterrupt

        old = signal.signal(signal.SIGTERM, on_term)
        try:
            self.server.wait()
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, old)

    def close(self) -> None:
        """Stop the web server; a native viewer is the user's to close."""
        if self.server is not None and self.kind == "web" and self.server.poll() is None:
            self.server.terminate()
            try:
                self.server.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()
        if self.server_log is not None:
            self.server_log.close()
        if self.kind == "rrd" and os.path.isfile(self.params["save"]):
            print(f"viewer: wrote {self.params['save']}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def session(mode: str) -> Iterator[ViewSession]:
    """A viewer target for the length of a command: a web server lingers after the graph
    (until Ctrl-C) and is stopped on every path."""
    import importlib.util

    if importlib.util.find_spec("rerun") is None:
        raise UsageError("--view needs the Rerun SDK: pip install 'sensorfuse[view]' (rerun-sdk, Python >= 3.11)")
    kind, path = check_mode(mode)
    view = ViewSession(kind, path)
    try:
        view.announce()
        yield view
        view.linger()
    finally:
        view.close()
