"""`--view MODE` on the commands that run graphs (`run`, `replay`, `demo`).

The engine only parses the flag; the viewer itself (a node kind and the server it logs
to) is above the engine and found through the ``sensorfuse.view`` entry point, as node
kinds are (nodes/view.py, docs/view.md). `viewing(mode)` gives a session whose
``add_to(graph_dict)`` adds a viewer node wired to the graph's streams, or None when
`mode` is None.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from importlib.metadata import entry_points
from typing import Any

from sensorfuse.engine.errors import UsageError

VIEW_HELP = ("show what the graph sees in the Rerun viewer: web (served on 127.0.0.1, the URL is printed), "
             "native (needs a display) or rrd:PATH (a recording); docs/view.md")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--view", metavar="MODE", help=VIEW_HELP)
    parser.add_argument("--view-save", metavar="PATH", help="write what the viewer shows to a Rerun recording "
                                                            "(the same as --view rrd:PATH)")


def mode(args: argparse.Namespace) -> str | None:
    """The --view mode of parsed arguments (--view-save PATH is rrd:PATH), or None."""
    if args.view_save is not None:
        if args.view is not None:
            raise UsageError("--view and --view-save are one choice: give one of them")
        return f"rrd:{args.view_save}"
    return args.view


@contextlib.contextmanager
def viewing(view_mode: str | None) -> Iterator[Any]:
    if view_mode is None:
        yield None
        return
    providers = list(entry_points(group="sensorfuse.view"))
    if not providers:
        raise UsageError("--view: no viewer is installed (pip install 'sensorfuse[view]')")
    with providers[0].load()(view_mode) as session:
        yield session
