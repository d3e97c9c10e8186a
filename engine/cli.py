"""The `sensorfuse` command line.

Commands from the engine: run, status, graph, keys, demo. Packages above the engine
(models, nodes, replay) add theirs through the ``sensorfuse.commands`` entry-point group:
each entry is ``register(subparsers)``; handlers take the parsed args and return an
exit code. User mistakes print one line and exit 2; runtime failures one line and exit 1.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import textwrap
from collections.abc import Iterable
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sensorfuse.engine import __version__, view
from sensorfuse.engine.errors import SensorfuseError, UsageError

if TYPE_CHECKING:
    from sensorfuse.engine.graph import GraphPlan

EXAMPLES = {
    "run": """examples:
  sensorfuse run examples/relay.yaml           # in a source checkout
  sensorfuse run --camera 0 --mic default      # live graph on your sensors
  sensorfuse sample -o s.mcap --duration 10    # a labelled session, then the built-in demo graph on it
  sensorfuse run demo --set player.path=s.mcap --duration 30   # (writes demo-*.jsonl/.mcap here)
  sensorfuse run demo --set player.path=s.mcap --view web      # and watch it in the Rerun web viewer
  sensorfuse run examples/relay.yaml --set producer.rate_hz=60 --run-dir /tmp/sf-run
  sensorfuse run graph.yaml --ray 10.0.0.5:6379   # nodes placed on a Ray cluster (docs/cluster.md)""",
    "status": """examples:
  sensorfuse status              # the newest run, live, until it ends (exit 1 if it failed)
  sensorfuse status --follow     # keep watching, on to the next run
  sensorfuse status --once --json

A graph run with --ray lists each host (Ray node) and the nodes on it.
states: RUNNING (also STARTING, DEGRADED, STOPPING) until the run ends as FINISHED,
STOPPED (Ctrl-C, SIGTERM, --duration) or FAILED; STALE: its supervisor is gone without
saying how it ended (killed); status then exits 1.""",
    "graph": """examples:
  sensorfuse graph check examples/relay.yaml   # validate and print derived endpoints
  sensorfuse graph show demo -o demo.svg       # a picture of the built-in demo graph (needs graphviz)
  sensorfuse graph show examples/relay.yaml | dot -Tpng -o relay.png""",
    "keys": """examples:
  sensorfuse keys generate ~/.config/sensorfuse/keys
  sensorfuse keys generate ~/.config/sensorfuse/keys --force   # replace them (peers need the new ones)""",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        self.exit(2, f"sensorfuse: {message} (see `{self.prog} --help`)\n")


def _sub(subparsers: Any, name: str, help_: str) -> argparse.ArgumentParser:
    return subparsers.add_parser(name, help=help_, description=help_, epilog=EXAMPLES.get(name),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)


def _parse_set(pairs: list[str]) -> list[tuple[str, str, Any]]:
    """NODE.PARAM=VALUE pairs; VALUE is YAML read as graph files are (`true`/`false` only are
    booleans). The node's params are validated with the rest of the graph (`graph.plan`)."""
    from sensorfuse.engine.graph import parse_yaml

    out = []
    for pair in pairs:
        key, eq, value = pair.partition("=")
        node, dot, param = key.partition(".")
        if not eq or not dot or not node or not param:
            raise UsageError(f"--set wants NODE.PARAM=VALUE, got {pair!r}")
        try:
            parsed = parse_yaml(value)
        except UsageError as exc:
            raise UsageError(f"--set {pair}: the value is {exc}") from None
        out.append((node, param, parsed))
    return out


def plan_run(source: str | os.PathLike[str] | dict[str, Any], overrides: Iterable[tuple[str, str, Any]] = (), *,
             run_dir: str | None = None, what: str = "--set") -> tuple[GraphPlan, str]:
    """A graph loaded, its (node, param, value) overrides applied and planned in a new run
    directory: the plan and the session id. `sensorfuse run` and `sensorfuse.run` start here;
    `what` names the overrides in errors."""
    from sensorfuse.engine import graph as graph_mod
    from sensorfuse.engine.rundir import new_run_dir

    decl = graph_mod.load_decl(source)
    for node, param, value in overrides:
        if node not in decl.nodes:
            raise UsageError(f"{what}: no node {node!r} in graph {decl.name!r}")
        decl.nodes[node].params[param] = value
    rd = new_run_dir(run_dir)
    return graph_mod.plan(decl, str(rd)), f"{decl.name}-{rd.name}"


