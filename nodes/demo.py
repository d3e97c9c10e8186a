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
   A run cut short by ``--duration`` is scored against the truth of the span it replayed.

``--session FILE`` replays your own log instead (it needs ``cam0/frame`` and
``mic0/audio16k``; ``text/in`` is optional): `sensorfuse sample` and `sensorfuse log
import` logs carry them, and sample logs carry labels too — a log without labels is run
but not scored. ``--out DIR`` puts the outputs (``demo-events.jsonl``, ``demo-frames.jsonl``,
``demo-perception.mcap``, ``demo-report.json``, and ``demo-report.html``: the run as pictures,
`sensorfuse.nodes.demo_pictures`) in DIR (default: the user cache); outputs already in DIR
are replaced only with ``--force``.

The fusion head ships with the package (models/fusion/data), so no training is needed.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.resources
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from sensorfuse.engine import manifest as mf
from sensorfuse.engine import view
from sensorfuse.engine.cli import run_graph
from sensorfuse.engine.errors import SensorfuseError, UsageError
from sensorfuse.perception.encoders import FACE_MODEL, LANDMARK_MODEL, SCENE_MODEL, TEXT_MODEL, VAD_MODEL
from sensorfuse.perception.objects import OBJECT_MODEL
from sensorfuse.nodes.perceive_setup import DEFAULT_CLASSES, outdated
from sensorfuse.nodes import demo_objects, demo_report, transcribe_eval

DEMO_SEED = 1_000_042
DEMO_DURATION_S = 20.0
NEEDED = (FACE_MODEL, LANDMARK_MODEL, SCENE_MODEL, VAD_MODEL, TEXT_MODEL, OBJECT_MODEL)
#: Events before this event time are the same on every run of the demo session; in the
#: last second, which stream's end-of-stream reaches the aligner first is arrival order
#: (separate sockets), and the final flushed ticks' audio windows depend on it.
STABLE_UNTIL_NS = 1_000_000_000 + int((DEMO_DURATION_S - 1.0) * 1e9)
#: The demo's aligner at --rate max (lock-step): a lateness bound above any skew the
#: pipeline can build (docs/replay.md, "Determinism"), and room for the ticks it holds.
LOCKSTEP_LATENESS_MS = 10_000
LOCKSTEP_PENDING_TICKS = 256
MAX_CAMERAS = 8  # `sensorfuse sample --cameras` makes up to 8
#: What the demo graph replays from a session besides its cameras (`required_streams`);
#: text is optional (the aligner does not require it).
OPTIONAL_STREAMS = ("text/in",)
OUTPUTS = {"events": "demo-events.jsonl", "frames": "demo-frames.jsonl", "transcripts": "demo-transcripts.jsonl",
           "recorder": "demo-perception.mcap"}
REPORT = "demo-report.json"
HTML_REPORT = "demo-report.html"  # the same run as pictures (nodes/demo_pictures.py)


def camera_names(cameras: int) -> list[str]:
    return [f"cam{k}" for k in range(cameras)]


def required_streams(cameras: int = 1) -> tuple[str, ...]:
    return (*(f"{c}/frame" for c in camera_names(cameras)), "mic0/audio16k")


def demo_graph(session: Path, out_dir: Path, *, rate: str | float = "max", cache: Path | None = None,
               head: str = "default", quiet: bool = False, spoken_queries: bool = False,
               cameras: int = 1) -> dict[str, Any]:
    """The built-in demo graph as a dict: `session` replayed at `rate`, the events, frame
    times and recording in `out_dir` (events.jsonl, frames.jsonl, perception.mcap), the
    model pack in `cache` (default: the user cache), `quiet`: no console lines. For tests
    and benchmarks that run the demo graph with their own files. `spoken_queries`: a
    question the session's voices ask is a query too (`said`, docs/speech.md). `cameras`:
    replay cam0..camN-1 into one perceive (`with_cameras`)."""
    import yaml

    from sensorfuse.engine import graph as graph_mod

    decl: dict[str, Any] = yaml.safe_load((graph_mod.BUILTIN_GRAPHS_DIR / "demo.yaml").read_text())
    nodes = decl["nodes"]
    nodes["player"]["params"].update(path=str(session), rate=rate)
    align = nodes["align"]
    if spoken_queries:  # say it or type it: the newer of the typed and the said line is the query
        align["params"]["streams"]["said"] = {"policy": "latest", "ttl_ms": 2500, "required": False}
        align["inputs"]["said"] = {"stream": "speech/text", "policy": "block", "queue": 16}
    if rate == "max":
        # lock-step replay: ticks wait for the text streams' watermarks too, so a typed or
        # said line always makes the tick it belongs to (at a finite rate that would cost latency)
        for stream in ("text", "said"):
            if stream in align["params"]["streams"]:
                align["params"]["streams"][stream]["required"] = True
    if rate == "max" and spoken_queries:
        # ...and no lateness bound fires while Whisper decodes a question: the other streams
        # run seconds ahead of the said stream's watermark then (socket buffers included)
        align["params"].update(lateness_ms=LOCKSTEP_LATENESS_MS, max_pending_ticks=LOCKSTEP_PENDING_TICKS)
    if cache:
        nodes["transcribe"]["params"]["cache"] = str(Path(cache).absolute())
    nodes["perceive"]["params"] = {"head": head, **({"cache": str(Path(cache).absolute())} if cache else {})}
    if cameras > 1:
        with_cameras(decl, cameras)
    for name, file in (("events", "events.jsonl"), ("frames", "frames.jsonl"), ("transcripts", "transcripts.jsonl"),
                       ("recorder", "perception.mcap")):
        nodes[name]["params"]["path"] = str(Path(out_dir) / file)
    if quiet:
        nodes["console"]["params"] = {"every": 1_000_000}
    return decl


