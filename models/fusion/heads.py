"""The fusion head in torch: three strategies over the same inputs and outputs.

Inputs are `sensorfuse.perception.features.FEATURES` (batch first); outputs are
probabilities: ``speaking`` [B, F] (0 for empty slots), ``offscreen`` [B, 1],
``relevance`` [B, 1]. Every strategy takes the modality masks, so a missing sensor
means "no evidence" rather than garbage input.

Open vocabulary: vision and audio arrive already in the text encoder's space (ConSE
vectors, see features.py); the head compares them with the query by cosine *inside the
graph* and learns on those similarities, never on the raw query embedding — with only a
handful of training phrasings, a head that saw the raw query would memorise them.

- early: one MLP over the concatenation of everything (per face slot: that slot's token
  plus the global vector).
- late: one head per modality (vision: faces + scene similarity; audio: VAD/energy +
  audio similarity), each giving logits for every output it can speak to; a learned,
  positive weight per (output, modality) combines the present modalities' logits.
- attention: modality tokens (CLS, audio, scene, query, F faces) through two layers of
  masked multi-head self-attention; outputs read from the face tokens (speaking), CLS
  (offscreen) and the query token (relevance).
"""

from __future__ import annotations

import torch
from torch import nn

from sensorfuse.perception.features import AUDIO_DIM, FACE_DIM, FACE_SLOTS

INPUT_NAMES = ("faces", "face_mask", "audio", "audio_text", "audio_mask", "scene", "vision_mask", "query",
               "query_mask")
OUTPUT_NAMES = ("speaking", "offscreen", "relevance")
Inputs = tuple[torch.Tensor, ...]


def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, n_out))


def similarities(query: torch.Tensor, scene: torch.Tensor, audio_text: torch.Tensor) -> torch.Tensor:
    """[B, 2]: cosine of the query with the scene and with the audio (0 where absent)."""
    return torch.stack([(query * scene).sum(-1), (query * audio_text).sum(-1)], dim=-1)


