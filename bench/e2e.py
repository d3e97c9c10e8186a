"""End-to-end benchmark: the demo graph at --rate max and 1× vs a bare single-process loop.

    .venv/bin/python bench/e2e.py [--session S.mcap] [--json OUT] [--rates max,1] [--repeat N]
                                  [--profile DIR] [--view]

- graph: `engine/graphs/demo.yaml` as real processes (player → aligner → perceive →
  sinks + recorder), plus a JSONL sink on `perceive/detections` to time every frame.
  frames/s = frames / (last detection publish − first frame publish); latency = a
  frame's detection (or an event's) publish time − that frame's publish by the player
  (on replay the player's publish is the moment a camera would have delivered it).
- bare loop: the same ticks (cut in-process by the aligner logic, not timed), the same
  `Perception` + fusion head code and ONNX models (warmed up, scene encoder on a worker
  thread as in the node), one process, no sockets: its frames/s is the ceiling; "engine
  share" = 1 − graph fps / bare fps at --rate max. With rate 1 a second bare loop hands
  the ticks over at their capture times (`bare_paced`): its per-tick time is the "model
  time" the 1× latency is compared with (`latency_p99_over_model_p99_ms`).
- `--view`: each graph rate also runs with the viewer node added exactly as `sensorfuse
  demo --view rrd:PATH` adds it (`ViewSession.add_to`, nodes/view.py), writing a Rerun
  recording in the run's scratch directory; rows `graph_rate_R_view`, interleaved with
  the plain runs, and the same targets computed for them (`..._view` keys).
Numbers depend on the machine's load; the table in docs/benchmarks.md says where it ran.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]

from sensorfuse.engine import fingerprint, view
from sensorfuse.perception import Encoders, FusionHead, Perception, label_embeddings
from sensorfuse.perception.features import warm_up
from sensorfuse.models.fusion import dataset
from sensorfuse.nodes import demo
from sensorfuse.nodes.perceive_setup import default_heads_dir, resolve_head


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.is_file() else []


def run_graph(session: Path, rate: str, work: Path, profile: Path | None = None, *,
              with_view: bool = False) -> dict[str, Any]:
    decl = demo.demo_graph(session, work, rate=rate if rate == "max" else float(rate))
    if with_view:  # an rrd session runs no server: the viewer node writes the file, the session only names it
        with view.viewing(f"rrd:{work / 'view.rrd'}") as viewer:
            decl = viewer.add_to(decl)
    nodes = decl["nodes"]
    nodes["detections"] = {"kind": "jsonl", "params": {"path": str(work / "detections.jsonl")},
                           "inputs": {"d": {"stream": "perceive/detections", "policy": "block", "queue": 64}}}
    nodes["console"]["params"] = {"every": 1000000}  # keep the terminal quiet
    graph_path = work / "graph.yaml"
    graph_path.write_text(yaml.safe_dump(decl))
    command = [sys.executable, "-m", "sensorfuse.engine.cli", "run", str(graph_path)]
    if profile is not None:  # py-spy samples every node process (one speedscope file, a profile per pid)
        profile.mkdir(parents=True, exist_ok=True)
        command = [str(Path(sys.executable).with_name("py-spy")), "record", "--subprocesses", "--rate", "200",
                   "--format", "speedscope", "-o", str(profile / f"graph-rate-{rate}.speedscope.json"), "--",
                   *command]
    with tempfile.TemporaryDirectory(prefix="sfb", dir="/tmp") as run_dir:
        proc = subprocess.Popen([*command, "--run-dir", run_dir], cwd=work, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        cpu = CpuSampler(proc)
        _, stderr = proc.communicate()
        cpu.join()
        status_path = Path(run_dir) / "status.json"
        status = json.loads(status_path.read_text()) if status_path.is_file() else {}
    if proc.returncode != 0:
        raise RuntimeError(f"graph failed ({proc.returncode}): {stderr[-2000:]}")
    frames = {f["seq"]: f["t_pub_ns"] for f in _jsonl(work / "frames.jsonl")}
    frames_by_t = {f["t_ns"]: f["t_pub_ns"] for f in _jsonl(work / "frames.jsonl")}
    dets = _jsonl(work / "detections.jsonl")
    events = _jsonl(work / "events.jsonl")
    frame_lat = [(d["t_pub_ns"] - frames[d["record"]["frame"]["seq"]]) / 1e6 for d in dets
                 if d["record"].get("frame") and d["record"]["frame"]["seq"] in frames]
    from sensorfuse.nodes import demo_report

    event_lat = demo_report.latency_ms(events, frames_by_t)
    t0_ns, t1_ns = min(frames.values()), max(d["t_pub_ns"] for d in dets)
    span_s = (t1_ns - t0_ns) / 1e9
    out = {"rate": rate, "frames": len(dets), "fps": round(len(dets) / span_s, 1),
           "frame_latency_ms": _pcts(frame_lat), "event_latency_ms": _pcts(event_lat), "events": len(events),
           "cpu_ms_per_frame": cpu.per_frame_ms(t0_ns, t1_ns, len(dets))}
    if with_view:
        rrd = work / "view.rrd"
        out["view_rrd_bytes"] = rrd.stat().st_size if rrd.is_file() else 0
        # what the viewer took and what its `latest` / drop_oldest inputs dropped, per stream
        streams = ((status.get("nodes") or {}).get("viewer") or {}).get("streams") or {}
        out["viewer_received_dropped"] = {s: [v["received"], sum(v["dropped"].values())]
                                          for s, v in sorted(streams.items())}
    return out


class CpuSampler(threading.Thread):
    """CPU time (user + system, from /proc) of every node process of a running graph, sampled
    every 10 ms on the session's monotonic clock, so the CPU spent inside the measured window
    (first frame published → last detection published) can be split by node. Linux only;
    elsewhere it reports nothing."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        super().__init__(daemon=True)
        self.proc = proc
        self.ticks_per_s = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.samples: dict[str, list[tuple[int, float]]] = {}  # "node/pid" -> [(t_ns, cpu_s)]
        self.names: dict[str, str] = {str(proc.pid): "supervisor"}  # a pid's role never changes
        self.start()

    def run(self) -> None:
        if not Path("/proc/self/stat").exists():
            return
        while self.proc.poll() is None:
            now = time.monotonic_ns()
            for pid in [str(self.proc.pid), *self._children()]:
                name = self.names.get(pid) or self._node_name(pid)
                try:
                    tasks = list(Path(f"/proc/{pid}/task").iterdir())
                except OSError:
                    continue
                if name is None:
                    continue
                self.names[pid] = name
                for task in tasks:
                    try:
                        stat = (task / "stat").read_text()
                        wait_ns = int((task / "schedstat").read_text().split()[1])
                    except (OSError, IndexError, ValueError):
                        continue
                    comm, fields = stat[stat.index("(") + 1:stat.rindex(")")], stat.rsplit(")", 1)[1].split()
                    # the node's Python thread vs ZeroMQ's I/O threads (socket reads/writes of payloads)
                    part = "zmq_io" if comm.startswith("ZMQbg") else ("main" if task.name == pid else "threads")
                    cpu_s = (int(fields[11]) + int(fields[12])) / self.ticks_per_s
                    self.samples.setdefault(f"{name}/{part}/{task.name}", []).append((now, cpu_s))
                    if part == "main":  # runnable but waiting for a core (scheduler run queue)
                        self.samples.setdefault(f"{name}/runq_wait/{task.name}", []).append((now, wait_ns / 1e9))
            time.sleep(0.01)

    @staticmethod
    def _node_name(pid: str) -> str | None:
        """The node a runtime process runs, from its command line. None when unreadable: an
        exiting process has an empty cmdline, and filing it under some other name would put
        its whole lifetime's CPU inside the window (seen: 1.2 ms/frame on "supervisor")."""
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return None
        return argv[argv.index(b"sensorfuse.engine.runtime") + 2].decode() if b"sensorfuse.engine.runtime" in argv else None

    def _children(self) -> list[str]:
        try:
            return Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        except OSError:
            return []

    def per_frame_ms(self, t0_ns: int, t1_ns: int, frames: int) -> dict[str, float]:
        """CPU ms per frame spent by each node between t0 and t1 (the fps window), and by
        its Python thread ("main"), ZeroMQ I/O threads and other threads; "runq_wait" is
        the time its Python thread was ready to run but waited for a core."""
        by_node: dict[str, dict[str, float]] = {}
        for key, series in self.samples.items():
            before = [c for t, c in series if t <= t0_ns]
            inside = [c for t, c in series if t <= t1_ns]
            if inside:
                used = (inside[-1] - (before[-1] if before else 0.0)) * 1e3 / max(1, frames)
                name, part, _ = key.split("/")
                parts = by_node.setdefault(name, {})
                parts[part] = parts.get(part, 0.0) + used
        out: dict[str, Any] = {}
        for name, parts in sorted(by_node.items(), key=lambda kv: -sum(kv[1].values())):
            cpu = {k: v for k, v in parts.items() if k != "runq_wait"}
            out[name] = {"total": round(sum(cpu.values()), 2), **{k: round(v, 2) for k, v in sorted(parts.items())}}
        out["all"] = round(sum(v["total"] for v in out.values()), 2)
        return out


