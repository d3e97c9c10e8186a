"""The package as a user installs it: sdist and wheel built, the wheel installed (not
editable) into a fresh venv, and used from outside the repository.

- only `sensorfuse` is installed at top level (no `engine`, `models`, ... to collide with
  an embedding project's own packages);
- every file of the tree under the mapped folders (code and the data the runtime reads:
  graphs, fusion heads, the sound model, media, labels, py.typed) is in the sdist and the
  wheel;
- in the fresh venv, which has no torch, every runtime module imports;
- the installed `sensorfuse` runs a graph, and the demo on the shipped fusion head and
  sound model, from a directory outside the repository.

The fresh venv installs the wheel's declared dependencies from the package index (pip's
cache makes that ~40 s after `make setup`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
import yaml

from sfhelpers import REPO, read_jsonl

pytestmark = pytest.mark.timeout(600)

#: repository folder -> the package it installs as (pyproject.toml [tool.setuptools] package-dir)
MAPPED = {"sensorfuse": "sensorfuse", "engine": "sensorfuse/engine", "perception": "sensorfuse/perception",
          "nodes": "sensorfuse/nodes",
          "models": "sensorfuse/models", "replay": "sensorfuse/replay"}
RUNTIME_PACKAGES = ("sensorfuse.engine", "sensorfuse.perception", "sensorfuse.nodes", "sensorfuse.replay")


def _tracked_files() -> list[str]:
    """Files under the mapped folders as git knows them (the tree a clean clone has)."""
    out = subprocess.run(["git", "ls-files", "--", *MAPPED], cwd=REPO, capture_output=True, text=True, check=True)
    return [f for f in out.stdout.splitlines() if f]


def _installed_path(tracked: str) -> str:
    top, _, rest = tracked.partition("/")
    return f"{MAPPED[top]}/{rest}"


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """`python -m build`: the sdist, then the wheel built from that sdist."""
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(REPO)],
                          capture_output=True, text=True, timeout=300, env=_clean_env())
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (wheel,) = out.glob("sensorfuse-*.whl")
    (sdist,) = out.glob("sensorfuse-*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


@pytest.fixture(scope="module")
def venv(dist: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel (and its `cpu` extra) installed; returns its bin/."""
    root = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, timeout=120)
    done = subprocess.run([str(root / "bin" / "python"), "-m", "pip", "install", "-q", f"{dist['wheel']}[cpu]"],
                          capture_output=True, text=True, timeout=540, env=_clean_env())
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "bin"


