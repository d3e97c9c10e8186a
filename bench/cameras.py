"""Several cameras: one batched perceive vs a perceive process per camera vs a bare batched loop.

    .venv/bin/python bench/cameras.py [--cameras 1,2,4] [--duration 8] [--size 640x480] [--json OUT]

For each camera count N a generated session (`sensorfuse sample --cameras N`, 15 fps, one
microphone) is replayed three ways, side by side in one run:

- batched: the demo graph with N cameras (`demo.with_cameras`: one aligner whose ticks
  carry every camera's frame, one perceive with `cameras: [cam0..]`) at --rate max;
- separate: the same player, and per camera its own aligner and perceive process (the
  one-camera demo pair: frames joined on seq), at --rate max;
- bare: the batched perceive's work in this process, no sockets (`CameraSet`, the fusion
  head and perceive's object stages on ticks cut beforehand): the ceiling.

Objects run without tiles in all three (`OBJECT_TILES`: like for like). Both graphs drop
what is not perception (transcribe, recorder, console, event sinks) and
add a JSONL sink per detections stream and per camera stream (publish times). frames/s =
camera frames perceived / (last detection publish − first frame publish); latency = a
frame's detections publish − the frame's publish by the player. Memory: the peak RSS of
the perceive process(es), summed. With `--paced` the batched graph also runs at 1× and
the bare loop paced at capture time (its per-tick time is the "model time" the 1×
latency is compared with). Targets (issue 12): batched ≥ 1.4× separate at 4 cameras;
batched graph ≥ 0.85× bare; at 1× p99 latency ≤ model p99 + 20 ms.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_description  # noqa: E402
from e2e import CpuSampler, _jsonl, _pcts  # noqa: E402

from sensorfuse.engine import fingerprint  # noqa: E402
from sensorfuse.engine import manifest as mf  # noqa: E402
from sensorfuse.engine.testing import NodeHarness  # noqa: E402
from sensorfuse.nodes import demo  # noqa: E402
from sensorfuse.nodes.aligner import AlignerNode  # noqa: E402
from sensorfuse.nodes.perceive import PerceiveNode, default_heads_dir, resolve_head  # noqa: E402
from sensorfuse.perception import Encoders, FusionHead, Ports, label_embeddings  # noqa: E402
from sensorfuse.perception.cameras import CameraSet  # noqa: E402
from sensorfuse.perception.encoders import to_rgb  # noqa: E402
from sensorfuse.perception.features import warm_up  # noqa: E402
from sensorfuse.perception.objects import OBJECT_MODEL, ObjectDetector, ObjectStage  # noqa: E402
from sensorfuse.perception.ticks import camera_ticks  # noqa: E402
from sensorfuse.replay import sample  # noqa: E402
from sensorfuse.replay.player import PlayerNode  # noqa: E402

PERCEPTION_ONLY = ("transcribe", "console", "events", "transcripts", "frames", "recorder")
#: object tiles per run in all three variants: like for like (perceive's default tiles one
#: camera only, so a perceive per camera would run 5 detector passes where the batched one runs 1)
OBJECT_TILES = 0


def make_session(work: Path, cameras: int, duration_s: float, size: tuple[int, int]) -> Path:
    path = work / f"cams{cameras}.mcap"
    sample.generate(path, seed=demo.DEMO_SEED, duration_s=duration_s, size=size, cameras=cameras)
    return path


def _sinks(decl: dict[str, Any], work: Path, detections: list[str], cameras: int) -> None:
    nodes = decl["nodes"]
    for name in PERCEPTION_ONLY:
        nodes.pop(name, None)
    for i, stream in enumerate(detections):
        nodes[f"dets{i}"] = {"kind": "jsonl", "params": {"path": str(work / f"dets{i}.jsonl")},
                             "inputs": {"d": {"stream": stream, "policy": "block", "queue": 64}}}
    for camera in demo.camera_names(cameras):
        nodes[f"pub_{camera}"] = {"kind": "jsonl", "params": {"path": str(work / f"pub_{camera}.jsonl"),
                                                              "digest": False},
                                  "inputs": {"f": {"stream": f"{camera}/frame", "policy": "block", "queue": 32}}}


def batched_graph(session: Path, work: Path, cameras: int, rate: str, threads: int = 1) -> dict[str, Any]:
    decl = demo.demo_graph(session, work, rate=rate if rate == "max" else float(rate), cameras=cameras, quiet=True)
    if cameras == 1:
        demo.with_cameras(decl, 1)  # the same graph shape as N > 1: frames embedded, perceive `cameras`
    decl["nodes"]["perceive"]["params"].update(threads=threads, objects_tiles=OBJECT_TILES)
    _sinks(decl, work, ["perceive/detections"], cameras)
    return decl


def separate_graph(session: Path, work: Path, cameras: int) -> dict[str, Any]:
    """Per camera its own aligner and perceive (the one-camera demo pair), one player."""
    decl = demo.demo_graph(session, work, rate="max", quiet=True)
    nodes = decl["nodes"]
    names = demo.camera_names(cameras)
    demo.replay_cameras(decl, cameras)
    align, perceive = nodes.pop("align"), nodes.pop("perceive")
    for k, camera in enumerate(names):
        a, p = json.loads(json.dumps(align)), json.loads(json.dumps(perceive))
        a["inputs"]["frame"]["stream"] = f"{camera}/frame"
        a["outputs"] = {"ticks": f"align{k}/ticks"}
        p["inputs"] = {"ticks": {**p["inputs"]["ticks"], "stream": f"align{k}/ticks"},
                       "frame": {**p["inputs"]["frame"], "stream": f"{camera}/frame"}}
        p["outputs"] = {"detections": f"perceive{k}/detections"}
        p.setdefault("params", {})["objects_tiles"] = OBJECT_TILES
        nodes[f"align{k}"], nodes[f"perceive{k}"] = a, p
    _sinks(decl, work, [f"perceive{k}/detections" for k in range(cameras)], cameras)
    return decl


class RssSampler(threading.Thread):
    """Peak resident memory of every node process whose name starts with `prefix`, summed."""

    def __init__(self, proc: subprocess.Popen[str], prefix: str = "perceive") -> None:
        super().__init__(daemon=True)
        self.proc, self.prefix, self.peak_kib = proc, prefix, {}
        self.start()

    def run(self) -> None:
        while self.proc.poll() is None:
            try:
                children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
            except OSError:
                children = []
            for pid in children:
                name = CpuSampler._node_name(pid)
                if name is None or not name.startswith(self.prefix):
                    continue
                try:
                    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines()
                                if x.startswith("VmRSS:"))
                except (OSError, StopIteration):
                    continue
                self.peak_kib[name] = max(self.peak_kib.get(name, 0), int(line.split()[1]))
            time.sleep(0.05)

    @property
    def total_mib(self) -> float:
        return round(sum(self.peak_kib.values()) / 1024, 1)


def run_graph(decl: dict[str, Any], work: Path, cameras: int) -> dict[str, Any]:
    graph_path = work / "graph.yaml"
    graph_path.write_text(yaml.safe_dump(decl))
    with tempfile.TemporaryDirectory(prefix="sfc", dir="/tmp") as run_dir:
        proc = subprocess.Popen([sys.executable, "-m", "sensorfuse.engine.cli", "run", str(graph_path),
                                 "--run-dir", run_dir], cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        rss = RssSampler(proc)
        _, stderr = proc.communicate()
        rss.join()
    if proc.returncode != 0:
        raise RuntimeError(f"graph failed ({proc.returncode}): {stderr[-2000:]}")
    published = {(f"{c}/frame", f["seq"]): f["t_pub_ns"] for c in demo.camera_names(cameras)
                 for f in _jsonl(work / f"pub_{c}.jsonl")}
    dets = [d for path in sorted(work.glob("dets*.jsonl")) for d in _jsonl(path)]
    lat = [(d["t_pub_ns"] - published[(d["record"]["frame"]["stream"], d["record"]["frame"]["seq"])]) / 1e6
           for d in dets if d["record"].get("frame")
           and (d["record"]["frame"]["stream"], d["record"]["frame"]["seq"]) in published]
    span_s = (max(d["t_pub_ns"] for d in dets) - min(published.values())) / 1e9
    return {"frames": len(dets), "fps": round(len(dets) / span_s, 1), "latency_ms": _pcts(lat),
            "perceive_rss_mib": rss.total_mib, "perceive_processes": len(rss.peak_kib)}


def tick_records(session: Path, cameras: int) -> list[dict[str, Any]]:
    """The batched graph's tick records, cut in-process by the aligner (not timed)."""
    with tempfile.TemporaryDirectory() as tmp:
        decl = batched_graph(session, Path(tmp), cameras, "max")
    align = decl["nodes"]["align"]
    ports = {spec["stream"]: port for port, spec in align["inputs"].items()}
    aligner = NodeHarness(AlignerNode, align["params"], streams={**{p: s for s, p in ports.items()},
                                                                 "ticks": "align/ticks"})
    player = NodeHarness(PlayerNode, {"path": str(session), "rate": "max"}, streams={})
    records = []
    for msg in player.produce_all():
        port = ports.get(msg.header.stream)
        if port is not None:
            records += [out.record for out in aligner.send(port, msg)]
    player.close()
    return records + [out.record for out in aligner.finish()]


