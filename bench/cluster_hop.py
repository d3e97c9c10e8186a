"""A hop between two Ray nodes under `sensorfuse run --ray` against raw pyzmq tcp, in one run;
then fail-over time and the memory of the cluster (docs/benchmarks.md, "Across hosts (Ray)").

Run (needs the cluster extra)::

    .venv/bin/python bench/cluster_hop.py              # ~2 min on 2 cores
    .venv/bin/python bench/cluster_hop.py --seconds 5  # quicker, fewer samples
    .venv/bin/python bench/cluster_hop.py --seconds 0 --hard   # fail-over only, the node killed

One `ray.cluster_utils.Cluster` on 127.0.0.1 (a head and two workers, each 1 CPU and the
minimum object store, as docs/cluster.md's test does). For each payload (1 KiB at 100 Hz,
640×480×3 uint8 at 30 Hz), paced, one-way latency = receipt − publish on the shared
CLOCK_MONOTONIC of the host:

- raw tcp: a pyzmq PUB process → SUB process over tcp://127.0.0.1, header = the send
  stamp; the receiver stamps after `recv_multipart` and `np.frombuffer`;
- raw tcp + CURVE: the same with CurveZMQ on the socket pair;
- engine --ray: a `synthetic` node pinned to worker A → a `jsonl` sink pinned to worker B
  (`digest: false`), tcp + CURVE as `--ray` always is; latency = the sink's `t_recv_ns` −
  the header's `t_pub_ns`.

Fail-over: source (A) → relay (worker B) → sink (head); a spare node with the relay's
resource is added, the relay's node removed (`remove_node`, graceful), and the time until
the sink writes its first message after the gap is taken, three times in a row (the relay
moves B → spare 1 → spare 2 → spare 3); `--hard` kills the node's processes instead
(`allow_graceful=False`: Ray learns it from its health check, 500 ms × 3 here). Memory: RSS and PSS of every process under this
one (Ray's, the CLI and the node processes) while the engine hop runs.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import yaml
import zmq

MIB = 2**20
NODE_ARGS = {"num_cpus": 1, "node_ip_address": "127.0.0.1", "object_store_memory": 78 * MIB}
#: (name, shape, rate Hz)
PAYLOADS = [("1 KiB record-sized", [1024], 100.0), ("640×480×3 frame", [480, 640, 3], 30.0)]
WARMUP = 10


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _raw_sender(port: int, shape: list[int], rate: float, count: int, curve: dict[str, bytes] | None) -> None:
    ctx = zmq.Context()
    pub = ctx.socket(zmq.XPUB)
    if curve:
        pub.curve_secretkey, pub.curve_publickey, pub.curve_server = curve["ssec"], curve["spub"], True
    pub.sndhwm = 64
    pub.bind(f"tcp://127.0.0.1:{port}")
    pub.recv()  # the subscription: no slow-joiner loss
    payload = np.zeros(shape, np.uint8)
    period = 1.0 / rate
    due = time.monotonic()
    for seq in range(count + WARMUP + 1):
        due += period
        time.sleep(max(0.0, due - time.monotonic()))
        last = seq == count
        pub.send_multipart([b"s", struct.pack("<qq", -1 if last else seq, time.monotonic_ns()), payload],
                           copy=payload.nbytes < 65536)
    pub.recv()  # the receiver leaves once it saw the end
    pub.close(0)
    ctx.term()


def _raw_receiver(port: int, curve: dict[str, bytes] | None, out: Any) -> None:
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    if curve:
        sub.curve_serverkey, sub.curve_publickey, sub.curve_secretkey = curve["spub"], curve["cpub"], curve["csec"]
    sub.connect(f"tcp://127.0.0.1:{port}")
    sub.setsockopt(zmq.SUBSCRIBE, b"s")
    lat = []
    while True:
        _, head, payload = sub.recv_multipart(copy=False)
        np.frombuffer(payload.buffer, np.uint8)
        now = time.monotonic_ns()
        seq, t_send = struct.unpack("<qq", head.bytes)
        if seq < 0:
            break
        if seq >= WARMUP:
            lat.append(now - t_send)
    out.put(lat)
    sub.close(0)
    ctx.term()


def raw_hop(shape: list[int], rate: float, count: int, curve: bool) -> list[int]:
    keys = None
    if curve:
        spub, ssec = zmq.curve_keypair()
        cpub, csec = zmq.curve_keypair()
        keys = {"spub": spub, "ssec": ssec, "cpub": cpub, "csec": csec}
    spawn = mp.get_context("spawn")
    port, out = _port(), spawn.Queue()
    recv = spawn.Process(target=_raw_receiver, args=(port, keys, out))
    send = spawn.Process(target=_raw_sender, args=(port, shape, rate, count, keys))
    send.start()
    recv.start()
    lat = out.get(timeout=(count + WARMUP) / rate + 60)
    recv.join()
    send.join()
    return lat


class Run:
    """`sensorfuse run GRAPH --ray ADDRESS` on a graph dict, in its own folder."""

    def __init__(self, graph: dict[str, Any], folder: Path, address: str) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "graph.yaml").write_text(yaml.safe_dump(graph))
        self.run_dir = Path(tempfile.mkdtemp(prefix="sfb", dir="/tmp"))
        self.log = open(folder / "run.log", "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "sensorfuse.engine.cli", "run", str(folder / "graph.yaml"),
                                      "--run-dir", str(self.run_dir), "--ray", address],
                                     stdout=self.log, stderr=subprocess.STDOUT, cwd=folder)

    def status(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.run_dir / "status.json").read_text())
        except (OSError, ValueError):
            return None

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(60)
        self.log.close()
        shutil.rmtree(self.run_dir, ignore_errors=True)
        return code


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def memory() -> dict[str, float]:
    rss = pss = 0
    procs = psutil.Process().children(recursive=True)
    for p in procs:
        try:
            info = p.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        rss += info.rss
        pss += info.pss
    return {"processes": len(procs), "rss_mib": rss / MIB, "pss_mib": pss / MIB}


def engine_hop(address: str, shape: list[int], rate: float, count: int, folder: Path) -> tuple[list[int], dict]:
    sink = folder / "sink.jsonl"
    graph = {"name": "hop", "ports_base": _port(), "nodes": {
        "source": {"kind": "synthetic", "params": {"rate_hz": rate, "count": count + WARMUP, "shape": shape},
                   "outputs": {"out": "hop/frame"}, "placement": {"resources": {"hop_a": 1}}},
        "sink": {"kind": "jsonl", "params": {"path": str(sink), "digest": False},
                 "inputs": {"in": {"stream": "hop/frame", "policy": "block", "queue": 8}},
                 "placement": {"resources": {"hop_b": 1}}}}}
    run = Run(graph, folder, address)
    mem: dict[str, float] = {}
    deadline = time.monotonic() + count / rate + 90
    while run.proc.poll() is None and time.monotonic() < deadline:
        if not mem and len(_lines(sink)) > WARMUP:
            mem = memory()
        time.sleep(0.2)
    code = run.stop()
    lines = [x for x in _lines(sink) if x["kind"] != "eos"]
    if code != 0 or len(lines) != count + WARMUP:
        raise SystemExit(f"engine hop: exit {code}, {len(lines)} of {count + WARMUP} messages; see {folder}/run.log")
    return [x["t_recv_ns"] - x["t_pub_ns"] for x in lines[WARMUP:]], mem


def failover(cluster: Any, relay_node: Any, address: str, folder: Path, times: int,
             hard: bool = False) -> list[tuple[float, int]]:
    sink = folder / "sink.jsonl"
    rate = 50.0
    graph = {"name": "failover", "ports_base": _port(), "supervisor": {"backoff_initial_s": 0.1}, "nodes": {
        "source": {"kind": "synthetic", "params": {"rate_hz": rate, "shape": [32, 32, 3]},
                   "outputs": {"out": "cam0/frame"}, "placement": {"resources": {"hop_a": 1}}},
        "relay": {"kind": "relay", "inputs": {"in": {"stream": "cam0/frame", "policy": "block", "queue": 4}},
                  "outputs": {"out": "relay/frame"}, "placement": {"resources": {"relay": 1}}},
        "sink": {"kind": "jsonl", "params": {"path": str(sink), "digest": False},
                 "inputs": {"in": {"stream": "relay/frame", "policy": "block", "queue": 4}},
                 "placement": {"resources": {"head": 1}}}}}
    run = Run(graph, folder, address)
    out = []
    try:
        while len(_lines(sink)) < 50:
            if run.proc.poll() is not None:
                raise SystemExit(f"fail-over run exited; see {folder}/run.log")
            time.sleep(0.1)
        for _ in range(times):
            spare = cluster.add_node(**NODE_ARGS, resources={"relay": 1})
            time.sleep(1.0)  # the spare registered
            last = _lines(sink)[-1]["seq"]
            t0 = time.monotonic()
            cluster.remove_node(relay_node, allow_graceful=not hard)
            while True:
                seqs = [x["seq"] for x in _lines(sink)]
                after = [s for s in seqs if s > last]
                gap = next((b - a - 1 for a, b in zip([last, *after], after) if b - a > 1), None)
                if gap is not None:
                    out.append((time.monotonic() - t0, gap))
                    break
                if time.monotonic() - t0 > 60:
                    raise SystemExit(f"no fail-over within 60 s; see {folder}/run.log")
                time.sleep(0.02)
            relay_node = spare
            time.sleep(2.0)
    finally:
        run.stop()
    return out


def pct(samples: list[int], q: float) -> float:
    return float(np.percentile(np.array(samples) / 1e6, q))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=15.0, help="paced seconds per payload and transport")
    ap.add_argument("--failovers", type=int, default=3)
    ap.add_argument("--hard", action="store_true", help="fail-over: kill the node instead of removing it gracefully")
    args = ap.parse_args()
    os.environ.update(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_USAGE_STATS_ENABLED="0")
    work = Path(tempfile.mkdtemp(prefix="sf-bench-ray-"))
    os.environ.setdefault("RAY_TMPDIR", str(work / "ray"))
    from ray.cluster_utils import Cluster

    t0 = time.monotonic()
    cluster = Cluster(initialize_head=True, head_node_args={
        **NODE_ARGS, "include_dashboard": False, "resources": {"head": 1},
        "_system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 3}})
    cluster.add_node(**NODE_ARGS, resources={"hop_a": 1})
    b = cluster.add_node(**NODE_ARGS, resources={"hop_b": 1, "relay": 1})
    print(f"cluster of 3 nodes up in {time.monotonic() - t0:.1f} s; work in {work}", flush=True)
    rows = []
    mem: dict[str, float] = {}
    try:
        for name, shape, rate in PAYLOADS if args.seconds > 0 else []:
            count = int(args.seconds * rate)
            for transport, fn in (("raw pyzmq tcp", lambda: raw_hop(shape, rate, count, False)),
                                  ("raw pyzmq tcp + CURVE", lambda: raw_hop(shape, rate, count, True)),
                                  ("engine --ray, A → B (tcp + CURVE)",
                                   lambda: engine_hop(cluster.address, shape, rate, count,
                                                      work / f"hop-{len(rows)}"))):
                got = fn()
                lat, m = got if isinstance(got, tuple) else (got, {})
                mem = mem or m
                rows.append((name, f"{rate:g} Hz", transport, len(lat), pct(lat, 50), pct(lat, 99)))
                print(f"{name:<20} {transport:<36} n={len(lat):<5} p50 {rows[-1][4]:.3f} ms  p99 {rows[-1][5]:.3f} ms",
                      flush=True)
        moves = failover(cluster, b, cluster.address, work / "failover", args.failovers, args.hard)
    finally:
        cluster.shutdown()
    print("\n| payload | rate | transport | n | p50 ms | p99 ms |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]:.3f} | {r[5]:.3f} |")
    how = "node killed" if args.hard else "graceful node removal"
    print(f"\nfail-over ({how} → first message past the gap at the sink):")
    for s, gap in moves:
        print(f"  {s:.2f} s, {gap} messages lost at 50 Hz (counted)")
    if mem:
        print(f"\nmemory while the engine hop ran: {mem['processes']} processes, RSS {mem['rss_mib']:.0f} MiB, "
              f"PSS {mem['pss_mib']:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
