"""The audio-event encoder: dataset, model, training, export, evaluation (docs/sound.md)."""

from pathlib import Path

MODEL_NAME = "sound_events"
MANIFEST_FILE = f"{MODEL_NAME}.manifest.json"
DATA_DIR = Path(__file__).with_name("data")  # the shipped model
