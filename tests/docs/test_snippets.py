"""Every fenced code snippet in README.md and docs/*.md is run or checked here.

- ```python: run as a script (`python -c`) in a fresh directory holding `s.mcap`, a short
  sample session (what `sensorfuse sample -o s.mcap` writes), with the test model pack as
  the model cache. A snippet that reads a live graph says so on the line above its fence:

      <!-- snippet: live demo, STREAM at ENDPOINT -->

  The test then runs the built-in demo graph on that session with STREAM exposed on a free
  port, puts that port's endpoint where the snippet says ENDPOINT, and expects the snippet
  to exit 0 with some output once the graph has ended (at its end of stream).
- ```yaml: parses as graph files do; one with `nodes:` is a graph and passes the planner
  (`graph check` without the files its nodes read).
- ```json: parses.
- shell (```sh, or an untagged fence with commands): every `sensorfuse ...` line parses
  with the real CLI parser (and a graph it names that exists is planned), every `make ...`
  names Makefile targets, every `.venv/bin/python FILE` names a file of the repository.
- anything else (output, diagrams, C++) is listed in `ALLOWED` with the reason it cannot run
  here; a new snippet that is neither checkable nor listed fails `test_every_snippet_is_covered`.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import sensorfuse
from sensorfuse.engine import graph as graph_mod
from sensorfuse.engine.cli import build_parser
from sensorfuse.nodes import demo
from sensorfuse.replay import sample
from sfhelpers import free_port

pytestmark = pytest.mark.timeout(240)
REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[ \t]*$")
LIVE = re.compile(r"<!--\s*snippet:\s*live demo,\s*(?P<stream>\S+) at (?P<endpoint>\S+)\s*-->")
SESSION_S = 6.0

#: (page, start of the snippet's first line) -> why it is not run here.
ALLOWED = {
    ("README.md", "2.533  perceive/events"): "output of `make demo`, not a command",
    ("README.md", "# runtime only"): "pip installs into the reader's environment; `make` installs the same from the locks",
    ("README.md", "capture processes"): "a diagram",
    ("README.md", "sensorfuse/  the package root"): "a directory listing",
    ("docs/engine.md", "[sink] ERROR cannot start"): "output of a failing node",
    ("docs/protocol.md", "// frames.cpp: one line per message of a"):
        "C++: built with its documented command and run against the demo graph by tests/clients/test_cpp_client.py",
    ("docs/protocol.md", "g++ -std=c++17 -O2 -I clients/cpp/includ"): "the C++ example's compile command, run by "
                                                                     "tests/clients/test_cpp_client.py",
    ("docs/client.md", "from sensorfuse.client import Subscriber"): "run against `sensorfuse run examples/client.yaml` "
                                                                     "by tests/clients/test_client_docs.py",
    ("docs/client.md", "import time"): "run against `sensorfuse run examples/client.yaml` by "
                                       "tests/clients/test_client_docs.py",
    ("docs/replay.md", "import json"): "reads the recording `sensorfuse demo --out demo-out` writes; "
                                       "tests/replay/test_record_schemas.py reads a recording's schemas the same way",
    ("docs/time.md", "1.233  align/ticks"): "output of the console sink",
    ("docs/cluster.md", "pip install -e '.[cluster]'"): "pip installs into the reader's environment; `make` "
                                                        "installs the same from the locks",
    ("docs/cluster.md", "kubectl apply -f sensorfuse-raycluster"): "needs a Kubernetes cluster with KubeRay; the "
                                                                   "local Ray cluster of tests/cli/test_cluster.py "
                                                                   "runs the same `--ray` path",
}


@dataclass(frozen=True)
class Snippet:
    page: str
    line: int
    lang: str
    text: str
    live: tuple[str, str] | None

    @property
    def first(self) -> str:
        return next((x.strip() for x in self.text.splitlines() if x.strip()), "")

    @property
    def allowed(self) -> str | None:
        return next((why for (page, start), why in ALLOWED.items()
                     if page == self.page and self.first.startswith(start)), None)

    @property
    def kind(self) -> str:
        if self.lang in ("python", "py"):
            return "python"
        if self.lang in ("yaml", "yml", "json"):
            return self.lang[:4].replace("yml", "yaml")
        if self.lang in ("sh", "bash", "shell", "console", "") and any(_command(x) for x in self.text.splitlines()):
            return "shell"
        return "other"


def _command(line: str) -> str | None:
    words = line.strip().split(maxsplit=1)
    return words[0] if words and words[0] in ("sensorfuse", "make", ".venv/bin/python") else None


def extract(path: Path) -> list[Snippet]:
    lines = path.read_text(encoding="utf-8").splitlines()
    out, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent = len(m["indent"])
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), len(lines))
        body = "\n".join(x[indent:] if not x[:indent].strip() else x for x in lines[i + 1:end])
        before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        live = LIVE.search(before)
        out.append(Snippet(str(path.relative_to(REPO)), i + 1, m["lang"].lower(), body + "\n",
                           (live["stream"], live["endpoint"]) if live else None))
        i = end + 1
    return out


SNIPPETS = [s for page in PAGES for s in extract(page)]
CHECKED = [s for s in SNIPPETS if s.allowed is None]


def test_every_snippet_is_covered() -> None:
    assert len(SNIPPETS) > 20
    unchecked = [f"{s.page}:{s.line} ({s.lang or 'untagged'}: {s.first[:40]!r})" for s in CHECKED if s.kind == "other"]
    assert unchecked == [], "snippets neither run nor checked: make them runnable or list them in ALLOWED with a reason"
    stale = [key for key in ALLOWED if not any(s.page == key[0] and s.first.startswith(key[1]) for s in SNIPPETS)]
    assert stale == [], "ALLOWED entries that match no snippet any more"


# -- python ------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def snippet_session(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("snippets") / "s.mcap"
    sample.generate(path, seed=demo.DEMO_SEED, duration_s=SESSION_S)
    return path


def _live_graph(session: Path, out: Path, cache: Path, stream: str, endpoint: str) -> dict[str, Any]:
    graph = demo.demo_graph(session, out, rate="max", cache=cache, quiet=True)
    producer = next(n for n, nd in graph["nodes"].items() if stream in nd.get("outputs", {}).values())
    graph["nodes"][producer]["expose"] = {stream: endpoint}
    return graph


@pytest.mark.parametrize("snippet", [s for s in CHECKED if s.kind == "python"], ids=lambda s: f"{s.page}:{s.line}")
def test_python(snippet: Snippet, snippet_session: Path, model_cache: Path, tmp_path: Path) -> None:
    (tmp_path / "s.mcap").symlink_to(snippet_session)
    env = {**os.environ, "SENSORFUSE_MODEL_CACHE": str(model_cache),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    text = snippet.text
    if snippet.live is None:
        done = subprocess.run([sys.executable, "-c", text], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=180)
        assert done.returncode == 0, f"{snippet.page}:{snippet.line}\n{done.stderr[-3000:]}"
        return
    stream, placeholder = snippet.live
    assert placeholder in text, f"{snippet.page}:{snippet.line} does not use {placeholder}"
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    reader = subprocess.Popen([sys.executable, "-c", text.replace(placeholder, endpoint)], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out = tmp_path / "graph-out"
        out.mkdir()
        with sensorfuse.run(_live_graph(snippet_session, out, model_cache, stream, endpoint), streams=[]) as g:
            assert g.wait(timeout=150).exit_code == 0
        stdout, stderr = reader.communicate(timeout=30)
    finally:
        reader.kill()
    assert reader.returncode == 0, f"{snippet.page}:{snippet.line}\n{stderr[-3000:]}"
    assert stdout.strip(), f"{snippet.page}:{snippet.line} printed nothing from the live graph"


# -- yaml, json ------------------------------------------------------------------------------------

@pytest.mark.parametrize("snippet", [s for s in CHECKED if s.kind in ("yaml", "json")],
                         ids=lambda s: f"{s.page}:{s.line}")
def test_data(snippet: Snippet) -> None:
    if snippet.kind == "json":
        json.loads(snippet.text)
        return
    data = graph_mod.parse_yaml(snippet.text, f"{snippet.page}:{snippet.line}")
    assert isinstance(data, dict) and data
    if "nodes" in data:
        graph_mod.plan(graph_mod.load_decl(data), "RUN", check_files=False)


# -- shell -------------------------------------------------------------------------------------------

MAKE_TARGETS = set(re.findall(r"^([\w.-]+)\s*:(?!=)", (REPO / "Makefile").read_text(), flags=re.MULTILINE))


def _check_sensorfuse(argv: list[str], where: str) -> None:
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            args = build_parser().parse_args(argv)
    except SystemExit:
        raise AssertionError(f"{where}: `sensorfuse {shlex.join(argv)}` does not parse: "
                             f"{err.getvalue().strip()}") from None
    graph = getattr(args, "graph", None)
    if graph and ((REPO / graph).is_file() or (graph_mod.BUILTIN_GRAPHS_DIR / f"{graph}.yaml").is_file()):
        graph_mod.plan(graph_mod.load_decl(REPO / graph if (REPO / graph).is_file() else graph), "RUN",
                       check_files=False)


@pytest.mark.parametrize("snippet", [s for s in CHECKED if s.kind == "shell"], ids=lambda s: f"{s.page}:{s.line}")
def test_shell(snippet: Snippet) -> None:
    for n, line in enumerate(snippet.text.splitlines()):
        command = _command(line)
        if command is None:
            continue
        where = f"{snippet.page}:{snippet.line + 1 + n}"
        words = shlex.split(line, comments=True)[1:]
        if command == "sensorfuse":
            _check_sensorfuse(words, where)
        elif command == "make":
            targets = [w for w in words if "=" not in w and not w.startswith("-")]
            assert targets and set(targets) <= MAKE_TARGETS, f"{where}: no Makefile target {targets}"
        else:
            assert (REPO / words[0]).is_file(), f"{where}: no file {words[0]}"