def replay_cameras(decl: dict[str, Any], cameras: int) -> None:
    """The demo graph's player replays cam0..camN-1 (instead of cam0 alone)."""
    names = camera_names(cameras)
    player = decl["nodes"]["player"]
    player["params"]["streams"] = [*(f"{c}/frame" for c in names), *player["params"]["streams"][1:]]
    player["outputs"] = {**{f"{c}/frame": f"{c}/frame" for c in names},
                         **{k: v for k, v in player["outputs"].items() if k != "cam0/frame"}}


def with_cameras(decl: dict[str, Any], cameras: int) -> None:
    """The demo graph with `cameras` cameras: the player replays cam0..camN-1, the aligner
    ticks on cam0 and embeds every camera's frame in the tick (one tick stream carries
    them all, docs/time.md "Several cameras"), one perceive perceives them all."""
    nodes = decl["nodes"]
    names = camera_names(cameras)
    replay_cameras(decl, cameras)
    align = nodes["align"]
    frame = align["params"]["streams"].pop("frame")
    queue = align["inputs"].pop("frame")
    align["params"]["trigger"] = names[0]
    for c in names:
        align["params"]["streams"][c] = {**frame, "embed": True}
        align["inputs"][c] = {**queue, "stream": f"{c}/frame"}
    perceive = nodes["perceive"]
    perceive["inputs"].pop("frame")
    perceive["params"]["cameras"] = names


def demo_dir() -> Path:
    return mf.default_cache_dir().parent / "demo"


def pack_to_build(cache: Path) -> list[str]:
    """The models the demo needs that `cache` lacks, or holds from an older recipe that
    perceive cannot use (face models with a batch of 1: `perceive_setup.outdated`). Read from the
    manifests only: the runtime has none of the build tools `models.pack` imports."""
    out = []
    for model in NEEDED:
        path = cache / f"{model}{mf.MANIFEST_SUFFIX}"
        try:
            if path.is_file() and not outdated(model, mf.load(path)):
                continue
        except mf.ManifestError:
            pass
        out.append(model)
    return out


def ensure_pack() -> None:
    cache = mf.default_cache_dir()
    missing = pack_to_build(cache)
    if missing:
        print(f"demo: building the model pack into {cache} (missing or from an older recipe: "
              f"{', '.join(missing)})", flush=True)
        done = subprocess.run([sys.executable, "-m", "sensorfuse.engine.cli", "models", "build"], check=False)
        if done.returncode != 0:
            raise SensorfuseError("model pack build failed (see above); `make setup` installs what it needs")


def ensure_session(seed: int = DEMO_SEED, duration_s: float = DEMO_DURATION_S, cameras: int = 1) -> Path:
    from sensorfuse.replay import sample

    path = demo_dir() / f"sample-{seed}-{duration_s:g}s{f'-{cameras}cam' if cameras > 1 else ''}.mcap"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        print(f"demo: generating the sample session {path}", flush=True)
        tmp = path.with_suffix(".tmp")
        sample.generate(tmp, seed=seed, duration_s=duration_s, **({"cameras": cameras} if cameras > 1 else {}))
        tmp.replace(path)
    return path


