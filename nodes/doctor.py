"""`sensorfuse doctor`: this machine's fingerprint, and whether it can run sensorfuse.

Each check prints one line with a verdict:

- ``OK``    works;
- ``WARN``  an optional part is missing (what stops working, and the command to fix it);
- ``FAIL``  something every graph needs is missing or broken.

Required: onnxruntime imports and creates a CPU session; the default model pack is in the
cache with every file matching its manifest's sha256; the shipped fusion head and sound
model load. Optional: PortAudio (live microphones), espeak-ng (generating sample
sessions), GPU execution providers (why not, when onnxruntime-gpu is installed but CUDA or
TensorRT cannot start), torch (building the model pack). Exit code 1 with a one-line reason
on stderr when a required check fails, else 0. Runs in about a second (no model is run).

    sensorfuse doctor
    sensorfuse doctor --json           # {"fingerprint": {...}, "checks": [...], "ok": true}
    sensorfuse doctor --cache DIR      # check another model cache
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sensorfuse.engine import fingerprint
from sensorfuse.engine import manifest as mf
from sensorfuse.engine.errors import SensorfuseError


#: Accelerator providers an onnxruntime build may list (CPU builds also list e.g. Azure).
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "ROCMExecutionProvider",
                 "MIGraphXExecutionProvider", "DmlExecutionProvider", "CoreMLExecutionProvider",
                 "OpenVINOExecutionProvider")


@dataclass
class Check:
    name: str
    verdict: str  # OK | WARN | FAIL
    detail: str
    required: bool


def _onnxruntime() -> Check:
    try:
        from sensorfuse.engine import inference
    except ImportError as exc:
        return Check("onnxruntime", "FAIL", f"cannot import: {exc} (pip install onnxruntime)", True)
    usable = inference.usable_providers()
    if inference.CPU not in usable:
        return Check("onnxruntime", "FAIL", "the CPU execution provider cannot create a session", True)
    return Check("onnxruntime", "OK", f"{fingerprint.machine()['onnxruntime']}, usable providers: "
                 f"{', '.join(usable)}", True)


def _gpu() -> Check:
    import onnxruntime as ort

    from sensorfuse.engine import inference

    listed = [p for p in ort.get_available_providers() if p in GPU_PROVIDERS]
    if not listed:
        return Check("gpu providers", "OK", "CPU build of onnxruntime (for CUDA: `make GPU=1` or "
                     "`pip install '.[gpu]'`)", False)
    usable = set(inference.usable_providers())
    broken = [p for p in listed if p not in usable]
    if not broken:
        return Check("gpu providers", "OK", f"usable: {', '.join(listed)}", False)
    reasons = "; ".join(f"{p}: {inference.provider_error(p)}" for p in broken)
    return Check("gpu providers", "WARN", f"listed but not usable, models run on "
                 f"{next(p for p in inference.DEFAULT_PROVIDERS if p in usable)} — {reasons}", False)


def _model_pack(cache: Path) -> Check:
    from sensorfuse.nodes.demo import NEEDED as PACK  # the models the perception graph opens

    missing = [m for m in PACK if not (cache / f"{m}{mf.MANIFEST_SUFFIX}").is_file()]
    if missing:
        return Check("model pack", "FAIL", f"{', '.join(missing)} not in {cache} "
                     f"(run: sensorfuse models build --cache {cache})", True)
    for name in PACK:
        path = cache / f"{name}{mf.MANIFEST_SUFFIX}"
        try:
            mf.check_files(path, mf.load(path))
        except mf.ManifestError as exc:
            return Check("model pack", "FAIL", f"{exc} (rebuild: sensorfuse models build --cache {cache})", True)
    return Check("model pack", "OK", f"{len(PACK)} models in {cache}, every file matches its sha256", True)


def _shipped_models() -> Check:
    from sensorfuse.engine.errors import StartupError
    from sensorfuse.perception import FusionHead
    from sensorfuse.perception.sound import SoundClassifier
    from sensorfuse.nodes.perceive_setup import default_heads_dir, default_sound_manifest, resolve_head

    try:
        head = FusionHead(resolve_head("default", default_heads_dir()))
        SoundClassifier(default_sound_manifest())
    except StartupError as exc:
        return Check("shipped models", "FAIL", str(exc), True)
    return Check("shipped models", "OK", f"fusion head {head.path.name} ({head.strategy}) and the sound-event "
                 "classifier load, hashes match", True)


def _portaudio() -> Check:
    try:
        import sounddevice
    except OSError as exc:
        return Check("portaudio", "WARN", f"{exc}: live microphones unavailable "
                     "(apt-get install libportaudio2)", False)
    return Check("portaudio", "OK", sounddevice.get_portaudio_version()[1], False)


def _espeak() -> Check:
    if shutil.which("espeak-ng") is None:
        return Check("espeak-ng", "WARN", "not on PATH: `sensorfuse sample` and a first `sensorfuse demo` cannot "
                     "synthesize speech (apt-get install espeak-ng)", False)
    return Check("espeak-ng", "OK", shutil.which("espeak-ng") or "", False)


def _torch() -> Check:
    if importlib.util.find_spec("torch") is None:
        return Check("torch", "WARN", "not installed: only `sensorfuse models build` and `fusion/sound train` "
                     "need it (pip install torch==2.13.0; see README)", False)
    return Check("torch", "OK", "installed (model pack build and training possible)", False)


def run_checks(cache: Path) -> list[Check]:
    checks: list[Check] = []
    runtime = _onnxruntime()
    checks.append(runtime)
    steps: list[Callable[[], Check]] = [lambda: _model_pack(cache), _shipped_models, _gpu] if runtime.verdict == "OK" \
        else [lambda: _model_pack(cache)]
    steps += [_portaudio, _espeak, _torch]
    checks += [step() for step in steps]
    return checks


def _cmd_doctor(args: argparse.Namespace) -> int:
    cache = Path(args.cache).expanduser() if args.cache else mf.default_cache_dir()
    fp = fingerprint.machine()  # this machine and install; the checks below open models of their own
    checks = run_checks(cache)
    failed = [c for c in checks if c.required and c.verdict == "FAIL"]
    if args.json:
        print(json.dumps({"fingerprint": fp, "checks": [asdict(c) for c in checks], "ok": not failed}, indent=1))
    else:
        print("this machine:")
        print("\n".join(f"  {line}" for line in fingerprint.render(fp) if not line.startswith("models")))
        print("checks:")
        for c in checks:
            print(f"  {c.verdict:<5} {c.name:<15} {c.detail}")
        print("verdict: " + ("FAIL" if failed else "OK") + (
            f" ({len(failed)} required check{'s' if len(failed) > 1 else ''} failed)" if failed else ""))
    if failed:
        raise SensorfuseError(f"doctor: {failed[0].name}: {failed[0].detail}")
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "doctor", help="this machine's fingerprint and checks: model pack, onnxruntime, GPU, PortAudio, espeak-ng",
        description="print this machine's fingerprint and check what sensorfuse needs (exit 1 if a required "
                    "part is missing)",
        epilog="examples:\n  sensorfuse doctor\n  sensorfuse doctor --json\n  sensorfuse doctor --cache /data/models",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--cache", help="model cache to check (default: $SENSORFUSE_MODEL_CACHE or ~/.cache/...)")
    p.add_argument("--json", action="store_true", help="print fingerprint and checks as JSON")
    p.set_defaults(func=_cmd_doctor)

