"""The commands that read and write logs (record, sample, log info/export/import, replay)
through the real command line: exit codes, one-line errors naming the file/flag/value,
no traceback, existing outputs intact byte for byte, no temporary files left."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from sfhelpers import REPO, SENSORFUSE, read_jsonl

from sensorfuse.engine import files
from sensorfuse.engine.cli import build_parser
from sensorfuse.engine.errors import UsageError
from sensorfuse.engine.graph import load_decl
from sensorfuse.replay import cli as replay_cli
from sensorfuse.replay.mcap_io import LogReader

pytestmark = pytest.mark.timeout(120)


def sf(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SENSORFUSE, *args], cwd=cwd, capture_output=True, text=True, timeout=90, check=False)


def fails(done: subprocess.CompletedProcess[str], code: int, *names: str) -> str:
    """`done` exited `code` with one stderr line `sensorfuse: ...` naming every one of `names`."""
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == code, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sensorfuse: "), done.stderr
    for name in names:
        assert name in lines[0], lines[0]
    return lines[0]


def no_temps(d: Path) -> None:
    assert not [p for p in d.rglob("*") if p.name.startswith(files.TMP_PREFIX)]


def write_wav(path: Path, rate: int, seconds: float) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.zeros(max(1, int(rate * seconds)), np.int16).tobytes())
    return path


@pytest.fixture(scope="module")
def log2s(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2 s sample session made by the CLI."""
    path = tmp_path_factory.mktemp("logs") / "s.mcap"
    done = sf("sample", "-o", str(path), "--duration", "2")
    assert done.returncode == 0, done.stderr
    return path


@pytest.fixture
def existing(tmp_path: Path, log2s: Path) -> Path:
    """A log in tmp_path that a refused or failed write must leave byte for byte."""
    return Path(shutil.copy(log2s, tmp_path / "keep.mcap"))


# --- no destroyed files ----------------------------------------------------------------

def test_sample_refuses_an_existing_log_then_force_replaces_it(tmp_path: Path, existing: Path, log2s: Path) -> None:
    fails(sf("sample", "-o", str(existing), "--duration", "1"), 2, str(existing), "--force")
    assert existing.read_bytes() == log2s.read_bytes()
    done = sf("sample", "-o", str(existing), "--duration", "1", "--force")
    assert done.returncode == 0, done.stderr
    with LogReader(existing) as reader:
        assert reader.metadata()["sensorfuse"]["duration_s"] == "1.0"
    no_temps(tmp_path)


def test_log_import_refuses_an_existing_log_and_a_failed_forced_import_keeps_it(
        tmp_path: Path, existing: Path, log2s: Path) -> None:
    wav = write_wav(tmp_path / "ok.wav", 16_000, 0.5)
    fails(sf("log", "import", "--wav", str(wav), "-o", str(existing)), 2, str(existing), "--force")
    low = write_wav(tmp_path / "low.wav", 7, 2)
    fails(sf("log", "import", "--wav", str(low), "-o", str(existing), "--force"), 2, str(low), "7 Hz")
    assert existing.read_bytes() == log2s.read_bytes()
    no_temps(tmp_path)


def test_atomic_output_keeps_the_old_file_when_the_writer_fails(tmp_path: Path) -> None:
    out = tmp_path / "out.bin"
    out.write_bytes(b"precious")
    with pytest.raises(RuntimeError), files.atomic_output(out, force=True) as f:
        f.write(b"half")
        raise RuntimeError("writer died")
    assert out.read_bytes() == b"precious"
    with files.atomic_output(out, force=True) as f:
        f.write(b"new")
    assert out.read_bytes() == b"new"
    with pytest.raises(UsageError, match="exists"), files.atomic_output(out) as f:
        f.write(b"never")
    assert out.read_bytes() == b"new"
    no_temps(tmp_path)


def test_atomic_dir_refuses_clashes_before_moving_anything(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "b.txt").write_text("old")
    with pytest.raises(UsageError, match="b.txt exists"), files.atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("new a")
        (tmp / "b.txt").write_text("new b")
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"] and (out / "b.txt").read_text() == "old"
    fresh = tmp_path / "fresh"
    with pytest.raises(RuntimeError), files.atomic_dir(fresh) as tmp:
        (tmp / "a.txt").write_text("x")
        raise RuntimeError("export died")
    assert not fresh.exists()  # created by the call, removed on failure


def test_record_checks_output_before_starting(tmp_path: Path, existing: Path, log2s: Path) -> None:
    graph = str(REPO / "examples" / "relay.yaml")
    fails(sf("record", "-o", "/proc/x.mcap", "--graph", graph), 2, "/proc/x.mcap")
    fails(sf("record", "-o", str(tmp_path / "nodir" / "x.mcap"), "--graph", graph), 2, "no such directory")
    fails(sf("record", "-o", str(existing), "--graph", graph), 2, str(existing), "--force")
    assert existing.read_bytes() == log2s.read_bytes()
    no_temps(tmp_path)