def bare_loop(session: Path, cameras: int, *, paced: bool = False) -> dict[str, Any]:
    names = demo.camera_names(cameras)
    records = tick_records(session, cameras)
    encoders = Encoders()
    labels = label_embeddings(encoders)
    warm_up(encoders, labels, (480, 640))
    worker, objects_worker = ThreadPoolExecutor(max_workers=1), ThreadPoolExecutor(max_workers=1)
    perception = CameraSet(encoders, labels, names, scene_executor=worker)
    head = FusionHead(resolve_head("default", default_heads_dir()))
    # the object stages as perceive runs them (its defaults: classes, period, delay), one per camera
    params = PerceiveNode.Params()
    detector = ObjectDetector(mf.find_manifest(OBJECT_MODEL, None))
    ids = itertools.count(1)
    stages = [ObjectStage(detector, params.classes, period_ns=round(params.objects_period_ms * 1e6),
                          delay_ns=round(params.objects_delay_ms * 1e6), executor=objects_worker, ids=ids,
                          tiles_per_run=OBJECT_TILES)
              for _ in names]
    per_tick = []
    t0 = time.perf_counter()
    for record in records:
        if paced:
            due = t0 + (record["t_ns"] - records[0]["t_ns"]) / 1e9
            time.sleep(max(0.0, due - time.perf_counter()))
        t1 = time.perf_counter()
        ticks = camera_ticks(record, Ports(), names)
        for feats in perception.process(ticks):
            head.run(feats.inputs)
        for stage, tick in zip(stages, ticks):
            stage.step(tick.t_ns, to_rgb(tick.frame, tick.frame_layout) if tick.frame is not None else None)
        per_tick.append((time.perf_counter() - t1) * 1e3)
    total = time.perf_counter() - t0
    worker.shutdown()
    objects_worker.shutdown()
    return {"frames": len(records) * cameras, "fps": round(len(records) * cameras / total, 1),
            "model_ms": _pcts(per_tick)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cameras", default="1,2,4", help="camera counts, comma-separated (default 1,2,4)")
    parser.add_argument("--duration", type=float, default=8.0, help="session seconds (default 8)")
    parser.add_argument("--size", default="640x480", help="frame size WxH (default 640x480)")
    parser.add_argument("--threads", type=int, default=2,
                        help="also the batched graph with this many intra-op threads per model (1: not)")
    parser.add_argument("--paced", action="store_true", help="also the batched graph at 1x and the paced bare loop")
    parser.add_argument("--json", help="write results here")
    args = parser.parse_args()
    demo.ensure_pack()
    size = tuple(int(v) for v in args.size.split("x"))
    results: dict[str, Any] = {"machine": machine_description(), "size": args.size, "duration_s": args.duration}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in [int(c) for c in args.cameras.split(",")]:
            session = make_session(Path(tmp), n, args.duration, size)  # type: ignore[arg-type]
            r: dict[str, Any] = {}
            r["bare"] = bare_loop(session, n)
            variants = [("batched", lambda w: batched_graph(session, w, n, "max")),
                        ("separate", lambda w: separate_graph(session, w, n))]
            if args.threads > 1:
                variants.append((f"batched_{args.threads}_threads",
                                 lambda w: batched_graph(session, w, n, "max", args.threads)))
            for key, build in variants:
                with tempfile.TemporaryDirectory() as work:
                    r[key] = run_graph(build(Path(work)), Path(work), n)
            if args.paced:
                r["bare_paced"] = bare_loop(session, n, paced=True)
                with tempfile.TemporaryDirectory() as work:
                    r["batched_1x"] = run_graph(batched_graph(session, Path(work), n, "1"), Path(work), n)
                r["latency_p99_over_model_p99_ms"] = round(
                    r["batched_1x"]["latency_ms"]["p99"] - r["bare_paced"]["model_ms"]["p99"], 1)
            r["batched_vs_separate"] = round(r["batched"]["fps"] / r["separate"]["fps"], 2)
            threaded = r.get(f"batched_{args.threads}_threads")
            if threaded:
                r["threaded_vs_separate"] = round(threaded["fps"] / r["separate"]["fps"], 2)
            r["batched_vs_bare"] = round(r["batched"]["fps"] / r["bare"]["fps"], 2)
            results[f"cameras_{n}"] = r
            rows.append([n, r["bare"]["fps"], r["batched"]["fps"], threaded["fps"] if threaded else "-",
                         r["separate"]["fps"], r["batched_vs_separate"], r.get("threaded_vs_separate", "-"),
                         r["batched_vs_bare"], r["batched"]["latency_ms"].get("p50"),
                         r["separate"]["latency_ms"].get("p50"), r["batched"]["perceive_rss_mib"],
                         r["separate"]["perceive_rss_mib"],
                         r.get("batched_1x", {}).get("latency_ms", {}).get("p99", "-"),
                         r.get("bare_paced", {}).get("model_ms", {}).get("p99", "-")])
            print(json.dumps({f"cameras_{n}": r}), flush=True)
    header = ["cameras", "bare fps", "batched fps", f"batched {args.threads} threads fps", "separate fps",
              "batched/separate", f"{args.threads} threads/separate", "batched/bare",
              "batched p50 ms", "separate p50 ms", "batched RSS MiB", "separate RSS MiB", "1x p99 ms",
              "model p99 ms"]
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps({**results, "fingerprint": fingerprint.fingerprint()}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
