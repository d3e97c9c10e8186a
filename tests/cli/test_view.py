"""The live view and the log viewer (docs/view.md) through the real command line: what
`--view rrd:PATH` and `log view --save` write is read back with the Rerun SDK; `--view web`
serves on loopback only; mistakes are one line, exit 2."""

from __future__ import annotations

import os
import signal
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import psutil
import pytest
from devtools import Chromium
from sfhelpers import REPO, SENSORFUSE, rrd_rows, wait_for

from sensorfuse.engine import wire
from sensorfuse.nodes import view
from sensorfuse.nodes.view_rerun import TRUTH_COLOR
from sensorfuse.replay import sample
from sensorfuse.replay.mcap_io import LogReader

pytestmark = pytest.mark.timeout(120)
SEED = 2  # faces in every frame and a text line in the first 2 s
TRUTH_BGR = TRUTH_COLOR[::-1]


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("view") / "s.mcap"
    sample.generate(path, seed=SEED, duration_s=2.0, size=(160, 120), fps=10)
    return path


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The rerun binary's config (its analytics switched off) in a fresh directory."""
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config")}
    subprocess.run([str(view.rerun_binary()), "analytics", "disable"], env=env, capture_output=True, timeout=30,
                   check=True)
    return env


def sf(*args: str, cwd: Path = REPO, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SENSORFUSE, *args], cwd=cwd, capture_output=True, text=True, timeout=90, check=False,
                          env=env)


def truth_boxes(path: Path) -> dict[int, int]:
    """Capture time -> number of true boxes of each frame of a sample session."""
    out = {}
    with LogReader(path) as reader:
        for m in reader.iter_messages(["labels/boxes"]):
            header, _, payload = m.decode()
            out[header.t_ns] = len(wire.decode_record(payload)["boxes"])
    return out


def drawn_boxes(rows: list[tuple[int, dict[str, Any]]]) -> dict[int, int]:
    return {t: len(row["Boxes2D:half_sizes"] or []) for t, row in rows}


def test_replay_view_rrd_has_frames_with_boxes_at_capture_times(session: Path, tmp_path: Path) -> None:
    rrd = tmp_path / "x.rrd"
    done = sf("replay", str(session), "--rate", "4", "--out", str(tmp_path / "out"), "--view", f"rrd:{rrd}")
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert f"viewer: wrote {rrd}" in done.stderr
    rows = rrd_rows(rrd)
    truth = truth_boxes(session)
    images = [t for t, _ in rows["/camera/image"]]
    boxes = drawn_boxes(rows["/camera/truth"])
    # what the viewer drew sits at the capture times of the log, with the log's boxes
    assert images and set(images) <= set(truth)
    assert boxes and all(truth[t] == n for t, n in boxes.items())
    assert any(boxes.get(t) for t in images), "no frame shown with its face boxes"
    assert rows["/audio/waveform"] and rows["/text/in"]


def test_log_view_save_reads_back_with_every_message(session: Path, tmp_path: Path) -> None:
    rrd = tmp_path / "log.rrd"
    done = sf("log", "view", str(session), "--save", str(rrd))
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    rows = rrd_rows(rrd)
    truth = truth_boxes(session)
    assert [t for t, _ in rows["/camera/image"]] == sorted(truth)  # every frame, at its capture time
    assert drawn_boxes(rows["/camera/truth"]) == truth
    assert len(rows["/text/in"]) == 1
    # 16 kHz audio (not the 48 kHz copy as well), 200 points a second: 2 s -> 400 points
    assert len(rows["/audio/waveform"]) == 400
    # an existing output is refused without --force, kept as it was
    before = rrd.read_bytes()
    again = sf("log", "view", str(session), "--save", str(rrd))
    assert again.returncode == 2 and "--force" in again.stderr and rrd.read_bytes() == before


