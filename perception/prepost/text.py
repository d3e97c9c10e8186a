"""Text tokenisation for the sentence encoder, with HuggingFace `tokenizers` (no torch).

The tokenizer.json shipped with all-MiniLM-L6-v2 pads every input to 128 tokens; a
two-word query then costs as much as a paragraph (8× slower, MODELS.md). We keep its
vocabulary and normaliser but truncate at the manifest's `max_length` and pad only to
the longest text of the batch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from sensorfuse.engine.manifest import TokenizerPre


def load_tokenizer(path: Path, pre: TokenizerPre) -> Tokenizer:
    """Load tokenizer.json with truncation at `max_length` and batch-longest padding."""
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.enable_truncation(max_length=pre.max_length)
    pad_id = tokenizer.token_to_id("[PAD]")
    tokenizer.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token="[PAD]")
    return tokenizer


def encode(tokenizer: Tokenizer, texts: list[str]) -> dict[str, np.ndarray]:
    """Texts → {"input_ids", "attention_mask"} int64 [batch, longest] for the encoder."""
    if not texts:
        raise ValueError("encode() needs at least one text")
    encodings = tokenizer.encode_batch(texts)
    ids = np.array([e.ids for e in encodings], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
    return {"input_ids": ids, "attention_mask": mask}
