"""`sensorfuse graph show`: a picture of a graph as Graphviz dot, SVG or PNG.

Every node and every stream of examples/sensors.yaml and the built-in demo graph is on it
(no media or session needed: the picture is the structure); outside endpoints too; a bad
graph, an unknown picture type or a missing `dot` program is one line.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from sensorfuse.engine import graph as graph_mod
from sensorfuse.engine import graphdot

REPO = Path(__file__).resolve().parents[2]
SENSORS = REPO / "examples" / "sensors.yaml"


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sensorfuse.engine.cli", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=90, env=env)


def names(graph: str | Path) -> tuple[set[str], set[str]]:
    decl = graph_mod.load_decl(graph)
    streams = {s for nd in decl.nodes.values() for s in nd.outputs.values()}
    streams |= {(u if isinstance(u, str) else u.stream) for nd in decl.nodes.values() for u in nd.inputs.values()}
    return set(decl.nodes), streams


def one_line_error(out: subprocess.CompletedProcess[str], code: int) -> str:
    assert out.returncode == code, (out.stdout, out.stderr)
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("graph", [str(SENSORS), "demo"])
def test_dot_names_every_node_and_stream(graph: str) -> None:
    out = cli("graph", "show", graph)
    assert out.returncode == 0, out.stderr
    dot = out.stdout
    assert dot.startswith("digraph ") and dot.rstrip().endswith("}")
    nodes, streams = names(graph)
    for node in nodes:
        assert f'"{node}" [label="{node}\\n' in dot, node
    for stream in streams:
        assert f'label="{stream}' in dot, stream
    assert "block, queue" in dot  # input policies on the edges


def test_svg_is_xml_naming_the_nodes(tmp_path: Path) -> None:
    out_file = tmp_path / "sensors.svg"
    out = cli("graph", "show", str(SENSORS), "-o", str(out_file))
    assert out.returncode == 0, out.stderr
    root = ET.parse(out_file).getroot()
    assert root.tag.endswith("svg")
    texts = {t.text for t in root.iter() if t.tag.endswith("text")}
    assert set(names(SENSORS)[0]) <= texts
    assert one_line_error(cli("graph", "show", str(SENSORS), "-o", str(out_file)), 2).endswith(
        "exists (use --force to overwrite it)")
    png = tmp_path / "sensors.png"
    assert cli("graph", "show", str(SENSORS), "-o", str(png)).returncode == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_outside_endpoints_are_drawn() -> None:
    g = {"name": "edges", "external": {"inputs": {"robot/frame": "tcp://127.0.0.1:5700"}},
         "nodes": {"relay": {"kind": "relay", "inputs": {"in": {"stream": "robot/frame", "policy": "latest"}},
                             "outputs": {"out": "relay/frame"}, "expose": {"relay/frame": "tcp://127.0.0.1:5600"}}}}
    plan = graph_mod.plan(graph_mod.load_decl(g), "RUN")
    dot = graphdot.to_dot(plan)
    assert '"external:robot/frame" -> "relay" [label="robot/frame\\nlatest, queue 8"]' in dot
    assert "tcp://127.0.0.1:5700" in dot and "tcp://127.0.0.1:5600" in dot
    assert '"relay" -> "expose:relay/frame" [style=dashed, label="relay/frame"]' in dot


def test_mistakes_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"name": "bad", "nodes": {"sink": {"kind": "jsonl", "params": {"path": "o"},
                                                                     "inputs": {"in": "no/such"}}}}))
    assert "no/such" in one_line_error(cli("graph", "show", str(bad)), 2)
    assert "no graph file" in one_line_error(cli("graph", "show", "nonesuch"), 2)
    assert "'.jpg'" in one_line_error(cli("graph", "show", "demo", "-o", str(tmp_path / "g.jpg")), 2)
    # no `dot` on PATH: say which package brings it
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}
    line = one_line_error(cli("graph", "show", "demo", "-o", str(tmp_path / "g.svg"), env=env), 1)
    assert "apt-get install graphviz" in line
    assert not (tmp_path / "g.svg").exists()