@pytest.mark.parametrize("args, names", [
    (["--view", "bogus"], ["--view", "bogus", "web", "rrd:PATH"]),
    (["--view", "web", "--view-save", "x.rrd"], ["--view", "--view-save"]),
    (["--view", "rrd:/no/such/dir/x.rrd"], ["/no/such/dir"]),
    (["--view", "native"], ["--view native", "display"]),
])
def test_view_mistakes_are_one_line(session: Path, tmp_path: Path, args: list[str], names: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    done = sf("replay", str(session), "--out", str(tmp_path / "out"), *args, env=env)
    assert "Traceback" not in done.stderr and done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sensorfuse: "), done.stderr
    assert all(n in lines[0] for n in names), lines[0]
    assert not (tmp_path / "out" / "replay.jsonl").exists()


def test_view_existing_recording_is_refused(session: Path, tmp_path: Path) -> None:
    rrd = tmp_path / "x.rrd"
    rrd.write_bytes(b"keep")
    done = sf("run", "examples/relay.yaml", "--duration", "1", "--view-save", str(rrd))
    assert done.returncode == 2 and str(rrd) in done.stderr and "Traceback" not in done.stderr
    assert rrd.read_bytes() == b"keep"


class WebView:
    """`sensorfuse replay SESSION --view web` in a subprocess, its stderr read line by line."""

    def __init__(self, session: Path, out: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen([*SENSORFUSE, "replay", str(session), "--rate", "2", "--out", str(out),
                                      "--view", "web"], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, start_new_session=True)
        self.lines: list[str] = []

    def wait_line(self, text: str, timeout: float = 60) -> str:
        def line_with() -> str | None:
            line = self.proc.stderr.readline()
            self.lines.append(line)
            assert line or self.proc.poll() is None, "".join(self.lines)
            return line if text in line else None

        return wait_for(line_with, timeout, repr(text))

    def url(self) -> str:
        return self.wait_line("viewer: open ").split("viewer: open ", 1)[1].strip()

    def kill(self) -> None:
        """SIGKILL: the rerun server (in a session of its own) goes with it."""
        if self.proc.poll() is not None:
            return
        servers = psutil.Process(self.proc.pid).children(recursive=True)
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        gone, alive = psutil.wait_procs(servers, timeout=10)
        assert not alive, f"left running: {alive}"


def test_view_web_serves_on_loopback_only_until_interrupted(session: Path, tmp_path: Path,
                                                             env: dict[str, str]) -> None:
    web = WebView(session, tmp_path / "out", env)
    try:
        url = web.url()
        assert url.startswith("http://127.0.0.1:") and "url=rerun%2Bhttp%3A%2F%2F127.0.0.1%3A" in url
        with urllib.request.urlopen(url, timeout=10) as page:
            assert page.status == 200
        family = [psutil.Process(web.proc.pid), *psutil.Process(web.proc.pid).children(recursive=True)]
        listening = [c.laddr for p in family for c in p.net_connections("inet") if c.status == psutil.CONN_LISTEN]
        assert len(listening) >= 2 and {a.ip for a in listening} == {"127.0.0.1"}, listening
        web.wait_line("still serving")
        servers = [p for p in family if p.pid != web.proc.pid and p.is_running()]
        assert servers, "no rerun server process"
        web.proc.send_signal(signal.SIGINT)
        assert web.proc.wait(timeout=30) == 0, "".join(web.lines) + web.proc.stderr.read()
        psutil.wait_procs(servers, timeout=10)
        assert not [p for p in servers if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    finally:
        web.kill()


def test_web_viewer_in_headless_chromium_shows_the_frame_with_its_face_box(
        tmp_path: Path, env: dict[str, str], request: pytest.FixtureRequest) -> None:
    """The page the printed URL serves, rendered by headless Chromium in software (WebGL):
    the camera frame is drawn, and a face box on it (the sample's true boxes, yellow)."""
    session_ = tmp_path / "s.mcap"
    sample.generate(session_, seed=SEED, duration_s=2.0, size=(320, 240), fps=10)
    web = WebView(session_, tmp_path / "out", env)
    chrome = None
    try:
        url = web.url()
        web.wait_line("still serving")  # JPEG frames show once the stream has stopped (shared/VIEW.md)
        chrome = Chromium()
        chrome.open(url + "&renderer=webgl")
        cache = getattr(request.config, "cache", None)  # the screenshot stays as an artifact
        shot = (cache.mkdir("view-screenshot") if cache is not None else tmp_path) / "view-web.png"

        def frame_with_box() -> bool:
            png = chrome.screenshot()
            shot.write_bytes(png)
            image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR).astype(int)
            camera = image[60:420, :760]  # the blueprint's camera view, top left
            box = np.all(np.abs(camera - TRUTH_BGR) < 40, axis=2).sum()
            shown = (np.abs(camera - 255).sum(axis=2) > 60).mean()  # not the white of an empty view
            return bool(box > 100 and shown > 0.3)

        wait_for(frame_with_box, 90, f"the camera frame with a face box in {shot}", interval=1.0)
    finally:
        if chrome is not None:
            chrome.close()
        web.kill()


def test_viewer_wiring_prefers_model_audio_and_takes_the_scores(tmp_path: Path) -> None:
    session_ = view.ViewSession("rrd", str(tmp_path / "w.rrd"))
    graph = {"nodes": {"perceive": {"kind": "perceive",
                                    "outputs": {"events": "perceive/events", "detections": "perceive/detections",
                                                "scores": "perceive/scores"}},
                       "viewer": {"kind": "relay"}}}
    g = session_.add_to(graph, ["cam0/frame", "mic0/audio", "mic0/audio16k", "text/in", "labels/boxes", "labels",
                                "perceive/events", "perceive/detections", "perceive/scores"])
    node = g["nodes"]["_viewer"]
    assert node["inputs"] == {"frame": "cam0/frame", "audio": "mic0/audio16k", "text": "text/in",
                              "truth": "labels/boxes", "events": "perceive/events",
                              "detections": "perceive/detections", "scores": "perceive/scores"}
    assert node["params"] == {"save": str(tmp_path / "w.rrd")}  # thresholds come with the scores
