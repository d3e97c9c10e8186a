"""ONNX inference sessions created from a manifest.

Why this module exists rather than nodes calling `onnxruntime.InferenceSession` directly:

- A model must fail *before* its node reports READY, with a message that names the file
  and says what is wrong (missing, corrupt, hash mismatch, graph does not match the
  manifest) — a supervisor restarting a node that can never load is a hot loop.
- Execution providers are chosen from a preference list (TensorRT → CUDA → CPU), but
  `onnxruntime-gpu` on a machine without a usable GPU lists CUDA as "available" and then
  prints an error for every session it fails to create. We probe once per process, with
  the onnxruntime logger silenced, which providers can really be created.
- One intra-op thread per model by default: several model processes share few cores,
  and two threads measured faster on median but with 2–4× outliers (docs/benchmarks.md).

The runtime never imports torch (tested in tests/models/test_runtime_imports.py).
"""

from __future__ import annotations

import base64
import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as _ort_state

from sensorfuse.engine import fingerprint
from sensorfuse.engine import manifest as mf
from sensorfuse.engine.errors import StartupError

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
#: On the CPU a large batch costs more per image than a few small ones (blazeface_short
#: 1.41 ms an image at batch 24 vs 1.18–1.21 at 3–4; the landmark model 4.2 vs 3.8 ms:
#: docs/benchmarks.md): there the face models' batched calls run in chunks of this many
#: (`SessionConfig.cpu_max_batch`). A GPU gets the whole batch in one call, which is what
#: batching is for.
CPU_MAX_BATCH = 4
DEFAULT_PROVIDERS: tuple[str, ...] = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    CPU,
)
# An 81-byte Identity graph (opset 11): creating a session from it is the cheapest way to
# learn whether a provider's shared libraries really load on this machine.
_PROBE_MODEL = base64.b64decode(
    "CAYSCnNlbnNvcmZ1c2U6OwoQCgF4EgF5IghJZGVudGl0eRIFcHJvYmVaDwoBeBIKCggIARIECgIIAWIP"
    "CgF5EgoKCAgBEgQKAggBQgQKABAL"
)
_ORT_DTYPES: dict[str, str] = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
}


# onnxruntime's own exception classes derive from Exception directly, not RuntimeError.
_ORT_ERRORS: tuple[type[Exception], ...] = (
    RuntimeError, ValueError, _ort_state.Fail, _ort_state.InvalidArgument,
    _ort_state.NoSuchFile, _ort_state.InvalidProtobuf, _ort_state.InvalidGraph,
    _ort_state.RuntimeException, _ort_state.NotImplemented,
)


class ModelLoadError(mf.ManifestError, StartupError):
    """The model cannot be loaded: the message names the file and the reason.

    A StartupError: a node raising it exits with EXIT_STARTUP and the supervisor does not
    restart it (a corrupt file stays corrupt).
    """


class InputShapeError(ValueError):
    """An input does not match the manifest: the message gives expected vs actual."""


class NonFiniteOutput(ValueError):
    """A model produced NaN or Inf. Callers count it (`bad_output`) and treat the result as
    missing: a NaN compared with a threshold is neither above nor below it, so one that
    reached the event logic would start and end events at random."""


def check_finite(model: str, outputs: Mapping[str, np.ndarray]) -> None:
    """Raise NonFiniteOutput naming the model and output if a float output is not finite."""
    for name, value in outputs.items():
        arr = np.asarray(value)
        if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
            bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
            raise NonFiniteOutput(f"model {model}: output {name!r} has {bad} of {arr.size} values NaN/Inf")


@dataclass(frozen=True)
class SessionConfig:
    """How to create sessions. `providers` is a preference order, filtered by the probe."""

    providers: tuple[str, ...] = DEFAULT_PROVIDERS
    intra_op_threads: int = 1
    warmup_runs: int = 1
    io_binding: bool | None = None  # None: on when the chosen provider is not the CPU
    check_hash: bool = True
    #: on the CPU, run a batch above this in chunks of it (`CPU_MAX_BATCH`; None: never)
    cpu_max_batch: int | None = None


@functools.cache
def usable_providers() -> tuple[str, ...]:
    """Providers that can really create a session here, probed once per process."""
    listed = ort.get_available_providers()
    usable = []
    for provider in listed:
        if provider == CPU or provider_error(provider) is None:
            usable.append(provider)
    log.debug("onnxruntime providers listed %s, usable %s", listed, usable)
    return tuple(usable)


