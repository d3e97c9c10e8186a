"""Model latency: the engine's ModelSession vs bare onnxruntime, on the same input.

For every model of the pack (fp32 and int8), batch 1 and the batch sizes the graph uses
(image encoders: 4 crops; face detector: 6 crops, the tiles and regions of a 640×480
frame, as one batched call and as 6 calls; face landmarks: 4 faces, batched and as 4
calls), with 1 and 2 intra-op threads: median and p90 latency of
the bare `InferenceSession.run`, of `ModelSession.run` (input checks, output dict), the
ratio of the two medians (the node's overhead), and the median cost of the numpy/OpenCV
pre- and post-processing around the model.

Runs the two paths interleaved in rounds so clock-frequency drift hits both alike.

    .venv/bin/python bench/models.py [--cache DIR] [--seconds 1.0] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from sensorfuse.engine import inference
from sensorfuse.engine import manifest as mf
from sensorfuse.perception.prepost import blazeface, imagenet, landmarks, text

Feeds = dict[str, np.ndarray]


@dataclass(frozen=True)
class Case:
    """One benchmark row: a model, a label for its input, feeds, how many runs per call."""

    model: str
    label: str
    feeds: Feeds
    runs_per_call: int = 1
    prepost: Callable[[], object] | None = None


def _reference_feeds(manifest_path: Path, manifest: mf.Manifest) -> Feeds:
    assert manifest.reference is not None
    with np.load(manifest_path.parent / manifest.reference.file) as data:
        return {s.name: data[f"input/{s.name}"] for s in manifest.inputs}


def cases_for(manifest_path: Path, photo: np.ndarray) -> list[Case]:
    """The inputs each kind of model is benchmarked on."""
    m = mf.load(manifest_path)
    feeds = _reference_feeds(manifest_path, m)
    pre, post = m.preprocessing, m.postprocessing
    if isinstance(pre, mf.LetterboxPre):
        tensor, placement = blazeface.letterbox(photo, pre)
        def detector_prepost() -> object:
            t, p = blazeface.letterbox(photo, pre)
            return blazeface.postprocess(regressors, scores, p, pre, post)
        session = ort.InferenceSession(str(mf.model_path(manifest_path, m)), providers=["CPUExecutionProvider"])
        regressors, scores = session.run(["regressors", "scores"], {"image": tensor})
        six = np.concatenate([tensor, tensor[..., ::-1], tensor * 0.5, tensor[..., ::-1, :], -tensor, tensor * 0.8])
        return [Case(m.name, "1 frame", {"image": tensor}, prepost=detector_prepost),
                Case(m.name, "6 crops, batch 6", {"image": six}),
                Case(m.name, "6 crops, 6 calls", {"image": tensor}, 6)]
    if isinstance(pre, mf.FaceCropPre):
        box = np.array([178.0, 81.0, 272.0, 175.0])
        raw = np.zeros((1, 1404, 1, 1), np.float32)
        def landmark_prepost() -> object:
            crop, placement = landmarks.crop_face(photo, box, pre, angle=0.1)
            return landmarks.postprocess(raw, np.zeros((1, 1, 1, 1)), placement, post)
        four = np.concatenate([feeds["image"], feeds["image"][..., ::-1], feeds["image"] * 0.5, feeds["image"] * 0.8])
        return [Case(m.name, "1 face", feeds, 1, landmark_prepost),
                Case(m.name, "4 faces, batch 4", {"image": four}),
                Case(m.name, "4 faces, 4 calls", feeds, 4, landmark_prepost)]
    if isinstance(pre, mf.CenterCropPre):
        one = feeds["image"][:1]
        four = np.concatenate([feeds["image"], feeds["image"][:1]])
        return [Case(m.name, "batch 1", {"image": one}, prepost=lambda: imagenet.preprocess(photo, pre)),
                Case(m.name, "batch 4", {"image": four})]
    if isinstance(pre, mf.TokenizerPre):
        tokenizer = text.load_tokenizer(manifest_path.parent / pre.file, pre)
        short = text.encode(tokenizer, ["is someone talking in the room"])
        ids = np.full((1, 128), 2000, np.int64)
        ids[0, 0], ids[0, -1] = 101, 102
        long = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        label = f"{short['input_ids'].shape[1]} tokens"
        return [Case(m.name, label, short, prepost=lambda: text.encode(tokenizer, ["is someone talking"])),
                Case(m.name, "128 tokens", long)]
    if isinstance(pre, mf.AudioStreamPre):
        chunk = {"input": feeds["input"][:1], "state": feeds["state"][:, :1], "sr": feeds["sr"]}
        return [Case(m.name, "32 ms chunk", chunk)]
    return [Case(m.name, "reference", feeds)]


def _time(call: Callable[[], object], runs: int) -> float:
    started = time.perf_counter()
    for _ in range(runs):
        call()
    return (time.perf_counter() - started) * 1e3


def measure(case: Case, manifest_path: Path, threads: int, seconds: float) -> dict[str, float]:
    """Interleaved rounds of bare vs engine calls; returns medians/p90 in ms."""
    config = inference.SessionConfig(intra_op_threads=threads, warmup_runs=5)
    model = inference.open_model(manifest_path, config)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    bare = ort.InferenceSession(str(mf.model_path(manifest_path, model.manifest)), options,
                                providers=["CPUExecutionProvider"])
    names = [o.name for o in model.manifest.outputs]
    for _ in range(5):
        bare.run(names, case.feeds)

    def bare_call() -> object:
        return bare.run(names, case.feeds)

    def engine_call() -> object:
        return model.run(case.feeds)

    bare_ms: list[float] = []
    engine_ms: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(bare_ms) < 20:
        bare_ms.append(_time(bare_call, case.runs_per_call))
        engine_ms.append(_time(engine_call, case.runs_per_call))
    result = {
        "bare_p50": float(np.median(bare_ms)), "bare_p90": float(np.percentile(bare_ms, 90)),
        "engine_p50": float(np.median(engine_ms)), "engine_p90": float(np.percentile(engine_ms, 90)),
        "n": float(len(bare_ms)),
    }
    result["ratio"] = result["engine_p50"] / result["bare_p50"]
    if case.prepost is not None:
        prepost_ms = [_time(case.prepost, 1) for _ in range(50)]
        result["prepost_p50"] = float(np.median(prepost_ms))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=None, help="model cache (default: the usual one)")
    parser.add_argument("--seconds", type=float, default=1.0, help="measuring time per row and path")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="only these models")
    args = parser.parse_args(argv)
    cache = args.cache or mf.default_cache_dir()
    paths = mf.list_manifests(cache)
    if args.only:
        paths = [mf.find_manifest(name, cache) for name in args.only]
    if not paths:
        print(f"no models in {cache}: run `sensorfuse models build` first", file=sys.stderr)
        return 1
    from sensorfuse.models import media  # photos only; no torch

    photo = media.load_rgb("astronaut")
    print(f"onnxruntime {ort.__version__}, providers {inference.usable_providers()}")
    print("| model | input | threads | bare p50 / p90 ms | engine p50 / p90 ms | overhead | pre+post ms |")
    print("|---|---|---|---|---|---|---|")
    for path in paths:
        for case in cases_for(path, photo):
            for threads in args.threads:
                r = measure(case, path, threads, args.seconds)
                prepost = f"{r['prepost_p50']:.2f}" if "prepost_p50" in r else "–"
                print(f"| {case.model} | {case.label} | {threads} | {r['bare_p50']:.2f} / {r['bare_p90']:.2f} "
                      f"| {r['engine_p50']:.2f} / {r['engine_p90']:.2f} | {r['ratio']:.3f}× | {prepost} |",
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
