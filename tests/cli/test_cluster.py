"""`sensorfuse run GRAPH --ray ADDRESS` on Ray's local multi-node cluster (docs/cluster.md).

One `ray.cluster_utils.Cluster` for the module (starting one costs seconds and ~1 GB):
a head with `sink_host`, worker A with `camera0`, worker B with `infer` and `relay`, every
node on 127.0.0.1 (CLUSTER.md: Ray binds beyond loopback unless told, and nothing of ours
may), and a check that every socket of the test's processes is on loopback.

- the demo graph with the player on A and perceive on B gives the single-host events;
- a hung node is killed through its actor and restarted, a crash-looping one given up;
- source (A) → relay (B) → sink (head) over tcp + CURVE delivers every byte; worker B
  removed while frames flow: the relay comes back on the spare node, the sink resumes,
  the loss is counted; SIGINT to the CLI stops it all, no node process left.

The demo test runs first: the fail-over test removes worker B.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import pytest
import zmq

from sensorfuse.engine import status as status_mod
from sensorfuse.engine import wire
from sensorfuse.engine.cluster import RayLauncher, missing
from sensorfuse.engine.graph import PlacementDecl, load_decl, plan
from sensorfuse.engine.metrics import Counters
from sensorfuse.engine.transport import Publisher, Subscriber
from sensorfuse.nodes import demo
from sensorfuse.nodes.synthetic import synthetic_payload
from sensorfuse.replay.compare import diff_events
from sfhelpers import SENSORFUSE, GraphRun, read_jsonl, wait_for
from tests.fusion.test_demo_graph import GOLDEN_UNTIL_NS, comparable, golden

pytestmark = pytest.mark.timeout(240)
MIB = 2**20
# What CLUSTER.md measured to work on 2 cores: 1 CPU and the minimum object store per node,
# no dashboard, and node deaths noticed in ~2 s instead of ~14 s.
NODE_ARGS = {"num_cpus": 1, "node_ip_address": "127.0.0.1", "object_store_memory": 78 * MIB}
RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
SHAPE = [32, 32, 3]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    saved = {k: os.environ.get(k) for k in (*RAY_ENV, "RAY_TMPDIR")}
    os.environ.update(RAY_ENV, RAY_TMPDIR=str(tmp_path_factory.mktemp("ray")))
    from ray._private import ray_constants  # reads RAY_ENV at its first import
    from ray.cluster_utils import Cluster

    assert not ray_constants.ENABLE_RAY_CLUSTER, "ray was imported before RAY_ENV was set: it would bind beyond loopback"
    c = Cluster(initialize_head=True, head_node_args={
        **NODE_ARGS, "include_dashboard": False, "resources": {"sink_host": 1},
        "_system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 3}})
    try:
        a = c.add_node(**NODE_ARGS, resources={"camera0": 1})
        b = c.add_node(**NODE_ARGS, resources={"infer": 1, "relay": 1})
        yield SimpleNamespace(cluster=c, a=a, b=b, address=c.address)
    finally:
        c.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def sockets_beyond_loopback() -> list[str]:
    """Listening or connected inet sockets of this test's process tree not on loopback."""
    out = []
    for proc in [psutil.Process(), *psutil.Process().children(recursive=True)]:
        try:
            conns = proc.net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        for c in conns:
            for addr in (c.laddr, c.raddr):
                if not addr:
                    continue
                ip = ipaddress.ip_address(addr.ip.split("%")[0])
                mapped = getattr(ip, "ipv4_mapped", None)
                if not (ip.is_loopback or (mapped is not None and mapped.is_loopback)):
                    out.append(f"{proc.name()} ({proc.pid}): {addr.ip}:{addr.port} {c.status}")
    return out


def node_processes() -> list[psutil.Process]:
    """Node runtimes anywhere under this test (under Ray's workers, or the CLI's)."""
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if "sensorfuse.engine.runtime" in " ".join(proc.cmdline()):
                found.append(proc)
        except psutil.NoSuchProcess:
            continue
    return found


