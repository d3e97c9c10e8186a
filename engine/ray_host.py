"""The Ray actor that owns one node process on the Ray node its placement chose.

A plain class, made a Ray actor by engine/cluster.py (`ray.remote(...)(NodeHost)`): this
module imports without Ray, and the runtime without the `cluster` extra never imports
it. The actor writes the node's plan to a folder of its own host, starts
`python -m sensorfuse.engine.runtime` there as its direct child (which dies with the actor:
the runtime asks the kernel for that), writes the CurveZMQ keys to the child's stdin and
closes it, and answers `wait_exit` when the child ends. It holds the node's placement
resources while it lives; the driver kills it once its process ended.
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
from pathlib import Path

#: Ray's options for the actor: it needs no CPU of its own (its node process is what
#: works), is never restarted by Ray (the supervisor decides), and answers `kill` while a
#: `wait_exit` is pending.
ACTOR_OPTIONS = {"num_cpus": 0, "max_restarts": 0, "max_concurrency": 4}


class NodeHost:
    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        #: this node's plan, in the run dir on this host (removed when the process ends)
        self.folder: Path | None = None

    def where(self) -> dict[str, str]:
        """The Ray node this actor landed on: its id, the address nodes bind on, the host name."""
        import ray

        return {"node_id": ray.get_runtime_context().get_node_id(), "ip": ray.util.get_node_ip_address(),
                "hostname": socket.gethostname()}

    def spawn(self, name: str, plan_json: bytes, keys: dict[str, str], session: str, restarts: int,
              cwd: str | None) -> int:
        plan = json.loads(plan_json)
        # ipc sockets and files nodes keep beside the run live under the run dir on every host
        (Path(plan["run_dir"]) / "s").mkdir(parents=True, exist_ok=True)
        (Path(plan["run_dir"]) / "ray").mkdir(exist_ok=True)
        self.folder = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=Path(plan["run_dir"]) / "ray"))
        (self.folder / "plan.json").write_bytes(plan_json)
        cmd = [sys.executable, "-m", "sensorfuse.engine.runtime", str(self.folder), name, session, str(restarts)]
        # SIGKILL when this actor dies (its host is going): no end of stream from an orphan
        env = {**os.environ, "SENSORFUSE_PARENT_DEATH_SIGNAL": "SIGKILL"}
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, start_new_session=True, env=env,
                                     cwd=cwd if cwd and os.path.isdir(cwd) else self.folder)
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(keys).encode())
        self.proc.stdin.close()
        return self.proc.pid

    def wait_exit(self) -> int:
        assert self.proc is not None
        code = self.proc.wait()
        self._forget_plan()
        return code

    def kill(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        code = self.proc.wait()
        self._forget_plan()
        return code

    def _forget_plan(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