def _pcts(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    p50, p99 = np.percentile(values, [50, 99])
    return {"p50": round(float(p50), 1), "p99": round(float(p99), 1), "n": len(values)}


def bare_loop(session: Path, *, paced: bool = False) -> dict[str, Any]:
    """`paced`: each tick is handed over at its capture time (1×), as a camera would, so the
    per-tick time is what the models cost at the sensor's rate (the graph-at-1× comparison);
    unpaced it runs flat out (the --rate max comparison)."""
    encoders = Encoders()
    labels = label_embeddings(encoders)
    warm_up(encoders, labels, (480, 640))
    # the scene encoder on a worker thread, as the perceive node runs it
    worker = ThreadPoolExecutor(max_workers=1)
    perception = Perception(encoders, labels, scene_executor=worker)
    head = FusionHead(resolve_head("default", default_heads_dir()))
    ticks = [tick for tick, _ in dataset.session_ticks(session)]
    per_tick = []
    t0 = time.perf_counter()
    for tick in ticks:
        if paced:
            due = t0 + (tick.t_ns - ticks[0].t_ns) / 1e9
            time.sleep(max(0.0, due - time.perf_counter()))
        t1 = time.perf_counter()
        head.run(perception.process(tick).inputs)
        per_tick.append((time.perf_counter() - t1) * 1e3)
    total = time.perf_counter() - t0
    worker.shutdown()
    return {"frames": len(ticks), "fps": round(len(ticks) / total, 1), "model_ms": _pcts(per_tick)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--session", help="sample session (default: the demo's)")
    parser.add_argument("--json", help="write results here")
    parser.add_argument("--rates", default="max,1", help="graph rates to run, comma-separated (default max,1)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run the bare loop and each graph rate N times, interleaved; report the median "
                             "fps run (the machine is shared: one run can be off by 30 %%)")
    parser.add_argument("--profile", help="py-spy every graph process into DIR (slows the graph; no timings)")
    parser.add_argument("--view", action="store_true",
                        help="also run each rate with the viewer node of `demo --view rrd:PATH` (rows *_view)")
    args = parser.parse_args()
    demo.ensure_pack()
    session = Path(args.session) if args.session else demo.ensure_session()
    rates = [r.strip() for r in args.rates.split(",") if r.strip()]
    variants = [("", False), *([("_view", True)] if args.view else [])]
    runs: dict[str, list[dict[str, Any]]] = {"bare": []}
    runs.update({f"graph_rate_{r}{v}": [] for r in rates for v, _ in variants})
    if "1" in rates:
        runs["bare_paced"] = []
    for _ in range(max(1, args.repeat)):
        runs["bare"].append(bare_loop(session))
        if "1" in rates:
            runs["bare_paced"].append(bare_loop(session, paced=True))
        for rate in rates:
            for suffix, with_view in variants:
                with tempfile.TemporaryDirectory() as work:
                    profile = Path(args.profile) if args.profile else None
                    runs[f"graph_rate_{rate}{suffix}"].append(
                        run_graph(session, rate, Path(work), profile, with_view=with_view))
    results: dict[str, Any] = {"session": session.name}
    for key, values in runs.items():
        results[key] = sorted(values, key=lambda r: r["fps"])[len(values) // 2]
        if len(values) > 1:
            results[key]["fps_runs"] = [r["fps"] for r in values]
    for suffix, _ in variants:
        if f"graph_rate_1{suffix}" in results:  # the latency target: p99 ≤ model time p99 + 15 ms
            graph_p99 = results[f"graph_rate_1{suffix}"]["frame_latency_ms"]["p99"]
            results[f"latency_p99_over_model_p99_ms{suffix}"] = round(
                graph_p99 - results["bare_paced"]["model_ms"]["p99"], 1)
        if f"graph_rate_max{suffix}" in results:
            bare, graph_max = results["bare"], results[f"graph_rate_max{suffix}"]
            results[f"throughput_vs_bare{suffix}"] = round(graph_max["fps"] / bare["fps"], 3)
            results[f"engine_share{suffix}"] = round(1 - graph_max["fps"] / bare["fps"], 3)
    print(json.dumps(results, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps({**results, "fingerprint": fingerprint.fingerprint()}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
