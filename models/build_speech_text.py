"""Build functions for Silero VAD and the MiniLM sentence encoder (fp32 and int8)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from sensorfuse.engine import manifest as mf
from sensorfuse.perception.prepost import text
from sensorfuse.models import quantize, specs
from sensorfuse.models.build_vision import check_onnx
from sensorfuse.models.builder import (Artifact, BuildContext, copy_into, extra_file, provenance,
                            write_reference)
from sensorfuse.models.sources import MINILM_TOKENIZER, MINILM_WEIGHTS, SILERO_VAD
from sensorfuse.models.verify import load_reference

REFERENCE_SENTENCES = (
    "a cat", "someone is talking", "a cup of coffee on a table",
    "an astronaut in a white space suit holding a helmet next to the American flag",
)


def _synthetic_windows() -> np.ndarray:
    """Four [64 + 512]-sample windows: silence, noise, a voiced buzz, a chirp (16 kHz)."""
    t = np.arange(576) / 16000.0
    rng = np.random.default_rng(7)
    buzz = 0.3 * np.sign(np.sin(2 * np.pi * 140 * t)) * np.sin(2 * np.pi * 700 * t)
    chirp = 0.5 * np.sin(2 * np.pi * (200 + 4000 * t) * t)
    windows = [np.zeros_like(t), 0.05 * rng.standard_normal(t.size), buzz, chirp]
    return np.stack(windows).astype(np.float32)


def build_silero(ctx: BuildContext) -> Artifact:
    """Silero VAD v6 is shipped as ONNX: copy it, and record reference outputs."""
    import onnxruntime as ort

    name = "silero_vad"
    onnx_path = copy_into(ctx, SILERO_VAD.locate(), f"{name}.onnx")
    windows = _synthetic_windows()
    feeds = {
        "input": windows,
        "state": np.zeros((2, windows.shape[0], 128), np.float32),
        "sr": np.array(16000, dtype=np.int64),
    }
    ctx.progress.step("reference outputs from the shipped ONNX file")
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    prob, state = session.run(["output", "stateN"], feeds)
    reference, reference_path = write_reference(
        ctx, name, feeds, {"output": prob, "stateN": state}, atol=1e-4, min_cosine=0.9999,
        origin="the shipped silero_vad.onnx at build time (it is used unchanged)")
    manifest = mf.Manifest(
        name=name, task="voice_activity", file=onnx_path.name, sha256=mf.sha256_file(onnx_path),
        inputs=specs.SILERO_INPUTS, outputs=specs.SILERO_OUTPUTS,
        preprocessing=specs.SILERO_PRE, postprocessing=specs.SILERO_POST,
        license=SILERO_VAD.license, source=provenance(SILERO_VAD), reference=reference,
        description="Silero VAD v6, 16 kHz, streaming 32 ms chunks with carried state",
    )
    return Artifact(manifest, [onnx_path, reference_path])


def _tokenizer(ctx: BuildContext) -> tuple[mf.ExtraFile, Tokenizer, Path]:
    path = copy_into(ctx, MINILM_TOKENIZER.locate(), specs.MINILM_TOKENIZER_FILE)
    return extra_file(path), text.load_tokenizer(path, specs.MINILM_PRE), path


def build_minilm(ctx: BuildContext) -> Artifact:
    """all-MiniLM-L6-v2 with mean pooling + L2 norm in the graph."""
    import torch

    from sensorfuse.models import minilm

    name = "minilm_l6_v2"
    ctx.progress.step("loading safetensors weights into torch")
    model = minilm.load_torch()
    onnx_path = ctx.staged(f"{name}.onnx")
    ctx.progress.step("exporting ONNX (opset 17, dynamic batch and tokens)")
    minilm.export(model, onnx_path)
    tokenizer_record, tokenizer, tokenizer_path = _tokenizer(ctx)
    feeds = text.encode(tokenizer, list(REFERENCE_SENTENCES))
    ctx.progress.step("reference outputs from torch")
    with torch.no_grad():
        embedding = model(torch.from_numpy(feeds["input_ids"]),
                          torch.from_numpy(feeds["attention_mask"])).numpy()
    expected = {"embedding": embedding}
    check_onnx(onnx_path, feeds, expected, atol=1e-4, min_cosine=0.9999, what="torch")
    reference, reference_path = write_reference(
        ctx, name, feeds, expected, atol=1e-4, min_cosine=0.9999,
        origin=f"torch {torch.__version__} on {MINILM_WEIGHTS.package} {MINILM_WEIGHTS.version}")
    manifest = mf.Manifest(
        name=name, task="text_embedding", file=onnx_path.name, sha256=mf.sha256_file(onnx_path),
        inputs=specs.MINILM_INPUTS, outputs=specs.MINILM_OUTPUTS,
        preprocessing=specs.MINILM_PRE, postprocessing=specs.MINILM_POST,
        license=MINILM_WEIGHTS.license, source=provenance(MINILM_WEIGHTS),
        extra_files=[tokenizer_record], reference=reference,
        description="all-MiniLM-L6-v2 sentence embedding (384-d, unit length)",
    )
    return Artifact(manifest, [onnx_path, reference_path, tokenizer_path])


def build_minilm_int8(ctx: BuildContext) -> Artifact:
    """Dynamic per-channel int8 MiniLM, deltas measured vs fp32."""
    parent_path, parent = ctx.cached_manifest("minilm_l6_v2")
    fp32_path = mf.model_path(parent_path, parent)
    name = "minilm_l6_v2_int8"
    onnx_path = ctx.staged(f"{name}.onnx")
    ctx.progress.step("quantising (dynamic int8, per-channel)")
    quantize.quantize_minilm(fp32_path, onnx_path)
    tokenizer_record, _, tokenizer_path = _tokenizer(ctx)
    ctx.progress.step("measuring int8 vs fp32 on held-out sentences")
    deltas = quantize.text_int8_deltas(fp32_path, onnx_path, tokenizer_path)
    if parent.reference is None:
        raise RuntimeError(f"{parent_path} has no reference inputs")
    feeds, expected32 = load_reference(parent_path.parent / parent.reference.file)
    own = check_onnx(onnx_path, feeds, expected32, atol=0.1, min_cosine=0.98,
                     what="its fp32 parent")
    reference, reference_path = write_reference(
        ctx, name, feeds, own, atol=0.01, min_cosine=0.999,
        origin="the int8 model itself at build time (its accuracy vs fp32 is in `accuracy`)")
    manifest = mf.Manifest(
        name=name, task="text_embedding", file=onnx_path.name, sha256=mf.sha256_file(onnx_path),
        inputs=specs.MINILM_INPUTS, outputs=specs.MINILM_OUTPUTS,
        preprocessing=parent.preprocessing, postprocessing=parent.postprocessing,
        license=parent.license, source=parent.source, precision="int8",
        base_model=parent.name, accuracy=deltas, extra_files=[tokenizer_record],
        reference=reference, description="all-MiniLM-L6-v2, dynamic int8 per-channel",
    )
    return Artifact(manifest, [onnx_path, reference_path, tokenizer_path])