def _site_packages(bin_dir: Path) -> Path:
    out = subprocess.run([str(bin_dir / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                         capture_output=True, text=True, check=True, env=_clean_env())
    return Path(out.stdout.strip())


def test_wheel_holds_only_the_sensorfuse_package(dist: dict[str, Path]) -> None:
    names = zipfile.ZipFile(dist["wheel"]).namelist()
    tops = {n.split("/", 1)[0] for n in names}
    dist_info = {t for t in tops if t.endswith(".dist-info")}
    assert tops - dist_info == {"sensorfuse"}, sorted(tops)
    assert "sensorfuse/py.typed" in names


def test_sdist_and_wheel_hold_every_file_of_the_tree(dist: dict[str, Path]) -> None:
    tracked = _tracked_files()
    assert any(f.endswith(".onnx") for f in tracked) and any(f.endswith(".flac") for f in tracked)
    wheel = set(zipfile.ZipFile(dist["wheel"]).namelist())
    missing = [f for f in tracked if _installed_path(f) not in wheel]
    assert not missing, f"not in the wheel (add the folder to [tool.setuptools] packages): {missing}"
    with tarfile.open(dist["sdist"]) as tar:
        in_sdist = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    missing = [f for f in tracked if f not in in_sdist]
    assert not missing, f"not in the sdist: {missing}"


def test_fresh_venv_has_only_sensorfuse_at_top_level(venv: Path) -> None:
    site = _site_packages(venv)
    for old in ("engine", "perception", "nodes", "models", "replay"):
        assert not (site / old).exists() and not (site / f"{old}.py").exists(), old
    (record,) = site.glob("sensorfuse-*.dist-info/RECORD")
    tops = {line.split("/", 1)[0] for line in record.read_text().splitlines() if line}
    assert {t for t in tops if not t.endswith(".dist-info") and t != ".."} == {"sensorfuse"}, tops


def test_installed_runtime_imports_without_torch(venv: Path, tmp_path: Path) -> None:
    """Every runtime module imports in a venv that has no torch at all (so none needs it)."""
    code = (
        "import importlib, pkgutil, sys\n"
        "import sensorfuse\n"
        f"for pkg in {RUNTIME_PACKAGES!r}:\n"
        "    mod = importlib.import_module(pkg)\n"
        "    for info in pkgutil.walk_packages(mod.__path__, pkg + '.'):\n"
        "        if not info.name.endswith('__main__'): importlib.import_module(info.name)\n"
        "for name in ('sensorfuse.models.verify', 'sensorfuse.models.cli'):  # `models verify/list` at run time\n"
        "    importlib.import_module(name)\n"
        "assert 'torch' not in sys.modules\n"
        "assert sensorfuse.__file__.startswith(sys.prefix), sensorfuse.__file__\n"
        "print(sensorfuse.__version__, sensorfuse.PROTOCOL_VERSION, sensorfuse.Node.__module__)\n"
    )
    done = subprocess.run([str(venv / "python"), "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env=_clean_env())
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["0.1.0", "1", "sensorfuse.engine.node"]
    no_torch = subprocess.run([str(venv / "python"), "-c", "import torch"], capture_output=True, timeout=60)
    assert no_torch.returncode != 0, "the fresh venv should not have torch"


def test_installed_cli_runs_a_graph_outside_the_repo(venv: Path, tmp_path: Path) -> None:
    graph = yaml.safe_load((REPO / "examples" / "relay.yaml").read_text())
    graph["nodes"]["producer"]["params"].update(count=30, rate_hz=200, shape=[48, 64, 3])
    (tmp_path / "relay.yaml").write_text(yaml.safe_dump(graph))
    done = subprocess.run([str(venv / "sensorfuse"), "run", "relay.yaml"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env=_clean_env())
    assert done.returncode == 0, done.stderr[-3000:]
    lines = read_jsonl(tmp_path / graph["nodes"]["sink"]["params"]["path"])
    assert [line["seq"] for line in lines if line.get("kind") != "eos"][:30] == list(range(30))


def test_installed_demo_runs_on_the_shipped_models(venv: Path, tmp_path: Path, model_cache: Path,
                                                   demo_session: Path) -> None:
    """`sensorfuse demo --rate max` from the wheel: graphs, fusion head, sound model and
    labels come from the installed package; the built pack and session from a user cache."""
    cache = tmp_path / "cache"
    (cache / "sensorfuse" / "demo").mkdir(parents=True)
    (cache / "sensorfuse" / "models").symlink_to(model_cache)
    from sensorfuse.nodes import demo

    target = cache / "sensorfuse" / "demo" / f"sample-{demo.DEMO_SEED}-{demo.DEMO_DURATION_S:g}s.mcap"
    target.symlink_to(demo_session)
    done = subprocess.run([str(venv / "sensorfuse"), "demo", "--rate", "max", "--out", "out"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300,
                          env=_clean_env(XDG_CACHE_HOME=str(cache), SENSORFUSE_MODEL_CACHE=""))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "building the model pack" not in done.stdout and "generating the sample" not in done.stdout
    events = read_jsonl(tmp_path / "out" / "demo-events.jsonl")
    types = {e["record"]["type"] for e in events}
    assert {"face.appeared", "speaker.active", "query.match"} <= types, types