def run_graph(source: str | dict[str, Any], *, sets: list[str] = (), duration: float | None = None,
              run_dir: str | None = None, host: str = "local", quiet: bool = False, summary: bool = True,
              cwd: str | None = None, ray: str | None = None) -> int:
    """Load, plan and supervise a graph until it finishes or is interrupted; returns the run's
    exit code (docs/engine.md, "Exit codes"). Unless `quiet`, or `summary=False` for callers
    that print their own, a graph that started ends with the one-screen summary on stderr;
    every reason for a non-zero exit is one `sensorfuse: ...` line after it. `cwd`: the
    nodes' working directory (relative paths in their params resolve there). `ray`: place the
    nodes on a Ray cluster at that address ("": join or start a local one; docs/cluster.md)."""
    from sensorfuse.engine import summary as summary_mod
    from sensorfuse.engine.supervisor import Supervisor

    plan, session = plan_run(source, _parse_set(list(sets)), run_dir=run_dir)
    launcher = None
    if ray is not None:
        from sensorfuse.engine.cluster import RayLauncher

        launcher = RayLauncher(plan, session=session, address=ray or None, cwd=cwd)
        plan = launcher.plan
    try:
        sup = Supervisor(plan, session=session, local_host=host, quiet=quiet, cwd=cwd, launcher=launcher)
    except BaseException:
        if launcher is not None:  # its actors hold placement resources until released
            launcher.close()
        raise

    def on_signal(signum: int, _frame: Any) -> None:
        if sup.stop_requested:  # second Ctrl-C: no more waiting
            sup.shutdown_at = -1e9
        sup.request_stop()

    old_int = signal.signal(signal.SIGINT, on_signal)
    old_term = signal.signal(signal.SIGTERM, on_signal)
    try:
        code = sup.run(duration_s=duration)
        if summary and not quiet and sup.started:
            print(summary_mod.render(sup.status(), exit_code=code), file=sys.stderr)
        for line in sup.problems():
            print(f"sensorfuse: {line}", file=sys.stderr)
        return code
    finally:
        sup.close()
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)


def _cmd_run(args: argparse.Namespace) -> int:
    sets = list(args.set)
    graph = args.graph
    if args.camera is not None or args.mic is not None:
        # Live sensors: the built-in `live` graph with its `camera` and `mic` nodes pointed at them.
        graph = graph or "live"
        if args.camera is not None:
            sets.append(f"camera.source={args.camera}")
        if args.mic is not None:
            sets.append(f"mic.device={args.mic}" if args.mic != "default" else "mic.device=null")
    if graph is None:
        raise UsageError("run needs a GRAPH (YAML path or built-in name) or --camera/--mic for the live graph")
    if args.classes is not None:
        sets.append(classes_set(args.classes))
    if args.ray is not None:
        from sensorfuse.engine.cluster import check_installed

        if args.host != "local":
            raise UsageError("--ray places every node itself: leave out --host")
        check_installed()
    view_mode = view.mode(args)
    if view_mode is not None:
        import msgspec

        from sensorfuse.engine import graph as graph_mod

        graph = msgspec.to_builtins(graph_mod.load_decl(graph))  # checked before a viewer starts
    with view.viewing(view_mode) as viewer:
        if viewer is not None:
            graph = viewer.add_to(graph)
        return run_graph(graph, sets=sets, duration=args.duration, run_dir=args.run_dir, host=args.host,
                         ray=args.ray)


def classes_set(text: str) -> str:
    """`--classes person,car` as the `--set` it stands for (the perceive node checks the names)."""
    import json

    try:
        return f"perceive.classes={json.dumps(parse_classes(text))}"
    except ValueError as exc:
        raise UsageError(f"--classes: {exc}") from None


def parse_classes(text: str) -> list[str]:
    """`person,car,traffic light` → names (`none` or an empty string: no classes, objects off);
    ValueError for an empty name between commas."""
    if text.strip().lower() in ("", "none"):
        return []
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise ValueError(f"empty class name in {text!r} (use comma-separated COCO names, e.g. person,car)")
    return names


def _cmd_status(args: argparse.Namespace) -> int:
    import json
    import shutil

    from sensorfuse.engine import status as status_mod
    from sensorfuse.engine.rundir import current_run_dir

    run_dir = Path(args.run) if args.run else current_run_dir()
    if run_dir is None or not run_dir.exists():
        raise SensorfuseError("no run found: start one with `sensorfuse run GRAPH` or pass --run DIR")
    if args.once:
        st = status_mod.read_once(run_dir)
        if st is None:
            raise SensorfuseError(f"no status from {run_dir}")
        print(json.dumps(st, indent=1) if args.json else
              status_mod.render(st, width=shutil.get_terminal_size().columns, wide=args.wide, is_newest=not args.run))
        return 0
    try:
        last = status_mod.watch(run_dir, follow=args.follow, newest=None if args.run else current_run_dir,
                                as_json=args.json, wide=args.wide, is_newest=not args.run)
    except KeyboardInterrupt:
        return 0 if args.follow else 130  # following, Ctrl-C is the way out; otherwise the run had not ended
    return status_mod.exit_code(last) if last is not None else 1


def _cmd_graph_check(args: argparse.Namespace) -> int:
    from sensorfuse.engine import graph as graph_mod

    decl = graph_mod.load_decl(args.graph)
    plan = graph_mod.plan(decl, "RUN")
    print(f"graph {plan.name!r}: {len(plan.nodes)} nodes, start order {' → '.join(plan.order)}")
    for name, np_ in plan.nodes.items():
        for stream, eps in np_.bind.items():
            print(f"  {name:<12} publishes {stream:<20} at {', '.join(eps)}")
        for ip in np_.inputs:
            print(f"  {name:<12} reads     {ip.stream:<20} policy={ip.policy} queue={ip.queue}")
    return 0


