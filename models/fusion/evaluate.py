"""Evaluation of the exported heads (ONNX, as shipped) on held-out sessions.

Per output, at threshold 0.5:
- speaking: every (tick, filled face slot); truth = the slot's matched ground-truth face
  is the speaking one (IoU >= 0.3 with the generator's box).
- offscreen: every tick; truth = the `offscreen_speech` label covers the tick.
- relevance: every (tick, query phrasing or command) pair; truth = the generator's rule
  for that query at that tick (`dataset.query_truth`).

Conditions: all modalities; each of vision, audio, text masked (as when the aligner
reports it missing). Baseline: the best single sensor (vision or audio alone; relevance
keeps the text since the query is the question, not evidence).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from sensorfuse.perception.features import FEATURES
from sensorfuse.perception.fusion import OUTPUTS, mask_modalities

RunFn = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
CONDITIONS: dict[str, frozenset[str]] = {
    "all": frozenset(), "no_vision": frozenset({"vision"}), "no_audio": frozenset({"audio"}),
    "no_text": frozenset({"text"}),
}
SINGLE: dict[str, frozenset[str]] = {"vision_only": frozenset({"audio"}), "audio_only": frozenset({"vision"})}
THRESHOLD = 0.5


def binary_metrics(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    pred, truth = pred.astype(bool), truth.astype(bool)
    tp = int((pred & truth).sum())
    fp = int((pred & ~truth).sum())
    fn = int((~pred & truth).sum())
    n = int(pred.size)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"accuracy": round((n - fp - fn) / n, 4) if n else 0.0, "precision": round(precision, 4),
            "recall": round(recall, 4), "f1": round(f1, 4), "n": n, "positives": int(truth.sum())}


def _run_batched(run: RunFn, inputs: dict[str, np.ndarray], batch: int = 4096) -> dict[str, np.ndarray]:
    n = inputs["faces"].shape[0]
    parts = [run({k: v[i:i + batch] for k, v in inputs.items()}) for i in range(0, n, batch)]
    return {k: np.concatenate([p[k] for p in parts]) for k in OUTPUTS}


def evaluate(run: RunFn, data: dict[str, np.ndarray], drop: frozenset[str] = frozenset()) -> dict[str, Any]:
    base = {k: data[k] for k in FEATURES}
    slots = data["face_mask"] > 0
    out = _run_batched(run, mask_modalities(base, drop))
    result = {
        "speaking": binary_metrics(out["speaking"][slots] >= THRESHOLD, data["speaking"][slots] > 0),
        "offscreen": binary_metrics(out["offscreen"][:, 0] >= THRESHOLD, data["offscreen"] > 0),
    }
    embeddings = data["query_embeddings"]
    n, q = data["t_ns"].shape[0], embeddings.shape[0]
    expanded = {k: np.repeat(v, q, axis=0) for k, v in base.items()}
    expanded["query"] = np.tile(embeddings, (n, 1))
    expanded["query_mask"] = np.ones((n * q, 1), np.float32)
    rel = _run_batched(run, mask_modalities(expanded, drop))["relevance"][:, 0]
    result["relevance"] = binary_metrics(rel >= THRESHOLD, data["relevance"].reshape(-1) > 0)
    return result


def evaluate_all(run: RunFn, data: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    return {name: evaluate(run, data, drop) for name, drop in {**CONDITIONS, **SINGLE}.items()}


def best_single(results: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per output, the best single-sensor F1 over all strategies (which strategy, which sensor)."""
    best: dict[str, dict[str, Any]] = {}
    for strategy, conds in results.items():
        for cond in SINGLE:
            for output, m in conds[cond].items():
                if output not in best or m["f1"] > best[output]["f1"]:
                    best[output] = {**m, "strategy": strategy, "condition": cond}
    return best


def mean_f1(conds: dict[str, dict[str, Any]]) -> float:
    return round(float(np.mean([m["f1"] for m in conds["all"].values()])), 4)


def markdown(results: dict[str, dict[str, dict[str, Any]]], default: str | None) -> str:
    """The results as a table; `default`: the strategy `head: default` loads (marked)."""
    lines = ["| strategy | condition | output | accuracy | precision | recall | F1 | n (positives) |",
             "|---|---|---|---|---|---|---|---|"]
    for strategy in results:
        for cond in CONDITIONS:
            for output in OUTPUTS:
                m = results[strategy][cond][output]
                mark = " **(default)**" if strategy == default and cond == "all" and output == "speaking" else ""
                lines.append(f"| {strategy}{mark} | {cond} | {output} | {m['accuracy']:.3f} | {m['precision']:.3f} "
                             f"| {m['recall']:.3f} | {m['f1']:.3f} | {m['n']} ({m['positives']}) |")
    lines += ["", "Best single-sensor baseline (over strategies):", "",
              "| output | strategy | sensor | accuracy | precision | recall | F1 |", "|---|---|---|---|---|---|---|"]
    for output, m in best_single(results).items():
        lines.append(f"| {output} | {m['strategy']} | {m['condition']} | {m['accuracy']:.3f} | {m['precision']:.3f} "
                     f"| {m['recall']:.3f} | {m['f1']:.3f} |")
    return "\n".join(lines) + "\n"
