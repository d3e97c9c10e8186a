"""`sensorfuse` subcommands from the replay package: replay, record, sample, log.

Registered through the ``sensorfuse.commands`` entry point (`register`). User mistakes
raise `UsageError` (one line, exit 2); runtime failures `SensorfuseError` (exit 1).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from sensorfuse.engine.errors import SensorfuseError, UsageError

EXAMPLES = {
    "replay": """examples:
  sensorfuse replay s.mcap --rate max                 # as fast as the graph takes it, nothing dropped
  sensorfuse replay s.mcap --rate 2 --start 5 --end 15 --streams cam0/frame mic0/audio16k
  sensorfuse replay s.mcap --graph my-perception.yaml # your graph, capture nodes replaced by the log
  sensorfuse replay s.mcap --rate max --out events.jsonl""",
    "record": """examples:
  sensorfuse record -o s.mcap --graph live.yaml --duration 60
  sensorfuse record -o s.mcap --graph live.yaml --streams cam0/frame mic0/audio --split-mb 512""",
    "sample": """examples:
  sensorfuse sample -o s.mcap                         # 20 s, seed 0 (training media)
  sensorfuse sample -o eval.mcap --seed 1000003       # held-out media (seeds >= 1000000)""",
    "log": """examples:
  sensorfuse log info s.mcap
  sensorfuse log export s.mcap --to out/              # PNG frames, WAV audio, JSONL records/text
  sensorfuse log import --video clip.mp4 --wav clip.wav --text lines.txt -o s.mcap""",
}


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


