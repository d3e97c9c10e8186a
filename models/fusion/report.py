"""`sensorfuse fusion eval`'s HTML report: the metrics table, F1 bars, and on the first
held-out session the head's per-tick scores against the truth.

- F1 per strategy and output (all modalities), and per condition (a modality masked) for
  the strategy shown below;
- for ``speaking`` (any face slot; the truth: the slot's face is the one speaking) and
  ``offscreen``: a timeline of truth vs predicted (score >= `evaluate.THRESHOLD`)
  intervals and the score trace with the threshold. ``relevance`` is scored over every
  (tick, query) pair, which has no single timeline: its numbers are in the table.

The features hold no frames, so this report has no key frames (the demo's has).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sensorfuse.perception.features import FEATURES
from sensorfuse.perception.fusion import OUTPUTS, FusionHead, manifest_path_for
from sensorfuse.models.fusion import evaluate
from sensorfuse.nodes import report_plots
from sensorfuse.nodes.report_html import HtmlReport
from sensorfuse.replay.sample_labels import runs

TRACED = ("speaking", "offscreen")


def first_session(t_ns: np.ndarray) -> slice:
    """The rows of the first session in stacked features (each session's clock restarts)."""
    back = np.flatnonzero(np.diff(t_ns) <= 0)
    return slice(0, int(back[0]) + 1 if back.size else len(t_ns))


def session_traces(head: FusionHead, data: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per traced output on the first session: (score per tick, truth per tick)."""
    rows = first_session(data["t_ns"])
    out = evaluate._run_batched(head.run, {k: data[k][rows] for k in FEATURES})
    filled = data["face_mask"][rows] > 0
    speaking = np.where(filled, out["speaking"], 0.0).max(axis=1)
    truth_speaking = (np.where(filled, data["speaking"][rows], 0.0) > 0).any(axis=1)
    return {"speaking": (speaking, truth_speaking), "offscreen": (out["offscreen"][:, 0], data["offscreen"][rows] > 0)}


def build(report: dict[str, Any], heads: Path, strategy: str, heldout: dict[str, np.ndarray]) -> HtmlReport:
    """The page for `_evaluate`'s `report`; traces of `strategy`'s head from `heads`."""
    results = report["results"]
    page = HtmlReport("sensorfuse fusion eval")
    page.paragraph(f"{len(results)} strategies on {int(heldout['t_ns'].shape[0])} held-out ticks; threshold "
                   f"{evaluate.THRESHOLD:g}; best on these sessions: {report['default']}.")
    header = ["strategy", "condition", "output", "accuracy", "precision", "recall", "F1", "n", "positives"]
    rows = [[s, c, o, *(f"{results[s][c][o][k]:.3f}" for k in ("accuracy", "precision", "recall", "f1")),
             results[s][c][o]["n"], results[s][c][o]["positives"]]
            for s in results for c in evaluate.CONDITIONS for o in OUTPUTS]
    page.table(header, rows, row_data=[{"type": f"{r[0]}/{r[1]}/{r[2]}"} for r in rows], name="metrics")
    page.heading("F1")
    page.figure(report_plots.metric_bars("F1 by strategy (all modalities)",
                                         {s: {o: results[s]["all"][o]["f1"] for o in OUTPUTS} for s in results},
                                         ylabel="F1"), alt="F1 by strategy", data={"kind": "metrics"})
    page.figure(report_plots.metric_bars(f"F1 of {strategy} by condition",
                                         {c: {o: results[strategy][c][o]["f1"] for o in OUTPUTS}
                                          for c in evaluate.CONDITIONS}, ylabel="F1"),
                alt=f"F1 of {strategy} by condition", data={"kind": "metrics"})
    t_ns = heldout["t_ns"][first_session(heldout["t_ns"])]
    times = t_ns / 1e9
    t_range = (float(times[0]), float(times[-1]))
    traces = session_traces(FusionHead(manifest_path_for(heads, strategy)), heldout)
    page.heading(f"First held-out session, head {strategy}")
    for output in TRACED:
        score, truth = traces[output]
        truth_runs, pred_runs = _intervals_s(t_ns, truth), _intervals_s(t_ns, score >= evaluate.THRESHOLD)
        page.heading(output, 3)
        page.figure(report_plots.timeline(f"{output}: truth vs predicted (score >= {evaluate.THRESHOLD:g})",
                                          [("truth", truth_runs, report_plots.TRUTH_COLOR),
                                           ("predicted", pred_runs, report_plots.DETECTED_COLOR)], t_range),
                    alt=f"{output} timeline", data={"kind": "timeline", "output": output, "truth": len(truth_runs),
                                                    "detected": len(pred_runs)})
        page.figure(report_plots.score_trace(f"{output} score", [(output, list(times), list(score))], [],
                                             on=evaluate.THRESHOLD, off=evaluate.THRESHOLD, t_range=t_range),
                    alt=f"{output} score trace", data={"kind": "scores", "output": output})
    return page


def _intervals_s(t_ns: np.ndarray, flags: np.ndarray) -> list[tuple[float, float]]:
    period_ns = int(np.median(np.diff(t_ns))) if len(t_ns) > 1 else 0
    return [(s / 1e9, e / 1e9) for s, e in runs([bool(f) for f in flags], [int(t) for t in t_ns], period_ns)]


def write(path: Path, report: dict[str, Any], heads: Path, strategy: str, heldout: dict[str, np.ndarray]) -> Path:
    return build(report, heads, strategy, heldout).write(path)
