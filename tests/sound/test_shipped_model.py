"""The shipped audio-event encoder (models/sound/data): loads without torch, names synthetic
sounds made by the session generator and a held-out espeak voice, and keeps its held-out
accuracy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sensorfuse.perception.sound import SOUND_CLASSES, WINDOW_SAMPLES, SoundClassifier
from sensorfuse.models.sound import evaluate
from sensorfuse.replay import sample

# The shipped model scored 0.983 on the full held-out set (8 × 20 s, 1568 windows;
# models/sound/data/eval.md) and 0.991 on this 12 s session (116 windows; the misses
# are at event boundaries). 0.9 leaves room for a retrain, not for a broken model.
HELDOUT_MIN_ACCURACY = 0.9


@pytest.fixture(scope="module")
def classifier(shipped_manifest: Path) -> SoundClassifier:
    return SoundClassifier(shipped_manifest)


def _with_room_tone(sound: np.ndarray, seed: int = 0) -> np.ndarray:
    """The middle `WINDOW_SAMPLES` of a sound over the generator's room tone (silence
    replaces it, as the generator does)."""
    start = max(0, (len(sound) - WINDOW_SAMPLES) // 2)
    part = np.zeros(WINDOW_SAMPLES, np.float32)
    part[:min(WINDOW_SAMPLES, len(sound))] = sound[start:start + WINDOW_SAMPLES]
    room = np.random.default_rng(seed).normal(0.0, 0.003, WINDOW_SAMPLES).astype(np.float32)
    return part + room


def _label(classifier: SoundClassifier, window: np.ndarray) -> str:
    return classifier.classes[int(classifier.probabilities(window).argmax())]


@pytest.mark.parametrize("kind", ["alarm", "tone", "noise"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_generator_sounds_get_their_class(classifier: SoundClassifier, kind: str, seed: int) -> None:
    window = _with_room_tone(sample._sound(np.random.default_rng(seed), kind), seed)
    assert _label(classifier, window) == kind


def test_room_tone_and_silence_are_background(classifier: SoundClassifier) -> None:
    assert _label(classifier, _with_room_tone(np.zeros(0, np.float32))) == "background"
    silence = sample._sound(np.random.default_rng(0), "silence")[:WINDOW_SAMPLES]
    assert _label(classifier, silence) == "background"


def test_a_held_out_voice_is_speech(classifier: SoundClassifier) -> None:
    for clip in sample.speech_clips("heldout"):
        samples = sample.load_clip(clip)
        # the loudest half second: the clip's edges are espeak's own silence
        energy = np.convolve(samples ** 2, np.ones(WINDOW_SAMPLES), mode="valid")
        start = int(energy.argmax())
        window = samples[start:start + WINDOW_SAMPLES] + _with_room_tone(np.zeros(0, np.float32))
        assert _label(classifier, window.astype(np.float32)) == "speech", clip["clip"]


def test_bad_windows_raise_value_error(classifier: SoundClassifier) -> None:
    with pytest.raises(ValueError, match="8000"):
        classifier.probabilities(np.zeros(WINDOW_SAMPLES - 1, np.float32))
    with pytest.raises(ValueError, match="8000"):
        classifier.probabilities(np.zeros((WINDOW_SAMPLES, 1), np.float32))
    window = np.zeros(WINDOW_SAMPLES, np.float32)
    window[10] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        classifier.probabilities(window)


def test_held_out_accuracy(classifier: SoundClassifier, heldout_arrays: dict[str, np.ndarray]) -> None:
    result = evaluate.evaluate(classifier, {1: heldout_arrays})
    assert result["accuracy"] >= HELDOUT_MIN_ACCURACY, evaluate.markdown(result, [1])


def test_shipped_manifest_records_training_and_eval(classifier: SoundClassifier) -> None:
    m = classifier.manifest
    assert m.trained["parity_max_abs_diff"] <= 1e-4
    assert set(m.eval["per_class"]) == set(SOUND_CLASSES)


def test_cli_eval_writes_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sensorfuse.engine import cli

    monkeypatch.setenv("SENSORFUSE_MODEL_CACHE", str(tmp_path / "models"))  # sessions cached beside it
    out = tmp_path / "eval.json"
    argv = ["sound", "eval", "--heldout-sessions", "1", "--duration", "6", "--workers", "1", "--json", str(out)]
    assert cli.main(argv) == 0
    result = json.loads(out.read_text())
    assert result["heldout_seeds"] == [1_000_000, 1_000_000] and result["n"] > 0
    assert (tmp_path / "sound").is_dir()


def test_runtime_module_imports_no_torch() -> None:
    code = ("import sys; import sensorfuse.perception.sound\n"
            "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
            "assert not bad, bad[:5]\n"
            "upper = sorted(m for m in sys.modules if m.startswith(('sensorfuse.nodes', 'sensorfuse.replay', 'sensorfuse.models')))\n"
            "assert not upper, upper\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