# --- no tracebacks -----------------------------------------------------------------------

@pytest.mark.parametrize(("args", "names"), [
    (["--seed", "-1"], ["--seed", "-1"]),
    (["--duration", "nan"], ["--duration", "nan"]),
    (["--size", "10x10"], ["--size", "10x10"]),
    (["--fps", "0"], ["--fps", "0"]),
])
def test_sample_bad_arguments(tmp_path: Path, args: list[str], names: list[str]) -> None:
    out = tmp_path / "x.mcap"
    fails(sf("sample", "-o", str(out), *args), 2, *names)
    assert not out.exists()
    no_temps(tmp_path)


def test_log_import_bad_inputs_leave_nothing(tmp_path: Path) -> None:
    out = tmp_path / "x.mcap"
    low = write_wav(tmp_path / "low.wav", 7, 2)
    junk = tmp_path / "junk.wav"
    junk.write_text("not audio at all\n")
    far = tmp_path / "far.txt"
    far.write_text("0.5 hello\n1e30 far away\n")
    ok = write_wav(tmp_path / "ok.wav", 16_000, 0.2)
    for args, names in (
        (["--wav", str(low)], [str(low), "7 Hz"]),
        (["--wav", str(junk)], [str(junk), "not a readable audio file"]),
        (["--text", str(far)], [f"{far}:2", "1e30"]),
    ):
        fails(sf("log", "import", *args, "-o", str(out)), 2, *names)
        assert not out.exists()
    missing = tmp_path / "nodir" / "x.mcap"
    fails(sf("log", "import", "--wav", str(ok), "-o", str(missing)), 2, str(missing), "no such directory")
    fails(sf("log", "import", "--wav", str(ok), "--jpeg", "0", "-o", str(out)), 2, "--jpeg", "'0'")
    assert not out.exists()
    no_temps(tmp_path)


# --- silent success on mistakes ---------------------------------------------------------

def test_non_mcap_file_same_exit_and_message_everywhere(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    lines = {fails(sf(*cmd), 2, str(text), "not an MCAP file")
             for cmd in (("log", "info", str(text)), ("log", "export", str(text), "--to", str(tmp_path / "x")),
                         ("replay", str(text)))}
    assert len(lines) == 1, lines
    assert not (tmp_path / "x").exists()


def test_export_of_a_damaged_log_fails_with_the_reason(tmp_path: Path, log2s: Path) -> None:
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(log2s.read_bytes()[:5000])  # the sample fits one chunk: nothing readable
    out = tmp_path / "out"
    fails(sf("log", "export", str(cut), "--to", str(out)), 1, str(cut), "nothing exported", "readable prefix")
    assert not out.exists()


def test_unknown_stream_names_the_streams_the_log_has(tmp_path: Path, log2s: Path) -> None:
    for cmd in (("log", "export", str(log2s), "--to", str(tmp_path / "out")), ("replay", str(log2s))):
        fails(sf(*cmd, "--streams", "nosuch/stream"), 2, "nosuch/stream", "cam0/frame, labels")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("window", "names"), [
    (["--start", "30"], ["--start 30", "past the end", "2.0 s"]),
    (["--start", "1", "--end", "0.5"], ["--end 0.5", "--start 1"]),
    (["--start=-5"], ["--start", "-5"]),
])
def test_bad_time_windows(tmp_path: Path, log2s: Path, window: list[str], names: list[str]) -> None:
    fails(sf("replay", str(log2s), *window), 2, *names)
    fails(sf("log", "export", str(log2s), "--to", str(tmp_path / "out"), *window), 2, *names)
    assert not (tmp_path / "out").exists()


def test_check_window_logic() -> None:
    replay_cli.check_window("s", 0.0, 20.0, 20.0)
    replay_cli.check_window("s", 20.0, None, 20.0)
    for start, end, needle in ((30.0, None, "past the end"), (10.0, 5.0, "not after"), (-5.0, None, ">= 0"),
                               (None, 0.0, "not after"), (float("inf"), None, ">= 0")):
        with pytest.raises(UsageError, match=needle):
            replay_cli.check_window("s", start, end, 20.0)


# --- help that works, outputs you can place ----------------------------------------------

def test_every_example_parses_and_names_a_real_graph() -> None:
    parser = build_parser()
    for text in replay_cli.EXAMPLES.values():
        for line in text.splitlines()[1:]:
            argv = shlex.split(line, comments=True)
            assert argv[0] == "sensorfuse", line
            args = parser.parse_args(argv[1:])
            if getattr(args, "graph", None):
                load_decl(REPO / args.graph if (REPO / args.graph).exists() else args.graph)


