"""End-to-end benchmark: the demo graph at --rate max and 1× vs a bare single-process loop.

    .venv/bin/python bench/e2e.py [--session S.mcap] [--json OUT]

- graph: `engine/graphs/demo.yaml` as real processes (player → aligner → perceive →
  sinks + recorder), plus a JSONL sink on `perceive/detections` to time every frame.
  frames/s = frames / (last detection publish − first frame publish); latency = a
  frame's detection (or an event's) publish time − that frame's publish by the player
  (on replay the player's publish is the moment a camera would have delivered it).
- bare loop: the same ticks (cut in-process by the aligner logic, not timed), the same
  `Perception` + fusion head code and ONNX models, one process, no sockets: its frames/s
  is the ceiling; "engine share" = 1 − graph fps / bare fps at --rate max.
Numbers depend on the machine's load; the table in docs/benchmarks.md says where it ran.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine import graph as graph_mod  # noqa: E402
from engine.perception import Encoders, FusionHead, Perception, label_embeddings, tick_from_record  # noqa: E402
from models.fusion import dataset  # noqa: E402
from nodes import demo  # noqa: E402
from nodes.perceive import default_heads_dir, resolve_head  # noqa: E402


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.is_file() else []


def run_graph(session: Path, rate: str, work: Path) -> dict[str, Any]:
    decl = yaml.safe_load((graph_mod.BUILTIN_GRAPHS_DIR / "demo.yaml").read_text())
    nodes = decl["nodes"]
    nodes["player"]["params"].update(path=str(session), rate=rate if rate == "max" else float(rate))
    for name, file in (("events", "events.jsonl"), ("frames", "frames.jsonl"), ("recorder", "perception.mcap")):
        nodes[name]["params"]["path"] = str(work / file)
    nodes["detections"] = {"kind": "jsonl", "params": {"path": str(work / "detections.jsonl")},
                           "inputs": {"d": {"stream": "perceive/detections", "policy": "block", "queue": 64}}}
    nodes["console"]["params"] = {"every": 1000000}  # keep the terminal quiet
    graph_path = work / "graph.yaml"
    graph_path.write_text(yaml.safe_dump(decl))
    with tempfile.TemporaryDirectory(prefix="sfb", dir="/tmp") as run_dir:
        done = subprocess.run([sys.executable, "-m", "engine.cli", "run", str(graph_path), "--run-dir", run_dir],
                              cwd=work, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"graph failed ({done.returncode}): {done.stderr[-2000:]}")
    frames = {f["seq"]: f["t_pub_ns"] for f in _jsonl(work / "frames.jsonl")}
    frames_by_t = {f["t_ns"]: f["t_pub_ns"] for f in _jsonl(work / "frames.jsonl")}
    dets = _jsonl(work / "detections.jsonl")
    events = _jsonl(work / "events.jsonl")
    frame_lat = [(d["t_pub_ns"] - frames[d["record"]["frame"]["seq"]]) / 1e6 for d in dets
                 if d["record"].get("frame") and d["record"]["frame"]["seq"] in frames]
    from nodes import demo_report

    event_lat = demo_report.latency_ms(events, frames_by_t)
    span_s = (max(d["t_pub_ns"] for d in dets) - min(frames.values())) / 1e9
    return {"rate": rate, "frames": len(dets), "fps": round(len(dets) / span_s, 1),
            "frame_latency_ms": _pcts(frame_lat), "event_latency_ms": _pcts(event_lat), "events": len(events)}


def _pcts(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    p50, p99 = np.percentile(values, [50, 99])
    return {"p50": round(float(p50), 1), "p99": round(float(p99), 1), "n": len(values)}


def bare_loop(session: Path) -> dict[str, Any]:
    encoders = Encoders()
    perception = Perception(encoders, label_embeddings(encoders))
    head = FusionHead(resolve_head("default", default_heads_dir()))
    ticks = [tick_from_record(record) for record, _ in dataset.session_ticks(session)]
    per_tick = []
    t0 = time.perf_counter()
    for tick in ticks:
        t1 = time.perf_counter()
        head.run(perception.process(tick).inputs)
        per_tick.append((time.perf_counter() - t1) * 1e3)
    total = time.perf_counter() - t0
    return {"frames": len(ticks), "fps": round(len(ticks) / total, 1), "model_ms": _pcts(per_tick)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--session", help="sample session (default: the demo's)")
    parser.add_argument("--json", help="write results here")
    args = parser.parse_args()
    demo.ensure_pack()
    session = Path(args.session) if args.session else demo.ensure_session()
    results: dict[str, Any] = {"session": session.name, "bare": bare_loop(session)}
    for rate in ("max", "1"):
        with tempfile.TemporaryDirectory() as work:
            results[f"graph_rate_{rate}"] = run_graph(session, rate, Path(work))
    bare, graph_max = results["bare"], results["graph_rate_max"]
    results["throughput_vs_bare"] = round(graph_max["fps"] / bare["fps"], 3)
    results["engine_share"] = round(1 - graph_max["fps"] / bare["fps"], 3)
    print(json.dumps(results, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