def _cmd_graph_show(args: argparse.Namespace) -> int:
    from sensorfuse.engine import graph as graph_mod
    from sensorfuse.engine import graphdot

    # The picture is the graph's structure: params are checked, the files nodes read are not.
    plan = graph_mod.plan(graph_mod.load_decl(args.graph), "RUN", check_files=False)
    graphdot.write(plan, args.out, force=args.force)
    if args.out:
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _cmd_keys_generate(args: argparse.Namespace) -> int:
    from sensorfuse.engine.security import generate

    server, client = generate(args.dir, force=args.force)
    print(f"wrote {server} and {client}; use `security: {{keys: {args.dir}}}` in the graph")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="sensorfuse",
        description="Streaming multimodal perception engine (camera, microphone, text → aligned, fused events).",
        epilog=textwrap.dedent("""\
            examples:
              sensorfuse demo                      # full graph on the bundled sample session
              sensorfuse run examples/relay.yaml   # run a graph from YAML
              sensorfuse status                    # live table of the running graph"""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"sensorfuse {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log supervisor decisions")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = _sub(sub, "run", "run a graph (YAML file or built-in name), one process per node")
    p.add_argument("graph", nargs="?", help="graph YAML path or built-in graph name (default with --camera/--mic: live)")
    p.add_argument("--camera", help="live graph: camera device index, video file or URL/GStreamer pipeline")
    p.add_argument("--mic", help="live graph: microphone name or index ('default' for the system default)")
    p.add_argument("--set", action="append", default=[], metavar="NODE.PARAM=VALUE", help="override a node parameter")
    p.add_argument("--classes", metavar="NAMES",
                   help="object classes the perceive node reports, comma-separated COCO names "
                        "(e.g. person,car; none: objects off); same as --set perceive.classes=[...]")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--run-dir", help="directory for sockets and status (default: a new one under /tmp)")
    p.add_argument("--host", default="local", help="start only the nodes placed on this host (multi-host graphs)")
    p.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                   help="start each node on a Ray node its `placement:` allows, at ADDRESS (default: join or "
                        "start a local Ray); needs the cluster extra (docs/cluster.md)")
    view.add_arguments(p)
    p.set_defaults(func=_cmd_run)

    p = _sub(sub, "status", "show node states, restarts, rates, drops and latency of a run until it ends")
    p.add_argument("--run", metavar="DIR", help="run directory (default: the newest run)")
    when = p.add_mutually_exclusive_group()
    when.add_argument("--once", action="store_true", help="print once and exit 0")
    when.add_argument("--follow", action="store_true",
                      help="keep watching after the run ends, and move to a newer run (without --run); Ctrl-C leaves")
    p.add_argument("--json", action="store_true", help="the raw status as JSON (one object per line unless --once)")
    p.add_argument("--wide", action="store_true", help="every column and drops by reason, wider than 80 columns")
    p.set_defaults(func=_cmd_status)

    force_keys = ("--force", "replace existing key pairs (peers holding the old public keys stop connecting)")
    force_picture = ("--force", "replace an existing FILE")
    groups: dict[str, Any] = {}
    for group, group_help, action, action_help, arg, func, flags in (
        ("graph", "inspect graphs", "check", "validate a graph and print its derived endpoints", "graph",
         _cmd_graph_check, ()),
        ("graph", "inspect graphs", "show", "write a picture of a graph: Graphviz dot, or SVG/PNG rendered by `dot`",
         "graph", _cmd_graph_show, (force_picture,)),
        ("keys", "manage CurveZMQ keys for endpoints bound beyond loopback", "generate",
         "write a server and a client key pair", "dir", _cmd_keys_generate, (force_keys,)),
    ):
        if group not in groups:
            p = _sub(sub, group, group_help)
            groups[group] = p.add_subparsers(dest=f"{group}_command", metavar="ACTION", required=True,
                                             parser_class=_Parser)
        a = groups[group].add_parser(action, help=action_help, description=action_help, epilog=EXAMPLES[group],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
        a.add_argument(arg)
        if func is _cmd_graph_show:
            a.add_argument("-o", "--out", metavar="FILE", help="FILE.dot (text), FILE.svg or FILE.png (default: dot "
                                                                "text on stdout)")
        for flag, flag_help in flags:
            a.add_argument(flag, action="store_true", help=flag_help)
        a.set_defaults(func=func)

    for ep in entry_points(group="sensorfuse.commands"):
        try:
            register = ep.load()
        except ImportError as exc:
            logging.getLogger("sensorfuse").debug("command %s unavailable: %s", ep.name, exc)
            continue
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(name)s %(levelname)s %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"sensorfuse: {exc}", file=sys.stderr)
        return 2
    except SensorfuseError as exc:
        print(f"sensorfuse: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
