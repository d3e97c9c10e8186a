"""What the perceive node is configured with and where it finds its models: the event rules'
parameters and defaults, the default object classes, the fusion head and sound classifier
shipped with the package, and the check that a pack's face models batch.

Kept apart from the node (`sensorfuse.nodes.perceive`) so the demo, the doctor and the
benches read the defaults without loading the node's runtime.
"""

from __future__ import annotations

import importlib.resources
import json
from pathlib import Path

import msgspec

from sensorfuse.engine import manifest as mf
from sensorfuse.engine.errors import StartupError
from sensorfuse.engine.events import EventRule
from sensorfuse.engine.params import NonNegativeFloat, Probability, param_error
from sensorfuse.perception.encoders import FACE_MODEL, LANDMARK_MODEL, SCENE_MODEL, TEXT_MODEL, VAD_MODEL
from sensorfuse.perception.fusion import STRATEGIES, manifest_path_for

MS = 1_000_000
#: the model pack `Encoders` opens
PACK_MODELS = (FACE_MODEL, LANDMARK_MODEL, SCENE_MODEL, VAD_MODEL, TEXT_MODEL)
#: models the face pipeline runs on several crops in one call (`sensorfuse.perception.faces`)
BATCHED_MODELS = (FACE_MODEL, LANDMARK_MODEL)


class RuleParams(msgspec.Struct, forbid_unknown_fields=True):
    on: Probability
    off: Probability
    min_duration_ms: NonNegativeFloat = 0.0
    hold_ms: NonNegativeFloat = 0.0
    cooldown_ms: NonNegativeFloat = 0.0
    update_every_ms: NonNegativeFloat = 0.0
    #: speech events: how far before the score's run the VAD's onset may date the start
    backdate_ms: NonNegativeFloat = 0.0
    #: a tick below `on` at most this long after the run's last tick at or above `on` keeps
    #: the run (a flickering score; 0: any dip ends it)
    bridge_ms: NonNegativeFloat = 0.0

    def __post_init__(self) -> None:
        if self.off > self.on:  # hysteresis: an event starts at `on` and ends below `off`
            raise param_error("off", f"a score <= on ({self.on})", self.off)

    def rule(self, type_: str) -> EventRule:
        return EventRule(type_, self.on, self.off, round(self.min_duration_ms * MS), round(self.hold_ms * MS),
                         round(self.cooldown_ms * MS), round(self.update_every_ms * MS), round(self.backdate_ms * MS),
                         round(self.bridge_ms * MS))


DEFAULT_RULES: dict[str, RuleParams] = {
    "face": RuleParams(0.5, 0.5, min_duration_ms=150, hold_ms=300),
    # the VAD's onset dates a speech event up to the head's audio window (600 ms) back; for
    # speaker.active 400 ms (500-600 moved one start onto an earlier utterance). The head's
    # `speaking` flickers while a voice starts: one-tick dips (at 15 fps) keep the run, and
    # 133 ms confirm it (docs/fusion.md, "Speech onsets": bench/speech_onset.py)
    "speaker.active": RuleParams(0.6, 0.4, min_duration_ms=133, hold_ms=400, update_every_ms=1000, backdate_ms=400,
                                 bridge_ms=100),
    "speech.offscreen": RuleParams(0.6, 0.4, min_duration_ms=300, hold_ms=400, update_every_ms=1000,
                                   backdate_ms=600),
    "query.match": RuleParams(0.6, 0.4, min_duration_ms=130, hold_ms=300, cooldown_ms=60_000),
    "sound": RuleParams(0.6, 0.4, min_duration_ms=200, hold_ms=300, update_every_ms=1000),
    # results enter every objects_period_ms (333): seen in two runs in a row to start, and
    # missed in two to end. `off` is below the detector's min_score (0.35): a detection never
    # scores under it, so an object ends by going unseen, not by a score grazing 0.35. `on`
    # 0.46: at 0.5 a cat of the demo scored 0.5007 once object tiles came (within the 0.003
    # every demo score must keep from its threshold: tests/fusion/test_event_margins.py);
    # the nearest demo scores to 0.46 are 0.4535 and 0.4662.
    "object": RuleParams(0.46, 0.3, min_duration_ms=300, hold_ms=700),
}
#: Object classes perceive reports unless configured (`classes`): people, animals and vehicles.
DEFAULT_CLASSES = ("person", "bicycle", "car", "motorcycle", "bus", "truck", "cat", "dog")


def outdated(model: str, manifest: mf.Manifest) -> bool:
    """A face model built by an older sensorfuse: it takes a batch of 1, and the face
    pipeline runs its crops in batches (`sensorfuse models build` rebuilds it)."""
    return model in BATCHED_MODELS and bool(manifest.inputs) and manifest.inputs[0].shape[:1] == [1]


def default_heads_dir() -> Path:
    """The heads shipped with the package (models/fusion/data); no torch is imported."""
    return Path(str(importlib.resources.files("sensorfuse.models.fusion") / "data"))


def default_sound_manifest() -> Path:
    """The sound-event classifier shipped with the package (models/sound/data)."""
    return Path(str(importlib.resources.files("sensorfuse.models.sound") / "data" / "sound_events.manifest.json"))


def resolve_head(head: str, heads_dir: Path) -> Path:
    if head.endswith(".json"):
        return Path(head)
    if head == "default":
        pointer = heads_dir / "fusion_default.json"
        try:
            head = json.loads(pointer.read_text())["strategy"]
        except (OSError, ValueError, KeyError) as exc:
            raise StartupError(f"no default fusion head in {heads_dir} ({exc}); run `sensorfuse fusion train`") from None
    if head not in STRATEGIES:
        raise StartupError(f"head {head!r}: use default, {', '.join(STRATEGIES)} or a manifest path")
    return manifest_path_for(heads_dir, head)