def test_record_example_runs_as_written(tmp_path: Path) -> None:
    line = next(x for x in replay_cli.EXAMPLES["record"].splitlines() if "examples/relay.yaml" in x)
    (tmp_path / "examples").mkdir()
    shutil.copy(REPO / "examples" / "relay.yaml", tmp_path / "examples")
    run_dir = Path(tempfile.mkdtemp(prefix="sfrec", dir="/tmp"))  # short: ipc paths
    try:
        done = sf(*shlex.split(line)[1:], "--run-dir", str(run_dir), cwd=tmp_path)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    assert done.returncode == 0, done.stderr
    with LogReader(tmp_path / "relay.mcap") as reader:
        assert {m.topic for m in reader.iter_messages()} == {"cam0/frame"}


def test_replay_graph_takes_builtin_names(log2s: Path) -> None:
    # resolved before the window check: a bad name would be named instead
    fails(sf("replay", str(log2s), "--graph", "demo", "--start", "30"), 2, "--start 30")
    fails(sf("replay", str(log2s), "--graph", "nosuch"), 2, "nosuch", "demo, live")


def test_replay_out_dir_receives_the_jsonl_and_the_graphs_sinks(tmp_path: Path, log2s: Path) -> None:
    out = tmp_path / "a" / "b"
    done = sf("replay", str(log2s), "--rate", "max", "--streams", "text/in", "labels", "--out", str(out),
              cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert {r["stream"] for r in read_jsonl(out / "replay.jsonl")} == {"text/in", "labels"}
    assert not (tmp_path / "replay.jsonl").exists()
    graph = {"name": "g", "nodes": {
        "relay": {"kind": "relay", "inputs": {"in": {"stream": "text/in", "policy": "block"}},
                  "outputs": {"out": "relay/text"}},
        "sink": {"kind": "jsonl", "params": {"path": "relayed.jsonl"},
                 "inputs": {"in": {"stream": "relay/text", "policy": "block"}}}}}
    (tmp_path / "g.yaml").write_text(yaml.safe_dump(graph))
    done = sf("replay", str(log2s), "--rate", "max", "--streams", "text/in", "--graph", "g.yaml",
              "--out", "outdir", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert [r["stream"] for r in read_jsonl(tmp_path / "outdir" / "relayed.jsonl")] == ["relay/text"]
    assert not (tmp_path / "relayed.jsonl").exists() and not (tmp_path / "outdir" / "replay.jsonl").exists()
    fails(sf("replay", str(log2s), "--out", str(log2s)), 2, "--out", "is a file")


# --- data a user would miss ----------------------------------------------------------------

def test_export_time_range_and_overwrite_rule(tmp_path: Path, log2s: Path) -> None:
    out = tmp_path / "out"
    window = ["--streams", "cam0/frame", "text/in", "--start", "0.5", "--end", "1"]
    done = sf("log", "export", str(log2s), "--to", str(out), *window)
    assert done.returncode == 0, done.stderr
    pngs = sorted((out / "cam0_frame").glob("*.png"))
    t_ns = [int(p.stem.split("_")[1]) for p in pngs]
    first_ns = 1_000_000_000  # the sample's time base
    assert len(pngs) == 7 and all(first_ns + 0.5e9 <= t < first_ns + 1e9 for t in t_ns)
    before = {p: p.read_bytes() for p in pngs}
    fails(sf("log", "export", str(log2s), "--to", str(out), "--streams", "cam0/frame"), 2,
          str(out / "cam0_frame"), "--force")
    assert {p: p.read_bytes() for p in sorted((out / "cam0_frame").glob("*.png"))} == before  # nothing added
    no_temps(tmp_path)
    done = sf("log", "export", str(log2s), "--to", str(out), *window, "--force")
    assert done.returncode == 0, done.stderr
    no_temps(tmp_path)


def test_log_import_jpeg(tmp_path: Path) -> None:
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (160, 120))
    rng = np.random.default_rng(0)
    for i in range(10):
        frame = np.full((120, 160, 3), i * 20, np.uint8)
        frame[40:80, 40:120] = rng.integers(0, 255, (40, 80, 3), np.uint8)
        writer.write(frame)
    writer.release()
    raw, jpeg = tmp_path / "raw.mcap", tmp_path / "jpeg.mcap"
    assert sf("log", "import", "--video", str(video), "-o", str(raw)).returncode == 0
    done = sf("log", "import", "--video", str(video), "--jpeg", "80", "-o", str(jpeg))
    assert done.returncode == 0, done.stderr
    with LogReader(jpeg) as reader:
        msgs = list(reader.iter_messages(["cam0/frame"]))
        assert {m.schema for m in msgs} == {"foxglove.CompressedImage"} and len(msgs) == 10
        header, _, payload = msgs[0].decode()
        assert header.shape == [120, 160, 3] and len(payload) == 120 * 160 * 3  # decoded back to the frame
    assert jpeg.stat().st_size < raw.stat().st_size / 2
