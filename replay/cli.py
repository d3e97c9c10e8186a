"""`sensorfuse` subcommands from the replay package: replay, record, sample, log.

Registered through the ``sensorfuse.commands`` entry point (`register`). User mistakes
raise `UsageError` (one line, exit 2); runtime failures `SensorfuseError` (exit 1).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from sensorfuse.engine import progressbar, view
from sensorfuse.engine.errors import SensorfuseError, UsageError

EXAMPLES = {
    "replay": """examples:
  sensorfuse replay s.mcap --rate max                 # as fast as the graph takes it; ./replay.jsonl
  sensorfuse replay s.mcap --rate 2 --start 5 --end 15 --streams cam0/frame mic0/audio16k
  sensorfuse replay s.mcap --graph demo --out demo-out # a graph (built-in name or YAML) on the log
  sensorfuse replay s.mcap --rate max --out replayed  # replayed/replay.jsonl
  sensorfuse replay s.mcap --view web                 # watch it in the Rerun web viewer (URL printed)""",
    "record": """examples:
  sensorfuse record -o s.mcap --graph live --duration 60 --jpeg cam0/frame   # your camera and microphone
  sensorfuse record -o relay.mcap --graph examples/relay.yaml --streams cam0/frame --force""",
    "sample": """examples:
  sensorfuse sample -o s.mcap                         # 20 s, seed 0 (training media)
  sensorfuse sample -o eval.mcap --seed 1000003       # held-out media (seeds >= 1000000)
  sensorfuse sample -o cams.mcap --cameras 4          # cam0..cam3 over one world, faces walk between them
  sensorfuse sample -o v.mcap --seed 1000003 --vary   # its session under other lighting, sizes, insets, ...
  sensorfuse sample -o l.mcap --vary lighting,sizes   # only these axes of the variety""",
    "log": """examples:
  sensorfuse log info s.mcap
  sensorfuse log export s.mcap --to out/ --start 2 --end 4   # PNG frames, WAV audio, JSONL records/text
  sensorfuse log import --video clip.mp4 --wav clip.wav --text lines.txt --jpeg -o s.mcap
  sensorfuse log view s.mcap demo-out/demo-perception.mcap   # the session and what perceive saw in it
  sensorfuse log view s.mcap --save s.rrd                    # a Rerun recording (open it with `rerun s.rrd`)""",
}

#: Outputs are never replaced without --force (engine/files.py writes through a temporary).
FORCE_HELP = "replace existing output files"
REPLAY_JSONL = "replay.jsonl"
MAX_SAMPLE_S = 3600.0
MAX_SAMPLE_FPS = 120.0
MAX_SAMPLE_SIZE = (3840, 2160)
MAX_SAMPLE_CAMERAS = 8  # = sample_rig.MAX_CAMERAS, not imported here: numpy and cv2 would cost every command