@functools.cache
def provider_error(provider: str) -> str | None:
    """None when `provider` really creates a session here, else why not (one line)."""
    options = ort.SessionOptions()
    options.log_severity_level = 4  # fatal only: the failure we probe for is expected
    # Shared-library load failures go to the default logger, not the session's.
    ort.set_default_logger_severity(4)
    try:
        session = ort.InferenceSession(_PROBE_MODEL, options, providers=[provider, CPU])
    except _ORT_ERRORS as err:
        log.debug("provider %s cannot create a session: %s", provider, err)
        return _first_line(err)
    finally:
        ort.set_default_logger_severity(2)  # onnxruntime's default: warnings
    if session.get_providers()[0] != provider:
        return f"onnxruntime fell back to {session.get_providers()[0]} (the provider's libraries did not load)"
    return None


def choose_providers(preference: tuple[str, ...]) -> list[str]:
    """The preferred providers that are usable here, CPU always last as the fallback."""
    usable = usable_providers()
    chosen = [p for p in preference if p in usable and p != CPU]
    chosen.append(CPU)
    return chosen


class ModelSession:
    """A loaded, checked and warmed-up model. Create with `open_model`."""

    def __init__(self, manifest_path: Path, manifest: mf.Manifest,
                 session: ort.InferenceSession, config: SessionConfig) -> None:
        self.manifest_path = manifest_path
        self.manifest = manifest
        self.session = session
        self.provider: str = session.get_providers()[0]
        use_binding = config.io_binding
        self.io_binding = self.provider != CPU if use_binding is None else use_binding
        self._output_names = [o.name for o in manifest.outputs]
        # Precomputed so the per-call check costs microseconds (Silero runs every 32 ms).
        self._input_names = frozenset(spec.name for spec in manifest.inputs)
        #: a batch above this runs in chunks (`SessionConfig.cpu_max_batch`: CPU only, and only
        #: for a model whose every input and output is batched along its first, named dimension)
        batched = all(spec.shape and isinstance(spec.shape[0], str) for spec in [*manifest.inputs, *manifest.outputs])
        self.max_batch = config.cpu_max_batch if self.provider == CPU and batched else None
        self._input_checks = [(spec, np.dtype(spec.dtype)) for spec in manifest.inputs]

    @property
    def name(self) -> str:
        """The manifest's model name."""
        return self.manifest.name

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once; inputs are checked against the manifest (InputShapeError otherwise),
        outputs for NaN/Inf (NonFiniteOutput)."""
        self.check_inputs(feeds)
        size = len(next(iter(feeds.values()))) if self.max_batch else 0
        if self.max_batch and size > self.max_batch:
            parts = [self._run({k: v[i:i + self.max_batch] for k, v in feeds.items()})
                     for i in range(0, size, self.max_batch)]
            outputs = {name: np.concatenate([p[name] for p in parts]) for name in self._output_names}
        else:
            outputs = self._run(feeds)
        check_finite(self.name, outputs)
        return outputs

    def _run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.io_binding:
            return self._run_bound(feeds)
        return dict(zip(self._output_names, self.session.run(self._output_names, feeds)))

    def _run_bound(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        # IO binding lets onnxruntime place outputs on the device and copy once, instead
        # of a host round trip per run() call when the provider is CUDA/TensorRT.
        binding = self.session.io_binding()
        for name, value in feeds.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(value))
        for name in self._output_names:
            binding.bind_output(name)
        self.session.run_with_iobinding(binding)
        return dict(zip(self._output_names, binding.copy_outputs_to_cpu()))

    def check_inputs(self, feeds: Mapping[str, np.ndarray]) -> None:
        """Raise InputShapeError naming the model, the input, expected and actual."""
        if feeds.keys() != self._input_names:
            raise InputShapeError(
                f"{self.manifest_path}: inputs {sorted(feeds)} given, "
                f"model expects {sorted(self._input_names)}"
            )
        for spec, dtype in self._input_checks:
            value = feeds[spec.name]
            if value.dtype != dtype or not shape_matches(value.shape, spec.shape):
                raise InputShapeError(
                    f"{self.manifest_path}: input {spec.name!r} expected "
                    f"{spec.dtype}{list(spec.shape)}, got {value.dtype}{list(value.shape)}"
                )

    def warmup(self, runs: int) -> None:
        """Run before READY so first-call allocations do not land on the first frame.

        Uses the manifest's reference inputs when it has them (real shapes and values:
        zeros with every dynamic dimension 1 are not valid for every model, e.g. Silero
        needs a real sample rate and more than one sample); zeros otherwise.
        """
        feeds = self._warmup_feeds()
        try:
            for _ in range(runs):
                self.run(feeds)
        except _ORT_ERRORS as err:
            raise ModelLoadError(
                f"{self.manifest_path}: warm-up run failed: {_first_line(err)}"
            ) from None

    def _warmup_feeds(self) -> dict[str, np.ndarray]:
        reference = self.manifest.reference
        if reference is not None:
            path = self.manifest_path.parent / reference.file
            if path.is_file():
                with np.load(path) as data:
                    return {spec.name: data[f"input/{spec.name}"] for spec in self.manifest.inputs}
        return {spec.name: example_input(spec) for spec in self.manifest.inputs}


def shape_matches(actual: tuple[int, ...], expected: list[mf.Dim]) -> bool:
    """True when ranks agree and every static (int, non-negative) dimension is equal."""
    if len(actual) != len(expected):
        return False
    return all(not isinstance(e, int) or e < 0 or a == e for a, e in zip(actual, expected))


def example_input(spec: mf.TensorSpec) -> np.ndarray:
    """Zeros of the declared shape with every dynamic dimension set to 1."""
    shape = [d if isinstance(d, int) and d >= 0 else 1 for d in spec.shape]
    return np.zeros(shape, dtype=np.dtype(spec.dtype))


def open_model(manifest_path: str | Path, config: SessionConfig | None = None) -> ModelSession:
    """Load, check and warm up the model a manifest describes.

    Raises ModelLoadError (a ManifestError) naming the path for a missing, corrupt or
    mismatching file, and naming expected vs actual shapes for a graph that does not
    match its manifest.
    """
    config = config or SessionConfig()
    manifest_path = Path(manifest_path)
    try:
        manifest = mf.load(manifest_path)
        model_file = mf.model_path(manifest_path, manifest)
        if config.check_hash:
            mf.check_file(model_file, manifest.sha256)
        elif not model_file.is_file():
            raise mf.ManifestError(f"model file missing: {model_file}")
        mf.check_present(manifest_path, manifest)  # labels, tokenizer: a crash on first use otherwise
    except mf.ManifestError as err:
        raise ModelLoadError(str(err)) from None
    options = session_options(config.intra_op_threads)
    providers = choose_providers(config.providers)
    try:
        session = ort.InferenceSession(str(model_file), options, providers=providers)
    except _ORT_ERRORS as err:
        raise ModelLoadError(f"cannot load model file {model_file}: {_first_line(err)}") from None
    check_graph(model_file, manifest, session)
    check_processing(manifest_path, manifest, session)
    model = ModelSession(manifest_path, manifest, session, config)
    fingerprint.note_model(manifest.name, manifest.sha256, model.provider)
    log.info("model %s on %s (%d intra-op threads%s)", manifest.name, model.provider,
             config.intra_op_threads, ", IO binding" if model.io_binding else "")
    model.warmup(config.warmup_runs)
    return model


def checked_session(model_file: Path, sha256: str, *, threads: int = 1) -> ort.InferenceSession:
    """A session on a model of the project's own (no full manifest, no warm-up): the file's
    sha256 checked, the preferred usable provider, `threads` intra-op threads. Raises
    ModelLoadError (a StartupError) naming the file when it is missing, altered or unloadable."""
    try:
        mf.check_file(model_file, sha256)
    except mf.ManifestError as err:
        raise ModelLoadError(str(err)) from None
    options = session_options(threads)
    try:
        session = ort.InferenceSession(str(model_file), options, providers=choose_providers(DEFAULT_PROVIDERS))
    except _ORT_ERRORS as err:
        raise ModelLoadError(f"cannot load model file {model_file}: {_first_line(err)}") from None
    fingerprint.note_model(model_file.stem, sha256, session.get_providers()[0])
    return session


#: `SENSORFUSE_ORT_OPTIMIZATION`: onnxruntime's graph optimization level for every session.
#: `all` (default) is what runs in production; the others select other kernels (e.g.
#: `disable` runs QDQ int8 models as dequantize → fp32 op → quantize) and exist to measure
#: how far scores move when kernels change (docs/fusion.md, "Scores across machines").
OPTIMIZATION_ENV = "SENSORFUSE_ORT_OPTIMIZATION"
OPTIMIZATION_LEVELS = {
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
}


def optimization_level() -> str:
    """The configured level name; raises StartupError for an unknown one."""
    level = os.environ.get(OPTIMIZATION_ENV, "all") or "all"
    if level not in OPTIMIZATION_LEVELS:
        raise StartupError(f"{OPTIMIZATION_ENV}={level!r}: use one of {', '.join(OPTIMIZATION_LEVELS)}")
    return level


def session_options(threads: int) -> ort.SessionOptions:
    """Options every sensorfuse session uses: `threads` intra-op threads, one inter-op
    thread, the configured graph optimization level."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    if threads > 1:  # idle pool threads sleep: spinning ones took the cores the other workers need
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = OPTIMIZATION_LEVELS[optimization_level()]
    return options


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def check_graph(model_file: Path, manifest: mf.Manifest, session: ort.InferenceSession) -> None:
    """Raise ModelLoadError if the graph's tensors differ from what the manifest declares."""
    pairs = [("input", manifest.inputs, session.get_inputs()),
             ("output", manifest.outputs, session.get_outputs())]
    for what, declared, actual in pairs:
        actual_by_name = {a.name: a for a in actual}
        for spec in declared:
            found = actual_by_name.get(spec.name)
            if found is None:
                raise ModelLoadError(
                    f"{model_file}: manifest {what} {spec.name!r} is not in the graph "
                    f"(graph {what}s: {sorted(actual_by_name)})"
                )
            dtype = _ORT_DTYPES.get(found.type, found.type)
            graph_shape = [d if isinstance(d, int) else -1 for d in found.shape]
            if dtype != spec.dtype or not _dims_compatible(graph_shape, spec.shape):
                raise ModelLoadError(
                    f"{model_file}: {what} {spec.name!r} expected {spec.dtype}"
                    f"{list(spec.shape)} (manifest), graph has {dtype}{found.shape}"
                )


