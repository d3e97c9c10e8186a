"""Audio-event encoder at run time: log-mel features in numpy, a small ONNX classifier, no torch.

What it is: the project's own audio classifier (`models/sound/`, docs/sound.md), trained on
generated sessions (`sensorfuse sample`) to tell what a half-second of microphone audio
holds: ``speech``, an ``alarm`` (alternating square-ish tones), a steady ``tone``, a
``noise`` burst, or ``background`` — nothing in particular (room tone, or the room tone
switched off), so the model is never forced to name an event that is not there.

Input: float32 mono samples at 16 kHz (the ``mic0/audio16k`` stream), exactly
`WINDOW_SAMPLES` (8000 = 0.5 s) per call. 0.5 s because it fits inside the shortest
event the generator makes (noise bursts, 0.8 s) and inside most gaps between events
(0.4–1.5 s), so most windows hold one thing, and an event is reported at most half a
second after it starts; an alarm's 4 Hz alternation still shows twice.
Features (`log_mel`): 25 ms Hann frames every 10 ms, 512-point rfft, power, 40 mel bands
60–7800 Hz, natural log with a floor — 48 frames × 40 bands per window. The level is
absolute (no per-window normalisation): a noise burst and the room tone are both white
noise and differ only by their level.

Rate: whatever the caller chooses; one call costs well under a millisecond on one core
(features ~0.1 ms, model ~0.2 ms; docs/sound.md).

Failure behaviour: a missing or altered model file, a manifest of another feature or
class contract → `StartupError` at construction, naming the file and the difference. A
window of the wrong shape, or holding NaN/inf → `ValueError` (the caller counts it and
goes on); nothing is silently repaired.

    classifier = SoundClassifier(Path("models/sound/data/sound_events.manifest.json"))
    p = classifier.probabilities(window)   # window: float32[classifier.window_samples]
    label = classifier.classes[int(p.argmax())]
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from sensorfuse.engine import inference
from sensorfuse.engine.errors import StartupError

SOUND_CLASSES: tuple[str, ...] = ("speech", "alarm", "tone", "noise", "background")
BACKGROUND = "background"
SAMPLE_RATE = 16_000
WINDOW_SAMPLES = 8_000  # 0.5 s, see the module docstring
FRAME_SAMPLES = 400  # 25 ms
HOP_SAMPLES = 160  # 10 ms
N_FFT = 512
N_MELS = 40
F_MIN_HZ, F_MAX_HZ = 60.0, 7_800.0
LOG_FLOOR = 1e-10  # power floor: digital silence maps to log(1e-10), never -inf
N_FRAMES = 1 + (WINDOW_SAMPLES - FRAME_SAMPLES) // HOP_SAMPLES  # 48
INPUT_NAME, OUTPUT_NAME = "log_mel", "probabilities"
# The feature contract a model is trained on; the manifest records it and a model trained
# on other features is refused at load.
FEATURES: dict[str, Any] = {
    "sample_rate": SAMPLE_RATE, "window_samples": WINDOW_SAMPLES, "frame_samples": FRAME_SAMPLES,
    "hop_samples": HOP_SAMPLES, "n_fft": N_FFT, "n_mels": N_MELS, "f_min_hz": F_MIN_HZ, "f_max_hz": F_MAX_HZ,
    "log_floor": LOG_FLOOR, "window": "hann",
}


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + hz / 700.0)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


@functools.cache
def mel_filterbank() -> np.ndarray:
    """[N_FFT // 2 + 1, N_MELS] triangular filters (HTK mel scale), peak 1, float32."""
    edges = _mel_to_hz(np.linspace(_hz_to_mel(np.float64(F_MIN_HZ)), _hz_to_mel(np.float64(F_MAX_HZ)), N_MELS + 2))
    bins = np.arange(N_FFT // 2 + 1) * SAMPLE_RATE / N_FFT
    lower, center, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None, :] - lower) / (center - lower)
    falling = (upper - bins[None, :]) / (upper - center)
    return np.maximum(0.0, np.minimum(rising, falling)).T.astype(np.float32)


@functools.cache
def _hann() -> np.ndarray:
    return np.hanning(FRAME_SAMPLES + 1)[:-1].astype(np.float32)  # periodic Hann


def log_mel(samples: np.ndarray) -> np.ndarray:
    """Log-mel frames of any stretch of 16 kHz audio: [1 + (n - FRAME) // HOP, N_MELS] float32.

    Frames start at sample 0 and are not padded, so the frames of a long recording from
    frame k on equal the features of the window starting at sample k * HOP_SAMPLES
    (training cuts its windows that way). Raises ValueError on non-finite samples.
    """
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"log_mel: mono samples expected, got shape {list(x.shape)}")
    if x.shape[0] < FRAME_SAMPLES:
        raise ValueError(f"log_mel: at least {FRAME_SAMPLES} samples needed, got {x.shape[0]}")
    if not np.isfinite(x).all():
        bad = int(np.count_nonzero(~np.isfinite(x)))
        raise ValueError(f"log_mel: {bad} of {x.shape[0]} samples are NaN or infinite")
    frames = np.lib.stride_tricks.sliding_window_view(x, FRAME_SAMPLES)[::HOP_SAMPLES] * _hann()
    spectrum = np.fft.rfft(frames, n=N_FFT, axis=1)
    power = spectrum.real ** 2 + spectrum.imag ** 2
    return np.log(np.maximum(power.astype(np.float32) @ mel_filterbank(), LOG_FLOOR))


class SoundManifest(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    file: str
    sha256: str
    classes: list[str]
    features: dict[str, Any]
    input: str
    output: str
    trained: dict[str, Any] = {}
    eval: dict[str, Any] = {}


class SoundClassifier:
    """Half-second audio windows → class probabilities (see the module docstring)."""

    def __init__(self, manifest_path: Path, *, threads: int = 1) -> None:
        path = Path(manifest_path)
        try:
            self.manifest = msgspec.json.decode(path.read_bytes(), type=SoundManifest)
        except FileNotFoundError:
            raise StartupError(f"sound model manifest not found: {path}") from None
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise StartupError(f"{path}: not a sound model manifest: {exc}") from None
        m = self.manifest
        if tuple(m.classes) != SOUND_CLASSES or m.features != FEATURES:
            raise StartupError(
                f"{path}: model trained for classes {m.classes} on features {m.features}, runtime has "
                f"{list(SOUND_CLASSES)} on {FEATURES}: retrain with `sensorfuse sound train`")
        self.session = inference.checked_session(path.parent / m.file, m.sha256, threads=threads)
        self.path = path
        self.classes: tuple[str, ...] = SOUND_CLASSES
        self.window_samples: int = WINDOW_SAMPLES
        self.probabilities(np.zeros(WINDOW_SAMPLES, np.float32))  # warm-up: first-call allocations

    def probabilities(self, samples: np.ndarray) -> np.ndarray:
        """Softmax probabilities [len(classes)] float32 of one window of `window_samples`."""
        if samples.shape != (WINDOW_SAMPLES,):
            raise ValueError(f"sound classifier: a window of {WINDOW_SAMPLES} mono samples expected, "
                             f"got shape {list(samples.shape)}")
        features = log_mel(samples)[None]
        probs = self.session.run([OUTPUT_NAME], {INPUT_NAME: features})[0][0]
        inference.check_finite("sound_events", {OUTPUT_NAME: probs})
        return probs
