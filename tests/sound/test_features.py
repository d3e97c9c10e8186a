"""Log-mel features (runtime, numpy) and the windows training cuts from a session."""

from __future__ import annotations

import numpy as np
import pytest

from sensorfuse.perception import sound
from sensorfuse.models.sound import dataset


def _room_tone(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 0.003, n).astype(np.float32)


def test_log_mel_shape_dtype_finite() -> None:
    feats = sound.log_mel(_room_tone(sound.WINDOW_SAMPLES))
    assert feats.shape == (sound.N_FRAMES, sound.N_MELS) == (48, 40)
    assert feats.dtype == np.float32
    assert np.isfinite(feats).all()


def test_digital_silence_sits_at_the_floor_not_minus_infinity() -> None:
    feats = sound.log_mel(np.zeros(sound.WINDOW_SAMPLES, np.float32))
    assert np.allclose(feats, np.log(sound.LOG_FLOOR))


def test_every_mel_filter_covers_some_rfft_bin() -> None:
    bank = sound.mel_filterbank()
    assert bank.shape == (sound.N_FFT // 2 + 1, sound.N_MELS)
    assert (bank.max(axis=0) > 0.3).all()


def test_a_tone_lands_in_the_band_of_its_frequency() -> None:
    t = np.arange(sound.WINDOW_SAMPLES) / sound.SAMPLE_RATE
    low = sound.log_mel((0.4 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)).mean(axis=0)
    high = sound.log_mel((0.4 * np.sin(2 * np.pi * 3000 * t)).astype(np.float32)).mean(axis=0)
    assert int(low.argmax()) < int(high.argmax())


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_raise(bad: float) -> None:
    window = _room_tone(sound.WINDOW_SAMPLES)
    window[1234] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        sound.log_mel(window)


def test_short_or_multichannel_input_raises() -> None:
    with pytest.raises(ValueError, match="at least"):
        sound.log_mel(np.zeros(100, np.float32))
    with pytest.raises(ValueError, match="mono"):
        sound.log_mel(np.zeros((sound.WINDOW_SAMPLES, 2), np.float32))


def test_session_frames_sliced_equal_the_runtime_features_of_the_window() -> None:
    samples = np.random.default_rng(1).normal(0.0, 0.1, 3 * sound.SAMPLE_RATE).astype(np.float32)
    frames = sound.log_mel(samples)
    for k in (0, 37, frames.shape[0] - sound.N_FRAMES):
        window = samples[k * sound.HOP_SAMPLES:k * sound.HOP_SAMPLES + sound.WINDOW_SAMPLES]
        np.testing.assert_allclose(frames[k:k + sound.N_FRAMES], sound.log_mel(window), atol=1e-5)


def test_truth_maps_silence_to_background_and_events_to_their_class() -> None:
    t0 = 1_000_000_000
    labels = [
        {"label": "speech", "start_ns": t0 + 100_000_000, "end_ns": t0 + 200_000_000},
        {"label": "sound", "sound": "silence", "start_ns": t0 + 300_000_000, "end_ns": t0 + 400_000_000},
        {"label": "sound", "sound": "alarm", "start_ns": t0 + 500_000_000, "end_ns": t0 + 600_000_000},
        {"label": "face_visible", "start_ns": t0, "end_ns": t0 + 900_000_000},
    ]
    classes = dataset.sample_classes(labels, sound.SAMPLE_RATE, t0)
    names = [sound.SOUND_CLASSES[c] for c in classes[[50, 1600, 3200, 5000, 8000, 9600]]]
    assert names == ["background", "speech", "background", "background", "alarm", "background"]


def test_windows_of_a_session_carry_the_majority_class(train_arrays: dict[str, np.ndarray]) -> None:
    cut = dataset.windows(train_arrays, stride_frames=5)
    assert cut.features.shape[1:] == (sound.N_FRAMES, sound.N_MELS)
    assert len(cut.features) == len(cut.labels) == len(cut.starts) == len(cut.share)
    assert (cut.share >= dataset.MIN_MAJORITY).all()
    # train seed 2 holds a tone, a silence, an alarm and a speech clip
    present = {sound.SOUND_CLASSES[c] for c in cut.labels}
    assert {"tone", "alarm", "speech", "background"} <= present
