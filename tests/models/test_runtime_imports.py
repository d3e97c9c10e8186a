"""The runtime path never imports torch, and engine imports nothing above it."""

from __future__ import annotations

import subprocess
import sys

RUNTIME_MODULES = (
    "engine.manifest", "engine.inference", "engine.prepost.blazeface",
    "engine.prepost.landmarks", "engine.prepost.imagenet", "engine.prepost.vad",
    "engine.prepost.text", "models.verify", "models.cli", "models.specs",
)


def test_runtime_modules_do_not_import_torch_or_upper_layers() -> None:
    code = (
        "import importlib, sys\n"
        f"for name in {RUNTIME_MODULES!r}: importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
        "assert not bad, bad[:5]\n"
        "upper = sorted(m for m in sys.modules if m.split('.')[0] in ('nodes', 'replay'))\n"
        "assert not upper, upper\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_engine_modules_import_no_models_package() -> None:
    code = (
        "import importlib, sys\n"
        f"for name in {RUNTIME_MODULES!r}:\n"
        "    if name.startswith('engine.'): importlib.import_module(name)\n"
        "assert not [m for m in sys.modules if m == 'models' or m.startswith('models.')]\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
