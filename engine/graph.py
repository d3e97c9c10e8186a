"""Graphs: YAML → a validated, resolved plan of nodes, streams and endpoints.

A graph names nodes (kind, params, which stream each port uses) and may declare
external streams produced or consumed by programs the supervisor does not start.
Endpoints are derived here, never typed by hand: ``ipc://RUN/s/<stream>`` on one host,
``tcp://HOST:PORT`` (PORT = ``ports_base`` + the stream's index) when producer and
consumer sit on different hosts. Example::

    name: relay
    nodes:
      producer: {kind: synthetic, params: {rate_hz: 30}, outputs: {out: cam0/frame}}
      relay:    {kind: relay, inputs: {in: {stream: cam0/frame, policy: block}}, outputs: {out: relay/frame}}
      sink:     {kind: jsonl, params: {path: out.jsonl}, inputs: {in: relay/frame}}
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated, Any

import msgspec
import yaml

from sensorfuse.engine import params as params_mod
from sensorfuse.engine.errors import SensorfuseError, UsageError
from sensorfuse.engine.node import POLICIES, Node
from sensorfuse.engine.params import Count, NonNegativeFloat, PositiveFloat, PositiveInt
from sensorfuse.engine.shm import DEFAULT_MIN_BYTES, default_slots
from sensorfuse.engine.streams import stream_type

BUILTIN_GRAPHS_DIR = Path(__file__).with_name("graphs")
LOCAL_HOST = "local"


class InputUse(msgspec.Struct, forbid_unknown_fields=True):
    stream: str
    policy: str | None = None
    queue: PositiveInt | None = None


class ExposeDecl(msgspec.Struct, forbid_unknown_fields=True):
    endpoint: str
    #: an outside consumer that takes part in `block` back-pressure (it can slow the graph);
    #: by default outside subscribers get their own socket and a slow one only loses messages.
    lockstep: bool = False


class PlacementDecl(msgspec.Struct, forbid_unknown_fields=True):
    """Where `sensorfuse run --ray` may start the node (docs/cluster.md); other runs ignore it.
    Any Ray node that has all of it: custom resources, GPUs, node labels."""
    resources: dict[str, PositiveFloat] = {}
    num_gpus: NonNegativeFloat = 0.0
    labels: dict[str, str] = {}


class NodeDecl(msgspec.Struct, forbid_unknown_fields=True):
    kind: str
    params: dict[str, Any] = {}
    inputs: dict[str, str | InputUse] = {}
    outputs: dict[str, str] = {}
    host: str = LOCAL_HOST
    #: endpoints (beyond ipc) where this node's outputs are also bound, for outside consumers:
    #: `stream: ENDPOINT` or `stream: {endpoint: ENDPOINT, lockstep: true}`.
    expose: dict[str, str | ExposeDecl] = {}
    placement: PlacementDecl = msgspec.field(default_factory=PlacementDecl)


class ExternalDecl(msgspec.Struct, forbid_unknown_fields=True):
    #: stream -> endpoint an outside program binds and publishes on (the engine connects).
    inputs: dict[str, str] = {}


class SecurityDecl(msgspec.Struct, forbid_unknown_fields=True):
    keys: str | None = None


class SupervisorDecl(msgspec.Struct, forbid_unknown_fields=True):
    startup_timeout_s: PositiveFloat = 30.0
    heartbeat_interval_s: PositiveFloat = 0.25
    hang_timeout_s: PositiveFloat = 5.0
    max_restarts: Count = 3
    restart_window_s: PositiveFloat = 60.0
    backoff_initial_s: NonNegativeFloat = 0.2
    backoff_max_s: NonNegativeFloat = 5.0
    stop_deadline_s: NonNegativeFloat = 5.0
    #: a node whose producers have all exited gets STOP after this long.
    upstream_grace_s: NonNegativeFloat = 2.0
    #: a finished node keeps its outputs open this long at most for consumers to drain them.
    drain_timeout_s: NonNegativeFloat = 10.0
    #: a finished node keeps its outputs open this long at most for outside subscribers to
    #: read its end of stream (a client that read it unsubscribes, which ends the wait).
    eos_linger_s: NonNegativeFloat = 5.0
    #: a stream quiet this long gets an `idle` message; 3 periods of silence = publisher gone.
    idle_s: PositiveFloat = 1.0


class ShmStreamDecl(msgspec.Struct, forbid_unknown_fields=True):
    enabled: bool = True
    #: slots in the stream's pool (default: from its same-host consumers' queues, `default_slots`)
    slots: Annotated[int, msgspec.Meta(ge=2, le=1024)] | None = None
    #: bytes per slot (default: the first payload's size); larger payloads go inline
    slot_bytes: PositiveInt | None = None


class ShmDecl(msgspec.Struct, forbid_unknown_fields=True):
    """Shared-memory frame plane (docs/engine.md): on by default between nodes on one host."""

    enabled: bool = True
    #: payloads smaller than this stay inline
    min_bytes: Count = DEFAULT_MIN_BYTES
    streams: dict[str, ShmStreamDecl] = {}


class GraphDecl(msgspec.Struct, forbid_unknown_fields=True):
    nodes: dict[str, NodeDecl]
    name: str = "graph"
    hosts: dict[str, str] = {}
    ports_base: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 47000
    external: ExternalDecl = msgspec.field(default_factory=ExternalDecl)
    security: SecurityDecl = msgspec.field(default_factory=SecurityDecl)
    supervisor: SupervisorDecl = msgspec.field(default_factory=SupervisorDecl)
    shm: ShmDecl = msgspec.field(default_factory=ShmDecl)


@dataclass
class InputPlan:
    port: str
    stream: str
    policy: str
    queue: int
    endpoints: list[str]
    #: this input's reader row in the producer's shared-memory pool; -1: inline bytes
    shm_row: int = -1


@dataclass
class NodePlan:
    name: str
    kind: str
    cls_path: str
    params: dict[str, Any]
    host: str
    inputs: list[InputPlan]
    outputs: dict[str, str]  # port -> stream
    bind: dict[str, list[str]]  # stream -> endpoints to bind (outside ones included)
    nodrop: dict[str, bool]  # stream -> XPUB_NODROP (a block consumer exists)
    subscribers: dict[str, int]  # stream -> consumers the readiness handshake waits for
    hwm: dict[str, int]  # stream -> publisher high-water mark (the deepest consumer queue)
    is_source: bool = False
    #: stream -> the endpoints in `bind` for outside subscribers that never slow the graph
    outside: dict[str, list[str]] = field(default_factory=dict)
    #: stream -> its pool: {slots, slot_bytes (0: the first payload's), block (per reader
    #: row), min_bytes}, for streams with same-host graph consumers
    shm: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class GraphPlan:
    name: str
    decl: GraphDecl
    run_dir: str
    nodes: dict[str, NodePlan]
    producers: dict[str, str]  # stream -> node name ("" for external)
    keys_dir: str | None
    order: list[str] = field(default_factory=list)  # topological: sources first

    def upstream(self, node: str) -> set[str]:
        return {self.producers[i.stream] for i in self.nodes[node].inputs if self.producers.get(i.stream)}

    def to_json(self) -> bytes:
        return msgspec.json.encode(
            {"name": self.name, "run_dir": self.run_dir, "keys_dir": self.keys_dir,
             "nodes": {n: p.__dict__ for n, p in self.nodes.items()}, "producers": self.producers,
             "order": self.order, "decl": self.decl}
        )


def resolve_kind(kind: str) -> tuple[str, type[Node]]:
    """Find the node class for a short kind name (entry point) or a 'module:Class' path."""
    if ":" in kind:
        path = kind
    else:
        found = [ep for ep in entry_points(group="sensorfuse.nodes") if ep.name == kind]
        if not found:
            known = sorted(ep.name for ep in entry_points(group="sensorfuse.nodes"))
            raise UsageError(f"unknown node kind {kind!r}; known kinds: {', '.join(known)}")
        path = found[0].value
    mod_name, _, cls_name = path.rpartition(":")
    try:
        if mod_name.endswith(".py"):
            # A node class in a plain file: "path/to/my_node.py:MyNode".
            spec = importlib.util.spec_from_file_location(Path(mod_name).stem, mod_name)
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot load {mod_name}")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(mod_name)
        cls = getattr(module, cls_name)
    except (ImportError, AttributeError, OSError) as exc:
        raise UsageError(f"node kind {kind!r} ({path}) cannot be loaded: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, Node)):
        raise UsageError(f"{path} is not a sensorfuse Node class")
    return path, cls


class GraphLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 booleans (only true/false: `on`, `off`, `yes`,
    `no` stay strings, so a rule parameter named `on` is a key, not True) and duplicate
    mapping keys refused (two nodes with one name would otherwise silently keep the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *base` then overriding a key is what merges are for
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
                seen[key] = line
            except TypeError:
                continue  # an unhashable key: the base constructor reports it
            if first is not None:
                where = f"on line {line}" if first == line else f"at lines {first} and {line}"
                raise UsageError(f"{_source(node)}duplicate key {key!r} {where} "
                                 "(the second would silently replace the first)")
        return super().construct_mapping(node, deep=deep)


GraphLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
GraphLoader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                  list("tTfF"))


def _source(node: yaml.Node) -> str:
    name = node.start_mark.name
    return "" if name.startswith("<") else f"{name}: "


def parse_yaml(text: str, source: str = "<string>") -> Any:
    """Graph YAML (or a `--set` value) → Python data, with `GraphLoader`'s rules. Errors
    are UsageError, one line with the line and column."""
    loader = GraphLoader(text)
    loader.name = source  # type: ignore[attr-defined]  # shown in marks, hence in errors
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = " ".join(str(exc.problem or exc.context or "syntax error").split())
        prefix = "" if source.startswith("<") else f"{source}: "
        raise UsageError(f"{prefix}not valid YAML{where}: {what}") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"{source}: not valid YAML: {' '.join(str(exc).split())}") from None
    finally:
        loader.dispose()


def read_yaml(path: str | os.PathLike[str]) -> Any:
    """A graph file read with `parse_yaml` (UsageError when unreadable)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read graph {path}: {exc}") from None
    return parse_yaml(text, str(path))


