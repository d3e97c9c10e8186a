"""`sensorfuse run GRAPH --ray [ADDRESS]`: the supervisor's launcher for a Ray cluster.

Ray places and watches; it carries no data. Each node of the graph runs as its own
process under a Ray actor (engine/ray_host.py) on a Ray node that has what the node's
`placement:` asks for (custom resources, GPUs, node labels; default any node). The
supervisor (engine/supervisor.py) stays the one that decides: READY barrier,
heartbeats, hangs, restarts with back-off, give-up and shutdown order are its own,
over a tcp control channel; this module only starts processes and reports their ends.

- Endpoints: every node is its own host in the plan (engine/graph.py `hosts:`), at the
  address of the Ray node it landed on, so every hop between nodes is ZeroMQ tcp, bound
  at `ports_base` + the stream's index; the supervisor's control channel is on the
  driver's address at the next port. A node restarted on another Ray node gets a new
  address: the plan is derived again and its consumers are told to dial it (`connect`).
- Keys: the driver loads `security: {keys: DIR}` or makes fresh CurveZMQ pairs in memory;
  they travel to the actors as call arguments and to each node process on its stdin
  (never a file, an argument or a log line). CURVE covers every tcp hop, loopback included.
- A Ray node lost: its actors die, their node processes with them (`exit_reason` says
  which host was lost); the supervisor restarts them like crashed ones and Ray places
  them on another node that fits, or they fail as `no host with camera0`.
- Nothing here is imported without `--ray`; without Ray installed `--ray` is one
  UsageError naming the pip command.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import ipaddress
import logging
import os
import sys
from typing import Any

import msgspec
import zmq

from sensorfuse.engine import graph as graph_mod
from sensorfuse.engine.errors import SensorfuseError, UsageError
from sensorfuse.engine.graph import GraphPlan, NodePlan, PlacementDecl
from sensorfuse.engine.launch import PlacementError
from sensorfuse.engine.security import CurveKeys, apply_server

log = logging.getLogger("sensorfuse.cluster")

RAY_MISSING = "--ray needs Ray, which is not installed: pip install -e '.[cluster]' (or 'sensorfuse[cluster]')"
#: How long a node's actor may wait for a free Ray node that fits its placement.
PLACE_TIMEOUT_S = 60.0
#: How long starting a node through its actor may take before its host counts as lost.
CALL_TIMEOUT_S = 30.0
#: How long a kill through the actor may take: the supervisor waits on it, and an actor
#: that does not answer is on a host cut off (its process dies with it when Ray gives up).
KILL_TIMEOUT_S = 5.0


#: Read by Ray when it is imported: "0" makes Ray a one-machine Ray that resolves
#: 127.0.0.1 to itself; otherwise it swaps 127.0.0.1 for the host's routable address and
#: binds there (ray._private.services.resolve_ip_for_localhost).
ONE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def check_installed() -> None:
    """UsageError unless Ray can be imported; does not import it (`connect` must first
    decide how Ray resolves loopback, which Ray reads at import)."""
    if importlib.util.find_spec("ray") is None:
        raise UsageError(RAY_MISSING)


def require_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UsageError(RAY_MISSING) from None
    return ray


def _is_loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0].strip("[]")
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def connect(address: str | None) -> bool:
    """Join the Ray cluster at `address`, else a running local one, else start one on
    127.0.0.1. True when this call started Ray (and `close` should stop it). Without an
    address or with a loopback one, everything (Ray's services, the driver, the nodes'
    streams) stays on loopback."""
    address = address or os.environ.get("RAY_ADDRESS")
    local = not address or _is_loopback(address)
    if local and "ray" not in sys.modules:
        os.environ.setdefault(ONE_MACHINE_ENV, "0")
    ray = require_ray()
    if ray.is_initialized():
        return False
    if local and os.environ.get(ONE_MACHINE_ENV) != "0":
        raise UsageError(f"--ray on this machine needs {ONE_MACHINE_ENV}=0 (else Ray binds beyond loopback)")
    try:
        if address:
            ray.init(address=address, **({"_node_ip_address": "127.0.0.1"} if local else {}))
            return False
        try:
            ray.init(address="auto")
            return False
        except ConnectionError:
            ray.init(_node_ip_address="127.0.0.1", include_dashboard=False)
            return True
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise SensorfuseError(f"cannot reach Ray at {address or 'a local cluster'}: {exc}") from None


def missing(placement: PlacementDecl, nodes: list[dict[str, Any]]) -> str | None:
    """What no live Ray node has for `placement` ("camera0", "num_gpus=1", "label zone=a"),
    or None when one node has all of it."""
    wants = [(k, lambda n, k=k, v=v: n["Resources"].get(k, 0) >= v) for k, v in placement.resources.items()]
    if placement.num_gpus:
        wants.append((f"num_gpus={placement.num_gpus:g}",
                      lambda n: n["Resources"].get("GPU", 0) >= placement.num_gpus))
    for k, v in placement.labels.items():
        wants.append((f"label {k}={v}", lambda n, k=k, v=v: (n.get("Labels") or n.get("labels") or {}).get(k) == v))
    alive = [n for n in nodes if n.get("Alive")]
    if any(all(ok(n) for _, ok in wants) for n in alive):
        return None
    # name the first requirement no node meets, else the whole set (each is met somewhere)
    for what, ok in wants:
        if not any(ok(n) for n in alive):
            return what
    return " and ".join(what for what, _ in wants)


def control_port(plan: GraphPlan) -> int:
    return plan.decl.ports_base + len(plan.producers)


class RayProcess:
    """A node process owned by an actor: polled through the actor's pending `wait_exit`
    (a local check, no call per poll), killed through the actor, then the actor released."""

    def __init__(self, actor: Any, pid: int, host: str) -> None:
        ray = require_ray()
        self.actor = actor
        self.pid = pid
        self.host = host
        self._exit = actor.wait_exit.remote()
        self._code: int | None = None
        self._reason: str | None = None
        self._ray = ray

    def poll(self) -> int | None:
        if self._code is None:
            ready, _ = self._ray.wait([self._exit], timeout=0)
            if ready:
                self._finish(self._exit)
        return self._code

    def _finish(self, ref: Any, timeout_s: float = KILL_TIMEOUT_S) -> None:
        try:
            self._code = int(self._ray.get(ref, timeout=timeout_s))
        except (self._ray.exceptions.RayActorError, self._ray.exceptions.GetTimeoutError) as exc:
            self._code = -9
            self._reason = f"host {self.host} lost ({type(exc).__name__})"
        self.release()

    def kill(self) -> None:
        if self.poll() is None:
            self._finish(self.actor.kill.remote())

    def exit_reason(self) -> str | None:
        return self._reason

    def release(self) -> None:
        """The actor goes, and with it its hold on the placement's resources."""
        try:
            self._ray.kill(self.actor, no_restart=True)
        except ValueError:
            return  # already gone


