"""`--classes`: a bad object class is one line naming it (and the closest known ones), exit 2,
before anything is built or started."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sensorfuse.engine import manifest as mf


def refused(*args: str, env: dict[str, str] | None = None) -> str:
    out = subprocess.run([sys.executable, "-m", "sensorfuse.engine.cli", *args], capture_output=True, text=True,
                         timeout=90, env={**os.environ, **(env or {})})
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize(("value", "expected"), [
    ("person,unicorn", "unknown object class 'unicorn' (closest: "),
    ("person,,car", "empty class name in 'person,,car'"),
])
def test_demo_refuses_a_bad_class_before_building_anything(value: str, expected: str, tmp_path: Path) -> None:
    line = refused("demo", "--classes", value, env={"XDG_CACHE_HOME": str(tmp_path)})
    assert line.startswith("sensorfuse: demo --classes: ") and expected in line
    assert not (tmp_path / "sensorfuse").exists()  # no pack built, no session generated


def test_run_refuses_an_unknown_class_naming_the_closest(model_cache: Path, tmp_path: Path) -> None:
    line = refused("run", "live", "--classes", "persn,car", "--duration", "1", "--run-dir", str(tmp_path / "run"),
                   env={mf.CACHE_ENV: str(model_cache)})
    assert "node perceive: classes: unknown object class 'persn' (closest: person" in line


def test_run_refuses_tiles_out_of_range(tmp_path: Path) -> None:
    line = refused("run", "live", "--set", "perceive.objects_tiles=7", "--duration", "1",
                   "--run-dir", str(tmp_path / "run"))
    assert line == "sensorfuse: graph live: node perceive: objects_tiles: expected 0..4 tiles per run, got 7"
