"""How far do event scores move when onnxruntime picks other kernels?

Scores are not bit-identical across machines: onnxruntime's int8 and fp32 kernels differ
by CPU instruction set (AVX2, AVX-512, VNNI, AMX). The golden tests therefore compare
scores within a tolerance (`sensorfuse.replay.compare.SCORE_TOL`); this script measures the
deltas that tolerance has to cover, on one machine, by running the demo graph (real
processes, --rate max) once per onnxruntime graph optimization level
(`SENSORFUSE_ORT_OPTIMIZATION`): each level fuses differently and so runs other kernels
(`disable` runs the int8 QDQ models as dequantize → fp32 op → quantize).

For each level it prints whether the event structure (everything but scores and boxes) is
identical to the default level's, and the largest score and box deltas; with `--reference`
(a golden JSONL approved on another machine) the same against that file. For scale, one
real model change is measured the same way: the demo with another fusion head
(`--regression-head`, default `early`; the shipped default is `late`), which a golden test must reject.

    .venv/bin/python bench/kernel_drift.py [--cache DIR] [--reference tests/fusion/data/golden_events.jsonl]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from _common import machine_description, markdown_table
from sensorfuse.engine import fingerprint
from sensorfuse.engine import manifest as mf
from sensorfuse.engine.inference import OPTIMIZATION_ENV, OPTIMIZATION_LEVELS
from sensorfuse.nodes import demo
from sensorfuse.replay.compare import BOX_TOL_PX, SCORE_TOL, diff_events, max_box_delta, max_score_delta

RUN_SPECIFIC = ("t_pub_ns", "t_recv_ns", "session")


def run_demo(session: Path, cache: Path, work: Path, level: str, head: str = "default") -> list[dict[str, Any]]:
    decl = demo.demo_graph(session, work, rate="max", cache=cache, head=head, quiet=True)
    graph_path = work / "graph.yaml"
    graph_path.write_text(yaml.safe_dump(decl))
    env = dict(os.environ, **{OPTIMIZATION_ENV: level})
    with tempfile.TemporaryDirectory(prefix="sfk", dir="/tmp") as run_dir:
        done = subprocess.run([sys.executable, "-m", "sensorfuse.engine.cli", "run", str(graph_path),
                               "--run-dir", run_dir], cwd=work, env=env, capture_output=True, text=True)
        fp_file = Path(run_dir, "fingerprint.json")
        if fp_file.is_file():
            (work / "fingerprint.json").write_text(fp_file.read_text())
    if done.returncode != 0:
        raise RuntimeError(f"graph failed at level {level} ({done.returncode}): {done.stderr[-2000:]}")
    lines = [json.loads(x) for x in (work / "events.jsonl").read_text().splitlines() if x.strip()]
    return [{k: v for k, v in e.items() if k not in RUN_SPECIFIC} for e in lines if e["t_ns"] < demo.STABLE_UNTIL_NS]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=None, help="model pack (default: the user cache)")
    parser.add_argument("--session", type=Path, default=None, help="session (default: the demo session)")
    parser.add_argument("--levels", default=",".join(OPTIMIZATION_LEVELS), help="comma-separated levels")
    parser.add_argument("--reference", type=Path, help="golden events JSONL approved on another machine")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--regression-head", default="early",
                        help="a real model change for scale: the demo with this fusion head instead of the default")
    args = parser.parse_args()
    cache = args.cache or mf.default_cache_dir()
    session = args.session or demo.ensure_session()
    levels = args.levels.split(",")
    runs = {}
    with tempfile.TemporaryDirectory(prefix="sf-drift") as tmp:
        for i, level in enumerate(levels):  # a level listed twice measures run-to-run (must be 0)
            label = level if level not in levels[:i] else f"{level} (run {levels[:i + 1].count(level)})"
            work = Path(tmp) / str(i)
            work.mkdir()
            runs[label] = run_demo(session, cache, work, level)
        if args.regression_head:
            work = Path(tmp) / "regression"
            work.mkdir()
            changed = run_demo(session, cache, work, levels[0], head=args.regression_head)
        fp_file = Path(tmp) / "0" / "fingerprint.json"
        graph_fingerprint = json.loads(fp_file.read_text()) if fp_file.is_file() else fingerprint.fingerprint()
    base = runs[levels[0]]
    labels = list(runs)
    compared = {f"{label} vs {labels[0]}": (runs[label], base) for label in labels[1:]}
    if args.regression_head:
        compared[f"head {args.regression_head} vs default (a real change)"] = (changed, base)
    if args.reference:
        ref = [json.loads(x) for x in args.reference.read_text().splitlines() if x.strip()]
        ref = [e for e in ref if e["t_ns"] < demo.STABLE_UNTIL_NS]
        compared.update({f"{label} vs {args.reference.name}": (runs[label], ref) for label in labels})
    rows, results = [], {}
    for name, (got, want) in compared.items():
        structural = diff_events(got, want, score_tol=float("inf"), box_tol=float("inf"))
        within = diff_events(got, want)
        result = {"events": len(got), "reference_events": len(want), "structure_identical": not structural,
                  "max_score_delta": round(max_score_delta(got, want), 4),
                  "max_box_delta_px": round(max_box_delta(got, want), 2), "within_tolerance": not within}
        results[name] = result
        rows.append([name, f"{len(got)} / {len(want)}", "yes" if not structural else "NO",
                     f"{result['max_score_delta']:.4f}", f"{result['max_box_delta_px']:.1f}",
                     "yes" if not within else "NO"])
    print(machine_description())
    print(f"tolerances: score {SCORE_TOL}, box {BOX_TOL_PX} px\n")
    print(markdown_table(["comparison", "events", "same structure", "max |Δscore|", "max |Δbox| px",
                          "within tolerance"], rows))
    if args.json:
        args.json.write_text(json.dumps({"machine": machine_description(), "results": results,
                                         "fingerprint": graph_fingerprint}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
