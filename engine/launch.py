"""Launchers: how the supervisor starts a node's process, and the handle it watches.

The supervisor (engine/supervisor.py) owns every decision (readiness, heartbeats, hangs,
restarts with back-off, give-up, shutdown order); a launcher only starts a process for a
node and gives back a `NodeProcess` to poll and kill. `LocalLauncher` runs it as a child
process of this host; `sensorfuse.engine.cluster.RayLauncher` runs it on a Ray node chosen
by the node's `placement:`, through an actor that owns the process (docs/cluster.md).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Protocol

import zmq

from sensorfuse.engine.graph import GraphPlan, NodePlan


class PlacementError(Exception):
    """No host can run the node now (`no host with camera0`): it fails, it is not retried."""


class NodeProcess(Protocol):
    pid: int
    #: where it runs: "local", or the Ray node (docs/cluster.md)
    host: str

    def poll(self) -> int | None:
        """The exit code once it ended (a negative one when killed), else None."""

    def kill(self) -> None:
        """SIGKILL and wait for it."""

    def exit_reason(self) -> str | None:
        """Why it ended when the exit code alone does not say (its host was lost)."""


class Launcher(Protocol):
    def manages(self, node: NodePlan, local_host: str) -> bool:
        """Whether this supervisor starts `node` (the others run on hosts started by hand)."""

    def attach(self, router: zmq.Socket) -> None:
        """The supervisor's control socket is bound: bind what remote nodes reach it on."""

    def start(self, name: str, restarts: int) -> NodeProcess:
        """Start node `name` (its `restarts`-th start); PlacementError if no host can take it."""

    def reconnects(self) -> list[tuple[str, dict[str, object]]]:
        """Control messages (node, message) owed to consumers since the last call: a
        producer that moved to another host is at a new address."""

    def close(self) -> None:
        """Release what the launcher holds (actors); the processes are gone by now."""


class LocalProcess:
    host = "local"

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen
        self.pid = popen.pid

    def poll(self) -> int | None:
        return self.popen.poll()

    def kill(self) -> None:
        os.killpg(self.pid, signal.SIGKILL)
        self.popen.wait()

    def exit_reason(self) -> str | None:
        return None


class LocalLauncher:
    """Node processes as children of the supervisor, on this host."""

    def __init__(self, plan: GraphPlan, *, session: str, cwd: str | None = None) -> None:
        self.run_dir = plan.run_dir
        self.session = session
        self.cwd = cwd  # the node processes' working directory (None: the supervisor's)

    def manages(self, node: NodePlan, local_host: str) -> bool:
        return node.host == local_host

    def attach(self, router: zmq.Socket) -> None:
        return None  # local nodes reach the control socket over ipc

    def start(self, name: str, restarts: int) -> NodeProcess:
        cmd = [sys.executable, "-m", "sensorfuse.engine.runtime", self.run_dir, name, self.session, str(restarts)]
        # Own process group: a terminal Ctrl-C reaches only the supervisor, which then
        # stops the nodes in order.
        return LocalProcess(subprocess.Popen(cmd, start_new_session=True, cwd=self.cwd))

    def reconnects(self) -> list[tuple[str, dict[str, object]]]:
        return []

    def close(self) -> None:
        return None