def session_streams(path: Path, cameras: int = 1) -> list[str]:
    """The demo streams `path` holds (required ones first); a missing or non-MCAP file, or a
    log without the camera and 16 kHz audio, is a usage error naming the file."""
    from sensorfuse.replay.mcap_io import LogError, LogReader

    if not path.is_file():
        raise UsageError(f"demo --session: no such file {str(path)!r}")
    try:
        with LogReader(path) as reader:
            if reader.summary is not None:
                topics = {c.topic for c in reader.summary.channels.values()}
            else:  # not finalised: no channel list, read what is there
                topics = {m.topic for m in reader.iter_messages()}
    except LogError as exc:
        raise UsageError(f"demo --session: {exc}") from None
    required = required_streams(cameras)
    missing = [t for t in required if t not in topics]
    if missing:
        raise UsageError(f"demo --session: {path} has no {' or '.join(missing)} stream "
                         f"(the demo graph replays {', '.join(required)}; streams in it: "
                         f"{', '.join(sorted(topics)) or 'none'})")
    return [t for t in (*required, *OPTIONAL_STREAMS) if t in topics]


def last_frame_ns(path: Path) -> int | None:
    from sensorfuse.replay.mcap_io import LogReader

    with LogReader(path) as reader:
        return max((m.log_time for m in reader.iter_messages(["cam0/frame"])), default=None)


def read_truth(path: Path) -> tuple[list[dict[str, Any]], dict[int, list[dict[str, Any]]], dict[int, int]]:
    """Labels, per-frame true boxes of cam0 (by t_ns) and text capture times (by seq) of a session."""
    labels, boxes, texts = read_camera_truth(path)
    return labels, boxes.get("cam0", {}), texts


def read_camera_truth(path: Path) -> tuple[list[dict[str, Any]], dict[str, dict[int, list[dict[str, Any]]]],
                                               dict[int, int]]:
    """`read_truth` with every camera's boxes (camera → t_ns → boxes), in one pass over the
    log (a one-camera session's boxes name no camera: they are cam0's)."""
    from sensorfuse.replay.mcap_io import LogReader
    from sensorfuse.engine import wire

    labels: list[dict[str, Any]] = []
    boxes: dict[str, dict[int, list[dict[str, Any]]]] = {}
    texts: dict[int, int] = {}
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
                boxes.setdefault(record.get("camera", "cam0"), {})[header.t_ns] = record["boxes"]
    return labels, boxes, texts


def recorded(path: Path, stream: str) -> list[dict[str, Any]]:
    """The records of one stream in a recording (none when the file is not there)."""
    from sensorfuse.engine import wire
    from sensorfuse.replay.mcap_io import LogReader

    if not path.is_file():
        return []
    with LogReader(path) as reader:
        return [wire.decode_record(m.decode()[2]) for m in reader.iter_messages([stream])]


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def summarize(session: Path, out_dir: Path, run_dir: Path, classes: list[str] | None = None,
              cameras: int = 1) -> dict[str, Any]:
    """Scores (None when the session has no labels) against the truth of the replayed span,
    objects per class (`classes`: perceive's, default its own), latency, counts and drops
    of a finished demo run; with several `cameras` also per camera (`per_camera`)."""
    events = _jsonl(out_dir / OUTPUTS["events"])
    frames = {f["t_ns"]: f["t_pub_ns"] for f in _jsonl(out_dir / OUTPUTS["frames"])}
    labels, all_boxes, texts = read_camera_truth(session)
    boxes = all_boxes.get("cam0", {})
    replayed_until = max(frames, default=None)
    last_frame = last_frame_ns(session)
    cut_short = replayed_until is None or (last_frame is not None and replayed_until < last_frame)
    scores = objects = per_camera = None
    said = [t["record"] for t in _jsonl(out_dir / OUTPUTS["transcripts"])]
    transcripts: dict[str, Any] = {"segments": len(said)}
    if labels:
        truth = demo_report.replayed_truth(labels, (replayed_until or 0) if cut_short else None)
        results = recorded(out_dir / OUTPUTS["recorder"], "perceive/objects")
        wanted = DEFAULT_CLASSES if classes is None else classes
        if cameras > 1:
            names = camera_names(cameras)
            camera_boxes = {c: all_boxes.get(c, {}) for c in names}
            scores, per_camera = demo_report.score_cameras([e["record"] for e in events], truth, camera_boxes, texts)
            by_camera = [demo_objects.score_objects([r for r in results if r.get("camera") == c], camera_boxes[c],
                                                    wanted) for c in names]
            objects = {c: demo_report.add_up(s[c] for s in by_camera) for c in wanted}
        else:
            scores = demo_report.score_events([e["record"] for e in events], truth, boxes, texts)
            objects = demo_objects.score_objects(results, boxes, wanted)
        transcripts.update(transcribe_eval.score_pairs(transcribe_eval.pair_with_labels(said, truth)))
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
    first = min(frames, default=None)
    return {"session": str(session), "scores": scores, "objects": objects, "transcripts": transcripts,
            "per_camera": per_camera,
            "latency_ms": latencies,
            "events": len(events),
            "gauges": gauges, "drops": drops, "frames_published": len(frames), "cut_short": cut_short,
            "replayed_s": (replayed_until - first) / 1e9 if first is not None else 0.0,
            "session_s": (last_frame - first) / 1e9 if first is not None and last_frame is not None else None}