class RayLauncher:
    def __init__(self, plan: GraphPlan, *, session: str, address: str | None = None,
                 cwd: str | None = None) -> None:
        self.started_ray = connect(address)  # before anything imports ray
        self.ray = require_ray()
        self.base = plan
        self.session = session
        self.cwd = cwd or os.getcwd()
        from sensorfuse.engine.ray_host import ACTOR_OPTIONS, NodeHost

        self.actor_class = self.ray.remote(**ACTOR_OPTIONS)(NodeHost)
        keys = CurveKeys.load(plan.keys_dir) if plan.keys_dir else CurveKeys.generate()
        self.keys = dataclasses.replace(keys, on_loopback=True)
        self.driver_ip = self.ray.util.get_node_ip_address()
        self.control_ep = ""
        self.procs: dict[str, RayProcess] = {}
        self._reconnects: list[tuple[str, dict[str, object]]] = []
        #: node -> (actor, where) placed but not started yet
        self._placed: dict[str, tuple[Any, dict[str, str]]] = {}
        self.unplaceable: dict[str, str] = {}
        self.ips: dict[str, str] = {}
        actors = {}
        for name in plan.order:  # all asked for at once: Ray places them in parallel
            try:
                actors[name] = self._ask(name)
            except PlacementError as exc:
                self.unplaceable[name] = str(exc)
                self.ips[name] = self.driver_ip  # an address for the plan; the node fails at start
        for name, actor in actors.items():
            try:
                self._placed[name] = (actor, self._where(actor))
                self.ips[name] = self._placed[name][1]["ip"]
            except PlacementError as exc:
                self.unplaceable[name] = str(exc)
                self.ips[name] = self.driver_ip
        self.plan = self._replan()

    # -- placement -----------------------------------------------------------------------
    def _placement(self, name: str) -> PlacementDecl:
        return self.base.decl.nodes[name].placement

    def _place(self, name: str) -> tuple[Any, dict[str, str]]:
        actor = self._ask(name)
        return actor, self._where(actor)

    def _ask(self, name: str) -> Any:
        """An actor for `name`, which Ray places on a node that fits; PlacementError at once
        when no live node does."""
        placement = self._placement(name)
        lacking = missing(placement, self.ray.nodes())
        if lacking is not None:
            raise PlacementError(f"no host with {lacking}")
        options: dict[str, Any] = {"resources": dict(placement.resources), "num_gpus": placement.num_gpus}
        if placement.labels:
            options["label_selector"] = dict(placement.labels)
        return self.actor_class.options(**options).remote()

    def _where(self, actor: Any) -> dict[str, str]:
        try:
            where = self.ray.get(actor.where.remote(), timeout=PLACE_TIMEOUT_S)
        except (self.ray.exceptions.GetTimeoutError, self.ray.exceptions.RayActorError) as exc:
            self.ray.kill(actor, no_restart=True)
            raise PlacementError(f"no free host with its placement within {PLACE_TIMEOUT_S:.0f} s "
                                 f"({type(exc).__name__})") from None
        return where

    def _replan(self) -> GraphPlan:
        """The plan with every node its own host at its Ray node's address: all hops tcp."""
        decl = msgspec.convert(msgspec.to_builtins(self.base.decl), graph_mod.GraphDecl)
        for name, nd in decl.nodes.items():
            nd.host = name
        decl.hosts = dict(self.ips)
        plan = graph_mod.plan(decl, self.base.run_dir, check_files=False)
        plan.keys_dir = None  # the keys travel in memory (stdin), never as a path
        return plan

    # -- the supervisor's seam (engine/launch.py) -----------------------------------------
    def manages(self, node: NodePlan, local_host: str) -> bool:
        return True

    def attach(self, router: zmq.Socket) -> None:
        """The control channel on the driver's address, at the port after the streams' ports
        (`ports_base` + number of streams): one known range to open (docs/cluster.md)."""
        ep = f"tcp://{self.driver_ip}:{control_port(self.plan)}"
        apply_server(router, ep, self.keys)
        try:
            router.bind(ep)
        except zmq.ZMQError as exc:
            raise SensorfuseError(f"--ray: cannot bind the control channel at {ep}: {exc} "
                                  "(set another `ports_base` in the graph)") from None
        self.control_ep = ep

    def start(self, name: str, restarts: int) -> RayProcess:
        if name in self.unplaceable:
            raise PlacementError(self.unplaceable.pop(name))
        actor, where = self._placed.pop(name, None) or self._place(name)
        if where["ip"] != self.ips[name]:
            self._moved(name, where["ip"])
        plan = msgspec.json.decode(self.plan.to_json())
        plan["control"] = self.control_ep
        plan["keys_from"] = "stdin"
        try:
            pid = self.ray.get(actor.spawn.remote(name, msgspec.json.encode(plan), self.keys.to_text(), self.session,
                                                  restarts, self.cwd), timeout=CALL_TIMEOUT_S)
        except (self.ray.exceptions.GetTimeoutError, self.ray.exceptions.RayActorError) as exc:
            self.ray.kill(actor, no_restart=True)
            raise PlacementError(f"could not start on {where['hostname']}: {type(exc).__name__}") from None
        proc = RayProcess(actor, pid, f"{where['hostname']}:{where['node_id'][:8]}")
        self.procs[name] = proc
        return proc

    def _moved(self, name: str, ip: str) -> None:
        """`name` landed at a new address: derive the plan again and owe each consumer
        whose input endpoints changed a `connect`."""
        old = self.plan
        self.ips[name] = ip
        self.plan = self._replan()
        for consumer, np_ in self.plan.nodes.items():
            before = {i.port: i.endpoints for i in old.nodes[consumer].inputs}
            for ip_ in np_.inputs:
                if before.get(ip_.port) != ip_.endpoints:
                    self._reconnects.append((consumer, {"type": "connect", "port": ip_.port,
                                                        "endpoints": ip_.endpoints}))

    def reconnects(self) -> list[tuple[str, dict[str, object]]]:
        out, self._reconnects = self._reconnects, []
        return out

    def close(self) -> None:
        for proc in self.procs.values():
            proc.release()
        for actor, _ in self._placed.values():
            self.ray.kill(actor, no_restart=True)
        self.ray.shutdown()
