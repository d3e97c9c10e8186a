"""Help that works: the demo on your own log, key pairs kept, training outputs out of the package,
recordings that map their times to dates.

Through the real command line (exit code, one line on stderr, no traceback), plus the
logic under it: which truth a demo run cut short is scored against, where training writes.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sensorfuse.engine import manifest as mf
from sensorfuse.engine.cli import EXAMPLES
from sensorfuse.models import trained_dir
from sensorfuse.models.fusion import cli as fusion_cli
from sensorfuse.models.fusion import evaluate as fusion_evaluate
from sensorfuse.models.sound import DATA_DIR as SOUND_DATA
from sensorfuse.nodes import demo
from sensorfuse.replay import sample, wallclock
from sensorfuse.replay.mcap_io import LogReader, LogWriter

pytestmark = pytest.mark.timeout(180)


def sf(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
       timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sensorfuse.engine.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, **(env or {})}, timeout=timeout)


def one_line_error(out: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert out.returncode == code, (out.returncode, out.stdout, out.stderr)
    assert "Traceback" not in out.stderr + out.stdout
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sensorfuse: "), out.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def digests(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def session4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4 s `sensorfuse sample` log (seed 0: an off-screen speech interval from 1.87 s)."""
    path = tmp_path_factory.mktemp("s4") / "s4.mcap"
    sample.generate(path, seed=0, duration_s=4.0)
    return path


def copy_streams(src: Path, dst: Path, topics: list[str]) -> Path:
    with LogReader(src) as reader, open(dst, "wb") as f:
        log = LogWriter(f)
        for msg in reader.iter_messages(topics):
            log.write(*msg.decode())
        log.finish()
    return dst


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


# --- demo -----------------------------------------------------------------------------------


def test_demo_on_your_own_log_writes_into_out_and_scores_the_replayed_span(
        session4: Path, model_cache: Path, tmp_path: Path) -> None:
    out = sf("demo", "--session", str(session4), "--out", "out", "--rate", "0.5", "--duration", "5", cwd=tmp_path,
             env={mf.CACHE_ENV: str(model_cache)})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    out_dir = tmp_path / "out"
    assert sorted(p.name for p in out_dir.iterdir()) == sorted([*demo.OUTPUTS.values(), demo.REPORT, demo.HTML_REPORT])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"], "nothing written into the current directory"
    report = json.loads((out_dir / demo.REPORT).read_text())
    frames = [json.loads(line)["t_ns"] for line in (out_dir / "demo-frames.jsonl").read_text().splitlines()]
    assert report["session"] == str(session4) and report["cut_short"]
    assert 0 < report["frames_published"] == len(frames) < 60, "5 s at half speed replays part of the 4 s log"
    assert "scored against the truth of the replayed span" in out.stdout
    labels, _, _ = demo.read_truth(session4)
    replayed = [r for r in labels if r["start_ns"] <= max(frames) - 500_000_000 and r["label"] == "offscreen_speech"]
    assert report["scores"]["speech.offscreen"]["truths"] == len(replayed)


@pytest.mark.parametrize(("frames_until_s", "truths"), [(2.0, 0), (2.5, 1), (None, 1)])
def test_a_run_cut_short_is_scored_only_against_what_it_replayed(
        session4: Path, tmp_path: Path, frames_until_s: float | None, truths: int) -> None:
    """The off-screen speech starting at 1.87 s counts once half a second of it was replayed."""
    last = demo.last_frame_ns(session4)
    assert last is not None
    until = last if frames_until_s is None else int(frames_until_s * 1e9)
    with LogReader(session4) as reader:
        times = [m.log_time for m in reader.iter_messages(["cam0/frame"]) if m.log_time <= until]
    write_jsonl(tmp_path / "demo-frames.jsonl", [{"t_ns": t, "t_pub_ns": t} for t in times])
    summary = demo.summarize(session4, tmp_path, tmp_path)
    assert summary["cut_short"] is (frames_until_s is not None)
    assert summary["scores"]["speech.offscreen"].truths == truths