def load_decl(source: str | os.PathLike[str] | dict[str, Any]) -> GraphDecl:
    """Parse a graph from a YAML path, a built-in graph name, or an already-loaded dict."""
    where = "graph"
    if isinstance(source, dict):
        raw = source
    else:
        path = Path(source)
        if not path.exists() and (BUILTIN_GRAPHS_DIR / f"{source}.yaml").exists():
            path = BUILTIN_GRAPHS_DIR / f"{source}.yaml"
        if not path.exists():
            builtin = sorted(p.stem for p in BUILTIN_GRAPHS_DIR.glob("*.yaml"))
            raise UsageError(f"no graph file {str(source)!r} (built-in graphs: {', '.join(builtin)})")
        raw = read_yaml(path)
        where = f"graph {path}"
    try:
        return msgspec.convert(raw, type=GraphDecl)
    except msgspec.ValidationError as exc:
        raise UsageError(f"{where}: {params_mod.explain(GraphDecl, raw, exc, what='field')}") from None


def _slug(stream: str) -> str:
    return stream.replace("/", ".")


def plan(decl: GraphDecl, run_dir: str, *, check_files: bool = True) -> GraphPlan:
    """Validate a graph against its node classes and derive every endpoint. `check_files`:
    also run the local nodes' `check` hooks (the files they read exist); a picture of the
    graph (`graph show`) does without."""
    producers: dict[str, str] = {}
    classes: dict[str, tuple[str, type[Node]]] = {}
    for name, nd in decl.nodes.items():
        if "/" in name or not name:
            raise UsageError(f"node name {name!r}: use letters, digits, '-' and '_'")
        classes[name] = resolve_kind(nd.kind)
        cls = classes[name][1]
        for port, stream in nd.outputs.items():
            if port not in cls.outputs and "*" not in cls.outputs:
                raise UsageError(f"node {name!r} ({nd.kind}) has no output port {port!r}; it has {sorted(cls.outputs)}")
            if stream in producers:
                raise UsageError(f"stream {stream!r} is produced by both {producers[stream]!r} and {name!r}")
            producers[stream] = name
        if nd.host != LOCAL_HOST and nd.host not in decl.hosts:
            raise UsageError(f"node {name!r}: host {nd.host!r} is not declared under `hosts:`")
    for stream in decl.external.inputs:
        if stream in producers:
            raise UsageError(f"external stream {stream!r} is also produced by node {producers[stream]!r}")
        producers[stream] = ""
    stream_index = {s: i for i, s in enumerate(sorted(producers))}

    def producer_host(stream: str) -> str:
        return decl.nodes[producers[stream]].host

    def address(host: str) -> str:
        if host not in decl.hosts:
            raise UsageError(f"streams cross hosts but host {host!r} has no address: declare `hosts: {{{host}: ADDRESS}}`")
        return decl.hosts[host]

    consumers: dict[str, list[tuple[str, str, int]]] = {}  # stream -> [(node, policy, queue)]
    shm_readers: dict[str, list[tuple[str, int]]] = {}  # stream -> [(policy, queue)] by reader row
    inputs: dict[str, list[InputPlan]] = {}
    for name, nd in decl.nodes.items():
        cls = classes[name][1]
        inputs[name] = []
        for port, use in nd.inputs.items():
            use = InputUse(stream=use) if isinstance(use, str) else use
            spec = cls.inputs.get(port) or cls.inputs.get("*")
            if spec is None:
                raise UsageError(f"node {name!r} ({nd.kind}) has no input port {port!r}; it has {sorted(cls.inputs)}")
            if use.stream not in producers:
                raise UsageError(
                    f"node {name!r} input {port!r} wants stream {use.stream!r}, which no node produces "
                    "(declare it under external.inputs if an outside program publishes it)"
                )
            st = stream_type(use.stream)
            policy = use.policy or spec.policy or (st.policy if st else "drop_oldest")
            if policy not in POLICIES:
                raise UsageError(f"node {name!r} input {port!r}: policy {policy!r} is not one of {POLICIES}")
            queue = use.queue or spec.queue or (st.queue if st else 8)
            if producers[use.stream] == "":
                endpoints = [decl.external.inputs[use.stream]]
            elif producer_host(use.stream) == nd.host:
                endpoints = [f"ipc://{run_dir}/s/{_slug(use.stream)}"]
            else:
                addr = address(producer_host(use.stream))
                endpoints = [f"tcp://{addr}:{decl.ports_base + stream_index[use.stream]}"]
            ip = InputPlan(port, use.stream, policy, queue, endpoints)
            if _shm_on(decl, use.stream) and producers[use.stream] and producer_host(use.stream) == nd.host:
                ip.shm_row = len(shm_readers.setdefault(use.stream, []))
                shm_readers[use.stream].append((policy, queue))
            inputs[name].append(ip)
            consumers.setdefault(use.stream, []).append((name, policy, queue))
        for port, spec in cls.inputs.items():
            if port != "*" and spec.required and port not in nd.inputs:
                raise UsageError(f"node {name!r} ({nd.kind}) needs input {port!r} wired to a stream")

    nodes: dict[str, NodePlan] = {}
    for name, nd in decl.nodes.items():
        bind: dict[str, list[str]] = {}
        outside: dict[str, list[str]] = {}
        for stream in nd.outputs.values():
            eps = [f"ipc://{run_dir}/s/{_slug(stream)}"]
            if any(decl.nodes[c].host != nd.host for c, _, _ in consumers.get(stream, [])):
                eps.append(f"tcp://{address(nd.host)}:{decl.ports_base + stream_index[stream]}")
            if stream in nd.expose:
                ex = nd.expose[stream]
                ex = ExposeDecl(endpoint=ex) if isinstance(ex, str) else ex
                eps.append(ex.endpoint)
                if not ex.lockstep:
                    outside[stream] = [ex.endpoint]
            bind[stream] = eps
        for stream in nd.expose:
            if stream not in nd.outputs.values():
                raise UsageError(f"node {name!r} exposes {stream!r}, which it does not output")
        nodes[name] = NodePlan(
            name=name, kind=nd.kind, cls_path=classes[name][0], params=nd.params, host=nd.host,
            inputs=inputs[name], outputs=dict(nd.outputs), bind=bind,
            nodrop={s: any(p == "block" for _, p, _ in consumers.get(s, [])) for s in nd.outputs.values()},
            # Publisher-side queues in messages: as deep as the deepest consumer's, so a slow
            # consumer's backlog lives (and is counted) at the consumer, not in ZeroMQ.
            hwm={s: max([q for _, _, q in consumers.get(s, [])] + [2]) for s in nd.outputs.values()},
            subscribers={s: len(consumers.get(s, [])) for s in nd.outputs.values()},
            is_source=not nd.inputs, outside=outside,
            shm={s: _shm_plan(decl, s, shm_readers[s]) for s in nd.outputs.values() if s in shm_readers},
        )
    for stream in decl.shm.streams:
        if stream not in producers:
            raise UsageError(f"shm.streams names {stream!r}, which no node produces")
    _refuse_shared_endpoints(decl, nodes)
    gp = GraphPlan(decl.name, decl, run_dir, nodes, producers, decl.security.keys)
    gp.order = _topological(gp)
    _check_nodes(decl, {name: cls for name, (_, cls) in classes.items()}, check_files=check_files)
    return gp


