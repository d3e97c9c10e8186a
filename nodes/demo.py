"""`sensorfuse demo`: the built-in demo graph.

Until the perception graph exists this runs the engine's synthetic relay graph
(engine/graphs/demo.yaml). The perception issue replaces it with: build the model pack if
needed, generate a sample session if needed, run player → aligner → perceive → sinks,
and print a summary against the session's ground truth.
"""

from __future__ import annotations

import argparse
from typing import Any

from engine.cli import run_graph


def _cmd_demo(args: argparse.Namespace) -> int:
    return run_graph("demo", duration=args.duration)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "demo", help="run the demo graph on the bundled sample session",
        description="run the demo graph on the bundled sample session",
        epilog="examples:\n  sensorfuse demo\n  sensorfuse demo --duration 20",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.set_defaults(func=_cmd_demo)