def test_a_log_without_labels_is_run_but_not_scored(session4: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    log = copy_streams(session4, tmp_path / "mine.mcap", ["cam0/frame", "mic0/audio16k"])
    assert demo.session_streams(log) == ["cam0/frame", "mic0/audio16k"]
    summary = demo.summarize(log, tmp_path, tmp_path)
    assert summary["scores"] is None
    demo.print_summary(summary)
    assert f"no labels in {log}: events are not scored" in capsys.readouterr().out
    demo.write_report(summary, tmp_path / demo.REPORT)
    assert json.loads((tmp_path / demo.REPORT).read_text())["scores"] is None


def test_demo_session_mistakes_are_one_line(session4: Path, tmp_path: Path) -> None:
    one_line_error(sf("demo", "--session", "nope.mcap", cwd=tmp_path), 2, "nope.mcap")
    (tmp_path / "notes.txt").write_text("hello")
    one_line_error(sf("demo", "--session", "notes.txt", cwd=tmp_path), 2, "notes.txt", "not an MCAP file")
    copy_streams(session4, tmp_path / "video-only.mcap", ["cam0/frame"])
    one_line_error(sf("demo", "--session", "video-only.mcap", cwd=tmp_path), 2, "video-only.mcap", "mic0/audio16k")


def test_demo_keeps_earlier_outputs_in_out_without_force(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "demo-events.jsonl").write_text("earlier\n")
    one_line_error(sf("demo", "--out", "out", cwd=tmp_path), 2, "out", "demo-events.jsonl", "--force")
    assert (tmp_path / "out" / "demo-events.jsonl").read_text() == "earlier\n"


def test_run_help_demo_example_runs_as_written(model_cache: Path, tmp_path: Path) -> None:
    """The two `run --help` lines that make a session and run the built-in demo graph on it."""
    lines = [line.strip().split("#")[0].split() for line in EXAMPLES["run"].splitlines()]
    make = next(words for words in lines if words[1:2] == ["sample"])
    run = next(words for words in lines if words[1:3] == ["run", "demo"] and "--view" not in words)
    env = {mf.CACHE_ENV: str(model_cache)}
    assert sf(*make[1:], cwd=tmp_path, env=env).returncode == 0
    out = sf(*run[1:], cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "demo-events.jsonl").stat().st_size > 0


# --- keys -----------------------------------------------------------------------------------


def test_keys_generate_never_replaces_pairs_without_force(tmp_path: Path) -> None:
    assert sf("keys", "generate", "k", cwd=tmp_path).returncode == 0
    keys = tmp_path / "k"
    before = digests(keys)
    assert sorted(before) == ["client.key", "client.key_secret", "server.key", "server.key_secret"]
    one_line_error(sf("keys", "generate", "k", cwd=tmp_path), 2, "k already holds", "--force")
    assert digests(keys) == before
    assert sf("keys", "generate", "k", "--force", cwd=tmp_path).returncode == 0
    after = digests(keys)
    assert sorted(after) == sorted(before) and all(after[n] != before[n] for n in before)
    assert [p.name for p in keys.iterdir() if p.name.startswith(".")] == [], "no temporary left behind"
    assert (keys / "server.key_secret").stat().st_mode & 0o077 == 0


def test_keys_generate_on_a_bad_directory_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    one_line_error(sf("keys", "generate", "file", cwd=tmp_path), 2, "file", "not a directory")
    one_line_error(sf("keys", "generate", "file/keys", cwd=tmp_path), 2, "file/keys")
    assert (tmp_path / "file").read_text() == "not a directory"


# --- training outputs -----------------------------------------------------------------------


def test_training_output_defaults_to_the_user_data_directory(monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert trained_dir.default_out_dir("fusion") == tmp_path / "data" / "sensorfuse" / "fusion"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert trained_dir.default_out_dir("sound") == tmp_path / ".local" / "share" / "sensorfuse" / "sound"
    out = trained_dir.claim_out_dir(None, "sound", ["m.onnx"], force=False)
    assert out.is_dir()
    (out / "m.onnx").write_bytes(b"model")
    with pytest.raises(trained_dir.UsageError, match="already holds m.onnx"):
        trained_dir.claim_out_dir(None, "sound", ["m.onnx"], force=False)
    assert trained_dir.claim_out_dir(None, "sound", ["m.onnx"], force=True) == out
    assert fusion_cli.output_files(["late"]) == ["fusion_late.onnx", "fusion_late.manifest.json",
                                                 fusion_cli.DEFAULT_FILE, "eval.json", "eval.md"]


def test_sound_train_writes_to_the_user_directory_and_keeps_it(tmp_path: Path) -> None:
    shipped = digests(SOUND_DATA)
    env = {"XDG_DATA_HOME": str(tmp_path / "data"), mf.CACHE_ENV: str(tmp_path / "cache" / "models")}
    smallest = ["sound", "train", "--train-sessions", "1", "--heldout-sessions", "1", "--duration", "2",
                "--epochs", "1", "--workers", "1"]
    out = sf(*smallest, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    trained = tmp_path / "data" / "sensorfuse" / "sound"
    manifest = trained / "sound_events.manifest.json"
    assert manifest.is_file() and (trained / "sound_events.onnx").is_file()
    assert f"--set perceive.sound={manifest}" in out.stdout
    assert digests(SOUND_DATA) == shipped, "the shipped model is not touched"
    before = digests(trained)
    one_line_error(sf(*smallest, cwd=tmp_path, env=env), 2, str(trained), "--force")
    assert digests(trained) == before


def test_fusion_train_refuses_to_replace_heads_before_any_work(tmp_path: Path) -> None:
    heads = tmp_path / "data" / "sensorfuse" / "fusion"
    heads.mkdir(parents=True)
    (heads / "fusion_late.onnx").write_bytes(b"earlier head")
    out = sf("fusion", "train", "--strategies", "late", env={"XDG_DATA_HOME": str(tmp_path / "data")}, timeout=30)
    one_line_error(out, 2, str(heads), "fusion_late.onnx", "--force")
    assert (heads / "fusion_late.onnx").read_bytes() == b"earlier head"


def test_fusion_eval_marks_the_strategy_graphs_load(tmp_path: Path) -> None:
    """The (default) mark follows the heads' fusion_default.json, not eval's own best."""
    (tmp_path / fusion_cli.DEFAULT_FILE).write_text(json.dumps({"strategy": "early"}))
    assert fusion_cli.loaded_by_default(tmp_path) == "early"
    assert fusion_cli.loaded_by_default(tmp_path / "none") is None
    shipped = json.loads((fusion_cli.DATA_DIR / fusion_cli.DEFAULT_FILE).read_text())["strategy"]
    assert fusion_cli.loaded_by_default(fusion_cli.DATA_DIR) == shipped
    report = json.loads((fusion_cli.DATA_DIR / "eval.json").read_text())
    table = fusion_evaluate.markdown(report["results"], "early")
    assert "| early **(default)** | all | speaking |" in table
    assert "| late **(default)**" not in table


# --- recording time anchor ------------------------------------------------------------------

RECORD_GRAPH = """
name: rec
nodes:
  producer:
    kind: synthetic
    params: {rate_hz: 30, count: 10, shape: [4, 4, 3]}
    outputs: {out: cam0/frame}
  recorder:
    kind: recorder
    params: {path: rec.mcap}
    inputs: {frames: cam0/frame}
"""


def test_a_live_recording_maps_its_log_times_to_dates(tmp_path: Path) -> None:
    (tmp_path / "rec.yaml").write_text(RECORD_GRAPH)
    started_ns = time.time_ns()
    assert sf("run", "rec.yaml", "--duration", "20", cwd=tmp_path).returncode == 0
    with LogReader(tmp_path / "rec.mcap") as reader:
        metadata = reader.metadata()
        first = min(m.log_time for m in reader.iter_messages())
    anchor = metadata[wallclock.CLOCK_METADATA]
    assert anchor["domain"] == wallclock.HOST_MONOTONIC
    assert first < 10**18, "log times stay on the capture clock"
    wall = wallclock.wall_ns_at(metadata, first)
    assert wall is not None and started_ns - 10**9 <= wall <= time.time_ns()
    info = sf("log", "info", "rec.mcap", cwd=tmp_path)
    assert f"wall_utc={anchor['wall_utc']}" in info.stdout


def test_stamps_not_on_this_host_clock_get_no_date() -> None:
    anchor = wallclock.host_anchor(time.monotonic_ns() + 10**10)  # not a capture time of this host
    assert anchor["domain"] == wallclock.REPLAYED and "wall_ns" not in anchor
    assert wallclock.wall_ns_at({wallclock.CLOCK_METADATA: anchor}, 5) is None
    fixed = wallclock.clock_anchor(100, 1_700_000_000_000_000_000, "media")
    assert wallclock.wall_ns_at({"clock": fixed}, 1_100) == 1_700_000_000_000_001_000
    assert fixed["wall_utc"] == "2023-11-14T22:13:20.000+00:00"