def finish(run: GraphRun, timeout: float, *, interrupt: bool = False) -> tuple[int, str, dict[str, Any] | None]:
    """Ctrl-C it (`interrupt`) or let it end; its exit code, stderr and last status; cleaned up."""
    try:
        if interrupt:
            run.proc.send_signal(signal.SIGINT)
        code = run.wait_exit(timeout=timeout)
        return code, run.stderr(), run.status()
    finally:
        run.cleanup()


def free_ports(n: int) -> int:
    """A base port with the n ports from it free on 127.0.0.1."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + n < 65535 and all(_free(base + i) for i in range(n)):
            return base
    raise AssertionError("no run of free ports")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_demo_on_two_workers_gives_the_single_host_events(cluster: SimpleNamespace, demo_session: Path,
                                                          model_cache: Path, tmp_path: Path) -> None:
    graph = demo.demo_graph(demo_session, tmp_path, rate="max", cache=model_cache, quiet=True)
    graph["nodes"]["player"]["placement"] = {"resources": {"camera0": 1}}
    graph["nodes"]["perceive"]["placement"] = {"resources": {"infer": 1}}
    graph["ports_base"] = free_ports(len(graph["nodes"]) * 6)
    code, stderr, status = finish(GraphRun(graph, tmp_path, ["--ray", cluster.address]), 180)
    assert code == 0, stderr
    assert "Traceback" not in stderr
    hosts = {n: s["host"] for n, s in status["nodes"].items()}
    assert hosts["player"] != hosts["perceive"], hosts
    got = [comparable(e) for e in read_jsonl(tmp_path / "events.jsonl") if e["t_ns"] < GOLDEN_UNTIL_NS]
    assert got, "no events"
    problems = diff_events(got, golden())
    assert not problems, "\n".join(problems[:20])


def test_hang_detection_restarts_and_give_up_are_the_supervisors_own(cluster: SimpleNamespace,
                                                                      tmp_path: Path) -> None:
    """One run: a relay that hangs (no heartbeats) on worker A is killed through its actor
    and restarted, data flows again; a source that crashes on every frame is given up."""
    faults = Path(__file__).parents[1] / "engine" / "fault_nodes.py"
    out = tmp_path / "out.jsonl"
    graph = {"name": "ray-faults", "ports_base": free_ports(4),
             "supervisor": {"heartbeat_interval_s": 0.1, "hang_timeout_s": 1.5, "backoff_initial_s": 0.1,
                            "backoff_max_s": 0.4, "max_restarts": 2, "restart_window_s": 30},
             "nodes": {
                 "source": {"kind": "synthetic", "params": {"rate_hz": 50, "shape": SHAPE},
                            "outputs": {"out": "cam0/frame"}, "placement": {"resources": {"sink_host": 1}}},
                 "relay": {"kind": f"{faults}:HangingRelay", "params": {"hang_after": 10, "marker": str(tmp_path / "m")},
                           "inputs": {"in": "cam0/frame"}, "outputs": {"out": "relay/frame"},
                           "placement": {"resources": {"camera0": 1}}},
                 "sink": {"kind": "jsonl", "params": {"path": str(out)}, "inputs": {"in": "relay/frame"}},
                 "bad": {"kind": f"{faults}:CrashOnProduce", "outputs": {"out": "bad/frame"}},
                 "bad_sink": {"kind": "jsonl", "params": {"path": str(tmp_path / "bad.jsonl")},
                              "inputs": {"in": "bad/frame"}}}}
    run = GraphRun(graph, tmp_path, ["--ray", cluster.address])
    try:
        run.wait_running(timeout=60)
        wait_for(lambda: run.node("relay")["restarts"] >= 1, 30, "the hung relay to be restarted")
        assert "hung" in run.node("relay")["last_error"]
        wait_for(lambda: len(read_jsonl(out)) > 30, 30, "data flowing again after the restart")
        wait_for(lambda: run.node("bad")["state"] == "failed", 30, "the crash-looping source given up")
        assert run.status()["state"] == "degraded"
    finally:
        code, stderr, _ = finish(run, 60, interrupt=True)
    assert code == 1, stderr
    assert "node 'relay' was restarted once (data in between is lost): hung (no heartbeat)" in stderr, stderr
    assert "node 'bad' failed: exited with code 1" in stderr, stderr
    # the crash's own log line comes through Ray to this terminal, as it would on one host
    assert "simulated crash in produce" in stderr


def test_relay_moves_when_its_host_goes(cluster: SimpleNamespace, tmp_path: Path) -> None:
    out = tmp_path / "sink.jsonl"
    graph: dict[str, Any] = {
        "name": "ray-relay",
        "ports_base": free_ports(3),  # 2 streams and the control channel
        "supervisor": {"backoff_initial_s": 0.1},
        "nodes": {
            "source": {"kind": "synthetic", "params": {"rate_hz": 50, "shape": SHAPE},
                       "outputs": {"out": "cam0/frame"}, "placement": {"resources": {"camera0": 1}}},
            "relay": {"kind": "relay", "inputs": {"in": {"stream": "cam0/frame", "policy": "block", "queue": 4}},
                      "outputs": {"out": "relay/frame"}, "placement": {"resources": {"relay": 1}}},
            "sink": {"kind": "jsonl", "params": {"path": str(out)},
                     "inputs": {"in": {"stream": "relay/frame", "policy": "block", "queue": 4}},
                     "placement": {"resources": {"sink_host": 1}}},
        },
    }
    run = GraphRun(graph, tmp_path, ["--ray", cluster.address])
    try:
        status = run.wait_running(timeout=60)
        hosts = {n: s["host"] for n, s in status["nodes"].items()}
        assert len(set(hosts.values())) == 3, hosts
        for name, node in status["nodes"].items():
            for stream, ep in node["bound"].items():
                assert ep.startswith("tcp://127.0.0.1:"), (name, stream, ep)
        wait_for(lambda: out.exists() and len(read_jsonl(out)) >= 20, 30, "frames through the relay")
        assert not sockets_beyond_loopback(), sockets_beyond_loopback()
        shown = subprocess.run([*SENSORFUSE, "status", "--once", "--run", str(run.run_dir)], capture_output=True,
                               text=True, timeout=30)
        for name, host in hosts.items():
            assert f"host {host}: {name}" in shown.stdout, shown.stdout
        assert "relay/frame" in shown.stdout and "cam0/frame" in shown.stdout

        # the spare: the only other node with `relay`
        cluster.cluster.add_node(**NODE_ARGS, resources={"relay": 1})
        before = len(read_jsonl(out))
        cluster.cluster.remove_node(cluster.b)

        def moved() -> dict[str, Any] | None:
            st = run.status()
            relay = st["nodes"]["relay"] if st else {}
            ok = relay.get("state") == "running" and relay.get("restarts") == 1 and relay["host"] != hosts["relay"]
            return st if ok else None

        try:
            moved_status = wait_for(moved, 60, "the relay running on the spare node")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {run.node('relay')}\n{run.stderr()}") from None
        assert moved_status["nodes"]["relay"]["host"] not in hosts.values()
        assert "lost" in moved_status["nodes"]["relay"]["last_error"], moved_status["nodes"]["relay"]
        def sink_counted() -> dict[str, Any] | None:
            """The status once the sink's own counters (written with its heartbeats, so behind
            its file) show the 40 frames past the move."""
            st = run.status()
            got = (((st or {}).get("nodes", {}).get("sink") or {}).get("streams", {}).get("relay/frame") or {})
            return st if len(read_jsonl(out)) >= before + 40 and got.get("received", 0) >= before + 40 else None

        resumed = wait_for(sink_counted, 60, "the sink to resume")
        sink_in = resumed["nodes"]["sink"]["streams"]["relay/frame"]
        assert sink_in["lost"] > 0, sink_in  # frames sent while the relay was gone: counted
        assert not sockets_beyond_loopback(), sockets_beyond_loopback()

        pids = run.node_pids()
    finally:
        code, stderr, _ = finish(run, 60, interrupt=True)
    assert code == 1, stderr  # a restart means lost data: not a clean run
    assert "node 'relay' was restarted once (data in between is lost): host" in stderr, stderr
    assert "Traceback" not in stderr
    wait_for(lambda: not any(psutil.pid_exists(p) for p in pids) and not node_processes(), 15,
             "every node process gone")

    lines = read_jsonl(out)
    seqs = [line["seq"] for line in lines]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert seqs[-1] + 1 > len(seqs), "a gap while the relay moved"
    for line in lines:  # every byte as the source made it, over tcp + CURVE twice
        want = hashlib.sha256(synthetic_payload(line["seq"], tuple(SHAPE)).tobytes()).hexdigest()
        assert line["sha256"] == want, line


def test_a_placement_no_host_has_fails_the_start(cluster: SimpleNamespace, tmp_path: Path) -> None:
    graph = {"name": "nowhere", "ports_base": free_ports(2), "nodes": {
        "source": {"kind": "synthetic", "params": {"rate_hz": 10, "shape": SHAPE}, "outputs": {"out": "a/frame"},
                   "placement": {"resources": {"camera9": 1}}},
        "sink": {"kind": "jsonl", "params": {"path": str(tmp_path / "o.jsonl")}, "inputs": {"in": "a/frame"}}}}
    code, stderr, _ = finish(GraphRun(graph, tmp_path, ["--ray", cluster.address]), 60)
    assert code == 1, stderr
    assert "sensorfuse: node 'source' failed at start: no host with camera9" in stderr, stderr
    assert "Traceback" not in stderr


def test_missing_names_what_no_live_node_has() -> None:
    nodes = [{"Alive": True, "Resources": {"CPU": 1, "camera0": 1}, "Labels": {"zone": "a"}},
             {"Alive": True, "Resources": {"CPU": 1, "GPU": 1}},
             {"Alive": False, "Resources": {"camera1": 1}}]
    assert missing(PlacementDecl(), nodes) is None
    assert missing(PlacementDecl(resources={"camera0": 1}, labels={"zone": "a"}), nodes) is None
    assert missing(PlacementDecl(resources={"camera1": 1}), nodes) == "camera1"  # only on a dead node
    assert missing(PlacementDecl(num_gpus=2), nodes) == "num_gpus=2"
    assert missing(PlacementDecl(labels={"zone": "b"}), nodes) == "label zone=b"
    # each exists, but not on one node
    assert missing(PlacementDecl(resources={"camera0": 1}, num_gpus=1), nodes) == "camera0 and num_gpus=1"


def test_status_lists_each_host_and_its_nodes() -> None:
    node = {"state": "running", "restarts": 0, "streams": {}}
    st = {"graph": "g", "state": "running", "nodes": {
        "source": {**node, "host": "cam-host:1a2b"}, "relay": {**node, "host": "gpu-host:3c4d"},
        "sink": {**node, "host": "gpu-host:3c4d"}}}
    assert status_mod.host_lines(st) == ["host cam-host:1a2b: source", "host gpu-host:3c4d: relay, sink"]
    assert "host gpu-host:3c4d: relay, sink" in status_mod.render(st)
    assert not status_mod.host_lines({**st, "nodes": {"a": {**node, "host": "local"}}})


def test_without_ray_the_runtime_never_imports_it_and_ray_is_one_line(tmp_path: Path) -> None:
    imports = ("import sys, sensorfuse.engine.cli, sensorfuse.engine.supervisor, sensorfuse.engine.runtime, "
               "sensorfuse.engine.cluster, sensorfuse.engine.ray_host; assert 'ray' not in sys.modules, 'ray imported'")
    subprocess.run([sys.executable, "-c", imports], check=True, timeout=60)
    blocked = tmp_path / "no-ray"  # a `ray` that cannot be imported, first on the path
    (blocked / "ray").mkdir(parents=True)
    (blocked / "ray" / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    graph = Path(__file__).parents[2] / "examples" / "relay.yaml"
    env = {**os.environ, "PYTHONPATH": str(blocked)}
    for args, want in ((["--ray"], "--ray needs Ray, which is not installed: pip install -e '.[cluster]'"),
                       (["--ray", "--host", "a"], "--ray places every node itself: leave out --host")):
        done = subprocess.run([*SENSORFUSE, "run", str(graph), *args], capture_output=True, text=True, env=env,
                              timeout=60)
        assert done.returncode == 2, done.stderr
        assert done.stderr.splitlines() == [f"sensorfuse: {want} (or 'sensorfuse[cluster]')"
                                             if want.startswith("--ray needs") else f"sensorfuse: {want}"]


def test_a_producer_at_a_new_address_is_dialled_there(tmp_path: Path) -> None:
    """A node restarted on another Ray node: its consumers get `connect` with its new
    endpoint (`RayLauncher._moved`, no Ray needed for the planning) and dial it."""
    graph = {"name": "moved", "ports_base": 47100, "nodes": {
        "source": {"kind": "synthetic", "outputs": {"out": "a/frame"}},
        "sink": {"kind": "jsonl", "params": {"path": "o.jsonl"}, "inputs": {"in": "a/frame"}}}}
    launcher = RayLauncher.__new__(RayLauncher)  # the planning half only
    launcher.base = plan(load_decl(graph), str(tmp_path))
    launcher.ips = {"source": "127.0.0.1", "sink": "127.0.0.1"}
    launcher.plan = launcher._replan()
    launcher._reconnects = []
    launcher._moved("source", "127.0.0.2")
    assert launcher.reconnects() == [("sink", {"type": "connect", "port": "in",
                                               "endpoints": ["tcp://127.0.0.2:47100"]})]
    assert launcher.plan.nodes["source"].bind["a/frame"][-1] == "tcp://127.0.0.2:47100"

    ctx = zmq.Context()
    old, new = (f"tcp://127.0.0.1:{free_ports(1)}" for _ in range(2))
    pubs = [Publisher(ctx, "a/frame", [ep]) for ep in (old, new)]
    sub = Subscriber(ctx, "in", "a/frame", [old], policy="drop_oldest", queue=8, counters=Counters(),
                     consumer="sink/in")
    try:
        wait_for(lambda: pubs[0].graph_consumers() == 1, 10, "the consumer at the old address")
        sub.reconnect([new])
        wait_for(lambda: pubs[1].graph_consumers() == 1, 10, "the consumer at the new address")
        frames = wire.encode_message("a/frame", wire.KIND_RECORD, {"n": 1}, seq=5, t_ns=1, t_pub_ns=1, src="source",
                                     session="s")
        pubs[1].send(frames)
        wait_for(lambda: sub.drain() or sub.pending, 10, "the message from the new address")
        assert sub.pop().record == {"n": 1}
    finally:
        sub.close()
        for p in pubs:
            p.close(0)
        ctx.term()


FAKE_RAY = """
import os
SEEN_ENV = os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")  # what Ray reads at import
calls = []
def is_initialized():
    return False