def write_report(summary: dict[str, Any], path: Path) -> None:
    """The summary as JSON (scores with their precision/recall; latency as p50/p99)."""
    lat = summary["latency_ms"]
    scores = summary["scores"]
    report = {**summary, "latency_ms": {"n": len(lat), **({"p50": float(np.percentile(lat, 50)),
                                                          "p99": float(np.percentile(lat, 99))} if lat else {})},
              "scores": None if scores is None else {
                  k: {**dataclasses.asdict(v), "precision": v.precision, "recall": v.recall} for k, v in scores.items()},
              "objects": None if summary["objects"] is None else {
                  k: v.as_dict() for k, v in summary["objects"].items()},
              "per_camera": None if summary.get("per_camera") is None else {
                  camera: {k: {**dataclasses.asdict(v), "precision": v.precision, "recall": v.recall}
                           for k, v in scores.items()} for camera, scores in summary["per_camera"].items()}}
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)


def write_html_report(session: Path, out_dir: Path, summary: dict[str, Any]) -> Path:
    """`HTML_REPORT` in `out_dir`: timelines, score traces and key frames of the run."""
    from sensorfuse.nodes import demo_pictures

    labels = None
    if summary["scores"] is not None:
        frames = [f["t_ns"] for f in _jsonl(out_dir / OUTPUTS["frames"])]
        labels = demo_report.replayed_truth(read_truth(session)[0], max(frames, default=0) if summary["cut_short"]
                                            else None)
    return demo_pictures.write(out_dir / HTML_REPORT, session=session, labels=labels,
                               events=[e["record"] for e in _jsonl(out_dir / OUTPUTS["events"])],
                               perception_log=out_dir / OUTPUTS["recorder"], summary=summary)


def print_summary(summary: dict[str, Any]) -> None:
    lat = summary["latency_ms"]
    g = summary["gauges"]
    print("\n== sensorfuse demo: summary ==")
    if summary["scores"] is None:
        print(f"no labels in {summary['session']}: events are not scored ({summary['events']} events)")
    else:
        if summary["cut_short"]:
            print(f"scored against the truth of the replayed span ({summary['replayed_s']:.1f} s of "
                  f"{summary['session_s'] or 0:.1f} s)")
        print(demo_report.table(summary["scores"]))
        if summary.get("per_camera"):
            print(demo_report.camera_table(summary["per_camera"]))
        print(demo_objects.table(summary["objects"]))
    said = summary["transcripts"]
    if "wer" in said:
        print(f"transcripts: {said['segments']} speech segments, word error rate {said['wer']:.2f} over "
              f"{said['sentences']} spoken sentences (Whisper tiny.en)")
    else:
        print(f"transcripts: {said['segments']} speech segments")
    if lat:
        p50, p99 = np.percentile(lat, [50, 99])
        print(f"capture→event latency: p50 {p50:.1f} ms, p99 {p99:.1f} ms over {len(lat)} events")
    print(f"frames: {summary['frames_published']} published, {int(g.get('frames', 0))} processed by perceive; "
          f"audio: {int(g.get('audio_blocks', 0))} VAD chunks (32 ms) processed; ticks: {int(g.get('ticks', 0))}")
    drops = summary["drops"]
    print("drops: " + (", ".join(f"{k}={v}" for k, v in sorted(drops.items())) if drops else "none"))


def _out_dir(args: argparse.Namespace) -> Path:
    """--out DIR (its earlier demo outputs replaced only with --force), else the user cache."""
    if not args.out:
        out_dir = demo_dir() / "last-run"
    else:
        out_dir = Path(args.out).absolute()
        if out_dir.exists() and not out_dir.is_dir():
            raise UsageError(f"demo --out: {args.out} is not a directory")
        existing = [n for n in (*OUTPUTS.values(), REPORT, HTML_REPORT) if (out_dir / n).exists()]
        if existing and not args.force:
            raise UsageError(f"demo --out: {args.out} already holds {', '.join(existing)} (--force replaces them)")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"demo --out: cannot create {out_dir}: {exc.strerror or exc}") from None
    for name in (*OUTPUTS.values(), REPORT, HTML_REPORT):
        (out_dir / name).unlink(missing_ok=True)
    return out_dir


