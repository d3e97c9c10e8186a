"""Evaluation of the exported audio-event encoder (ONNX, as shipped) on held-out sessions.

Windows every `EVAL_STRIDE_FRAMES` (100 ms) of each held-out session whose majority class
covers at least half of the window (`dataset.MIN_MAJORITY`); truth = that class;
prediction = the arg-max class. Per class precision / recall / F1, the confusion matrix
(rows truth, columns prediction), accuracy over all windows and over the windows that lie
wholly inside one class (no boundary in them), accuracy with the signal's level changed
(`GAINS_DB`), and the run time per window.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from sensorfuse.perception.sound import INPUT_NAME, OUTPUT_NAME, SOUND_CLASSES, WINDOW_SAMPLES, SoundClassifier
from sensorfuse.models.sound import dataset

EVAL_STRIDE_FRAMES = 10
GAINS_DB = (-20, -12, -6, 6, 12, 20)  # the whole microphone signal louder or quieter


def metrics(pred: np.ndarray, truth: np.ndarray, share: np.ndarray) -> dict[str, Any]:
    k = len(SOUND_CLASSES)
    confusion = np.zeros((k, k), np.int64)
    np.add.at(confusion, (truth, pred), 1)
    per_class = {}
    for i, name in enumerate(SOUND_CLASSES):
        tp = int(confusion[i, i])
        fp, fn = int(confusion[:, i].sum()) - tp, int(confusion[i].sum()) - tp
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
                           "n": int(confusion[i].sum())}
    pure = share >= 1.0
    return {
        "classes": list(SOUND_CLASSES), "per_class": per_class, "confusion": confusion.tolist(),
        "accuracy": round(float((pred == truth).mean()), 4), "n": int(truth.shape[0]),
        "macro_f1": round(float(np.mean([c["f1"] for c in per_class.values()])), 4),
        "accuracy_pure_windows": round(float((pred[pure] == truth[pure]).mean()), 4) if pure.any() else 0.0,
        "n_pure_windows": int(pure.sum()),
    }


def evaluate(classifier: SoundClassifier, sessions: dict[int, dict[str, np.ndarray]]) -> dict[str, Any]:
    parts = [dataset.windows(sessions[s], stride_frames=EVAL_STRIDE_FRAMES) for s in sorted(sessions)]
    feats = np.concatenate([p.features for p in parts])
    truth = np.concatenate([p.labels for p in parts])
    share = np.concatenate([p.share for p in parts])
    result = metrics(_predict(classifier, feats), truth, share)
    result["accuracy_by_gain_db"] = {
        str(db): round(float((_predict(classifier, dataset.with_gain(feats, db)) == truth).mean()), 4)
        for db in GAINS_DB}
    result["ms_per_window"] = round(time_per_window(classifier), 3)
    return result


def _predict(classifier: SoundClassifier, feats: np.ndarray) -> np.ndarray:
    probs = [classifier.session.run([OUTPUT_NAME], {INPUT_NAME: feats[i:i + 1024]})[0]
             for i in range(0, feats.shape[0], 1024)]
    return np.concatenate(probs).argmax(axis=1)


def time_per_window(classifier: SoundClassifier, runs: int = 300) -> float:
    """Median milliseconds of `probabilities` (features + model) on one window of noise."""
    window = np.random.default_rng(0).normal(0.0, 0.1, WINDOW_SAMPLES).astype(np.float32)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        classifier.probabilities(window)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def markdown(result: dict[str, Any], heldout_seeds: list[int]) -> str:
    lines = [f"Held-out seeds {heldout_seeds[0]}–{heldout_seeds[-1]}: {result['n']} windows of 0.5 s every "
             f"{EVAL_STRIDE_FRAMES * 10} ms; accuracy {result['accuracy']:.3f}, macro F1 {result['macro_f1']:.3f}; "
             f"accuracy on the {result['n_pure_windows']} windows wholly inside one class "
             f"{result['accuracy_pure_windows']:.3f}; {result['ms_per_window']:.2f} ms per window "
             "(features + model, one thread).", "",
             "| class | precision | recall | F1 | n |", "|---|---|---|---|---|"]
    for name, c in result["per_class"].items():
        lines.append(f"| {name} | {c['precision']:.3f} | {c['recall']:.3f} | {c['f1']:.3f} | {c['n']} |")
    lines += ["", "Confusion (rows: truth, columns: predicted):", "",
              "| truth \\ predicted | " + " | ".join(result["classes"]) + " |",
              "|---|" + "---|" * len(result["classes"])]
    for name, row in zip(result["classes"], result["confusion"]):
        lines.append(f"| {name} | " + " | ".join(str(v) for v in row) + " |")
    gains = result["accuracy_by_gain_db"]
    lines += ["", "Accuracy with the whole signal louder or quieter (room tone included):", "",
              "| gain dB | " + " | ".join(gains) + " |", "|---|" + "---|" * len(gains),
              "| accuracy | " + " | ".join(f"{v:.3f}" for v in gains.values()) + " |"]
    return "\n".join(lines) + "\n"
