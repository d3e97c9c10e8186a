"""Training, ONNX export and the torch-vs-ONNX parity check of the fusion heads.

Fixed seed, CPU, a few thousand ticks: each strategy trains in seconds to a minute.
Every training tick gets one query sampled from the generator's phrasings and commands
(or none), with its truth at that tick, and each modality is dropped with probability
`drop_p` (its inputs zeroed, mask 0) so the heads learn to degrade when the aligner
reports a sensor missing.
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
from sensorfuse.perception.features import FEATURES, LIP_FEATURES, MODALITY_INPUTS
from sensorfuse.perception.fusion import FEATURE_VERSION, OUTPUTS, manifest_path_for
from sensorfuse.models.fusion.heads import INPUT_NAMES, STRATEGY_CLASSES, FusionBase

PARITY_ATOL = 1e-4


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 40
    batch: int = 256
    lr: float = 3e-3
    weight_decay: float = 1e-4
    drop_p: float = 0.2  # per modality, per sample
    # Landmark lip features hidden from half the samples: the training faces are frontal,
    # where the lip gap alone is enough; the head must also learn the mouth-patch cue that
    # still works on faces in profile (held-out media).
    lip_drop_p: float = 0.5
    query_p: float = 0.85  # share of samples with a query
    seed: int = 0


def stack(sessions: dict[int, dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Rows of all sessions in seed order; the query embeddings are the same everywhere."""
    seeds = sorted(sessions)
    out = {k: np.concatenate([sessions[s][k] for s in seeds]) for k in sessions[seeds[0]] if k != "query_embeddings"}
    out["query_embeddings"] = sessions[seeds[0]]["query_embeddings"]
    return out


def sample_batch(data: dict[str, np.ndarray], rows: np.ndarray, rng: np.random.Generator,
                 cfg: TrainConfig) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Inputs with sampled queries and dropped modalities, and the matching labels."""
    n = len(rows)
    inputs = {k: data[k][rows].copy() for k in FEATURES}
    n_queries = data["query_embeddings"].shape[0]
    pick = rng.integers(n_queries, size=n)
    has_query = rng.random(n) < cfg.query_p
    inputs["query"] = data["query_embeddings"][pick] * has_query[:, None]
    inputs["query_mask"] = has_query[:, None].astype(np.float32)
    lips = rng.random(n) < cfg.lip_drop_p
    inputs["faces"][np.ix_(lips, np.arange(inputs["faces"].shape[1]), np.asarray(LIP_FEATURES))] = 0.0
    for modality in ("vision", "audio"):
        drop = rng.random(n) < cfg.drop_p
        for name in MODALITY_INPUTS[modality]:
            inputs[name][drop] = 0.0
    labels = {
        "speaking": data["speaking"][rows], "offscreen": data["offscreen"][rows, None],
        "relevance": data["relevance"][rows, pick][:, None],
    }
    return inputs, labels


def _tensors(inputs: dict[str, np.ndarray]) -> list[torch.Tensor]:
    return [torch.from_numpy(np.ascontiguousarray(inputs[k], dtype=np.float32)) for k in INPUT_NAMES]


def loss_fn(model: FusionBase, inputs: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> torch.Tensor:
    x = _tensors(inputs)
    speaking, offscreen, relevance = model.logits(*x)
    bce = nn.functional.binary_cross_entropy_with_logits
    face_mask, query_mask = x[1], x[8]
    y_s = torch.from_numpy(labels["speaking"])
    loss_s = (bce(speaking, y_s, reduction="none") * face_mask).sum() / face_mask.sum().clamp(min=1.0)
    loss_o = bce(offscreen, torch.from_numpy(labels["offscreen"]))
    loss_r = (bce(relevance, torch.from_numpy(labels["relevance"]), reduction="none") * query_mask).sum() \
        / query_mask.sum().clamp(min=1.0)
    return loss_s + loss_o + loss_r


def train(strategy: str, data: dict[str, np.ndarray], cfg: TrainConfig = TrainConfig(),
          log: Any = progressbar.say) -> FusionBase:
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = STRATEGY_CLASSES[strategy]()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, cfg.epochs))
    n = data["t_ns"].shape[0]
    for epoch in progressbar.bar(range(cfg.epochs), desc=f"train {strategy}", unit="epoch"):
        order = rng.permutation(n)
        total = 0.0
        for i in range(0, n, cfg.batch):
            inputs, labels = sample_batch(data, order[i:i + cfg.batch], rng, cfg)
            loss = loss_fn(model, inputs, labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(order[i:i + cfg.batch])
        sched.step()
        if epoch % 10 == 9 or epoch == cfg.epochs - 1:
            log(f"  {strategy:<9} epoch {epoch + 1:>3}/{cfg.epochs} loss {total / n:.4f}")
    model.eval()
    return model


def torch_outputs(model: FusionBase, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    with torch.no_grad():
        outs = model(*_tensors(inputs))
    return {name: o.numpy() for name, o in zip(OUTPUTS, outs)}


def example_inputs(data: dict[str, np.ndarray], n: int, seed: int = 1) -> dict[str, np.ndarray]:
    """Real rows with a query attached, for export tracing and the parity check."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(data["t_ns"].shape[0], size=min(n, data["t_ns"].shape[0]), replace=False)
    inputs, _ = sample_batch(data, rows, rng, TrainConfig(drop_p=0.2, query_p=0.8, lip_drop_p=0.0))
    return inputs


def export(model: FusionBase, out_dir: Path, data: dict[str, np.ndarray], *,
           trained: dict[str, Any] | None = None, thresholds: dict[str, float] | None = None) -> Path:
    """Write fusion_<strategy>.onnx + manifest; check ONNX vs torch (raises on mismatch)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    strategy = model.strategy
    onnx_path = out_dir / f"fusion_{strategy}.onnx"
    example = example_inputs(data, 8)
    axes = {k: {0: "batch"} for k in [*INPUT_NAMES, *OUTPUTS]}
    torch.onnx.export(model, tuple(_tensors(example)), str(onnx_path), input_names=list(INPUT_NAMES),
                      output_names=list(OUTPUTS), dynamic_axes=axes, opset_version=17, dynamo=False)
    diff = parity(model, onnx_path, example_inputs(data, 256, seed=2))
    if diff > PARITY_ATOL:
        raise RuntimeError(f"{onnx_path}: ONNX vs torch max abs diff {diff:.2e} > {PARITY_ATOL}")
    manifest = {
        "name": f"fusion_{strategy}", "strategy": strategy, "file": onnx_path.name,
        "sha256": mf.sha256_file(onnx_path), "feature_version": FEATURE_VERSION,
        "inputs": {k: list(v) for k, v in FEATURES.items()}, "outputs": list(OUTPUTS),
        "thresholds": thresholds or {}, "trained": {**(trained or {}), "parity_max_abs_diff": float(diff)},
    }
    path = manifest_path_for(out_dir, strategy)
    path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return path


def parity(model: FusionBase, onnx_path: Path, inputs: dict[str, np.ndarray]) -> float:
    """Max abs difference between torch and onnxruntime outputs over a batch."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run(list(OUTPUTS), {k: inputs[k] for k in INPUT_NAMES})
    want = torch_outputs(model, inputs)
    return max(float(np.abs(g - want[name]).max()) for name, g in zip(OUTPUTS, got))