def _shm_on(decl: GraphDecl, stream: str) -> bool:
    return decl.shm.enabled and (stream not in decl.shm.streams or decl.shm.streams[stream].enabled)


def _shm_plan(decl: GraphDecl, stream: str, readers: list[tuple[str, int]]) -> dict[str, Any]:
    """A stream's pool: its size (the memory bound is slots x slot_bytes) and reader rows."""
    sd = decl.shm.streams.get(stream) or ShmStreamDecl()
    return {"slots": sd.slots or default_slots(readers), "slot_bytes": sd.slot_bytes or 0,
            "block": [policy == "block" for policy, _ in readers], "min_bytes": decl.shm.min_bytes}


def _check_nodes(decl: GraphDecl, classes: dict[str, type[Node]], *, check_files: bool = True) -> None:
    """Each node's params converted as its process will convert them, so a wrong type, an
    unknown name or a value out of range stops the graph here, in one line, instead of
    failing (or crash-looping) a node after the others started; then the node's `check`
    hook (files it needs) for the nodes this host starts."""
    for name, nd in decl.nodes.items():
        cls = classes[name]
        try:
            params = cls.parse_params(nd.params)
        except params_mod.ParamsError as exc:
            raise UsageError(f"graph {decl.name}: node {name}: {exc}") from None
        if nd.host != LOCAL_HOST or not check_files:
            continue  # its files are on its own host: checked when that host starts it
        try:
            cls.check(params)
        except SensorfuseError as exc:
            raise UsageError(f"graph {decl.name}: node {name}: {exc}") from None


