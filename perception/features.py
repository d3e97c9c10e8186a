"""Per-tick perception: encoders at their rates, tracking, and the fusion head's inputs.

This is the one place that turns an aligned tick into features. The perceive node calls
it on live/replayed ticks and `sensorfuse fusion train` calls it on ticks of generated
sessions, so the head is trained on exactly what it sees at run time.

Rates: face detector + landmarks on every frame (the detector on the whole frame, on a
region around each face of the previous frame and on a share of each level's tiles,
in rotation: every tile within FACE_TILE_CYCLE frames), plus one landmark run per face
of the previous frame that the detector missed (followed by landmarks alone); the scene encoder every
`scene_period_ns` of event time, its result used from `scene_delay_ns` of event time
after its frame until the next one (`sensorfuse.perception.scene`); Silero VAD on each new
audio sample exactly once (the windows of consecutive ticks overlap; we feed only what
is past the last fed sample); the sound-event classifier (`sensorfuse.perception.sound`, when
given) every `sound_period_ns` on the last 0.5 s of audio; the text encoder once per
distinct text (cached). The sound classes are an output of their own, not a fusion-head
input.

Feature contract (`FEATURES`), batch 1, float32 — the fusion head's ONNX inputs:

| input | shape | content |
|---|---|---|
| faces | [1, F, FACE_DIM] | per face slot: lip-gap history (HIST ticks, from landmarks), mouth-patch change history (HIST, mean abs grey change of the mouth region vs the previous frame), fraction of lip gaps observed, lip-gap std and mean change, mean patch change, detector score, box height / frame height |
| face_mask | [1, F] | 1 where a tracked face fills the slot (slots ordered by track id) |
| audio | [1, AUDIO_DIM] | VAD probability history (HIST ticks), log-energy history (HIST), in-speech flag |
| audio_text | [1, 384] | audio in the text space: ConSE of p(speech) over "someone is speaking" / "silence" |
| audio_mask, vision_mask, query_mask | [1, 1] | modality present in this tick (aligner mask) |
| scene | [1, 384] | ConSE of the scene classifier's top labels in the text space (Norouzi et al. 2014) |
| query | [1, 384] | the active text's sentence embedding |

Times are event time only (tick `t_ns`); nothing reads a clock.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sensorfuse.perception.encoders import Encoders, to_rgb
from sensorfuse.perception.faces import (CameraFaces, FACE_CONFIRM_PRESENCE, FACE_MIN_SCORE, FACE_PRESENCE_RULE,
                                         FACE_TILE_CYCLE, FACE_TILE_FRACTION, FACE_TILE_LEVELS,
                                         FACE_TILES_PER_FRAME, FACE_TRACK_FRAMES, FacePipeline,
                                         FaceObservation)
from sensorfuse.perception.scene import TEXT_DIM, SceneStage, unit
from sensorfuse.perception.sound import SoundClassifier
from sensorfuse.perception.ticks import Ref, TickInput

FACE_SLOTS = 3
HIST = 8
FACE_DIM = 2 * HIST + 6
AUDIO_DIM = 2 * HIST + 1
SCENE_PERIOD_NS = 333_000_000
#: Event time between a frame and the tick that first uses its scene result: the worker's
#: budget (~18 ms of compute on a free core) with room for a busy machine.
SCENE_DELAY_NS = 100_000_000
OPEN_SCALE = 5.0  # mouth opening / eye distance is ~0.02..0.3; scaled to ~0.1..1.5
PATCH_SCALE = 10.0  # mean abs grey change of the mouth patch is ~0.01..0.15
SOUND_PERIOD_NS = 100_000_000
LIP_FEATURES = tuple(range(HIST)) + (2 * HIST, 2 * HIST + 1, 2 * HIST + 2)  # the landmark-based ones
SPEECH_CONCEPTS = ("someone is speaking", "silence")
FEATURES: dict[str, tuple[int, ...]] = {
    "faces": (1, FACE_SLOTS, FACE_DIM), "face_mask": (1, FACE_SLOTS),
    "audio": (1, AUDIO_DIM), "audio_text": (1, TEXT_DIM), "audio_mask": (1, 1),
    "scene": (1, TEXT_DIM), "vision_mask": (1, 1),
    "query": (1, TEXT_DIM), "query_mask": (1, 1),
}
MODALITY_INPUTS: dict[str, tuple[str, ...]] = {
    "vision": ("faces", "face_mask", "scene", "vision_mask"),
    "audio": ("audio", "audio_text", "audio_mask"),
    "text": ("query", "query_mask"),
}


@dataclass(frozen=True)
class FaceState:
    track_id: int
    box: list[float]
    score: float
    keypoints: list[list[float]]
    mouth_open: float | None


@dataclass
class TickFeatures:
    index: int
    t_ns: int
    inputs: dict[str, np.ndarray]
    faces: list[FaceState] = field(default_factory=list)
    slot_ids: list[int] = field(default_factory=list)  # track id per filled face slot
    appeared: list[int] = field(default_factory=list)
    left: list[int] = field(default_factory=list)
    frame_shape: tuple[int, int] | None = None
    scene_top: list[tuple[str, float]] | None = None
    scene_embedding: np.ndarray | None = None
    scene_fresh: bool = False
    scene_frame_t_ns: int | None = None  # capture time of the frame the scene result describes
    sound_probs: dict[str, float] | None = None  # when the sound classifier ran this tick
    speech_prob: float | None = None
    in_speech: bool = False
    speech_since_ns: int | None = None  # first tick of the VAD's current speech segment
    text: str | None = None
    status: dict[str, str] = field(default_factory=dict)
    refs: list[Ref] = field(default_factory=list)
    frame_ref: Ref | None = None
    text_ref: Ref | None = None
    said: bool = False  # the query was spoken, not typed (its key is said:<seq>)

    @property
    def present(self) -> dict[str, bool]:
        return {m: bool(self.inputs[f"{m}_mask"].max() > 0) for m in ("vision", "audio", "query")}


def clip_to_frame(box: np.ndarray, keypoints: np.ndarray, height: int, width: int) -> tuple[
        list[float], list[list[float]]]:
    """A face's box and keypoints as published: frame pixels, clipped to [0, width] × [0, height].

    Why clip: a face partly out of the frame gets a box the detector extrapolates past the
    edge (x0 < 0); consumers draw and crop with these numbers. Only what is published is
    clipped: tracking and the fusion head's features keep the unclipped box (the head was
    trained on it). Keypoints are clipped the same way, so every published coordinate lies
    in the frame; a keypoint of a part of the face outside the frame sits on the edge.
    """
    x = np.clip(np.asarray(box, np.float64)[[0, 2]], 0.0, float(width))
    y = np.clip(np.asarray(box, np.float64)[[1, 3]], 0.0, float(height))
    points = np.asarray(keypoints, np.float64).reshape(-1, 2)
    px, py = np.clip(points[:, 0], 0.0, float(width)), np.clip(points[:, 1], 0.0, float(height))
    return ([round(float(v), 1) for v in (x[0], y[0], x[1], y[1])],
            [[round(float(a), 1), round(float(b), 1)] for a, b in zip(px, py)])


def empty_inputs() -> dict[str, np.ndarray]:
    return {name: np.zeros(shape, np.float32) for name, shape in FEATURES.items()}


class Perception:
    """Stateful per-session perception; feed ticks in time order."""

    def __init__(self, encoders: Encoders, label_embeddings: np.ndarray, *,
                 scene_period_ns: int = SCENE_PERIOD_NS, scene_delay_ns: int = SCENE_DELAY_NS,
                 scene_executor: Executor | None = None, max_faces: int = FACE_SLOTS, top_k: int = 5,
                 face_min_score: float = FACE_MIN_SCORE, face_tile_fraction: float | None = FACE_TILE_FRACTION,
                 face_track_frames: int = FACE_TRACK_FRAMES,
                 face_tiles_per_frame: int = FACE_TILES_PER_FRAME, face_tile_levels: bool = FACE_TILE_LEVELS,
                 face_tile_cycle: int = FACE_TILE_CYCLE,
                 sound: SoundClassifier | None = None,
                 sound_period_ns: int = SOUND_PERIOD_NS) -> None:
        self.sound = sound
        self.sound_period_ns = sound_period_ns
        self._sound_window = np.zeros(sound.window_samples if sound else 0, np.float32)  # the newest samples
        self._sound_filled = 0
        self._sound_t: int | None = None
        self.enc = encoders
        self.scene = SceneStage(encoders, label_embeddings, period_ns=scene_period_ns, delay_ns=scene_delay_ns,
                                top_k=top_k, executor=scene_executor)
        self.max_faces = max_faces
        #: how this perception finds faces (also for a pipeline it shares with other cameras: `face_pipeline`)
        self.face_settings: dict[str, Any] = dict(
            max_faces=max_faces, min_score=face_min_score, presence_rule=FACE_PRESENCE_RULE,
            track_presence=FACE_CONFIRM_PRESENCE, track_frames=face_track_frames, tile_fraction=face_tile_fraction,
            tiles_per_frame=face_tiles_per_frame, tile_levels=face_tile_levels, tile_cycle=face_tile_cycle)
        self.faces = self.face_pipeline(1)
        self._vad_probs: list[float] = []  # chunks of the current tick only (cleared per tick)
        self.vad = encoders.vad_stream(self._vad_probs)
        self._fed_until: int | None = None  # absolute index of the next audio sample to feed
        self._prev_t: int | None = None
        self._speech_since: int | None = None  # first tick of the VAD's current speech segment
        self._open: dict[int, deque[float]] = {}
        self._patch_change: dict[int, deque[float]] = {}
        self._last_patch: dict[int, tuple[int, np.ndarray]] = {}  # track → (frame number, patch)
        self._vad_hist: deque[float] = deque([0.0] * HIST, maxlen=HIST)
        self._energy_hist: deque[float] = deque([0.0] * HIST, maxlen=HIST)
        self._text_cache: dict[str, np.ndarray] = {}
        self._concepts = encoders.embed_texts(list(SPEECH_CONCEPTS))
        self.frames = 0
        self.audio_blocks = 0

    def face_pipeline(self, cameras: int) -> FacePipeline:
        """A face pipeline with this perception's settings for `cameras` cameras."""
        return FacePipeline(self.enc, cameras=cameras, **self.face_settings)

    def process(self, tick: TickInput, faces: CameraFaces | None = None, rgb: np.ndarray | None = None
                ) -> TickFeatures:
        """`faces`: this tick's faces, found by a pipeline shared with other cameras
        (`sensorfuse.perception.cameras`) on `rgb` (the tick's frame as RGB); None: this
        perception's own pipeline finds them."""
        feats = TickFeatures(tick.index, tick.t_ns, empty_inputs(), status=dict(tick.status), refs=list(tick.refs),
                             frame_ref=tick.frame_ref, text_ref=tick.text_ref, said=tick.said)
        feats.scene_fresh = self.scene.advance(tick.t_ns)
        if tick.frame is not None:
            self._vision(tick, feats, faces, rgb)
        if tick.audio is not None:
            self._audio(tick, feats)
        if tick.text is not None:
            emb = self.text_embedding(tick.text)
            feats.inputs["query"][0] = emb
            feats.inputs["query_mask"][0, 0] = 1.0
            feats.text = tick.text
        scene = self.scene.current
        if scene is not None:
            feats.scene_top, feats.scene_embedding, feats.scene_frame_t_ns = scene.top, scene.embedding, scene.frame_t_ns
        self._prev_t = tick.t_ns
        return feats

    def text_embedding(self, text: str) -> np.ndarray:
        if text not in self._text_cache:
            if len(self._text_cache) >= 256:  # bounded: drop the oldest entry
                del self._text_cache[next(iter(self._text_cache))]
            self._text_cache[text] = self.enc.embed_texts([text])[0]
        return self._text_cache[text]

    # -- vision ------------------------------------------------------------------------
    def _vision(self, tick: TickInput, feats: TickFeatures, faces: CameraFaces | None,
                rgb: np.ndarray | None) -> None:
        assert tick.frame is not None
        if rgb is None:
            rgb = to_rgb(tick.frame, tick.frame_layout)
        self.frames += 1
        height = rgb.shape[0]
        feats.frame_shape = (rgb.shape[0], rgb.shape[1])
        height, width = rgb.shape[:2]
        found = faces if faces is not None else self.faces.step([rgb])[0]
        assert found is not None
        ids = found.track_ids
        for track_id in found.left:
            self._open.pop(track_id, None)
            self._patch_change.pop(track_id, None)
            self._last_patch.pop(track_id, None)
            feats.left.append(track_id)
        by_id: dict[int, FaceObservation] = dict(zip(ids, found.observations))
        for track_id in found.live:
            hist = self._open.setdefault(track_id, deque([float("nan")] * HIST, maxlen=HIST))
            changes = self._patch_change.setdefault(track_id, deque([0.0] * HIST, maxlen=HIST))
            obs = by_id.get(track_id)
            hist.append(obs.mouth_open if obs is not None else float("nan"))
            previous = self._last_patch.get(track_id)
            if obs is not None:
                # only against the previous frame: after a missed frame the change is unknown (0)
                fresh = previous is not None and previous[0] == self.frames - 1
                change = float(np.abs(obs.mouth_patch - previous[1]).mean()) if fresh and previous else 0.0
                changes.append(min(change * PATCH_SCALE, 3.0))
                self._last_patch[track_id] = (self.frames, obs.mouth_patch)
            else:
                changes.append(0.0)
        feats.appeared = found.appeared
        for slot, track_id in enumerate(sorted(ids)[:FACE_SLOTS]):
            obs = by_id[track_id]
            feats.inputs["faces"][0, slot] = self._face_token(self._open[track_id], self._patch_change[track_id],
                                                              obs, height)
            feats.inputs["face_mask"][0, slot] = 1.0
            feats.slot_ids.append(track_id)
        for track_id in sorted(ids):
            obs = by_id[track_id]
            mouth = None if np.isnan(obs.mouth_open) else round(obs.mouth_open, 4)
            box, keypoints = clip_to_frame(obs.box, obs.keypoints, height, width)
            feats.faces.append(FaceState(track_id, box, round(obs.score, 4), keypoints, mouth))
        if self.scene.due(tick.t_ns):
            self.scene.start(tick.t_ns, rgb)
        feats.inputs["scene"][0] = self.scene.text
        feats.inputs["vision_mask"][0, 0] = 1.0

    @staticmethod
    def _face_token(hist: deque[float], changes: deque[float], obs: FaceObservation, height: int) -> np.ndarray:
        values = np.asarray(hist, dtype=np.float64) * OPEN_SCALE
        seen = ~np.isnan(values)
        filled = np.where(seen, values, 0.0)
        valid = values[seen]
        std = float(valid.std()) if valid.size > 1 else 0.0
        change = float(np.abs(np.diff(valid)).mean()) if valid.size > 1 else 0.0
        box_h = float(obs.box[3] - obs.box[1]) / max(1, height)
        patch = np.asarray(changes, dtype=np.float64)
        return np.concatenate([filled, patch, [seen.mean(), std * 4, change * 4, patch.mean(), obs.score, box_h]]
                              ).astype(np.float32)

    # -- audio -------------------------------------------------------------------------
    def _classify_sound(self, t_ns: int, new: np.ndarray, feats: TickFeatures) -> None:
        if self.sound is None:
            return
        size = self._sound_window.size
        self._sound_window = np.concatenate([self._sound_window, new])[-size:]
        self._sound_filled = min(size, self._sound_filled + new.size)
        if self._sound_filled < size or (self._sound_t is not None and t_ns - self._sound_t < self.sound_period_ns):
            return
        self._sound_t = t_ns
        # finite by construction: tick decoding refuses NaN/inf audio (`ticks.tick_from_record`)
        probs = self.sound.probabilities(self._sound_window)
        feats.sound_probs = {c: round(float(p), 4) for c, p in zip(self.sound.classes, probs)}

    def _audio(self, tick: TickInput, feats: TickFeatures) -> None:
        assert tick.audio is not None
        samples, start = tick.audio, tick.audio_sample0
        end = start + samples.size
        if self._fed_until is None or self._fed_until < start or self._fed_until > end:
            self._fed_until = start  # first window, or a jump: restart from this window
            self._sound_filled = 0
        self._vad_probs.clear()
        new = samples[self._fed_until - start:]
        if new.size:
            self.vad.push(new)
            self.audio_blocks += len(self._vad_probs)  # 32 ms VAD chunks run
            self._classify_sound(tick.t_ns, new, feats)
        self._fed_until = end
        probs = self._vad_probs
        prob = max(probs) if probs else (self._vad_hist[-1] if self._vad_hist else 0.0)
        span = tick.t_ns - self._prev_t if self._prev_t is not None else 66_666_667
        n_energy = int(np.clip(span * tick.audio_rate // 1_000_000_000, 160, samples.size))
        rms = float(np.sqrt(np.mean(np.square(samples[-n_energy:], dtype=np.float64)))) if samples.size else 0.0
        self._vad_hist.append(float(prob))
        self._energy_hist.append(float(np.clip((np.log10(rms + 1e-5) + 5.0) / 4.0, 0.0, 1.5)))
        in_speech = self.vad.segmenter.in_speech
        feats.inputs["audio"][0] = np.concatenate([self._vad_hist, self._energy_hist, [float(in_speech)]])
        speech, quiet = self._concepts
        feats.inputs["audio_text"][0] = unit(prob * speech + (1.0 - prob) * quiet)
        feats.inputs["audio_mask"][0, 0] = 1.0
        feats.speech_prob, feats.in_speech = round(float(prob), 4), bool(in_speech)
        if not in_speech:
            self._speech_since = None
        elif self._speech_since is None:
            self._speech_since = tick.t_ns
        feats.speech_since_ns = self._speech_since


def warm_up(encoders: Encoders, label_embeddings: np.ndarray, frame_shape: tuple[int, int], **kwargs: int) -> None:
    """Run every stage once on a synthetic tick, in a throwaway `Perception`.

    Why: onnxruntime's first run of a new input shape (the scene encoder's two-crop batch,
    a text of a new length), OpenCV's first resize and the first tracker/feature pass cost
    tens of milliseconds; without this they land on the first real frames.
    """
    rng = np.random.default_rng(0)
    height, width = frame_shape
    perception = Perception(encoders, label_embeddings, **{**kwargs, "scene_delay_ns": 0})
    for index in range(2):
        tick = TickInput(index, index * 33_000_000, frame=rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
                         frame_layout="HWC/bgr8", audio=(rng.standard_normal(9600) * 0.01).astype(np.float32),
                         audio_sample0=index * 528, text="is anyone there?")
        perception.process(tick)
