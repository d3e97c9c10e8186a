"""Run fingerprint (sensorfuse.engine.fingerprint) and `sensorfuse doctor`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from sensorfuse import __version__
from sensorfuse.engine import fingerprint


def sf(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sensorfuse.engine.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_fingerprint_names_software_machine_and_kernel_flags() -> None:
    fp = fingerprint.fingerprint({"m": "ab" * 32}, ["CPUExecutionProvider"])
    assert fp["sensorfuse"] == __version__
    assert fp["python"].count(".") == 2 and fp["onnxruntime"] and fp["numpy"]
    assert set(fp["isa"]) <= set(fingerprint.KERNEL_ISA_FLAGS)
    if fp["arch"] == "x86_64":
        flags = Path("/proc/cpuinfo").read_text()
        assert ("avx2" in fp["isa"]) == (" avx2 " in flags)
        assert ("avx512_vnni" in fp["isa"]) == (" avx512_vnni " in flags)
    assert fp["models"] == {"m": "ab" * 32} and fp["providers"] == ["CPUExecutionProvider"]
    assert fp["git"] is None or len(fp["git"].split()[0]) == 40  # this checkout's commit


def test_flattened_fingerprint_is_a_string_map_that_renders() -> None:
    fp = fingerprint.fingerprint({"blazeface_short": "cd" * 32}, ["CPUExecutionProvider"])
    flat = fingerprint.flatten(fp)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in flat.items())
    assert flat["model.blazeface_short"] == "cd" * 32 and flat["isa"] == " ".join(fp["isa"])
    text = "\n".join(fingerprint.render(flat))
    assert "model blazeface_short" in text and f"sensorfuse           {__version__}" in text


def test_models_opened_are_noted(model_cache: Path) -> None:
    from sensorfuse.engine import inference
    from sensorfuse.engine import manifest as mf

    path = model_cache / f"silero_vad{mf.MANIFEST_SUFFIX}"
    inference.open_model(path)
    assert fingerprint.loaded_models()["silero_vad"] == mf.load(path).sha256
    assert "CPUExecutionProvider" in fingerprint.used_providers()


def test_doctor_passes_with_a_built_pack_quickly(model_cache: Path) -> None:
    t0 = time.monotonic()
    out = sf("doctor", "--cache", str(model_cache))
    elapsed = time.monotonic() - t0
    assert out.returncode == 0, out.stdout + out.stderr
    assert elapsed < 5.0, f"doctor took {elapsed:.1f} s"
    lines = out.stdout.splitlines()
    for check in ("onnxruntime", "model pack", "shipped models", "gpu providers", "portaudio", "espeak-ng"):
        line = next(l for l in lines if l[8:].startswith(check))
        assert line.split()[0] in ("OK", "WARN"), line
    assert any(l.strip().startswith("isa") for l in lines) and lines[-1] == "verdict: OK"


def test_doctor_fails_in_one_line_without_the_model_pack(tmp_path: Path) -> None:
    out = sf("doctor", "--cache", str(tmp_path / "empty"))
    assert out.returncode == 1
    assert len(out.stderr.strip().splitlines()) == 1
    assert "model pack" in out.stderr and "sensorfuse models build" in out.stderr
    assert "FAIL  model pack" in out.stdout and "verdict: FAIL" in out.stdout


def test_doctor_reports_a_corrupt_model(model_cache: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    for f in model_cache.iterdir():
        (cache / f.name).symlink_to(f)
    victim = next(cache.glob("silero_vad*.onnx"))
    victim.unlink()
    victim.write_bytes(b"not a model")
    out = sf("doctor", "--cache", str(cache), "--json")
    assert out.returncode == 1
    doc = json.loads(out.stdout)
    assert doc["ok"] is False and doc["fingerprint"]["sensorfuse"] == __version__
    pack = next(c for c in doc["checks"] if c["name"] == "model pack")
    assert pack["verdict"] == "FAIL" and "silero_vad" in pack["detail"]


def test_an_unknown_optimization_level_is_refused(model_cache: Path) -> None:
    env = dict(os.environ, SENSORFUSE_ORT_OPTIMIZATION="fastest")
    out = sf("models", "verify", "--cache", str(model_cache), env=env)
    assert out.returncode != 0 and "SENSORFUSE_ORT_OPTIMIZATION" in out.stdout + out.stderr
