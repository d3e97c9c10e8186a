"""The runtime path never imports torch, and sensorfuse.engine imports nothing above it."""

from __future__ import annotations

import subprocess
import sys

RUNTIME_MODULES = (
    "sensorfuse.engine.manifest", "sensorfuse.engine.inference", "sensorfuse.perception.prepost.blazeface",
    "sensorfuse.perception.prepost.landmarks", "sensorfuse.perception.prepost.imagenet",
    "sensorfuse.perception.prepost.vad", "sensorfuse.perception.prepost.text", "sensorfuse.perception.prepost.nanodet",
    "sensorfuse.perception.faces",
    "sensorfuse.models.verify",
    "sensorfuse.models.cli", "sensorfuse.models.specs",
)

#: Names that were top-level packages before the `sensorfuse` namespace; none may load.
OLD_TOP_LEVEL = ("engine", "nodes", "models", "replay")


def _run(code: str) -> None:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_runtime_modules_do_not_import_torch_or_upper_layers() -> None:
    _run(
        "import importlib, sys\n"
        f"for name in {RUNTIME_MODULES!r}: importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'tensorflow'))\n"
        "assert not bad, bad[:5]\n"
        "upper = sorted(m for m in sys.modules if m.startswith(('sensorfuse.nodes', 'sensorfuse.replay')))\n"
        "assert not upper, upper\n"
        f"old = sorted(m for m in sys.modules if m.split('.')[0] in {OLD_TOP_LEVEL!r})\n"
        "assert not old, old\n"
    )


def test_every_engine_module_imports_nothing_above_it() -> None:
    _run(
        "import importlib, pkgutil, sys\n"
        "import sensorfuse.engine as engine\n"
        "for info in pkgutil.walk_packages(engine.__path__, 'sensorfuse.engine.'):\n"
        "    if not info.name.endswith('__main__'): importlib.import_module(info.name)\n"
        "upper = sorted(m for m in sys.modules\n"
        "               if m.startswith(('sensorfuse.perception', 'sensorfuse.nodes', 'sensorfuse.replay', 'sensorfuse.models')))\n"
        "assert not upper, upper\n"
        "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
        "assert not bad, bad[:5]\n"
    )
