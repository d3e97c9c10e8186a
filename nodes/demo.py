"""`sensorfuse demo`: the full perception graph on a generated, labelled sample session.

1. Builds the model pack into the model cache if a model it needs is missing
   (`sensorfuse models build`; needs torch, which `make demo` installs).
2. Generates the demo session (held-out media, seed `DEMO_SEED`, 20 s) into the user
   cache (`~/.cache/sensorfuse/demo/`) if it is not there.
3. Runs the built-in `demo` graph (engine/graphs/demo.yaml), one process per node:
   player → aligner → perceive → console + JSONL + recorder. Events scroll by as they
   happen.
4. Prints a summary: events vs the session's ground truth (precision, recall, mean
   timing error), capture→event latency p50/p99, frames and audio processed, drops.

The fusion head ships with the package (models/fusion/data), so no training is needed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from sensorfuse.engine import manifest as mf
from sensorfuse.engine.cli import run_graph
from sensorfuse.engine.errors import SensorfuseError
from sensorfuse.engine.perception.encoders import FACE_MODEL, LANDMARK_MODEL, SCENE_MODEL, TEXT_MODEL, VAD_MODEL
from sensorfuse.nodes import demo_report

DEMO_SEED = 1_000_042
DEMO_DURATION_S = 20.0
NEEDED = (FACE_MODEL, LANDMARK_MODEL, SCENE_MODEL, VAD_MODEL, TEXT_MODEL)
#: Events before this event time are the same on every run of the demo session; in the
#: last second, which stream's end-of-stream reaches the aligner first is arrival order
#: (separate sockets), and the final flushed ticks' audio windows depend on it.
STABLE_UNTIL_NS = 1_000_000_000 + int((DEMO_DURATION_S - 1.0) * 1e9)


def demo_graph(session: Path, out_dir: Path, *, rate: str | float = "max", cache: Path | None = None,
               head: str = "default", quiet: bool = False) -> dict[str, Any]:
    """The built-in demo graph as a dict: `session` replayed at `rate`, the events, frame
    times and recording in `out_dir` (events.jsonl, frames.jsonl, perception.mcap), the
    model pack in `cache` (default: the user cache), `quiet`: no console lines. For tests
    and benchmarks that run the demo graph with their own files."""
    import yaml

    from sensorfuse.engine import graph as graph_mod

    decl: dict[str, Any] = yaml.safe_load((graph_mod.BUILTIN_GRAPHS_DIR / "demo.yaml").read_text())
    nodes = decl["nodes"]
    nodes["player"]["params"].update(path=str(session), rate=rate)
    nodes["perceive"]["params"] = {"head": head, **({"cache": str(Path(cache).absolute())} if cache else {})}
    for name, file in (("events", "events.jsonl"), ("frames", "frames.jsonl"), ("recorder", "perception.mcap")):
        nodes[name]["params"]["path"] = str(Path(out_dir) / file)
    if quiet:
        nodes["console"]["params"] = {"every": 1_000_000}
    return decl


def demo_dir() -> Path:
    return mf.default_cache_dir().parent / "demo"


def ensure_pack() -> None:
    cache = mf.default_cache_dir()
    missing = [m for m in NEEDED if not (cache / f"{m}{mf.MANIFEST_SUFFIX}").is_file()]
    if missing:
        print(f"demo: building the model pack into {cache} (missing: {', '.join(missing)})", flush=True)
        done = subprocess.run([sys.executable, "-m", "sensorfuse.engine.cli", "models", "build"], check=False)
        if done.returncode != 0:
            raise SensorfuseError("model pack build failed (see above); `make setup` installs what it needs")


def ensure_session(seed: int = DEMO_SEED, duration_s: float = DEMO_DURATION_S) -> Path:
    from sensorfuse.replay import sample

    path = demo_dir() / f"sample-{seed}-{duration_s:g}s.mcap"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        print(f"demo: generating the sample session {path}", flush=True)
        tmp = path.with_suffix(".tmp")
        sample.generate(tmp, seed=seed, duration_s=duration_s)
        tmp.replace(path)
    return path


def read_truth(path: Path) -> tuple[list[dict[str, Any]], dict[int, list[dict[str, Any]]], dict[int, int]]:
    """Labels, per-frame true boxes (by t_ns) and text capture times (by seq) of a session."""
    from sensorfuse.replay.mcap_io import LogReader
    from sensorfuse.engine import wire

    labels, boxes, texts = [], {}, {}
    with LogReader(path) as reader:
        for msg in reader.iter_messages(["labels", "labels/boxes", "text/in"]):
            header, _, payload = msg.decode()
            if header.stream == "text/in":
                texts[header.seq] = header.t_ns
                continue
            record = wire.decode_record(payload)
            if header.stream == "labels":
                labels.append(record)
            else:
                boxes[header.t_ns] = record["boxes"]
    return labels, boxes, texts


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def summarize(session: Path, out_dir: Path, run_dir: Path) -> dict[str, Any]:
    events = _jsonl(out_dir / "demo-events.jsonl")
    frames = {f["t_ns"]: f["t_pub_ns"] for f in _jsonl(out_dir / "demo-frames.jsonl")}
    labels, boxes, texts = read_truth(session)
    scores = demo_report.score_events([e["record"] for e in events], labels, boxes, texts)
    latencies = demo_report.latency_ms(events, frames)
    status = json.loads((run_dir / "status.json").read_text()) if (run_dir / "status.json").is_file() else {}
    gauges = status.get("nodes", {}).get("perceive", {}).get("gauges", {})
    drops: dict[str, int] = {}
    for name, node in status.get("nodes", {}).items():
        for stream, st in node.get("streams", {}).items():
            for category in ("dropped", "rejected", "malformed"):
                for reason, n in st.get(category, {}).items():
                    drops[f"{name}:{stream}:{category}:{reason}"] = n
            if st.get("lost"):
                drops[f"{name}:{stream}:lost"] = st["lost"]
    return {"scores": scores, "latency_ms": latencies, "events": len(events), "gauges": gauges, "drops": drops,
            "frames_published": len(frames)}


def print_summary(summary: dict[str, Any]) -> None:
    lat = summary["latency_ms"]
    g = summary["gauges"]
    print("\n== sensorfuse demo: summary ==")
    print(demo_report.table(summary["scores"]))
    if lat:
        p50, p99 = np.percentile(lat, [50, 99])
        print(f"capture→event latency: p50 {p50:.1f} ms, p99 {p99:.1f} ms over {len(lat)} events")
    print(f"frames: {summary['frames_published']} published, {int(g.get('frames', 0))} processed by perceive; "
          f"audio: {int(g.get('audio_blocks', 0))} VAD chunks (32 ms) processed; ticks: {int(g.get('ticks', 0))}")
    drops = summary["drops"]
    print("drops: " + (", ".join(f"{k}={v}" for k, v in sorted(drops.items())) if drops else "none"))


def _cmd_demo(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    ensure_pack()
    session = ensure_session()
    out_dir = Path(args.out).absolute() if args.out else demo_dir() / "last-run"
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in ("demo-events.jsonl", "demo-frames.jsonl", "demo-perception.mcap"):
        (out_dir / name).unlink(missing_ok=True)
    from sensorfuse.engine.rundir import new_run_dir

    run_dir = new_run_dir(None)
    sets = [f"player.path={session}", f"player.rate={args.rate}", f"events.path={out_dir / 'demo-events.jsonl'}",
            f"frames.path={out_dir / 'demo-frames.jsonl'}", f"recorder.path={out_dir / 'demo-perception.mcap'}"]
    if args.head:
        sets.append(f"perceive.head={args.head}")
    print(f"demo: {session.name} at rate {args.rate} (events scroll below; outputs in {out_dir})", flush=True)
    code = run_graph("demo", sets=sets, duration=args.duration, run_dir=str(run_dir), summary=False)  # ours below
    summary = summarize(session, out_dir, run_dir)
    print_summary(summary)
    print(f"demo finished in {time.monotonic() - t0:.0f} s (exit {code})")
    return code


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "demo", help="run the perception graph on a bundled sample session, then score it",
        description="run the perception graph on a generated sample session and score its events",
        epilog="examples:\n  sensorfuse demo\n  sensorfuse demo --rate max\n  sensorfuse demo --head late",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--rate", default="1", help="replay rate: 1 = real time (default), X, or max")
    p.add_argument("--head", help="fusion head: default, early, late, attention or a manifest path")
    p.add_argument("--out", help="directory for the events JSONL and the recording (default: the user cache)")
    p.set_defaults(func=_cmd_demo)
