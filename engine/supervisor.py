"""Starts one process per node, watches them, restarts them, and stops them in order.

- Readiness: every node reports READY once its consumers have subscribed; the supervisor
  sends START to all of them, and prints READY, only when all are READY. A node that
  fails before (a configuration error, exit code 3, or a crash loop) fails the start:
  one line per failed node, the others are stopped, the run exits 1.
- Liveness: heartbeats every `heartbeat_interval_s`; silence for `hang_timeout_s` means a
  hung node: SIGKILL and restart.
- Restarts: exponential backoff from `backoff_initial_s` up to `backoff_max_s`; more than
  `max_restarts` within `restart_window_s` and the node is FAILED, the graph DEGRADED.
  A node that exits with code 3 (StartupError: bad config, missing model) is FAILED at
  once: retrying cannot help and must not hot-loop.
- Shutdown (SIGINT/SIGTERM, `--duration`, or every node done): STOP to sources first;
  nodes drain and exit as their inputs end; stragglers get STOP, then SIGKILL at the
  deadline. Exit codes are checked and reported.
- Outcome (`problems`): the run exits 1 when a node failed, was restarted (its data in
  between is lost), was killed at the stop deadline, or reported a write failure
  (`NodeContext.write_failed`, in its metrics); 0 only when none of that happened.
- Metrics: node heartbeats are merged and published on ``ipc://RUN/metrics`` and
  written to ``RUN/status.json`` for `sensorfuse status`, every `METRICS_INTERVAL_S`,
  with the supervisor's pid and start time; `close` writes the final state (finished,
  stopped or failed, with the exit code and end time) so a reader knows the run ended.
- Where nodes run: a launcher (engine/launch.py) starts each node's process, on this
  host or, with `--ray`, on a Ray node chosen by its placement (engine/cluster.py); the
  rest of this module is the same for both. A node whose host is lost is restarted like
  a crashed one, wherever its placement allows.
- Cost: the checks above run every `CHECK_INTERVAL_S`, and at once when a node reports a
  state change (ready, done, failed); a heartbeat only refreshes the node's timestamp and
  metrics. So the supervisor's work grows with time and node count, not with message rate.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import zmq

from sensorfuse.engine import control, fingerprint, rundir, shm, wire
from sensorfuse.engine.errors import EXIT_OK, EXIT_STARTUP
from sensorfuse.engine.graph import GraphPlan
from sensorfuse.engine.launch import Launcher, LocalLauncher, NodeProcess, PlacementError

log = logging.getLogger("sensorfuse.supervisor")

METRICS_STREAM = "sensorfuse/metrics"
_GONE = ("done", "failed", "stopped", "killed")
#: How often exits, hangs, restarts and deadlines are checked: the supervisor's reaction time.
CHECK_INTERVAL_S = 0.05
#: How often the merged status is published and written to status.json.
METRICS_INTERVAL_S = 0.5
#: After a node failed before the graph started, how long the others may take to fail
#: too (so one run names every broken node) before the start is given up.
START_FAILURE_GRACE_S = 1.0
#: How long a node that exited 0 without its `done` having arrived is given for that message.
DONE_GRACE_S = 0.5


@dataclass
class NodeState:
    name: str
    state: str = "pending"  # pending|starting|ready|running|backoff|done|failed|stopped
    proc: NodeProcess | None = None
    #: where its process runs ("local", or a Ray node with --ray)
    host: str = ""
    restarts: int = 0
    restart_times: deque[float] = field(default_factory=deque)
    last_heartbeat: float = 0.0
    started_at: float = 0.0
    next_start_at: float = 0.0
    last_error: str = ""
    exit_codes: list[int] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    stop_sent_at: float | None = None
    upstream_gone_at: float | None = None
    #: models the node opened (name -> sha256) and the providers they run on, from READY
    models: dict[str, str] = field(default_factory=dict)
    providers: list[str] = field(default_factory=list)
    #: stream -> the address the node reported it bound, from READY
    bound: dict[str, str] = field(default_factory=dict)
    #: what a node said it is busy with in a long wait, and until when (monotonic)
    busy_why: str = ""
    busy_until: float = 0.0
    busy_reported: str = ""

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Supervisor:
    #: what `run` returned and when `close` ended the run: status.json's final word
    exit_code: int | None = None
    ended_at: float | None = None

    def __init__(self, plan: GraphPlan, *, session: str, local_host: str = "local", quiet: bool = False,
                 cwd: str | None = None, launcher: Launcher | None = None) -> None:
        self.plan = plan
        self.launcher = launcher or LocalLauncher(plan, session=session, cwd=cwd)
        self.cfg = plan.decl.supervisor
        self.session = session
        self.run_dir = plan.run_dir
        self.local = [n for n, p in plan.nodes.items() if self.launcher.manages(p, local_host)]
        self.nodes = {n: NodeState(n) for n in self.local}
        self.quiet = quiet
        self.zctx = zmq.Context()
        self.router = self.zctx.socket(zmq.ROUTER)
        self.router.linger = 0
        # A restarted node takes over its name at once, even while the connection of the
        # process it replaces is not yet seen closed (a lost host's tcp link lingers).
        self.router.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self.router.bind(control.control_endpoint(self.run_dir))
        self.launcher.attach(self.router)
        self.metrics_pub = self.zctx.socket(zmq.PUB)
        self.metrics_pub.linger = 0
        self.metrics_pub.bind(control.metrics_endpoint(self.run_dir))
        self.metrics_seq = 0
        self.graph_state = "starting"
        self.started = False
        #: nodes that failed before the graph started (reported then; the run exits 1)
        self.start_failed: list[str] = []
        self._first_failure_at: float | None = None
        self.stop_requested = False
        #: the stop deadline counts from the later of `shutdown_at` and this (see _any_busy)
        self.deadline_from = 0.0
        self.shutdown_at: float | None = None
        self._last_metrics = 0.0

    # -- processes -------------------------------------------------------------------
    def _spawn(self, st: NodeState) -> None:
        try:
            st.proc = self.launcher.start(st.name, st.restarts)
        except PlacementError as exc:
            st.proc = None
            st.state = "failed"
            st.last_error = str(exc)
            self.graph_state = "degraded"
            log.log(logging.ERROR if self.started else logging.INFO, "%s failed: %s", st.name, exc)
            return
        st.host = st.proc.host
        st.state = "starting"
        st.started_at = time.monotonic()
        st.last_heartbeat = st.started_at
        log.info("started %s (pid %d on %s)", st.name, st.proc.pid, st.host)
        for name, msg in self.launcher.reconnects():  # it moved: its consumers dial its new address
            self._send(name, msg)

    def _send(self, name: str, msg: dict[str, Any]) -> None:
        try:
            self.router.send_multipart([name.encode(), control.encode(msg)], zmq.NOBLOCK)
        except zmq.ZMQError:
            log.warning("could not send %s to %s", msg["type"], name)

    def _kill(self, st: NodeState, why: str) -> None:
        if st.alive:
            log.warning("killing %s: %s", st.name, why)
            st.proc.kill()  # type: ignore[union-attr]
            shm.remove_pools(self.run_dir, st.name)

    def _schedule_restart(self, st: NodeState, why: str) -> None:
        now = time.monotonic()
        st.last_error = why
        while st.restart_times and now - st.restart_times[0] > self.cfg.restart_window_s:
            st.restart_times.popleft()
        if self.stop_requested:
            st.state = "stopped"
            return
        if len(st.restart_times) >= self.cfg.max_restarts:
            st.state = "failed"
            self.graph_state = "degraded"
            log.error("%s failed: %s (gave up after %d restarts in %.0f s)", st.name, why, len(st.restart_times),
                      self.cfg.restart_window_s)
            return
        delay = min(self.cfg.backoff_initial_s * (2 ** len(st.restart_times)), self.cfg.backoff_max_s)
        st.restart_times.append(now)
        st.restarts += 1
        st.state = "backoff"
        st.next_start_at = now + delay
        log.warning("%s: %s; restart %d in %.2f s", st.name, why, st.restarts, delay)

    # -- control messages ---------------------------------------------------------------
    def _handle_control(self) -> bool:
        """Handle every queued control message; True if one changed a node's state (anything
        but a heartbeat), which the checks in `run` should see without waiting for their tick."""
        changed = False
        while True:
            try:
                ident, raw = self.router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return changed
            except ValueError:
                continue  # not [identity, body]: not one of ours
            st = self.nodes.get(ident.decode(errors="replace"))
            if st is None:
                continue
            try:
                msg = control.decode(raw)
            except ValueError:
                log.warning("bad control message from %s", st.name)
                continue
            st.last_heartbeat = time.monotonic()
            kind = msg["type"]
            if kind == "heartbeat":
                st.metrics = msg.get("metrics", {})
                busy = msg.get("busy") or {}
                st.busy_why = str(busy.get("why", ""))
                st.busy_until = st.last_heartbeat + float(busy.get("left_s", 0.0)) if busy else 0.0
                continue
            changed = True
            if kind == "ready":
                st.state = "ready"
                st.models = dict(msg.get("models") or {})
                st.providers = list(msg.get("providers") or [])
                st.bound = dict(msg.get("bound") or {})
                if self.started:
                    self._send(st.name, {"type": "start"})
                    st.state = "running"
            elif kind == "done":
                st.state = "finishing"
            elif kind == "failed":
                st.last_error = str(msg.get("error", ""))

    # -- main loop -----------------------------------------------------------------------
    def request_stop(self) -> None:
        if not self.stop_requested:
            self.stop_requested = True
            self.shutdown_at = time.monotonic()
            self.graph_state = "stopping"
            for name in self.plan.order:
                st = self.nodes.get(name)
                # Sources, and nodes fed only by external streams or by producers on other
                # hosts (whose end-of-stream may never come: that host is not stopping),
                # start the drain; the others drain when their local producers end.
                local_upstream = [u for u in self.plan.upstream(name) if u in self.nodes]
                if st and not local_upstream and st.alive:
                    self._send(name, {"type": "stop"})
                    st.stop_sent_at = time.monotonic()

    def run(self, *, duration_s: float | None = None, stop: threading.Event | None = None) -> int:
        """Supervise until every node is gone; returns the exit code. `stop`: set from another
        thread to stop the graph as Ctrl-C would (`request_stop` itself sends on this thread's
        sockets, so only this thread may call it; `sensorfuse.run` supervises in a thread)."""
        (self.plan_path()).write_bytes(self.plan.to_json())
        for name in self.plan.order:
            if name in self.nodes:
                self._spawn(self.nodes[name])
        t0 = time.monotonic()
        while True:
            self._reap()
            self._check_liveness()
            self._maybe_start_graph()
            self._stop_orphans()
            self._restart_due()
            if (duration_s is not None and time.monotonic() - t0 >= duration_s) or (stop is not None and stop.is_set()):
                self.request_stop()
            if self.stop_requested and self.shutdown_at is not None:
                if self._any_busy():
                    self.deadline_from = time.monotonic()
                counted_from = self.shutdown_at if self.shutdown_at < 0 else max(self.shutdown_at, self.deadline_from)
                if time.monotonic() - counted_from > self.cfg.stop_deadline_s:
                    for st in self.nodes.values():
                        self._kill(st, "stop deadline passed")
                        if st.state not in ("done", "failed"):
                            st.state = "killed"
            self._publish_metrics()
            if all(st.state in _GONE and not st.alive for st in self.nodes.values()):
                break
            self._wait_for_control(time.monotonic() + CHECK_INTERVAL_S)
        self._publish_metrics(force=True)
        self.exit_code = self._exit_code()
        return self.exit_code

    def _any_busy(self) -> bool:
        """Whether a node is heartbeating through a long wait it declared (a recorder
        finalising its file on a slow disk): the stop deadline then counts from the end of
        that wait, for every node (its producers wait for it to leave). A second Ctrl-C
        (shutdown_at < 0) waits for no one."""
        if self.shutdown_at is None or self.shutdown_at < 0:
            return False
        now = time.monotonic()
        busy = [st for st in self.nodes.values() if now < st.busy_until and st.alive]
        for st in busy:
            if st.busy_why != st.busy_reported:
                st.busy_reported = st.busy_why
                log.warning("stopping: %s is %s (up to %.0f s more)", st.name, st.busy_why, st.busy_until - now)
        return bool(busy)

    def _wait_for_control(self, until: float) -> None:
        """Handle control messages as they arrive until `until`, or until one changes a node's
        state. Heartbeats (every node, several a second) do not end the wait: a round of checks
        per heartbeat made the supervisor's CPU grow with the number of messages."""
        while (left_ms := (until - time.monotonic()) * 1000) > 0:
            # ceil: poll(0) for the last fraction of a millisecond would spin
            if self.router.poll(math.ceil(left_ms)) and self._handle_control():
                return

    def plan_path(self) -> Path:
        return Path(self.run_dir) / "plan.json"

    def _reap(self) -> None:
        for st in self.nodes.values():
            if st.proc is None or st.state in ("done", "failed", "stopped", "killed", "backoff"):
                continue
            code = st.proc.poll()
            if code is None:
                continue
            st.exit_codes.append(code)
            # A node that closed cleanly unlinked its pools; one killed (SIGKILL, a crash in
            # C code) could not: its consumers keep what they mapped, nothing new maps them.
            shm.remove_pools(self.run_dir, st.name)
            self._handle_control()
            if code == EXIT_OK and st.state != "finishing" and not self.stop_requested:
                self._await_done(st)
            if code == EXIT_OK and st.state == "finishing":
                st.state = "done"
                log.info("%s finished", st.name)
            elif code == EXIT_OK and self.stop_requested:
                st.state = "stopped"
            elif code == EXIT_STARTUP:
                st.state = "failed"
                self.graph_state = "degraded"
                # Before the graph started, the failed start names it (one line, not two).
                level = logging.ERROR if self.started else logging.INFO
                log.log(level, "%s cannot start: %s (not restarted)", st.name, st.last_error or "startup error")
            else:
                why = st.proc.exit_reason() or f"exited with code {code}"
                self._schedule_restart(st, why + (f": {st.last_error}" if st.last_error else ""))

    def _await_done(self, st: Any, grace_s: float = DONE_GRACE_S) -> None:
        """A node that exited 0 sent its `done` just before: the message can still be on its
        way through ZeroMQ when the exit is seen. Wait briefly for it, rather than taking a
        clean end for a crash and restarting the node."""
        deadline = time.monotonic() + grace_s
        while st.state != "finishing" and time.monotonic() < deadline:
            if self.router.poll(10, zmq.POLLIN):
                self._handle_control()

    def _check_liveness(self) -> None:
        now = time.monotonic()
        for st in self.nodes.values():
            # `alive` is a waitpid per call: ask it only of a node that is overdue.
            if st.state == "starting":
                if now - st.started_at > self.cfg.startup_timeout_s and st.alive:
                    self._kill(st, f"not ready within {self.cfg.startup_timeout_s} s")
                    st.exit_codes.append(-9)
                    self._schedule_restart(st, "startup timeout")
            elif now - st.last_heartbeat > self.cfg.hang_timeout_s and st.alive:
                self._kill(st, f"no heartbeat for {self.cfg.hang_timeout_s} s")
                st.exit_codes.append(-9)
                self._schedule_restart(st, "hung (no heartbeat)")

    def _maybe_start_graph(self) -> None:
        if self.started or self.start_failed:
            return
        failed = [n for n, st in self.nodes.items() if st.state == "failed"]
        if failed:
            now = time.monotonic()
            if self._first_failure_at is None:
                self._first_failure_at = now
            if (all(st.state in ("ready", "failed") for st in self.nodes.values())
                    or now - self._first_failure_at >= START_FAILURE_GRACE_S):
                self._fail_start(failed)
            return
        if all(st.state == "ready" for st in self.nodes.values()):
            self.started = True
            if self.graph_state == "starting":
                self.graph_state = "running"
            for st in self.nodes.values():
                if st.state == "ready":
                    self._send(st.name, {"type": "start"})
                    st.state = "running"
            log.info("graph %s ready", self.plan.name)
            # Before any data flows, so a recorder opening its first file can read it.
            Path(self.run_dir, "fingerprint.json.tmp").write_text(json.dumps(self.fingerprint()))
            os.replace(Path(self.run_dir, "fingerprint.json.tmp"), Path(self.run_dir, "fingerprint.json"))
            if not self.quiet:
                print(f"sensorfuse: graph {self.plan.name!r} READY ({len(self.nodes)} nodes, run dir {self.run_dir})",
                      file=sys.stderr, flush=True)

    def _fail_start(self, failed: list[str]) -> None:
        """Some nodes failed before the graph started: say which and why instead of READY, and
        stop the others. A graph missing a node would run degraded without anyone noticing."""
        self.start_failed = failed
        for name in failed:
            reason = self.nodes[name].last_error.removeprefix(f"node {name!r}: ") or "startup error"
            print(f"sensorfuse: node {name!r} failed at start: {reason}", file=sys.stderr, flush=True)
        self.request_stop()
        now = time.monotonic()
        for name, st in self.nodes.items():  # no START will come: every waiting node stops now
            if st.alive and st.stop_sent_at is None:
                self._send(name, {"type": "stop"})
                st.stop_sent_at = now

    def _stop_orphans(self) -> None:
        """A node whose producers have all exited for good gets STOP after a grace period."""
        now = time.monotonic()
        for name, st in self.nodes.items():
            if st.stop_sent_at is not None or self.plan.nodes[name].is_source:
                continue
            ups = [self.nodes[u] for u in self.plan.upstream(name) if u in self.nodes]
            # While shutting down, "finishing" (eos sent, waiting for consumers to drain)
            # counts as gone, else a producer and a consumer whose other producer failed
            # would wait for each other until the deadline. Otherwise a finishing producer
            # may still have a backlog in flight to this node: wait for its exit.
            gone = ("finishing", *_GONE) if self.stop_requested else _GONE
            if ups and all(u.state in gone for u in ups) and st.alive:
                if st.upstream_gone_at is None:
                    st.upstream_gone_at = now
                grace = 0.5 if self.stop_requested else self.cfg.upstream_grace_s
                if now - st.upstream_gone_at > grace:
                    self._send(name, {"type": "stop"})
                    st.stop_sent_at = now

    def _restart_due(self) -> None:
        now = time.monotonic()
        for st in self.nodes.values():
            if st.state == "backoff" and now >= st.next_start_at:
                if self.stop_requested:
                    st.state = "stopped"
                else:
                    self._spawn(st)

    # -- metrics -------------------------------------------------------------------------
    def fingerprint(self) -> dict[str, Any]:
        """This host's fingerprint with the models and providers every local node reported."""
        models = {name: sha for st in self.nodes.values() for name, sha in st.models.items()}
        providers = sorted({p for st in self.nodes.values() for p in st.providers})
        return fingerprint.fingerprint(models, providers)

    @cached_property
    def identity(self) -> dict[str, Any]:
        return rundir.supervisor_identity()

    def status(self) -> dict[str, Any]:
        return {
            "graph": self.plan.name,
            "state": self.graph_state,
            "session": self.session,
            "run_dir": self.run_dir,
            "supervisor": self.identity,
            "exit_code": self.exit_code,
            "ended_at": self.ended_at,
            "fingerprint": self.fingerprint(),
            "nodes": {
                n: {"state": st.state, "pid": st.proc.pid if st.proc else None, "host": st.host,
                    "restarts": st.restarts,
                    "last_error": st.last_error, "exit_codes": st.exit_codes,
                    "alive": st.alive, "heartbeat_age_s": round(time.monotonic() - st.last_heartbeat, 3),
                    "models": st.models, "bound": st.bound, **st.metrics}
                for n, st in self.nodes.items()
            },
        }

    def _publish_metrics(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_metrics < METRICS_INTERVAL_S:
            return
        self._last_metrics = now
        status = self.status()
        frames = wire.encode_message(METRICS_STREAM, wire.KIND_RECORD, status, seq=self.metrics_seq,
                                     t_ns=time.monotonic_ns(), t_pub_ns=time.monotonic_ns(), src="supervisor",
                                     session=self.session)
        self.metrics_seq += 1
        self.metrics_pub.send_multipart(frames)
        self._write_status(status)

    def _write_status(self, status: dict[str, Any]) -> None:
        tmp = f"{self.run_dir}/status.json.tmp"
        # One write of the whole text: json.dump writes it in many small pieces, ~1.7x the CPU.
        Path(tmp).write_text(json.dumps(status))
        os.replace(tmp, f"{self.run_dir}/status.json")

    def problems(self) -> list[str]:
        """One line for each way the run was not clean, except the failed start (already
        named when it happened); none and no failed start: exit 0."""
        lines = []
        for n, st in self.nodes.items():
            if st.state == "failed" and n not in self.start_failed:
                lines.append(f"node {n!r} failed: {st.last_error}")
            elif st.restarts and st.state != "failed":
                times = "once" if st.restarts == 1 else f"{st.restarts} times"
                lines.append(f"node {n!r} was restarted {times} (data in between is lost): {st.last_error}")
            for target, error in (st.metrics.get("write_errors") or {}).items():
                lines.append(f"node {n!r} could not write {target}: {error}")
        killed = [n for n, st in self.nodes.items() if st.state == "killed"]
        if killed:
            lines.append(f"killed at the stop deadline: {', '.join(killed)}")
        return lines

    def _exit_code(self) -> int:
        return 1 if self.start_failed or self.problems() else EXIT_OK

    def _write_final_status(self) -> None:
        """status.json's last word: `failed` unless `run` returned 0 (it raised, or a node
        failed), `stopped` when asked to stop (Ctrl-C, SIGTERM, --duration), else `finished`.
        Not on the metrics stream, which closes with the supervisor: readers go to the file
        when the stream falls silent."""
        if self.exit_code != 0:
            self.graph_state = "failed"
        else:
            self.graph_state = "stopped" if self.stop_requested else "finished"
        self.ended_at = time.time()
        self._write_status(self.status())

    def close(self) -> None:
        for st in self.nodes.values():
            self._kill(st, "supervisor closing")
        shm.remove_pools(self.run_dir)
        self.launcher.close()
        self._write_final_status()
        self.router.close(0)
        self.metrics_pub.close(0)
        self.zctx.term()
