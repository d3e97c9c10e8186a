"""A picture of a graph: Graphviz dot, rendered to SVG or PNG by the `dot` program.

`sensorfuse graph show GRAPH [-o FILE]`. One box per node (name, kind, host when not
local); one edge per stream and reader, labelled with the stream and the reader's input
policy and queue; streams from outside programs (`external.inputs`) come from a box
naming their endpoint, exposed streams (`expose:`) go to one, and a stream nobody in the
graph reads ends in its bare name, so every stream of the graph is on the picture.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from sensorfuse.engine.errors import SensorfuseError, UsageError
from sensorfuse.engine.files import atomic_output
from sensorfuse.engine.graph import GraphPlan

#: Output suffixes: written as dot text, or rendered by `dot -T<format>`.
DOT_SUFFIXES = (".dot", ".gv")
RENDERED = {".svg": "svg", ".png": "png"}
APT_PACKAGE = "graphviz"


def _q(text: str) -> str:
    """A dot double-quoted string; a line break in `text` becomes dot's own."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(plan: GraphPlan) -> str:
    lines = [f"digraph {_q(plan.name)} {{", "  rankdir=LR;",
             '  node [shape=box, style=rounded, fontname="Helvetica"];',
             '  edge [fontname="Helvetica", fontsize=10];']
    for name in plan.order:
        np_ = plan.nodes[name]
        label = "\n".join([name, np_.kind] + ([] if np_.host == "local" else [f"host {np_.host}"]))
        lines.append(f"  {_q(name)} [label={_q(label)}];")
    for stream, endpoint in plan.decl.external.inputs.items():
        label = _q("outside program\n" + endpoint)
        lines.append(f"  {_q('external:' + stream)} [shape=cds, style=dashed, label={label}];")
    read: set[str] = set()
    for name in plan.order:
        for ip in plan.nodes[name].inputs:
            read.add(ip.stream)
            source = plan.producers[ip.stream] or f"external:{ip.stream}"
            label = _q(f"{ip.stream}\n{ip.policy}, queue {ip.queue}")
            lines.append(f"  {_q(source)} -> {_q(name)} [label={label}];")
    for name in plan.order:
        np_ = plan.nodes[name]
        exposed = plan.decl.nodes[name].expose
        for stream in np_.outputs.values():
            if stream in exposed:
                target = f"expose:{stream}"
                label = _q("outside readers\n" + exposed[stream])
                lines.append(f"  {_q(target)} [shape=note, style=dashed, label={label}];")
                lines.append(f"  {_q(name)} -> {_q(target)} [style=dashed, label={_q(stream)}];")
            elif stream not in read:
                target = f"unread:{stream}"
                lines.append(f"  {_q(target)} [shape=plaintext, label={_q(stream)}];")
                lines.append(f"  {_q(name)} -> {_q(target)} [style=dotted];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def write(plan: GraphPlan, out: str | None, *, force: bool = False) -> None:
    """The picture to `out` (.dot/.gv as text, .svg/.png rendered), or dot text to stdout."""
    text = to_dot(plan)
    if out is None:
        print(text, end="")
        return
    suffix = Path(out).suffix.lower()
    if suffix in DOT_SUFFIXES:
        data = text.encode()
    elif suffix in RENDERED:
        data = render(text, RENDERED[suffix])
    else:
        raise UsageError(f"graph show -o {out}: unknown picture type {suffix or '(none)'!r}; "
                         f"use {', '.join([*DOT_SUFFIXES, *RENDERED])}")
    with atomic_output(out, force=force) as f:
        f.write(data)


def render(text: str, fmt: str) -> bytes:
    dot = shutil.which("dot")
    if dot is None:
        raise SensorfuseError(f"rendering {fmt.upper()} needs Graphviz's `dot` program: apt-get install {APT_PACKAGE} "
                              "(or write the .dot text with -o FILE.dot)")
    done = subprocess.run([dot, f"-T{fmt}"], input=text.encode(), capture_output=True, timeout=60, check=False)
    if done.returncode != 0:
        why = done.stderr.decode(errors="replace").strip().splitlines()
        raise SensorfuseError(f"dot -T{fmt} failed (exit {done.returncode}): {why[0] if why else 'no message'}")
    return done.stdout
