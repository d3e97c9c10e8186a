"""The audio-event encoder: a small CNN over one window's log-mel patch.

Input ``log_mel`` [B, N_FRAMES, N_MELS] (48 × 40, `sensorfuse.perception.sound.log_mel`), output
``probabilities`` [B, len(SOUND_CLASSES)] (softmax). Per-band normalisation (mean/std of
the training features) is inside the graph, so the runtime feeds raw log-mel. Three 3×3
conv layers (two 2×2 max-pools), then mean and max over time keep the frequency axis —
where a tone or an alarm sits in frequency is most of what tells them apart — and a
two-layer classifier. About 1.1 M multiply-adds and 20 k parameters (85 kB of ONNX).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from sensorfuse.perception.sound import N_FRAMES, N_MELS, SOUND_CLASSES


class SoundNet(nn.Module):
    def __init__(self, band_mean: np.ndarray | None = None, band_std: np.ndarray | None = None,
                 channels: tuple[int, int, int] = (8, 16, 24), hidden: int = 32) -> None:
        super().__init__()
        mean = np.zeros(N_MELS, np.float32) if band_mean is None else band_mean
        std = np.ones(N_MELS, np.float32) if band_std is None else band_std
        self.register_buffer("band_mean", torch.as_tensor(mean, dtype=torch.float32).reshape(1, 1, 1, N_MELS))
        self.register_buffer("band_std", torch.as_tensor(std, dtype=torch.float32).reshape(1, 1, 1, N_MELS))
        c1, c2, c3 = channels
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU(),
        )
        bands = N_MELS // 4
        self.classifier = nn.Sequential(nn.Linear(2 * c3 * bands, hidden), nn.ReLU(),
                                        nn.Linear(hidden, len(SOUND_CLASSES)))
        assert N_FRAMES >= 4

    def logits(self, log_mel: torch.Tensor) -> torch.Tensor:
        x = (log_mel.unsqueeze(1) - self.band_mean) / self.band_std  # [B, 1, T, F]
        x = self.features(x)  # [B, C, T/4, F/4]
        pooled = torch.cat([x.mean(dim=2), x.amax(dim=2)], dim=1)  # over time: [B, 2C, F/4]
        return self.classifier(pooled.flatten(1))

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(log_mel), dim=1)
