"""`sensorfuse demo` writes an HTML report with plots: through the real command line on a
short sample session, then read back as HTML and rendered by headless Chromium.

The pictures are checked against the run's own summary (``demo-report.json``): one
timeline per event type present, drawing as many truth intervals and detections as the
summary counts; key frames with the faces perceive found; every image decodes in a browser
and the screenshot shows the truth and detection colours.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from sensorfuse.engine import manifest as mf
from sensorfuse.nodes import demo, report_plots
from sensorfuse.replay import sample
from sfhelpers import parse_report_html as parse

pytestmark = pytest.mark.timeout(240)
CHROMIUM = shutil.which("chromium")


@pytest.fixture(scope="module")
def demo_out(model_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A 6 s sample session (seed 5: a face, its speech, off-screen speech, a sound, queries) through
    `sensorfuse demo`."""
    tmp = tmp_path_factory.mktemp("demo-html")
    sample.generate(tmp / "s.mcap", seed=5, duration_s=6.0)
    out = subprocess.run([sys.executable, "-m", "sensorfuse.engine.cli", "demo", "--session", "s.mcap",
                          "--out", "out", "--rate", "max"], capture_output=True, text=True, cwd=tmp, timeout=200,
                         env={**os.environ, mf.CACHE_ENV: str(model_cache)})
    html_path = tmp / "out" / demo.HTML_REPORT
    return {"run": out, "html": html_path, "summary": json.loads((tmp / "out" / demo.REPORT).read_text())}


def test_demo_writes_the_html_report_and_prints_its_path(demo_out: dict[str, Any]) -> None:
    run = demo_out["run"]
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    assert f"demo: HTML report with plots in {demo_out['html']}\n" in run.stdout
    assert "== sensorfuse demo: summary ==" in run.stdout and "demo finished in" in run.stdout
    text = demo_out["html"].read_text()
    assert "src=\"http" not in text and "href=\"http" not in text, "self-contained: nothing fetched"


def test_report_pictures_match_the_summary(demo_out: dict[str, Any]) -> None:
    page = parse(demo_out["html"].read_text())
    scores = demo_out["summary"]["scores"]
    assert sum(s["events"] for s in scores.values()) > 0, "the run has events to draw"
    for img in page.images:
        prefix = "data:image/png;base64,"
        assert img["src"].startswith(prefix)
        assert base64.b64decode(img["src"][len(prefix):])[:8] == b"\x89PNG\r\n\x1a\n"
    timelines = {img["data-event-type"]: img for img in page.images if img.get("data-kind") == "timeline"}
    present = {t for t, s in scores.items() if s["events"] or s["truths"]}
    assert set(timelines) == present
    for etype, img in timelines.items():
        assert int(img["data-detected"]) == scores[etype]["events"], etype
        assert int(img["data-truth"]) == scores[etype]["truths"], etype
    traces = [img["data-event-type"] for img in page.images if img.get("data-kind") == "scores"]
    assert sorted(traces) == sorted(present)
    frames = [img for img in page.images if img.get("data-kind") == "frame"]
    assert 1 <= len(frames) <= 4 and any(int(f["data-faces"]) > 0 for f in frames)
    assert len(page.images) == 2 * len(present) + len(frames)
    for etype, s in scores.items():  # the table holds the summary's numbers
        cells = page.cells[etype]
        assert [int(cells[c]) for c in ("events", "right", "truth", "found")] == [
            s["events"], s["correct"], s["truths"], s["found"]], etype


def _chromium(*args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM, "chromium is installed by the Makefile (APT_PKGS)"
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--virtual-time-budget=3000", *args], capture_output=True, text=True, timeout=60)


def _has_colour(image: np.ndarray, hex_rgb: str, min_pixels: int = 200) -> bool:
    rgb = np.array([int(hex_rgb[i:i + 2], 16) for i in (1, 3, 5)])
    bgr = rgb[::-1]
    close = np.all(np.abs(image[..., :3].astype(int) - bgr) <= 8, axis=-1)
    return int(close.sum()) >= min_pixels


def test_report_renders_in_headless_chromium(demo_out: dict[str, Any], tmp_path: Path) -> None:
    url = demo_out["html"].as_uri()
    dom = _chromium("--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-1000:]
    page = parse(dom.stdout)
    assert page.images and page.body.get("data-images-decoded") == str(len(page.images)), \
        "every picture decoded in the browser"
    shot = tmp_path / "report.png"
    done = _chromium(f"--screenshot={shot}", "--window-size=1100,3000", url)
    assert done.returncode == 0 and shot.is_file(), done.stderr[-1000:]
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[:2] == (3000, 1100)
    assert _has_colour(image, report_plots.TRUTH_COLOR) and _has_colour(image, report_plots.DETECTED_COLOR), \
        "timelines drawn: truth (green) and detected (blue) bars on the page"
