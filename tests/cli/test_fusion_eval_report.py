"""`sensorfuse fusion eval` writes an HTML report with plots and prints its path; its table
holds the numbers of `--json`, and the first held-out session is drawn per traced output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sensorfuse.engine import manifest as mf
from sensorfuse.models.fusion import report as fusion_report
from sensorfuse.models.fusion.cli import DATA_DIR, loaded_by_default
from sfhelpers import parse_report_html as parse

pytestmark = pytest.mark.timeout(180)


def test_fusion_eval_writes_an_html_report(model_cache: Path, tmp_path: Path) -> None:
    env = {**os.environ, mf.CACHE_ENV: str(tmp_path / "models")}  # held-out features cached beside it, in tmp
    out = subprocess.run([sys.executable, "-m", "sensorfuse.engine.cli", "fusion", "eval", "--cache", str(model_cache),
                          "--heldout-sessions", "1", "--duration", "4", "--workers", "1", "--json", "eval.json",
                          "--report", "eval.html"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=150)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    assert "HTML report with plots in eval.html\n" in out.stdout
    results = json.loads((tmp_path / "eval.json").read_text())["results"]
    page = parse((tmp_path / "eval.html").read_text())
    for strategy, conds in results.items():
        for cond in ("all", "no_vision", "no_audio", "no_text"):
            for output, m in conds[cond].items():
                cells = page.cells[f"{strategy}/{cond}/{output}"]
                assert cells["F1"] == f"{m['f1']:.3f}" and int(cells["n"]) == m["n"], (strategy, cond, output)
    kinds = [(img.get("data-kind"), img.get("data-output")) for img in page.images]
    assert kinds.count(("metrics", None)) == 2
    for output in fusion_report.TRACED:
        assert ("timeline", output) in kinds and ("scores", output) in kinds
    assert f"head {loaded_by_default(DATA_DIR)}" in (tmp_path / "eval.html").read_text()