class FusionBase(nn.Module):
    strategy = "base"

    def outputs(self, speaking: torch.Tensor, offscreen: torch.Tensor, relevance: torch.Tensor,
                face_mask: torch.Tensor, query_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Logits → probabilities; empty face slots and absent queries give 0."""
        return (torch.sigmoid(speaking) * face_mask, torch.sigmoid(offscreen),
                torch.sigmoid(relevance) * query_mask)

    def logits(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def forward(self, faces: torch.Tensor, face_mask: torch.Tensor, audio: torch.Tensor, audio_text: torch.Tensor,
                audio_mask: torch.Tensor, scene: torch.Tensor, vision_mask: torch.Tensor, query: torch.Tensor,
                query_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        s, o, r = self.logits(faces, face_mask, audio, audio_text, audio_mask, scene, vision_mask, query, query_mask)
        return self.outputs(s, o, r, face_mask, query_mask)


class EarlyFusion(FusionBase):
    strategy = "early"

    def __init__(self, hidden: int = 64) -> None:
        super().__init__()
        n_global = FACE_SLOTS * (FACE_DIM + 1) + AUDIO_DIM + 2 + 3
        self.global_mlp = _mlp(n_global, hidden, 2)
        self.face_mlp = _mlp(FACE_DIM + 1 + n_global, hidden, 1)

    def logits(self, faces, face_mask, audio, audio_text, audio_mask, scene, vision_mask, query, query_mask):
        faces = faces * face_mask.unsqueeze(-1)
        sims = similarities(query, scene, audio_text)
        flat = torch.cat([faces.flatten(1), face_mask, audio * audio_mask, sims, audio_mask, vision_mask,
                          query_mask], dim=-1)
        out = self.global_mlp(flat)
        per_slot = torch.cat([faces, face_mask.unsqueeze(-1), flat.unsqueeze(1).expand(-1, FACE_SLOTS, -1)], dim=-1)
        return self.face_mlp(per_slot).squeeze(-1), out[:, 0:1], out[:, 1:2]


class LateFusion(FusionBase):
    strategy = "late"

    def __init__(self, hidden: int = 32) -> None:
        super().__init__()
        self.face_head = _mlp(FACE_DIM, hidden, 1)  # vision: this face is speaking
        self.vision_head = _mlp(2 + 1, hidden, 2)  # vision: [max slot logit, n faces, sim] → offscreen, relevance
        self.audio_head = _mlp(AUDIO_DIM + 1, hidden, 3)  # audio → speaking, offscreen, relevance
        # softplus(raw) > 0: per output, the weight of (vision, audio)
        self.raw_weights = nn.Parameter(torch.zeros(3, 2))
        self.bias = nn.Parameter(torch.zeros(3))

    def logits(self, faces, face_mask, audio, audio_text, audio_mask, scene, vision_mask, query, query_mask):
        sims = similarities(query, scene, audio_text)
        face_logit = self.face_head(faces).squeeze(-1)  # [B, F]
        masked = face_logit * face_mask - 20.0 * (1 - face_mask)
        best = masked.max(dim=-1, keepdim=True).values * face_mask.max(dim=-1, keepdim=True).values
        vision = self.vision_head(torch.cat([best, face_mask.sum(-1, keepdim=True), sims[:, 0:1]], dim=-1))
        aud = self.audio_head(torch.cat([audio, sims[:, 1:2]], dim=-1))
        w = nn.functional.softplus(self.raw_weights)
        wv, wa = w[:, 0] * vision_mask, w[:, 1] * audio_mask  # [B, 3]
        speaking = wv[:, 0:1] * face_logit + wa[:, 0:1] * aud[:, 0:1] + self.bias[0]
        offscreen = wv[:, 1:2] * vision[:, 0:1] + wa[:, 1:2] * aud[:, 1:2] + self.bias[1]
        relevance = wv[:, 2:3] * vision[:, 1:2] + wa[:, 2:3] * aud[:, 2:3] + self.bias[2]
        return speaking, offscreen, relevance


class SelfAttention(nn.Module):
    """Pre-norm masked multi-head self-attention + MLP, written out for a plain ONNX graph."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.dim = heads, dim
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ffn = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        h = self.heads
        q, k, v = self.qkv(self.norm1(x)).reshape(b, n, 3, h, d // h).permute(2, 0, 3, 1, 4)
        scores = (q @ k.transpose(-1, -2)) / (d // h) ** 0.5  # [B, H, N, N]
        scores = scores - 1e4 * (1 - key_mask)[:, None, None, :]
        att = torch.softmax(scores, dim=-1) @ v
        x = x + self.proj(att.transpose(1, 2).reshape(b, n, d))
        return x + self.ffn(self.norm2(x))


class AttentionFusion(FusionBase):
    strategy = "attention"

    def __init__(self, dim: int = 32, heads: int = 4, layers: int = 2) -> None:
        super().__init__()
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.audio_in = nn.Linear(AUDIO_DIM + 1, dim)
        self.scene_in = nn.Linear(1, dim)
        self.query_in = nn.Linear(2, dim)
        self.face_in = nn.Linear(FACE_DIM, dim)
        self.type_embed = nn.Parameter(torch.randn(5, dim) * 0.02)  # cls, audio, scene, query, face
        self.blocks = nn.ModuleList([SelfAttention(dim, heads) for _ in range(layers)])
        self.norm = nn.LayerNorm(dim)
        self.speaking_out, self.offscreen_out, self.relevance_out = nn.Linear(dim, 1), nn.Linear(dim, 1), nn.Linear(dim, 1)

    def logits(self, faces, face_mask, audio, audio_text, audio_mask, scene, vision_mask, query, query_mask):
        b = faces.shape[0]
        sims = similarities(query, scene, audio_text)
        tokens = torch.cat([
            self.cls.expand(b, -1, -1) + self.type_embed[0],
            (self.audio_in(torch.cat([audio, sims[:, 1:2]], dim=-1)) + self.type_embed[1]).unsqueeze(1),
            (self.scene_in(sims[:, 0:1]) + self.type_embed[2]).unsqueeze(1),
            (self.query_in(sims) + self.type_embed[3]).unsqueeze(1),
            self.face_in(faces) + self.type_embed[4],
        ], dim=1)
        ones = torch.ones_like(audio_mask)
        key_mask = torch.cat([ones, audio_mask, vision_mask, query_mask, face_mask * vision_mask], dim=-1)
        for block in self.blocks:
            tokens = block(tokens, key_mask)
        tokens = self.norm(tokens)
        speaking = self.speaking_out(tokens[:, 4:]).squeeze(-1)
        return speaking, self.offscreen_out(tokens[:, 0]), self.relevance_out(tokens[:, 3])


STRATEGY_CLASSES: dict[str, type[FusionBase]] = {
    "early": EarlyFusion, "late": LateFusion, "attention": AttentionFusion,
}