def _parser(sub: Any, name: str, help_: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help_, description=help_, epilog=EXAMPLES[name],
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def _rate(value: str) -> float | str:
    if value == "max":
        return "max"
    try:
        rate = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--rate wants a number > 0 or 'max', got {value!r}") from None
    if not rate > 0:
        raise argparse.ArgumentTypeError(f"--rate wants a number > 0 or 'max', got {value!r}")
    return rate


def _jpeg_quality(value: str) -> int:
    try:
        quality = int(value)
    except ValueError:
        quality = 0
    if not 1 <= quality <= 100:
        raise argparse.ArgumentTypeError(f"--jpeg wants a quality from 1 to 100, got {value!r}")
    return quality


def _add_window(p: argparse.ArgumentParser) -> None:
    p.add_argument("--start", type=float, metavar="S", help="seconds from the log's first message")
    p.add_argument("--end", type=float, metavar="S", help="seconds from the log's first message (exclusive)")


def register(subparsers: Any) -> None:
    p = _parser(subparsers, "replay", "replay an MCAP log through a graph (same topics, headers, timestamps)")
    p.add_argument("file")
    p.add_argument("--rate", type=_rate, default=1.0, help="speed factor, or 'max' (lock-step, nothing dropped)")
    _add_window(p)
    p.add_argument("--loop", action="store_true", help="replay forever (time and seq keep rising)")
    p.add_argument("--streams", nargs="+", help="replay only these streams")
    p.add_argument("--graph", help="graph (YAML path or built-in name) to run on the log; nodes producing "
                                   "recorded streams are replaced")
    p.add_argument("--out", metavar="DIR", help="directory (created if missing) for the outputs: replay.jsonl "
                                                "without --graph; with --graph the graph's nodes run there, so its "
                                                "relative paths land in DIR (default: the current directory). "
                                                "A name ending in .jsonl: the replayed streams to that file")
    p.add_argument("--run-dir", help="directory for sockets and status")
    view.add_arguments(p)
    p.set_defaults(func=cmd_replay)

    p = _parser(subparsers, "record", "run a graph and record its streams to MCAP")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--graph", required=True, help="graph YAML (or built-in name) whose streams are recorded")
    p.add_argument("--streams", nargs="+", help="record only these streams (default: all the graph produces)")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--split-mb", type=float)
    p.add_argument("--split-s", type=float)
    p.add_argument("--jpeg", nargs="+", default=[], metavar="STREAM", help="store these frame streams as JPEG")
    p.add_argument("--force", action="store_true", help=FORCE_HELP)
    p.add_argument("--run-dir", help="directory for sockets and status")
    p.set_defaults(func=cmd_record)

    p = _parser(subparsers, "sample", "generate a labelled sample session from packaged media")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--seed", type=int, default=0, help="0 or more (default 0)")
    p.add_argument("--duration", type=float, default=20.0, help=f"seconds, up to {MAX_SAMPLE_S:g} (default 20)")
    p.add_argument("--size", default="320x240", help="frame size WxH (default 320x240)")
    p.add_argument("--fps", type=float, default=15.0, help=f"frames per second, up to {MAX_SAMPLE_FPS:g}")
    p.add_argument("--cameras", type=int, default=1,
                   help="cameras cam0..cam{N-1} side by side over one world, 1 to 8 (default 1)")
    p.add_argument("--vary", nargs="?", const="all", default=None, metavar="AXES",
                   help="the seed's session with variety no training session has: all (alone: all) or a comma "
                        "list of lighting, sizes, insets, camera, voices, faces (docs/replay.md)")
    p.add_argument("--force", action="store_true", help=FORCE_HELP)
    p.set_defaults(func=cmd_sample)

    p = _parser(subparsers, "log", "inspect, export and import logs")
    lsub = p.add_subparsers(dest="log_command", metavar="ACTION", required=True)
    q = lsub.add_parser("info", help="streams, counts, rates, duration, gaps", epilog=EXAMPLES["log"],
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    q.add_argument("file")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_log_info)
    q = lsub.add_parser("export", help="frames as PNG, audio as WAV, records/text as JSONL", epilog=EXAMPLES["log"],
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    q.add_argument("file")
    q.add_argument("--to", required=True, metavar="DIR", help="directory (created if missing)")
    q.add_argument("--streams", nargs="+")
    _add_window(q)
    q.add_argument("--force", action="store_true", help=FORCE_HELP)
    q.set_defaults(func=cmd_log_export)
    q = lsub.add_parser("import", help="video + WAV + timed text file → a session log", epilog=EXAMPLES["log"],
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    q.add_argument("-o", "--output", required=True)
    q.add_argument("--video")
    q.add_argument("--wav")
    q.add_argument("--text", help="lines 'SECONDS text'")
    q.add_argument("--session", default="imported")
    q.add_argument("--jpeg", nargs="?", const=90, type=_jpeg_quality, metavar="QUALITY",
                   help="store frames as JPEG (quality 1-100, default 90) instead of raw")
    q.add_argument("--force", action="store_true", help=FORCE_HELP)
    q.set_defaults(func=cmd_log_import)
    q = lsub.add_parser("view", help="show logs in the Rerun viewer (native with a display, else web), "
                                     "or --save a Rerun recording", epilog=EXAMPLES["log"],
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    q.add_argument("file", nargs="+", help="MCAP logs shown together on one timeline (a session and its "
                                           "perception recording)")
    where = q.add_mutually_exclusive_group()
    where.add_argument("--save", metavar="OUT.rrd", help="write a Rerun recording instead of opening a viewer")
    where.add_argument("--web", action="store_true", help="serve the web viewer on 127.0.0.1 even with a display")
    q.add_argument("--force", action="store_true", help=FORCE_HELP)
    q.set_defaults(func=cmd_log_view)


def _open_log(path: str) -> None:
    """Refuse what is not a readable MCAP file, the same way (exit 2) in every command."""
    from sensorfuse.replay.mcap_io import LogError, LogReader

    if not os.path.isfile(path):
        raise UsageError(f"no such log: {path}")
    try:
        LogReader(path).close()
    except LogError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None


def _log_streams(path: str) -> list[str]:
    from sensorfuse.replay.mcap_io import LogError, LogReader

    from sensorfuse.replay.schemas import SCHEMAS

    try:
        with LogReader(path) as reader:
            if reader.summary is not None:
                names = {s.id: s.name for s in reader.summary.schemas.values()}
                channels = {c.topic: names.get(c.schema_id, "") for c in reader.summary.channels.values()}
            else:
                channels = {m.topic: m.schema for m in reader.iter_messages()}
    except LogError as exc:
        raise UsageError(str(exc)) from None
    ours = sorted(topic for topic, schema in channels.items() if schema in SCHEMAS)
    if channels and not ours:
        foreign = ", ".join(sorted({s or "(none)" for s in channels.values()}))
        raise UsageError(f"{path} is not a sensorfuse log: its channels use schemas {foreign}; sensorfuse replays "
                         "logs it wrote (`sensorfuse record`, `sample`, `log import`)")
    return ours


def _check_streams(path: str, wanted: list[str] | None, available: list[str]) -> None:
    missing = sorted(set(wanted or ()) - set(available))
    if missing:
        raise UsageError(f"{path} has no stream(s) {', '.join(missing)}; it has {', '.join(available) or 'none'}")


def check_window(path: str, start: float | None, end: float | None, duration_s: float) -> None:
    """`--start/--end` (seconds from the log's first message) against a log `duration_s` long."""
    for flag, value in (("--start", start), ("--end", end)):
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise UsageError(f"{flag} wants seconds >= 0 from the log's start, got {value:g}")
    if end is not None and end <= (start or 0.0):
        raise UsageError(f"--end {end:g} is not after --start {start or 0.0:g}")
    if start is not None and start > duration_s:
        raise UsageError(f"--start {start:g} is past the end of {path} ({duration_s:.1f} s long)")


def replay_graph(path: str, *, rate: float | str = 1.0, start: float | None = None, end: float | None = None,
                 loop: bool = False, streams: list[str] | None = None, graph: dict[str, Any] | None = None,
                 out: str | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The graph `sensorfuse replay` runs: a player node plus `graph` (its nodes that
    produce recorded streams removed) and/or a JSONL sink of every replayed stream
    written to `out` (a file path); `extra` nodes (the viewer) are added as they are."""
    available = _log_streams(path)
    if not available:
        raise UsageError(f"{path}: no readable message to replay (damaged before its first complete chunk?); "
                         f"`sensorfuse log info {path}` lists its problems")
    _check_streams(path, streams, available)
    selected = streams or available
    params: dict[str, Any] = {"path": os.path.abspath(path), "rate": rate, "loop": loop, "streams": selected}
    if start is not None:
        params["start_s"] = start
    if end is not None:
        params["end_s"] = end
    nodes: dict[str, Any] = {}
    name = "replay"
    if graph is not None:
        name = graph.get("name", "replay")
        for node_name, nd in graph.get("nodes", {}).items():
            if set((nd.get("outputs") or {}).values()) & set(selected):
                continue  # a capture node: the log replaces it
            nodes[node_name] = nd
    nodes.update(extra or {})
    consumed = {(u if isinstance(u, str) else u["stream"]) for nd in nodes.values()
                for u in (nd.get("inputs") or {}).values()}
    if graph is None or out:
        policy = "block" if rate == "max" else "drop_oldest"
        nodes["replay_sink"] = {"kind": "jsonl", "params": {"path": os.path.abspath(out or REPLAY_JSONL)},
                                "inputs": {f"in{i}": {"stream": s, "policy": policy, "queue": 256}
                                           for i, s in enumerate(selected)}}
        consumed |= set(selected)
    wired = [s for s in selected if s in consumed]
    nodes["player"] = {"kind": "player", "params": {**params, "streams": wired}, "outputs": {s: s for s in wired}}
    # The graph's other settings (supervisor, security, hosts) carry over.
    return {**(graph or {}), "name": name, "nodes": {"player": nodes.pop("player"), **nodes}}


def _out_dir(out: str | None) -> str | None:
    """`replay --out DIR`: created if missing; a file there is refused."""
    if out is None or _is_jsonl_file(out):
        return None
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--out wants a directory; {out} is a file")
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create --out directory {out}: {exc.strerror or exc}") from None
    return os.path.abspath(out)


def _is_jsonl_file(out: str) -> bool:
    return out.endswith(".jsonl") and not os.path.isdir(out)


def cmd_replay(args: argparse.Namespace) -> int:
    import msgspec

    from sensorfuse.engine import graph as graph_mod
    from sensorfuse.replay import logtools

    _open_log(args.file)
    # A YAML path or a built-in graph name, as `run` takes them.
    graph = msgspec.to_builtins(graph_mod.load_decl(args.graph)) if args.graph else None
    info = logtools.info(args.file)
    check_window(args.file, args.start, args.end, info["duration_s"])
    out_dir = _out_dir(args.out)
    sink = None if graph is not None else os.path.join(out_dir or ".", REPLAY_JSONL)
    if args.out and _is_jsonl_file(args.out):  # the older form: the replayed streams to that file
        sink = args.out
    with view.viewing(view.mode(args)) as viewer:
        extra = None
        if viewer is not None:  # the log's streams and the graph's outputs, whichever it draws
            graph_nodes = (graph or {}).get("nodes", {})
            drawn = {*(args.streams or _log_streams(args.file)),
                     *(s for nd in graph_nodes.values() for s in (nd.get("outputs") or {}).values())}
            extra = {viewer.node_name(graph_nodes): viewer.node(drawn)}
        g = replay_graph(args.file, rate=args.rate, start=args.start, end=args.end, loop=args.loop,
                         streams=args.streams, graph=graph, out=sink, extra=extra)
        return _run_replay(args, g, info, out_dir)


def _run_replay(args: argparse.Namespace, g: dict[str, Any], info: dict[str, Any], out_dir: str | None) -> int:
    from sensorfuse.engine.cli import run_graph
    from sensorfuse.engine.rundir import new_run_dir
    from sensorfuse.replay.progress import ProgressWatcher

    wired = list(g["nodes"]["player"]["outputs"])
    counts = {s["topic"]: s["count"] for s in info["streams"]}
    start_s = args.start or 0.0
    end_s = info["duration_s"] if args.end is None else min(args.end, info["duration_s"])
    # The message total is exact only for a whole, single pass; otherwise progress is by time.
    total = sum(counts.get(s, 0) for s in wired) if args.start is None and args.end is None and not args.loop else None
    print(f"replaying {args.file}: {info['messages']} messages, {info['duration_s']:.1f} s, "
          f"rate {args.rate}", file=sys.stderr)
    run_dir = new_run_dir(args.run_dir)
    watcher = ProgressWatcher(run_dir, sys.stderr, start_s=start_s, end_s=end_s, total=total).start()
    t0 = time.monotonic()
    try:
        code = run_graph(g, run_dir=str(run_dir), summary=False, cwd=out_dir)  # replay_summary below
    finally:
        watcher.stop()
    player = _player_status(run_dir)
    print(replay_summary(code, wired, player, time.monotonic() - t0), file=sys.stderr)
    published = int((player.get("gauges") or {}).get("replay_published", 0))
    damaged = {s: st.get("rejected", {}).get("damaged", 0) for s, st in (player.get("streams") or {}).items()}
    if code == 0 and published == 0 and sum(damaged.values()):
        raise SensorfuseError(f"nothing in {args.file} could be replayed: {sum(damaged.values())} messages damaged "
                              f"or of another protocol version (`sensorfuse log info {args.file}` names why)")
    return code
def _player_status(run_dir: Path) -> dict[str, Any]:
    try:
        status = json.loads((run_dir / "status.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return (status.get("nodes") or {}).get("player") or {}


def replay_summary(code: int, wired: list[str], player: dict[str, Any], wall_s: float) -> str:
    """The final line: exit code, messages per stream, event time covered and the speed."""
    gauges = player.get("gauges") or {}
    published = {s: int(gauges.get(f"replay_published:{s}", 0)) for s in wired}
    line = f"replay finished (exit {code}): {sum(published.values())} messages in {wall_s:.1f} s"
    if "replay_position_s" in gauges and wall_s > 0:
        line += f", log position {gauges['replay_position_s']:.1f} s"
    if published:
        line += "; " + ", ".join(f"{s} {n}" for s, n in published.items())
    return line


def cmd_record(args: argparse.Namespace) -> int:
    import msgspec

    from sensorfuse.engine import files
    from sensorfuse.engine import graph as graph_mod
    from sensorfuse.engine.cli import run_graph

    # The recorder node writes OUTPUT itself (its crash-recovery contract); what can be
    # checked before the graph starts is checked here, by creating a file beside OUTPUT.
    files.check_output(args.output, force=args.force)
    # A YAML path or a built-in graph name; the parsed declaration is the one source of truth.
    g: dict[str, Any] = msgspec.to_builtins(graph_mod.load_decl(args.graph))
    produced = sorted({s for nd in g["nodes"].values() for s in (nd.get("outputs") or {}).values()})
    wanted = args.streams or produced
    missing = sorted(set(wanted) - set(produced))
    if missing:
        raise UsageError(f"graph {args.graph} produces no stream(s) {', '.join(missing)}")
    if os.path.exists(args.output):  # --force: the recorder never overwrites, it would write NAME.1.mcap
        os.remove(args.output)
    params: dict[str, Any] = {"path": os.path.abspath(args.output), "jpeg": args.jpeg}
    if args.split_mb:
        params["split_mb"] = args.split_mb
    if args.split_s:
        params["split_s"] = args.split_s
    name = "recorder"
    while name in g["nodes"]:  # a graph may have a recorder of its own: keep it, add ours beside it
        name = "_" + name
    # Its status port is wired: recorder_error / recorder_summary records go somewhere a
    # user can subscribe to, and the runtime refuses a publish on an unwired port.
    g["nodes"][name] = {"kind": "recorder", "params": params, "inputs": {f"in{i}": s for i, s in enumerate(wanted)},
                        "outputs": {"status": f"{name}/status"}}
    return run_graph(g, duration=args.duration, run_dir=args.run_dir)


def _sample_size(args: argparse.Namespace) -> tuple[int, int]:
    """Checked `sample` arguments: one line naming the flag and value for each mistake."""
    try:
        w, h = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        raise UsageError(f"--size wants WxH, e.g. 320x240, got {args.size!r}") from None
    if not (64 <= w <= MAX_SAMPLE_SIZE[0] and 48 <= h <= MAX_SAMPLE_SIZE[1]):
        raise UsageError(f"--size wants 64x48 to {MAX_SAMPLE_SIZE[0]}x{MAX_SAMPLE_SIZE[1]}, got {args.size}")
    if args.seed < 0:
        raise UsageError(f"--seed wants an integer >= 0, got {args.seed}")
    if not 0 < args.duration <= MAX_SAMPLE_S:  # false for nan too
        raise UsageError(f"--duration wants seconds > 0 and <= {MAX_SAMPLE_S:g}, got {args.duration:g}")
    if not 0 < args.fps <= MAX_SAMPLE_FPS:
        raise UsageError(f"--fps wants a rate > 0 and <= {MAX_SAMPLE_FPS:g}, got {args.fps:g}")
    if args.duration * args.fps < 1:
        raise UsageError(f"--duration {args.duration:g} at --fps {args.fps:g} gives no frame")
    if not 1 <= args.cameras <= MAX_SAMPLE_CAMERAS:
        raise UsageError(f"--cameras wants 1 to {MAX_SAMPLE_CAMERAS}, got {args.cameras}")
    return w, h


def cmd_sample(args: argparse.Namespace) -> int:
    from sensorfuse.engine import files
    from sensorfuse.replay.sample import generate
    from sensorfuse.replay.sample_vary import parse_axes

    size = _sample_size(args)
    axes = parse_axes(args.vary)
    files.check_output(args.output, force=args.force)  # before the work, not after
    try:
        with progressbar.bar(total=args.duration, desc="sample", unit="s") as bar:
            summary = generate(args.output, seed=args.seed, duration_s=args.duration, size=size, fps=args.fps,
                               cameras=args.cameras, vary=axes, force=args.force, on_progress=lambda t_s: progressbar.reach(bar, round(t_s, 1)))
    except OSError as exc:
        raise SensorfuseError(f"cannot write {args.output}: {exc.strerror or exc}") from None
    streams = ", ".join(f"{k} {v}" for k, v in summary["streams"].items())
    varied = f", varied: {', '.join(summary['variety']['axes'])}" if axes else ""
    print(f"wrote {args.output}: seed {args.seed} ({summary['split']} media{varied}), {streams}")
    return 0


def cmd_log_info(args: argparse.Namespace) -> int:
    from sensorfuse.replay import logtools

    _open_log(args.file)
    d = logtools.info(args.file)
    print(json.dumps(d, indent=1) if args.json else logtools.render_info(d))
    unreadable = d["messages"] and sum(s["damaged"] for s in d["streams"]) == d["messages"]
    return 1 if (d["problems"] and not d["messages"]) or unreadable else 0


def cmd_log_export(args: argparse.Namespace) -> int:
    from sensorfuse.engine import files
    from sensorfuse.replay import logtools
    from sensorfuse.replay.mcap_io import LogReader

    _open_log(args.file)
    if args.streams:
        _check_streams(args.file, args.streams, _log_streams(args.file))
    if args.start is not None or args.end is not None:
        with LogReader(args.file) as reader:
            first_ns, last_ns = reader.time_range()
        check_window(args.file, args.start, args.end, (last_ns - first_ns) / 1e9)
    try:
        with files.atomic_dir(args.to, force=args.force) as tmp:
            with progressbar.bar(desc="export", unit="msg") as bar:
                written, problems = logtools.export(args.file, tmp, args.streams, start_s=args.start, end_s=args.end,
                                                    on_progress=lambda n, total: progressbar.reach(bar, n, total))
            if not any(written.values()):
                d = logtools.info(args.file)
                # the reader's last problem is where reading ended: the most telling
                reasons = [*d["problems"], *(s["damage_reason"] for s in d["streams"] if s["damage_reason"])]
                if reasons:
                    why = f": {reasons[-1] if d['problems'] else reasons[0]}"
                else:
                    why = " in that time range" if args.start is not None or args.end is not None else ""
                raise SensorfuseError(f"nothing exported from {args.file}{why}")
    except OSError as exc:
        raise SensorfuseError(f"cannot export to {args.to}: {exc.strerror or exc}") from None
    for topic, n in sorted(written.items()):
        print(f"{topic}: {n}")
    if problems:  # as replay does: the readable part is the export, and the user is told
        print(f"sensorfuse: warning: exported the readable part of {args.file}: {problems[0]} "
              f"(`sensorfuse log info {args.file}` lists every problem)", file=sys.stderr)
    return 0


def cmd_log_import(args: argparse.Namespace) -> int:
    from sensorfuse.engine import files
    from sensorfuse.replay import logtools

    if not (args.video or args.wav or args.text):
        raise UsageError("log import needs at least one of --video, --wav, --text")
    for f in (args.video, args.wav, args.text):
        if f and not os.path.isfile(f):
            raise UsageError(f"no such file: {f}")
    files.check_output(args.output, force=args.force)
    try:
        with progressbar.bar(desc="import", unit="frame") as bar:
            counts = logtools.import_session(args.output, video=args.video, wav=args.wav, text=args.text,
                                             session=args.session, jpeg_quality=args.jpeg, force=args.force,
                                             on_progress=lambda n, total: progressbar.reach(bar, n, total))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise SensorfuseError(f"cannot write {args.output}: {exc.strerror or exc}") from None
    print(f"wrote {args.output}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


def cmd_log_view(args: argparse.Namespace) -> int:
    from sensorfuse.engine import files

    for path in args.file:
        _open_log(path)
    if args.save:
        files.check_output(args.save, force=args.force)
        if os.path.exists(args.save):  # --force
            os.remove(args.save)
    from sensorfuse.nodes.view import has_display, session  # the viewer lives above replay's log tools
    from sensorfuse.nodes.view_log import view_logs

    mode = f"rrd:{args.save}" if args.save else "native" if has_display() and not args.web else "web"
    with session(mode) as viewer:
        counts = view_logs(args.file, viewer)
        if not any(n for s, n in counts.items() if s != "damaged"):
            raise SensorfuseError(f"nothing in {', '.join(args.file)} could be shown"
                                  + (f" ({counts['damaged']} messages damaged)" if counts["damaged"] else ""))
        print(", ".join(f"{s} {n}" for s, n in sorted(counts.items())), file=sys.stderr, flush=True)
    return 0