_TCP = re.compile(r"^tcp://(?P<host>\[[^\]]*\]|[^:/]*):(?P<port>\d+)$")
_ANY_ADDRESS = {"*", "0.0.0.0", "[::]", "::"}


def _endpoints_clash(a: str, b: str) -> bool:
    """Whether binding both would fail: the same endpoint, or the same tcp port on the same
    address (a wildcard address takes the port on every address)."""
    if a == b:
        return True
    ta, tb = _TCP.match(a), _TCP.match(b)
    if ta is None or tb is None or ta["port"] != tb["port"] or ta["port"] == "0":
        return False
    hosts = {"*" if h in _ANY_ADDRESS else "127.0.0.1" if h == "localhost" else h for h in (ta["host"], tb["host"])}
    return len(hosts) == 1 or "*" in hosts


def _refuse_shared_endpoints(decl: GraphDecl, nodes: dict[str, NodePlan]) -> None:
    """Two binds of one endpoint (two nodes exposing the same tcp address, or an expose on
    an address an external producer binds) would crash-loop the second node at run time."""
    binds = [(np_.host, f"node {n!r}", stream, ep) for n, np_ in nodes.items()
             for stream, eps in np_.bind.items() for ep in eps]
    binds += [(None, "an external program", stream, ep) for stream, ep in decl.external.inputs.items()]
    for i, (host_a, who_a, stream_a, ep_a) in enumerate(binds):
        for host_b, who_b, stream_b, ep_b in binds[i + 1:]:
            if (host_a is None or host_b is None or host_a == host_b) and _endpoints_clash(ep_a, ep_b):
                same = ep_a if ep_a == ep_b else f"{ep_a} and {ep_b}"
                raise UsageError(f"{who_a} (stream {stream_a!r}) and {who_b} (stream {stream_b!r}) both bind "
                                 f"{same}: give each its own endpoint")


def _topological(gp: GraphPlan) -> list[str]:
    """Nodes in data-flow order. A cycle (a node consuming its own output included) is
    refused: every node in it would wait for the others' end of stream, so a run would sit
    until the stop deadline and exit 1."""
    order: list[str] = []
    remaining = dict.fromkeys(gp.nodes)
    while remaining:
        ready = [n for n in remaining if gp.upstream(n) <= set(order)]
        if not ready:
            loop = set(remaining)  # drop what only hangs below the cycle: what is left is on it
            while tails := {n for n in loop if not any(n in gp.upstream(m) for m in loop)}:
                loop -= tails
            raise UsageError(f"graph has a cycle through node(s) {', '.join(sorted(loop))}: "
                             "a node's inputs must not come from its own outputs, directly or through others")
        for n in ready:
            order.append(n)
            del remaining[n]
    return order


def load_plan_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    return msgspec.json.decode(Path(path).read_bytes())
