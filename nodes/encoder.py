"""Encoder: run one model of the pack (or your own manifest) on one input stream.

Ports, by the manifest's pre-processing kind:

- ``center_crop`` (image encoders): in = frames, tensor uint8 [H, W, 3], layout
  ``HWC/bgr8`` or ``HWC/rgb8`` → out = record ``{"labels": [[index, name, prob], ...]}``
  (when the manifest has labels) and embedding = tensor float32 [D].
- ``letterbox`` (BlazeFace): in = frames → out = record ``{"boxes": [[x0, y0, x1, y1]],
  "keypoints": [[[x, y] × 6]], "scores": [...]}`` in frame pixels.
- ``audio_stream`` (Silero VAD): in = audio float32 [T, C] at the model's rate (the
  microphone's ``audio16k``) → activity = record ``{"speech": bool, "probability": p}``
  per input block, out = record ``{"start_ns", "end_ns", "start_sample", "end_sample"}``
  per finished speech segment (stamped with its start's capture time).
- ``tokenizer`` (MiniLM): in = UTF-8 text → embedding = tensor float32 [384], unit length.

Failure behaviour: the model is loaded, checked (hash, graph vs manifest) and warmed up
in `start`, before READY. A missing or corrupt model raises `ModelLoadError`, a
`StartupError`: the process exits with the start-up code and the supervisor marks the
node failed without restarting it. Inputs of the wrong kind/shape are rejected and
counted (`ctx.reject`), never crash the node. An output with NaN/Inf is counted
(``bad_output``, naming the model and output) and nothing is published for that input.
The chosen execution provider is logged and
reported as the gauge ``model_provider_gpu`` (1 on CUDA/TensorRT, 0 on CPU).

Config example::

    scene:
      kind: encoder
      params: {model: efficientnet_lite0_int8}       # or a path to a .manifest.json
      inputs: {in: {stream: cam0/frame, policy: latest}}
      outputs: {out: scene/labels, embedding: scene/embedding}
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Annotated

import cv2
import msgspec
import numpy as np

from sensorfuse.engine import inference, wire
from sensorfuse.engine import manifest as mf
from sensorfuse.engine.errors import StartupError, UsageError
from sensorfuse.engine.node import InputSpec, Node, Out, OutputSpec
from sensorfuse.engine.params import PositiveInt
from sensorfuse.perception.prepost import blazeface, imagenet, text, vad

NS = 1_000_000_000
FACE_CROP_ELSEWHERE = ("face_crop models need face boxes as a second input; run them in the perceive node, "
                       "not in a single-input encoder")


class EncoderNode(Node):
    """One model on one stream; see the module docstring for ports per model kind."""

    class Params(msgspec.Struct, forbid_unknown_fields=True):
        model: Annotated[str, msgspec.Meta(min_length=1)]
        cache: str | None = None
        threads: PositiveInt = 1
        providers: Annotated[list[str], msgspec.Meta(min_length=1)] | None = None

    inputs = {"in": InputSpec(kind="any", policy="latest", queue=1)}
    outputs = {
        "out": OutputSpec(kind="record", doc="labels, faces or speech segments"),
        "embedding": OutputSpec(kind="tensor", doc="image or text embedding"),
        "activity": OutputSpec(kind="record", doc="speech activity per audio block"),
    }

    @classmethod
    def check(cls, params: Params) -> None:
        """The manifest is found and parses, and the files it names are there (no hashing:
        `start` checks hashes and the graph when it loads the model)."""
        try:
            manifest_path = mf.find_manifest(params.model, Path(params.cache) if params.cache else None)
            manifest = mf.load(manifest_path)
            mf.check_present(manifest_path, manifest)
        except mf.ManifestError as err:
            raise UsageError(f"model: {err}") from None
        if isinstance(manifest.preprocessing, mf.FaceCropPre):
            raise UsageError(f"model: {manifest_path}: {FACE_CROP_ELSEWHERE}")

    def start(self) -> None:
        p = self.params
        cache = Path(p.cache) if p.cache else None
        try:
            manifest_path = mf.find_manifest(p.model, cache)
        except mf.ManifestError as err:
            raise StartupError(str(err)) from None
        config = inference.SessionConfig(
            intra_op_threads=p.threads,
            providers=tuple(p.providers) if p.providers else inference.DEFAULT_PROVIDERS,
        )
        self.model = inference.open_model(manifest_path, config)
        self.ctx.gauge("model_provider_gpu", 0.0 if self.model.provider == inference.CPU else 1.0)
        self.ctx.log.info("model %s ready on %s", self.model.name, self.model.provider)
        manifest = self.model.manifest
        self.pre, self.post = manifest.preprocessing, manifest.postprocessing
        self.labels = (imagenet.load_labels(manifest_path.parent / manifest.labels.file)
                       if manifest.labels is not None else None)
        if isinstance(self.pre, mf.TokenizerPre):
            self.tokenizer = text.load_tokenizer(manifest_path.parent / self.pre.file, self.pre)
        self.vad_stream: vad.SileroStream | None = None
        self._vad_anchor: tuple[int, int] | None = None  # (t_ns, rate) of the stream's sample 0
        if isinstance(self.pre, mf.FaceCropPre):
            raise StartupError(f"{manifest_path}: {FACE_CROP_ELSEWHERE}")

    def step(self, port: str, msg: wire.Message) -> Iterable[Out]:
        try:
            return self._step(msg)
        except inference.NonFiniteOutput as exc:  # counted and skipped: never a NaN label or box
            self.ctx.reject(msg.header.stream, "bad_output", str(exc))
            return []

    def _step(self, msg: wire.Message) -> Iterable[Out]:
        pre = self.pre
        if isinstance(pre, (mf.CenterCropPre, mf.LetterboxPre)):
            frame = self._frame_rgb(msg)
            if frame is None:
                return []
            return self._classify(frame, msg) if isinstance(pre, mf.CenterCropPre) else self._detect(frame, msg)
        if isinstance(pre, mf.AudioStreamPre):
            return self._vad(msg)
        if isinstance(pre, mf.TokenizerPre):
            return self._embed_text(msg)
        return []

    def finish(self) -> Iterable[Out]:
        if self.vad_stream is None or self._vad_anchor is None:
            return []
        return [self._segment_out(s) for s in self.vad_stream.finish()]

    # ---- per kind ------------------------------------------------------------------

    def _frame_rgb(self, msg: wire.Message) -> np.ndarray | None:
        h = msg.header
        if h.kind != wire.KIND_TENSOR or h.shape is None or len(h.shape) != 3 or h.shape[2] != 3 \
                or h.dtype != "uint8":
            self.ctx.reject(h.stream, "not_a_frame", f"{h.kind} {h.dtype}{h.shape}")
            return None
        frame = msg.array
        layout = (h.layout or "HWC/bgr8").lower()
        return frame if layout.endswith("rgb8") else cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)

    def _classify(self, frame: np.ndarray, msg: wire.Message) -> list[Out]:
        assert isinstance(self.pre, mf.CenterCropPre) and isinstance(self.post, mf.ClassifierPost)
        outputs = self.model.run({self.model.manifest.inputs[0].name: imagenet.preprocess(frame, self.pre)})
        outs = []
        if self.labels is not None:
            best = imagenet.top_k(outputs[self.post.logits][0], self.labels, self.post.top_k)
            labels = [[b.index, b.name, round(b.probability, 5)] for b in best]
            outs.append(Out.record("out", {"labels": labels}, msg.t_ns, src_seq=msg.seq))
        if self.post.embedding is not None:
            embedding = np.ascontiguousarray(outputs[self.post.embedding][0])
            outs.append(Out.tensor("embedding", embedding, msg.t_ns, src_seq=msg.seq))
        return outs

    def _detect(self, frame: np.ndarray, msg: wire.Message) -> list[Out]:
        assert isinstance(self.pre, mf.LetterboxPre) and isinstance(self.post, mf.SsdFacePost)
        tensor, placement = blazeface.letterbox(frame, self.pre)
        out = self.model.run({"image": tensor})
        faces = blazeface.postprocess(out["regressors"], out["scores"], placement, self.pre, self.post)
        record = {"boxes": np.round(faces.boxes, 2).tolist(),
                  "keypoints": np.round(faces.keypoints, 2).tolist(),
                  "scores": np.round(faces.scores, 4).tolist()}
        return [Out.record("out", record, msg.t_ns, src_seq=msg.seq)]

    def _vad(self, msg: wire.Message) -> list[Out]:
        assert isinstance(self.pre, mf.AudioStreamPre) and isinstance(self.post, mf.VadPost)
        h = msg.header
        if h.kind != wire.KIND_AUDIO or h.rate != self.pre.sample_rate:
            self.ctx.reject(h.stream, "wrong_audio", f"{h.kind} at {h.rate} Hz, model wants "
                            f"{self.pre.sample_rate} Hz")
            return []
        samples = msg.array
        mono = samples.mean(axis=1) if samples.ndim == 2 else samples
        outs: list[Out] = []
        if self.vad_stream is None or h.meta.get("discontinuity"):
            # A gap breaks the model's recurrent context: close what is open, start afresh.
            outs += self.finish()
            self.vad_stream = vad.SileroStream(vad.silero_model(self.model.run), self.pre, self.post)
            self._vad_anchor = (h.t_ns, h.rate)
        segments = self.vad_stream.push(mono.astype(np.float32, copy=False))
        outs += [self._segment_out(s) for s in segments]
        outs.append(Out.record("activity", {"speech": self.vad_stream.segmenter.in_speech,
                                            "probability": round(self.vad_stream.last_probability, 4)},
                               h.t_ns))
        return outs

    def _segment_out(self, segment: vad.SpeechSegment) -> Out:
        assert self._vad_anchor is not None
        t0_ns, rate = self._vad_anchor
        start_ns = t0_ns + segment.start * NS // rate
        end_ns = t0_ns + segment.end * NS // rate
        record = {"start_ns": start_ns, "end_ns": end_ns,
                  "start_sample": segment.start, "end_sample": segment.end}
        return Out.record("out", record, start_ns)

    def _embed_text(self, msg: wire.Message) -> list[Out]:
        h = msg.header
        if h.kind != wire.KIND_BYTES:
            self.ctx.reject(h.stream, "not_text", str(h.kind))
            return []
        try:
            query = bytes(msg.data).decode("utf-8")
        except UnicodeDecodeError:
            self.ctx.reject(h.stream, "bad_utf8")
            return []
        if not query.strip():
            self.ctx.reject(h.stream, "empty_text")
            return []
        feeds = text.encode(self.tokenizer, [query])
        embedding = self.model.run(feeds)[self.model.manifest.outputs[0].name][0]
        return [Out.tensor("embedding", np.ascontiguousarray(embedding), msg.t_ns, text=query, src_seq=msg.seq)]

    def stop(self) -> None:
        self.vad_stream = None