def init(**kwargs):
    calls.append(kwargs)
    if kwargs.get("address") == "auto":
        raise ConnectionError("no running cluster")
"""


@pytest.mark.parametrize(("address", "local"), [("", True), ("127.0.0.1:6379", True), ("10.0.0.5:6379", False)])
def test_a_local_ray_is_told_it_is_on_one_machine_before_it_is_imported(tmp_path: Path, address: str,
                                                                         local: bool) -> None:
    """Ray swaps 127.0.0.1 for the host's routable address (and binds there) unless
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 when it is imported: `connect` sets it for a local
    Ray, and leaves a remote cluster's driver alone. A stand-in `ray` records what it saw."""
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "__init__.py").write_text(FAKE_RAY)
    script = ("import json, sys; from sensorfuse.engine import cluster; started = cluster.connect(sys.argv[1]); "
              "import ray; print(json.dumps([ray.SEEN_ENV, ray.calls, started]))")
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_ADDRESS")}
    done = subprocess.run([sys.executable, "-c", script, address], capture_output=True, text=True, timeout=60,
                          env={**env, "PYTHONPATH": str(tmp_path)}, check=True)
    seen_env, calls, started = json.loads(done.stdout)
    if not local:
        assert (seen_env, calls, started) == (None, [{"address": address}], False)
    elif address:
        assert (seen_env, calls, started) == ("0", [{"address": address, "_node_ip_address": "127.0.0.1"}], False)
    else:  # none running: one started here, on loopback
        assert (seen_env, calls, started) == ("0", [{"address": "auto"}, {"_node_ip_address": "127.0.0.1",
                                                                          "include_dashboard": False}], True)
