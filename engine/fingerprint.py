"""Run fingerprint: what produced a result — software, machine and models.

Scores from onnxruntime differ (slightly) by CPU instruction set and by library version,
so every result that may be compared later carries the facts that explain a difference:

    {"sensorfuse": "0.1.0", "git": "afa60ff… (dirty)" | None, "python": "3.11.7",
     "numpy": "2.4.6", "onnxruntime": "1.32.0", "providers": ["CPUExecutionProvider"],
     "cpu": "AMD EPYC", "arch": "x86_64", "isa": ["avx2", "avx512_vnni", "avx512f", "fma"],
     "os": "Linux-6.1…", "models": {"blazeface_short": "<sha256>", ...}}

`isa` lists only the CPU flags that select onnxruntime kernels (MLAS: AVX2/FMA, AVX-512,
VNNI for int8, AMX). `models` maps each model a process opened to the sha256 its manifest
declares — `inference.open_model` / `checked_session` verify the file against it before
use, so it is the hash of the bytes that ran. Nothing here imports onnxruntime (versions
come from package metadata), so the supervisor can build one cheaply.

Carried by: MCAP recordings (metadata record ``fingerprint``), `sensorfuse status --json`,
`--json` outputs of eval and bench; printed by `sensorfuse log info` and `sensorfuse doctor`.
"""

from __future__ import annotations

import functools
import platform
import subprocess
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from sensorfuse import __version__

#: CPU flags (/proc/cpuinfo names) that change which onnxruntime kernels run.
KERNEL_ISA_FLAGS = ("sse4_1", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                    "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16", "asimd", "sve")
#: Models opened in this process: name -> sha256 (filled by sensorfuse.engine.inference).
_LOADED: dict[str, str] = {}
#: Execution providers sessions of this process run on (filled by inference).
_PROVIDERS: set[str] = set()


def note_model(name: str, sha256: str, provider: str) -> None:
    """Record that this process runs model `name` (file hash `sha256`) on `provider`."""
    _LOADED[name] = sha256
    _PROVIDERS.add(provider)


def loaded_models() -> dict[str, str]:
    return dict(sorted(_LOADED.items()))


def used_providers() -> list[str]:
    return sorted(_PROVIDERS)


def _cpu() -> tuple[str, list[str]]:
    """CPU model and the kernel-selecting flags, from the first processor in /proc/cpuinfo
    (x86 `model name`/`flags`, ARM `Model`/`Features`); elsewhere platform's guess, no flags."""
    model, flags = "", set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "Model", "cpu model") and not model:
                    model = value.strip()
                elif key in ("flags", "Features"):
                    flags = set(value.split())
                    break
    except OSError:
        pass
    return model or platform.processor() or "unknown CPU", sorted(f for f in KERNEL_ISA_FLAGS if f in flags)


def _version(*dists: str) -> str | None:
    for dist in dists:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def _git_revision() -> str | None:
    """The checkout's commit when sensorfuse runs from one (editable install), else None."""
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return None
    try:
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return rev.stdout.strip() + (" (dirty)" if dirty.stdout.strip() else "")


@functools.cache
def machine() -> dict[str, Any]:
    """The part that is the same for every process of this install on this host."""
    cpu, isa = _cpu()
    return {
        "sensorfuse": __version__,
        "git": _git_revision(),
        "python": platform.python_version(),
        "numpy": _version("numpy"),
        "onnxruntime": _version("onnxruntime", "onnxruntime-gpu"),
        "onnxruntime_package": "onnxruntime-gpu" if _version("onnxruntime-gpu") else "onnxruntime",
        "cpu": cpu,
        "arch": platform.machine(),
        "isa": isa,
        "os": platform.platform(),
    }


def fingerprint(models: Mapping[str, str] | None = None, providers: list[str] | None = None) -> dict[str, Any]:
    """This host and install, plus `models` (name -> sha256) and the `providers` they ran on
    (defaults: what this process opened)."""
    return {**machine(),
            "providers": sorted(providers) if providers is not None else used_providers(),
            "models": dict(sorted((models if models is not None else _LOADED).items()))}


def flatten(fp: Mapping[str, Any]) -> dict[str, str]:
    """As a string map (MCAP metadata): lists space-separated, models as ``model.NAME``."""
    flat = {}
    for key, value in fp.items():
        if key == "models":
            flat.update({f"model.{name}": sha for name, sha in value.items()})
        elif isinstance(value, (list, tuple)):
            flat[key] = " ".join(str(v) for v in value)
        else:
            flat[key] = "" if value is None else str(value)
    return flat


def render(fp: Mapping[str, Any]) -> list[str]:
    """Lines for a terminal: one fact per line, models last."""
    lines = []
    for key, value in fp.items():
        if key == "models" or key.startswith("model."):
            continue
        if isinstance(value, (list, tuple)):
            value = " ".join(str(v) for v in value) or "-"
        lines.append(f"{key:<20} {value if value not in (None, '') else '-'}")
    models = fp.get("models") or {k[6:]: v for k, v in fp.items() if k.startswith("model.")}
    for name, sha in sorted(models.items()):
        lines.append(f"{'model ' + name:<20} sha256 {sha}")
    if not models:
        lines.append(f"{'models':<20} -")
    return lines