#: Outputs each post-processing kind reads by a fixed name (the others name theirs in fields).
_FIXED_OUTPUTS: dict[type, tuple[str, ...]] = {
    mf.SsdFacePost: ("regressors", "scores"),
    mf.LandmarksPost: ("landmarks", "face_flag"),
    mf.VadPost: ("output", "stateN"),
}


def _post_outputs(post: mf.Postprocessing) -> list[tuple[str, str]]:
    """(field, output name) pairs the post-processing reads."""
    if isinstance(post, mf.ClassifierPost):
        return [("logits", post.logits)] + ([("embedding", post.embedding)] if post.embedding else [])
    if isinstance(post, mf.EmbeddingPost):
        return [("output", post.output)]
    if isinstance(post, mf.GflBoxesPost):
        return [("strides", name) for name in post.outputs()]
    return [("kind", name) for name in _FIXED_OUTPUTS.get(type(post), ())]


def check_processing(manifest_path: Path, manifest: mf.Manifest, session: ort.InferenceSession) -> None:
    """Raise ModelLoadError when the manifest's pre/post-processing disagrees with the model:
    post-processing reading an output the model does not have, or an image size that is not
    the model's input size. Found at load, the node fails at start; otherwise every input
    failed (and the node was restarted) and a run labelled nothing."""
    outputs = [spec.name for spec in manifest.outputs]
    graph_outputs = {o.name for o in session.get_outputs()}
    post = manifest.postprocessing
    for field, name in _post_outputs(post):
        if name not in outputs or name not in graph_outputs:
            what = f"postprocessing.{field} {name!r}" if field != "kind" else \
                f"postprocessing {type(post).__struct_config__.tag!r} reads output {name!r}, which"
            raise ModelLoadError(f"{manifest_path}: {what} is not an output of the model "
                                 f"(outputs: {', '.join(outputs)})")
    pre = manifest.preprocessing
    if isinstance(pre, (mf.LetterboxPre, mf.ChannelLetterboxPre, mf.CenterCropPre, mf.FaceCropPre)) \
            and manifest.inputs:
        spec = manifest.inputs[0]
        graph = {i.name: i for i in session.get_inputs()}.get(spec.name)
        shapes = [list(spec.shape)] + ([list(graph.shape)] if graph is not None else [])
        for shape in shapes:
            if len(shape) == 4 and any(isinstance(d, int) and d >= 0 and d != pre.size for d in shape[2:]):
                raise ModelLoadError(f"{manifest_path}: preprocessing.size {pre.size} does not match the model's "
                                     f"input {spec.name!r} {list(shape)} (N, C, height, width)")


def _dims_compatible(graph: list[int], declared: list[mf.Dim]) -> bool:
    if len(graph) != len(declared):
        return False
    for g, d in zip(graph, declared):
        if isinstance(d, int) and d >= 0 and g >= 0 and g != d:
            return False
    return True
