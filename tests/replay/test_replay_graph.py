"""Replay through real graphs (one process per node): `sensorfuse replay --rate max`, and
identical downstream outputs at rates 1, 4 and max."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
from sfhelpers import REPO, read_jsonl

from sensorfuse.replay import sample
from sensorfuse.replay.cli import replay_graph

pytestmark = pytest.mark.timeout(150)

#: Fields that are wall-clock by definition, excluded by name from the comparison.
WALL_CLOCK_FIELDS = ("t_pub_ns", "t_recv_ns")
#: The envelope's session names the run (graph name + run directory), not the data: each
#: run has its own, so it is excluded by name too (the ticks' content is all compared).
RUN_IDENTITY_FIELDS = ("session",)


@pytest.fixture(scope="module")
def short_session(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("replay") / "s.mcap"
    sample.generate(path, seed=21, duration_s=5.0)  # 75 frames, 250 audio blocks, 2 text lines
    return path


def _aligner_graph(out: Path) -> dict[str, Any]:
    """player -> aligner (frames nearest, 16 kHz audio window, text latest) -> JSONL of ticks.

    Every required stream, and a lateness bound no backlog can reach, so that no timeout
    fires and the ticks depend on the data alone (DESIGN.md "Time"):
    - the text stream is sparse (2 lines in 5 s, up to 4 s apart), yet required with a
      lateness bound of 2 s: its watermark moves with the player's watermarks (in line,
      every 200 ms of log time, the same at every rate) and with the runtime's idles (every
      0.2 s of wall time, at rate 1 and 4), never past a line still to come, so no tick
      waits for the bound and none goes before its text;
    - an optional (``required: false``) text stream contributes whatever has arrived when a
      tick goes: at rate 1 a tick before the first line says ``absent``, at rate max, where
      the line is already queued, ``missing``. Required, the member is exact at every rate.
    (Backlogged inputs at ``--rate max`` are stepped in capture-time order by the runtime,
    so frames cannot run ahead of audio in event time.)
    """
    return {
        "name": "det",
        "supervisor": {"idle_s": 0.2},
        "nodes": {
            "align": {"kind": "aligner",
                      "params": {"trigger": "frame", "lateness_ms": 2000, "max_pending_ticks": 1024,
                                 "streams": {"frame": {"policy": "nearest", "slop_ms": 20, "embed": False},
                                             "audio": {"policy": "window", "window_ms": 500},
                                             "text": {"policy": "latest", "ttl_ms": 5000}}},
                      "inputs": {"frame": {"stream": "cam0/frame", "policy": "block", "queue": 4},
                                 "audio": {"stream": "mic0/audio16k", "policy": "block", "queue": 64},
                                 "text": {"stream": "text/in", "policy": "block", "queue": 16}},
                      "outputs": {"ticks": "align/ticks"}},
            "sink": {"kind": "jsonl", "params": {"path": str(out)},
                     "inputs": {"in": {"stream": "align/ticks", "policy": "block", "queue": 64}}},
        },
    }


def _comparable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    excluded = WALL_CLOCK_FIELDS + RUN_IDENTITY_FIELDS
    return [{k: v for k, v in r.items() if k not in excluded} for r in rows]


def test_same_ticks_through_the_aligner_at_rate_1_4_and_max(tmp_path: Path, short_session: Path,
                                                           graph_run: Callable[..., Any]) -> None:
    results = {}
    for rate in (1.0, 4.0, "max"):
        out = tmp_path / f"ticks-{rate}.jsonl"
        run = graph_run(replay_graph(str(short_session), rate=rate, graph=_aligner_graph(out)))
        assert run.wait_exit(60) == 0, run.stderr()
        rows = read_jsonl(out)
        assert [r["record"]["emitted_by"] for r in rows] == ["watermark"] * len(rows), f"a timeout fired at {rate}"
        results[rate] = _comparable(rows)
    reference = results["max"]
    ticks = [r["record"] for r in reference]
    assert len(ticks) == 75 and [t["tick"] for t in ticks] == list(range(75))
    assert all(t["status"]["frame"] == t["status"]["audio"] == "ok" for t in ticks)
    assert all(t["members"]["audio"]["n"] == 8000 and t["members"]["audio"]["data"] for t in ticks)
    texts = {t["members"]["text"]["text"] for t in ticks if t["members"]["text"]}
    assert len(texts) == 2 and any(t["status"]["text"] == "missing" for t in ticks)  # before the first line
    for rate, got in results.items():
        for mine, ref in zip(got, reference):
            assert mine == ref, f"rate {rate} differs from rate max at tick {ref['record']['tick']}"
        assert len(got) == len(reference), f"rate {rate}: {len(got)} ticks, rate max {len(reference)}"


def test_cli_sample_then_replay_max_with_progress(tmp_path: Path) -> None:
    s = tmp_path / "s.mcap"
    cli = [sys.executable, "-m", "sensorfuse.engine.cli"]
    done = subprocess.run([*cli, "sample", "-o", str(s), "--duration", "2"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "events.jsonl"
    done = subprocess.run([*cli, "replay", str(s), "--rate", "max", "--out", str(out),
                           "--run-dir", str(tmp_path / "run")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = read_jsonl(out)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["stream"]] = counts.get(r["stream"], 0) + 1
    assert counts["cam0/frame"] == 30 and counts["mic0/audio16k"] == 100 and counts["mic0/audio"] == 100
    assert all(r["session"] == "sample-0" for r in rows)
    # stderr is a pipe here: plain progress lines (one per 2 s, and a last one at the end),
    # read from the player's gauges in status.json, then the summary.
    lines = done.stderr.splitlines()
    progress = [line for line in lines if line.startswith("replay ") and "% " in line]
    assert progress, done.stderr
    assert re.fullmatch(r"replay 100% \d\.\d/\d\.\d s( \(\d+\.\dx\))? (\d+)/\2 msgs", progress[-1]), progress[-1]
    assert "\r" not in done.stderr
    summary = [line for line in lines if line.startswith("replay finished")]
    assert summary and f"(exit 0): {len(rows)} messages" in summary[0] and "cam0/frame 30" in summary[0], done.stderr


def test_cli_user_errors_exit_2(tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "sensorfuse.engine.cli"]
    for args in (["replay", str(tmp_path / "missing.mcap")], ["replay", "x.mcap", "--rate", "fast"],
                 ["log", "info", str(tmp_path / "missing.mcap")], ["sample", "-o", "x.mcap", "--size", "big"]):
        done = subprocess.run([*cli, *args], cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