def register(subparsers: Any) -> None:
    p = _parser(subparsers, "replay", "replay an MCAP log through a graph (same topics, headers, timestamps)")
    p.add_argument("file")
    p.add_argument("--rate", type=_rate, default=1.0, help="speed factor, or 'max' (lock-step, nothing dropped)")
    p.add_argument("--start", type=float, help="seconds from the log's start")
    p.add_argument("--end", type=float, help="seconds from the log's start")
    p.add_argument("--loop", action="store_true", help="replay forever (time and seq keep rising)")
    p.add_argument("--streams", nargs="+", help="replay only these streams")
    p.add_argument("--graph", help="graph YAML to run on the log; nodes producing recorded streams are replaced")
    p.add_argument("--out", help="JSONL file the replayed streams are written to (default: none with --graph, "
                                 "else replay.jsonl)")
    p.add_argument("--run-dir", help="directory for sockets and status")
    p.set_defaults(func=cmd_replay)

    p = _parser(subparsers, "record", "run a graph and record its streams to MCAP")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--graph", required=True, help="graph YAML (or built-in name) whose streams are recorded")
    p.add_argument("--streams", nargs="+", help="record only these streams (default: all the graph produces)")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--split-mb", type=float)
    p.add_argument("--split-s", type=float)
    p.add_argument("--jpeg", nargs="+", default=[], metavar="STREAM", help="store these frame streams as JPEG")
    p.add_argument("--force", action="store_true", help="overwrite OUTPUT if it exists")
    p.add_argument("--run-dir", help="directory for sockets and status")
    p.set_defaults(func=cmd_record)

    p = _parser(subparsers, "sample", "generate a labelled sample session from packaged media")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--duration", type=float, default=20.0, help="seconds (default 20)")
    p.add_argument("--size", default="320x240", help="frame size WxH (default 320x240)")
    p.add_argument("--fps", type=float, default=15.0)
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
    q.add_argument("--to", required=True, metavar="DIR")
    q.add_argument("--streams", nargs="+")
    q.set_defaults(func=cmd_log_export)
    q = lsub.add_parser("import", help="video + WAV + timed text file → a session log", epilog=EXAMPLES["log"],
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    q.add_argument("-o", "--output", required=True)
    q.add_argument("--video")
    q.add_argument("--wav")
    q.add_argument("--text", help="lines 'SECONDS text'")
    q.add_argument("--session", default="imported")
    q.set_defaults(func=cmd_log_import)


def _existing_log(path: str) -> None:
    if not os.path.isfile(path):
        raise UsageError(f"no such log: {path}")


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


def replay_graph(path: str, *, rate: float | str = 1.0, start: float | None = None, end: float | None = None,
                 loop: bool = False, streams: list[str] | None = None, graph: dict[str, Any] | None = None,
                 out: str | None = None) -> dict[str, Any]:
    """The graph `sensorfuse replay` runs: a player node plus `graph` (its nodes that
    produce recorded streams removed) and/or a JSONL sink of every replayed stream."""
    available = _log_streams(path)
    if not available:
        raise UsageError(f"{path}: no readable message to replay (damaged before its first complete chunk?); "
                         f"`sensorfuse log info {path}` lists its problems")
    selected = streams or available
    missing = sorted(set(selected) - set(available))
    if missing:
        raise UsageError(f"{path} has no stream(s) {', '.join(missing)}; it has {', '.join(available)}")
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
    consumed = {(u if isinstance(u, str) else u["stream"]) for nd in nodes.values()
                for u in (nd.get("inputs") or {}).values()}
    if graph is None or out:
        policy = "block" if rate == "max" else "drop_oldest"
        nodes["replay_sink"] = {"kind": "jsonl", "params": {"path": os.path.abspath(out or "replay.jsonl")},
                                "inputs": {f"in{i}": {"stream": s, "policy": policy, "queue": 256}
                                           for i, s in enumerate(selected)}}
        consumed |= set(selected)
    wired = [s for s in selected if s in consumed]
    nodes["player"] = {"kind": "player", "params": {**params, "streams": wired}, "outputs": {s: s for s in wired}}
    return {"name": name, "nodes": {"player": nodes.pop("player"), **nodes}}


def cmd_replay(args: argparse.Namespace) -> int:
    from sensorfuse.engine.cli import run_graph
    from sensorfuse.engine.graph import read_yaml
    from sensorfuse.engine.rundir import new_run_dir
    from sensorfuse.replay import logtools
    from sensorfuse.replay.progress import ProgressWatcher

    _existing_log(args.file)
    graph = None
    if args.graph:
        graph = read_yaml(args.graph)  # the graph files' rules: YAML 1.2 booleans, no duplicate keys
    g = replay_graph(args.file, rate=args.rate, start=args.start, end=args.end, loop=args.loop,
                     streams=args.streams, graph=graph, out=args.out)
    info = logtools.info(args.file)
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
        code = run_graph(g, run_dir=str(run_dir), summary=False)  # replay_summary below
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

    from sensorfuse.engine import graph as graph_mod
    from sensorfuse.engine.cli import run_graph

    if os.path.exists(args.output):
        if not args.force:
            raise UsageError(f"{args.output} exists (use --force to overwrite)")
        os.remove(args.output)
    # A YAML path or a built-in graph name; the parsed declaration is the one source of truth.
    g: dict[str, Any] = msgspec.to_builtins(graph_mod.load_decl(args.graph))
    produced = sorted({s for nd in g["nodes"].values() for s in (nd.get("outputs") or {}).values()})
    wanted = args.streams or produced
    missing = sorted(set(wanted) - set(produced))
    if missing:
        raise UsageError(f"graph {args.graph} produces no stream(s) {', '.join(missing)}")
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


def cmd_sample(args: argparse.Namespace) -> int:
    from sensorfuse.replay.sample import generate

    try:
        w, h = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        raise UsageError(f"--size wants WxH, e.g. 320x240, got {args.size!r}") from None
    if args.duration <= 0 or args.fps <= 0 or w < 64 or h < 48:
        raise UsageError("--duration and --fps must be > 0, --size at least 64x48")
    summary = generate(args.output, seed=args.seed, duration_s=args.duration, size=(w, h), fps=args.fps)
    streams = ", ".join(f"{k} {v}" for k, v in summary["streams"].items())
    print(f"wrote {args.output}: seed {args.seed} ({summary['split']} media), {streams}")
    return 0


def cmd_log_info(args: argparse.Namespace) -> int:
    from sensorfuse.replay import logtools
    from sensorfuse.replay.mcap_io import LogError

    _existing_log(args.file)
    try:
        d = logtools.info(args.file)
    except LogError as exc:
        raise SensorfuseError(str(exc)) from None
    print(json.dumps(d, indent=1) if args.json else logtools.render_info(d))
    unreadable = d["messages"] and sum(s["damaged"] for s in d["streams"]) == d["messages"]
    return 1 if (d["problems"] and not d["messages"]) or unreadable else 0


def cmd_log_export(args: argparse.Namespace) -> int:
    from sensorfuse.replay import logtools
    from sensorfuse.replay.mcap_io import LogError

    _existing_log(args.file)
    try:
        written = logtools.export(args.file, args.to, args.streams)
    except LogError as exc:
        raise SensorfuseError(str(exc)) from None
    for topic, n in sorted(written.items()):
        print(f"{topic}: {n}")
    if not any(written.values()):
        d = logtools.info(args.file)
        reasons = sorted({s["damage_reason"] for s in d["streams"] if s["damage_reason"]} | set(d["problems"]))
        raise SensorfuseError(f"nothing exported from {args.file}" + (f": {reasons[0]}" if reasons else ""))
    return 0


def cmd_log_import(args: argparse.Namespace) -> int:
    from sensorfuse.replay import logtools

    if not (args.video or args.wav or args.text):
        raise UsageError("log import needs at least one of --video, --wav, --text")
    for f in (args.video, args.wav, args.text):
        if f and not os.path.isfile(f):
            raise UsageError(f"no such file: {f}")
    try:
        counts = logtools.import_session(args.output, video=args.video, wav=args.wav, text=args.text,
                                         session=args.session)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    print(f"wrote {args.output}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0