def _cmd_demo(args: argparse.Namespace) -> int:
    with view.viewing(view.mode(args)) as viewer:  # a web viewer serves on after the summary
        return _run_demo(args, viewer)


def demo_classes(text: str | None) -> list[str] | None:
    """`--classes` checked against the detector's COCO names before anything is built."""
    if text is None:
        return None
    from sensorfuse.engine.cli import parse_classes
    from sensorfuse.perception.objects import UnknownClass, check_classes

    labels = (importlib.resources.files("sensorfuse.models") / "data" / "coco_labels.txt").read_text().splitlines()
    try:
        classes = parse_classes(text)
        check_classes(classes, labels)
    except (ValueError, UnknownClass) as exc:
        raise UsageError(f"demo --classes: {exc}") from None
    return classes


def _run_demo(args: argparse.Namespace, viewer: Any) -> int:
    t0 = time.monotonic()
    classes = demo_classes(args.classes)
    cameras = args.cameras
    if not 1 <= cameras <= MAX_CAMERAS:
        raise UsageError(f"demo --cameras: 1 to {MAX_CAMERAS} cameras, got {cameras}")
    streams = session_streams(Path(args.session), cameras) if args.session \
        else list((*required_streams(cameras), *OPTIONAL_STREAMS))
    out_dir = _out_dir(args)
    ensure_pack()
    session = Path(args.session).absolute() if args.session else ensure_session(cameras=cameras)
    from sensorfuse.engine.rundir import new_run_dir

    run_dir = new_run_dir(None)
    sets = [f"player.path={session}", f"player.rate={args.rate}", f"player.streams={json.dumps(streams)}",
            *(f"{node}.path={out_dir / name}" for node, name in OUTPUTS.items())]
    if args.head:
        sets.append(f"perceive.head={args.head}")
    if classes is not None:
        sets.append(f"perceive.classes={json.dumps(classes)}")
    print(f"demo: {session.name} at rate {args.rate} (events scroll below; outputs in {out_dir})", flush=True)
    decl = demo_graph(session, out_dir, rate=args.rate, spoken_queries=args.spoken_queries, cameras=cameras)
    graph: Any = decl if viewer is None else viewer.add_to(decl)
    code = run_graph(graph, sets=sets, duration=args.duration, run_dir=str(run_dir), summary=False)  # ours below
    summary = summarize(session, out_dir, run_dir, classes, cameras)
    print_summary(summary)
    write_report(summary, out_dir / REPORT)
    html = write_html_report(session, out_dir, summary)
    print(f"demo: HTML report with plots in {html}")
    print(f"demo finished in {time.monotonic() - t0:.0f} s (exit {code}); report in {out_dir / REPORT}")
    return code


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "demo", help="run the perception graph on a bundled sample session, then score it",
        description="run the perception graph on a generated sample session and score its events",
        epilog="examples:\n  sensorfuse demo\n  sensorfuse demo --rate max --head late\n"
               "  sensorfuse demo --rate max --classes person,cat\n"
               "  sensorfuse demo --cameras 4\n"
               "  sensorfuse sample -o s.mcap --duration 8 && sensorfuse demo --session s.mcap --out demo-out",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--duration", type=float, help="stop after this many seconds (scored against the span replayed)")
    p.add_argument("--rate", default="1", help="replay rate: 1 = real time (default), X, or max")
    p.add_argument("--spoken-queries", action="store_true",
                   help="a question the session's voices ask is a query too, like a typed line (at a finite "
                        "rate when its transcript arrives; exactly at its end with --rate max)")
    p.add_argument("--head", help="fusion head: default, early, late, attention or a manifest path")
    p.add_argument("--cameras", type=int, default=1, metavar="N",
                   help=f"cameras cam0..camN-1 into one perceive, scored per camera (1 to {MAX_CAMERAS}; "
                        "default 1): a sample with N cameras, or a --session that has them")
    p.add_argument("--classes", metavar="NAMES",
                   help="object classes to report and score, comma-separated COCO names (default: "
                        "person,bicycle,car,motorcycle,bus,truck,cat,dog; none: objects off)")
    p.add_argument("--session", metavar="FILE",
                   help="replay this log (cam0/frame + mic0/audio16k) instead of the bundled sample; "
                        "scored where it carries labels")
    p.add_argument("--out", metavar="DIR",
                   help="directory for the events JSONL, the recording and the report (default: the user cache)")
    p.add_argument("--force", action="store_true", help="replace earlier demo outputs in --out DIR")
    view.add_arguments(p)
    p.set_defaults(func=_cmd_demo)
