"""Training, ONNX export and the torch-vs-ONNX parity check of the audio-event encoder.

Fixed seed, CPU. Each epoch cuts every train session into windows every `stride_frames`
frames from a random offset (so over the epochs the model sees windows at every 10 ms
position), applies a random gain of ±`gain_db` to each window (a constant added to its
log-mel, clipped at the floor: real microphones differ in level), and weights the
cross-entropy by inverse class frequency (speech and background dominate the sessions).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from sensorfuse.engine import manifest as mf
from sensorfuse.engine import progressbar
from sensorfuse.perception.sound import FEATURES, INPUT_NAME, N_FRAMES, N_MELS, OUTPUT_NAME, SOUND_CLASSES
from sensorfuse.models.sound import MANIFEST_FILE, MODEL_NAME, dataset
from sensorfuse.models.sound.model import SoundNet

PARITY_ATOL = 1e-4


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 12
    batch: int = 128
    lr: float = 3e-3
    weight_decay: float = 1e-4
    stride_frames: int = 10  # one window per 100 ms per session and epoch
    gain_db: float = 15.0  # ±6 dB held up only within ±6 dB; ±15 dB holds -20..+12 dB (docs/sound.md)
    channels: tuple[int, int, int] = (8, 16, 24)
    hidden: int = 32
    # One thread: these convolutions are too small to share; with two threads on this
    # 2-core machine a batch took 10x longer whenever anything else was running.
    threads: int = 1
    seed: int = 0


def epoch_windows(sessions: dict[int, dict[str, np.ndarray]], stride_frames: int,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    parts = [dataset.windows(sessions[s], stride_frames=stride_frames, offset=int(rng.integers(stride_frames)))
             for s in sorted(sessions)]
    return np.concatenate([p.features for p in parts]), np.concatenate([p.labels for p in parts])


def class_weights(labels: np.ndarray) -> np.ndarray:
    counts = np.bincount(labels, minlength=len(SOUND_CLASSES)).astype(np.float64)
    weights = counts.sum() / np.maximum(counts, 1.0) / len(SOUND_CLASSES)
    return (weights / weights.mean()).astype(np.float32)


def train(sessions: dict[int, dict[str, np.ndarray]], cfg: TrainConfig = TrainConfig(),
          log: Any = progressbar.say) -> SoundNet:
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        return _train(sessions, cfg, log)
    finally:
        torch.set_num_threads(threads)


def _train(sessions: dict[int, dict[str, np.ndarray]], cfg: TrainConfig, log: Any) -> SoundNet:
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    all_frames = np.concatenate([sessions[s]["log_mel"] for s in sorted(sessions)])
    model = SoundNet(all_frames.mean(axis=0), all_frames.std(axis=0) + 1e-3, channels=cfg.channels,
                     hidden=cfg.hidden)
    _, first_labels = epoch_windows(sessions, cfg.stride_frames, np.random.default_rng(cfg.seed))
    weights = torch.from_numpy(class_weights(first_labels))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, cfg.epochs))
    for epoch in progressbar.bar(range(cfg.epochs), desc="train sound", unit="epoch"):
        model.train()
        feats, labels = epoch_windows(sessions, cfg.stride_frames, rng)
        feats = dataset.with_gain(feats, rng.uniform(-cfg.gain_db, cfg.gain_db, size=(feats.shape[0], 1, 1)))
        order = rng.permutation(feats.shape[0])
        total, correct = 0.0, 0
        for i in range(0, len(order), cfg.batch):
            rows = order[i:i + cfg.batch]
            x, y = torch.from_numpy(feats[rows]), torch.from_numpy(labels[rows])
            logits = model.logits(x)
            loss = nn.functional.cross_entropy(logits, y, weight=weights)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(rows)
            correct += int((logits.argmax(1) == y).sum())
        sched.step()
        if epoch % 4 == 3 or epoch == cfg.epochs - 1:
            log(f"  epoch {epoch + 1:>3}/{cfg.epochs} loss {total / len(order):.4f} "
                f"train accuracy {correct / len(order):.3f} ({len(order)} windows)")
    model.eval()
    return model


def manifest_path_for(directory: Path) -> Path:
    return directory / MANIFEST_FILE


def export(model: SoundNet, out_dir: Path, example: np.ndarray, *, trained: dict[str, Any] | None = None) -> Path:
    """Write sound_events.onnx + manifest; check ONNX vs torch on `example` (raises on mismatch)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / f"{MODEL_NAME}.onnx"
    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
    torch.onnx.export(model, (torch.from_numpy(example[:8]),), str(onnx_path), input_names=[INPUT_NAME],
                      output_names=[OUTPUT_NAME], dynamic_axes=axes, opset_version=17, dynamo=False)
    diff = parity(model, onnx_path, example)
    if diff > PARITY_ATOL:
        raise RuntimeError(f"{onnx_path}: ONNX vs torch max abs diff {diff:.2e} > {PARITY_ATOL}")
    manifest = {
        "name": MODEL_NAME, "file": onnx_path.name, "sha256": mf.sha256_file(onnx_path),
        "classes": list(SOUND_CLASSES), "features": FEATURES, "input": INPUT_NAME, "output": OUTPUT_NAME,
        "trained": {**(trained or {}), "parity_max_abs_diff": float(diff),
                    "parameters": sum(p.numel() for p in model.parameters())},
    }
    path = manifest_path_for(out_dir)
    path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return path


def parity(model: SoundNet, onnx_path: Path, example: np.ndarray) -> float:
    """Max abs difference between torch and onnxruntime probabilities over a batch."""
    assert example.shape[1:] == (N_FRAMES, N_MELS), example.shape
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run([OUTPUT_NAME], {INPUT_NAME: example})[0]
    with torch.no_grad():
        want = model(torch.from_numpy(example)).numpy()
    return float(np.abs(got - want).max())
