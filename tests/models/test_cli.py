"""`sensorfuse models build | list | verify`: idempotence, output, exit codes."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import numpy as np
import pytest

from sensorfuse.engine import manifest as mf
from sensorfuse.models import builder, cli, pack


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = cli.main(argv)
    except SystemExit as stop:
        code = int(stop.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_second_build_verifies_hashes_and_rebuilds_nothing(model_cache: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    code, out, err = run_cli(["models", "build", "--cache", str(model_cache)], capsys)
    assert code == 0
    assert time.monotonic() - started < 10
    assert f"{len(pack.PACK)} built" not in out and f"0 built, {len(pack.PACK)} up to date" in out
    assert err.count("up to date (hashes verified)") == len(pack.PACK)


def test_stale_entry_is_rebuilt_only(model_cache: Path, tmp_path: Path) -> None:
    """A damaged file makes its entry stale; the rebuild restores it, the rest are kept."""
    cache = tmp_path / "cache"
    cache.mkdir()
    for path in model_cache.iterdir():
        if path.is_file() and path.name.startswith("silero_vad"):
            (cache / path.name).write_bytes(path.read_bytes())
    (cache / "silero_vad.reference.npz").write_bytes(b"damaged")
    results = builder.build(pack.PACK, cache, only=["silero_vad"], stream=io.StringIO())
    assert [(r.name, r.rebuilt) for r in results] == [("silero_vad", True)]
    again = builder.build(pack.PACK, cache, only=["silero_vad"], stream=io.StringIO())
    assert [r.rebuilt for r in again] == [False]


def test_list_prints_every_model(model_cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["models", "list", "--cache", str(model_cache)], capsys)
    assert code == 0
    for name in pack.NAMES:
        assert name in out
    assert "image[batch,3,224,224]" in out and "int8" in out


def test_verify_passes_on_the_built_pack(model_cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(["models", "verify", "--cache", str(model_cache)], capsys)
    assert code == 0, out + err
    assert out.count("ok  ") == len(pack.PACK)


def test_verify_fails_on_a_tampered_model(small_model_copy: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    model_file = small_model_copy.parent / "blazeface_short.onnx"
    data = bytearray(model_file.read_bytes())
    data[-100] ^= 0xFF
    model_file.write_bytes(bytes(data))
    code, out, err = run_cli(["models", "verify", "--cache", str(small_model_copy.parent)], capsys)
    assert code == 1
    assert "FAIL" in out and str(model_file) in out
    assert err.strip().count("\n") == 0 and "failed verification" in err


def test_verify_detects_outputs_that_drift(small_model_copy: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Stored expectations are compared, not just hashes: a wrong expectation fails."""
    manifest = mf.load(small_model_copy)
    assert manifest.reference is not None
    ref_path = small_model_copy.parent / manifest.reference.file
    with np.load(ref_path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["output/scores"] = arrays["output/scores"] + 0.5
    with ref_path.open("wb") as stream:
        np.savez(stream, **arrays)
    fixed = msgspec.structs.replace(manifest.reference, sha256=mf.sha256_file(ref_path))
    small_model_copy.write_bytes(mf.encode(msgspec.structs.replace(manifest, reference=fixed)))
    code, out, _ = run_cli(["models", "verify", "--cache", str(small_model_copy.parent)], capsys)
    assert code == 1 and "scores max|Δ| 0.5" in out


def test_user_mistakes_exit_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(["models", "build", "--cache", str(tmp_path), "--only", "resnet9000"], capsys)
    assert code == 2 and "unknown model resnet9000" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_empty_cache_is_a_clear_failure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for action in ("list", "verify"):
        code, _, err = run_cli(["models", action, "--cache", str(tmp_path)], capsys)
        assert code == 1 and "sensorfuse models build" in err


def test_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    for action in ("build", "list", "verify"):
        code, out, _ = run_cli(["models", action, "--help"], capsys)
        assert code == 0 and "example:" in out and f"sensorfuse models {action}" in out


def test_sensorfuse_cli_discovers_models_command(model_cache: Path) -> None:
    """Wired through the `sensorfuse.commands` entry point of the installed package."""
    result = subprocess.run(
        [sys.executable, "-m", "sensorfuse.engine.cli", "models", "verify", "--cache", str(model_cache),
         "--only", "blazeface_short", "silero_vad"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "2 models verified" in result.stdout


def test_env_var_selects_the_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(mf.CACHE_ENV, str(tmp_path / "here"))
    assert mf.default_cache_dir() == tmp_path / "here"
    monkeypatch.delenv(mf.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert mf.default_cache_dir() == tmp_path / "sensorfuse" / "models"


def test_concurrent_builds_of_one_cache_serialise(tmp_path: Path) -> None:
    """Two builders on one cache (two test runs, say): one builds, the other finds it done."""
    from concurrent.futures import ThreadPoolExecutor

    cache = tmp_path / "shared"
    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(lambda _: builder.build(pack.PACK, cache, only=["silero_vad"],
                                                     stream=io.StringIO()), range(2)))
    assert sorted(r[0].rebuilt for r in runs) == [False, True]
    assert builder.is_up_to_date(cache, "silero_vad", builder.build_key(next(e for e in pack.PACK if e.name == "silero_vad"), []))
