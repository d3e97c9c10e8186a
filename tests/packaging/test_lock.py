"""The locked install: requirements/{cpu,gpu}.lock pin every dependency exactly, with
hashes, inside pyproject.toml's ranges; the venv `make` built holds exactly those versions."""

from __future__ import annotations

import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from sfhelpers import REPO

LOCKS = {"cpu": REPO / "requirements" / "cpu.lock", "gpu": REPO / "requirements" / "gpu.lock"}
_PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


def locked(path: Path) -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes) for the entries whose marker holds here."""
    pins: dict[str, tuple[str, int]] = {}
    current: str | None = None
    for line in path.read_text().splitlines():
        match = _PIN.match(line)
        if match:
            name, version, marker = match.groups()
            current = None
            if marker is None or Marker(marker).evaluate():
                current = canonicalize_name(name)
                pins[current] = (version, 0)
        elif line.strip().startswith("--hash=sha256:") and current is not None:
            version, hashes = pins[current]
            pins[current] = (version, hashes + 1)
    return pins


def declared(extra: str) -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for name in (extra, "models", "test"):
        reqs += [Requirement(r) for r in project["optional-dependencies"][name]]
    return reqs


@pytest.mark.parametrize("extra", sorted(LOCKS))
def test_lock_pins_every_declared_dependency_within_its_range(extra: str) -> None:
    pins = locked(LOCKS[extra])
    assert pins, f"{LOCKS[extra]} pins nothing"
    for req in declared(extra):
        if req.marker is not None and not req.marker.evaluate():
            continue
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is declared but not locked: run `make lock`"
        version, hashes = pins[name]
        assert req.specifier.contains(version, prereleases=True), f"{name}=={version} outside {req.specifier}: make lock"
        assert hashes > 0, f"{name} has no hash in {LOCKS[extra].name}"
    assert "torch" not in pins, "torch comes from the Makefile's exact pin (a CPU build), not the lock"


def test_the_venv_holds_exactly_the_locked_versions() -> None:
    """What `make setup` installed is the lock, package for package (the runtime and test
    packages; torch and its own dependencies come from TORCH_PIN)."""
    stamp = Path(sys.prefix) / ".installed"
    if Path(sys.prefix).resolve() != (REPO / ".venv").resolve() or not stamp.is_file():
        pytest.skip("not running in the venv `make setup` built (the lock applies to that venv)")
    try:
        metadata.version("onnxruntime-gpu")
        extra = "gpu"
    except metadata.PackageNotFoundError:
        extra = "cpu"
    wrong = {}
    for name, (version, _) in locked(LOCKS[extra]).items():
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            have = None
        if have != version:
            wrong[name] = (have, version)
    assert not wrong, f"installed vs locked: {wrong} (run `make clean test`, or `make lock` if pyproject changed)"
