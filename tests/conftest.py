"""Shared fixtures (helpers live in tests/sfhelpers.py, importable from every test)."""

from __future__ import annotations

import io
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import sfhelpers
from sfhelpers import GraphRun, pactl, wait_for


@pytest.fixture(scope="session", autouse=True)
def no_shared_memory_left() -> Iterator[None]:
    """Every graph run that ended by itself removed its pools from /dev/shm (docs/engine.md)."""
    yield
    assert not sfhelpers.LEFT_POOLS, f"pools left in /dev/shm: {sfhelpers.LEFT_POOLS}"


@pytest.fixture
def graph_run(tmp_path: Path) -> Iterator[Callable[..., GraphRun]]:
    runs: list[GraphRun] = []

    def start(graph: dict[str, Any], extra_args: list[str] = ()) -> GraphRun:
        run = GraphRun(graph, tmp_path, list(extra_args))
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.cleanup()


@pytest.fixture(scope="session")
def model_cache(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fully built and verified default pack, shared by every test directory.

    It lives in pytest's cache directory (`.pytest_cache/d/sensorfuse-models`) so a second
    run reuses it through the idempotent build (hashes verified, nothing rebuilt); with the
    cache provider disabled it falls back to a session temp directory.
    """
    from sensorfuse.models import builder, pack  # only tests that use the pack pay for the import

    config_cache = getattr(request.config, "cache", None)
    cache = (config_cache.mkdir("sensorfuse-models") if config_cache is not None
             else tmp_path_factory.mktemp("sensorfuse-models"))
    builder.build(pack.PACK, Path(cache), stream=io.StringIO())
    return Path(cache)


@pytest.fixture(scope="session")
def demo_session(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's sample session (held-out media, `sensorfuse demo`'s seed and length)."""
    from sensorfuse.nodes import demo
    from sensorfuse.replay import sample

    path = tmp_path_factory.mktemp("demo") / "demo.mcap"
    sample.generate(path, seed=demo.DEMO_SEED, duration_s=demo.DEMO_DURATION_S)
    return path


@pytest.fixture
def null_sink(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A PulseAudio null sink whose monitor is what PortAudio's "pulse" device records
    (PulseAudio started if none runs); play into it with `paplay --device=NAME`."""
    assert shutil.which("pulseaudio") and shutil.which("pactl"), "apt-get install pulseaudio pulseaudio-utils"
    started = False
    if pactl("info").returncode != 0:
        subprocess.run(["pulseaudio", "-D", "--exit-idle-time=-1", "--system=false"], check=True, timeout=20,
                       capture_output=True)
        started = True
        wait_for(lambda: pactl("info").returncode == 0, 10, "PulseAudio to answer")
    name = f"sftest{uuid.uuid4().hex[:8]}"
    loaded = pactl("load-module", "module-null-sink", f"sink_name={name}")
    assert loaded.returncode == 0, loaded.stderr
    # The ALSA "pulse" device PortAudio opens records from this source.
    monkeypatch.setenv("PULSE_SOURCE", f"{name}.monitor")
    try:
        yield name
    finally:
        pactl("unload-module", loaded.stdout.strip())
        if started:
            subprocess.run(["pulseaudio", "--kill"], timeout=10, check=False)
