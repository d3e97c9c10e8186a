"""Sample-session generator: a labelled multimodal session from real packaged media.

`generate(path, seed=..., duration_s=...)` writes an MCAP log that replays like a live
capture: ``cam0/frame`` (BGR frames, stored as JPEG and decoded back on replay),
``mic0/audio`` (48 kHz device audio), ``mic0/audio16k`` (16 kHz model audio),
``text/in`` (scripted queries and commands), plus ground truth on ``labels``
(intervals) and ``labels/boxes`` (per-frame boxes). See `sensorfuse.replay.scene` for the
pictures, `replay/media/make_speech.py` for the speech clips.

The camera pans and zooms over a scene of one or two faces, maybe a cat and an object;
scenes change every 4–8 s. Speech clips are spoken by a visible face (its mouth opens
with the clip's envelope), by a face that pans out of view, or offscreen; the second
face stays still. Non-speech sounds: alarm, tone, noise burst, silence.

With ``cameras=N`` (N > 1) the frames are ``cam0/frame`` … ``cam{N-1}/frame``, N cameras side
by side over one world N views wide, and faces walk from view to view (`sample_rig`);
the truth about what a camera sees names its ``camera`` (`sample_labels`).

With ``vary`` (`sensorfuse sample --vary`), the seed's session is seen and heard with
variety no training session has: lighting, subject sizes, insets, camera degradation,
voices, another face (`sample_vary`).

Seeds: the same seed gives the same session, byte for byte. Seeds below
`HELDOUT_SEED_BASE` draw train media; seeds at or above it draw held-out media (unseen
faces, backgrounds, objects, voices and sentences; see `scene.MEDIA_SPLIT`).
"""

from __future__ import annotations

import heapq
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import soundfile as sf

from sensorfuse.engine import files, wire
from sensorfuse.engine.errors import UsageError
from sensorfuse.replay import sample_rig, sample_vary, scene
from sensorfuse.replay.mcap_io import HeaderStamper, LogWriter

HELDOUT_SEED_BASE = 1_000_000
MEDIA_DIR = Path(__file__).with_name("media")
RATE16K = 16_000
BLOCK = 320  # 20 ms at 16 kHz
T0_NS = 1_000_000_000  # the session's time base starts at 1 s (any origin would do)
QUERIES = {
    "cat": ["is there a cat?", "show me the cat"],
    "speaker": ["who is speaking?", "is anyone talking?"],
    "coffee": ["find the coffee cup"], "rocket": ["where is the rocket?"], "motorcycle": ["is there a motorcycle?"],
}
COMMANDS = ["mark this moment", "start a new note"]


@dataclass
class Segment:
    start_s: float
    end_s: float
    background: str
    static: list[scene.Placement]
    faces: list[scene.Placement]
    cam_from: tuple[float, float, float]  # cx, cy, zoom
    cam_to: tuple[float, float, float]
    rig: sample_rig.Shot | None = None  # N > 1 cameras: their pans and the faces' walks


@dataclass
class SoundEvent:
    start_s: float
    kind: str  # speech | alarm | tone | noise | silence
    samples: np.ndarray
    speaker: str | None = None  # face subject, or "offscreen"
    clip: dict[str, Any] | None = None

    @property
    def end_s(self) -> float:
        return self.start_s + len(self.samples) / RATE16K


def split_of(seed: int) -> str:
    return "heldout" if seed >= HELDOUT_SEED_BASE else "train"


def speech_clips(split: str) -> list[dict[str, Any]]:
    index = json.loads((MEDIA_DIR / "speech.json").read_text())
    return [c for c in index if c["split"] == split]


def load_clip(clip: dict[str, Any]) -> np.ndarray:
    samples, rate = sf.read(MEDIA_DIR / clip["file"], dtype="float32")
    if rate != RATE16K:
        raise ValueError(f"{clip['file']}: {rate} Hz, expected {RATE16K}")
    return samples


def envelope(samples: np.ndarray) -> np.ndarray:
    """Mouth openness per 20 ms block, 0..1: smoothed RMS relative to the clip's loudest part."""
    n = len(samples) // BLOCK
    rms = np.sqrt(np.mean(samples[: n * BLOCK].reshape(n, BLOCK) ** 2, axis=1)) if n else np.zeros(0)
    rms = np.convolve(rms, np.ones(3) / 3, mode="same")
    return np.clip(rms / max(1e-6, float(np.percentile(rms, 95)) if n else 1.0), 0.0, 1.0)


def _script(rng: np.random.Generator, split: str, duration_s: float, world: tuple[int, int],
            view: tuple[int, int]) -> tuple[list[Segment], list[SoundEvent], list[tuple[float, str, str | None]]]:
    media = scene.MEDIA_SPLIT[split]
    ww, wh = world
    segments: list[Segment] = []
    t = 0.0
    while t < duration_s:
        end = min(duration_s, t + float(rng.uniform(4.0, 8.0)))
        n_faces = int(rng.choice([1, 2, 2, 1, 0], p=[0.35, 0.35, 0.1, 0.1, 0.1]))
        faces = [scene.Placement(f"face{i}", media["faces"][i], float(rng.uniform(0.05, 0.35) * ww + i * 0.4 * ww),
                                 float(rng.uniform(0.2, 0.45) * wh), float(rng.uniform(0.5, 0.75)))
                 for i in range(n_faces)]
        static: list[scene.Placement] = []
        if rng.random() < 0.5:
            static.append(scene.Placement("cat", media["cats"][0], float(rng.uniform(0.45, 0.7) * ww),
                                          float(rng.uniform(0.5, 0.65) * wh), float(rng.uniform(0.22, 0.32))))
        if rng.random() < 0.6:
            obj = str(rng.choice(media["objects"]))
            static.append(scene.Placement(obj, obj, float(rng.uniform(0.0, 0.2) * ww), float(rng.uniform(0.55, 0.7) * wh),
                                          float(rng.uniform(0.18, 0.28))))
        cams = [(float(rng.uniform(0.35, 0.65) * ww), float(rng.uniform(0.4, 0.6) * wh), float(rng.uniform(0.6, 1.1)))
                for _ in range(2)]
        segments.append(Segment(t, end, str(rng.choice(media["backgrounds"])), static, faces, cams[0], cams[1]))
        t = end
    clips = speech_clips(split)
    sounds: list[SoundEvent] = []
    t = float(rng.uniform(0.3, 1.0))
    while t < duration_s - 0.5:
        seg = next(s for s in segments if s.start_s <= t < s.end_s)
        kind = str(rng.choice(["speech", "speech", "speech", "alarm", "tone", "noise", "silence"]))
        if kind == "speech":
            clip = clips[int(rng.integers(len(clips)))]
            speaker = seg.faces[int(rng.integers(len(seg.faces)))].subject if seg.faces and rng.random() < 0.75 \
                else "offscreen"
            ev = SoundEvent(t, kind, load_clip(clip), speaker, clip)
        else:
            ev = SoundEvent(t, kind, _sound(rng, kind))
        if ev.end_s > min(duration_s, seg.end_s if kind == "speech" and ev.speaker != "offscreen" else duration_s):
            t = seg.end_s + 0.2  # does not fit this scene: try in the next one
            continue
        sounds.append(ev)
        t = ev.end_s + float(rng.uniform(0.4, 1.5))
    texts: list[tuple[float, str, str | None]] = []
    t = float(rng.uniform(0.5, 2.0))
    while t < duration_s - 0.2:
        target = str(rng.choice(list(QUERIES) + ["command"]))
        if target == "command":
            texts.append((t, COMMANDS[int(rng.integers(len(COMMANDS)))], None))
        else:
            options = QUERIES[target]
            texts.append((t, options[int(rng.integers(len(options)))], target))
        t += float(rng.uniform(1.5, 4.0))
    return segments, sounds, texts


def _sound(rng: np.random.Generator, kind: str) -> np.ndarray:
    n = int(RATE16K * {"alarm": 1.5, "tone": 1.0, "noise": 0.8, "silence": 1.2}[kind])
    t = np.arange(n) / RATE16K
    if kind == "alarm":  # two alternating square-ish tones, 4 Hz
        freq = np.where((t * 4).astype(int) % 2 == 0, 880.0, 660.0)
        x = 0.5 * np.tanh(4 * np.sin(2 * np.pi * np.cumsum(freq) / RATE16K))
    elif kind == "tone":
        x = 0.4 * np.sin(2 * np.pi * float(rng.uniform(300, 700)) * t)
    elif kind == "noise":
        x = rng.normal(0, 0.25, n)
    else:
        x = np.zeros(n)
    ramp = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01)  # 10 ms fades, no clicks
    return (x * ramp).astype(np.float32)


def _segment_at(segments: list[Segment], t: float) -> Segment:
    for s in segments:
        if s.start_s <= t < s.end_s:
            return s
    return segments[-1]


def _cameras(seg: Segment, t: float) -> list[tuple[tuple[float, float], float]]:
    """Every camera's (centre, zoom) at `t`."""
    u = sample_rig.eased(seg.start_s, seg.end_s, t)
    if seg.rig is not None:
        return sample_rig.views_at(seg.rig, u)
    a, b = seg.cam_from, seg.cam_to
    return [((a[0] + (b[0] - a[0]) * u, a[1] + (b[1] - a[1]) * u), a[2] + (b[2] - a[2]) * u)]


class _Session:
    def __init__(self, seed: int, duration_s: float, size: tuple[int, int], fps: float, device_rate: int,
                 cameras: int = 1, vary: frozenset[str] = frozenset()) -> None:
        self.seed, self.duration_s, self.view, self.fps, self.device_rate = seed, duration_s, size, fps, device_rate
        self.cameras = cameras
        self.split = split_of(seed)
        self.world = sample_rig.world_size(size, cameras)
        rng = np.random.default_rng(seed)
        self.segments, self.sounds, self.texts = _script(rng, self.split, duration_s, self.world, size)
        self.variety: sample_vary.Variety | None = None
        if vary:  # its own generator, like the rig's: the script above is the seed's, varied or not
            self.variety, vary_rng = sample_vary.draw(seed, vary, duration_s)
            sample_vary.vary_scenes(self.variety, vary_rng, self.segments, self.split, self.world)
            sample_vary.vary_voices(self.variety, vary_rng, self.sounds, self.segments, duration_s)
        if cameras > 1:  # its own generator: the seed's one-camera session stays what it was
            rig_rng = np.random.default_rng([seed, cameras])
            for seg in self.segments:
                seg.rig = sample_rig.plan(rig_rng, cameras, size, seg.faces)
        n = int(duration_s * RATE16K) // BLOCK * BLOCK
        room = rng.normal(0, 0.003, n).astype(np.float32)  # room tone, -50 dB
        if self.variety is not None and "voices" in vary:
            room *= np.float32(self.variety.room_gain)
        self.audio = room
        self.openness: dict[str, np.ndarray] = {}
        for ev in self.sounds:
            i0 = int(ev.start_s * RATE16K)
            seg = ev.samples[: max(0, n - i0)]
            if ev.kind == "silence":
                self.audio[i0:i0 + len(seg)] = 0.0
            else:
                self.audio[i0:i0 + len(seg)] += seg
            if ev.kind == "speech" and ev.speaker != "offscreen":
                env = self.openness.setdefault(ev.speaker or "", np.zeros(n // BLOCK, np.float32))
                e = envelope(seg)
                env[i0 // BLOCK:i0 // BLOCK + len(e)] = e[: len(env) - i0 // BLOCK]
        self.audio = np.clip(self.audio, -1.0, 1.0)
        self.canvases: dict[int, np.ndarray] = {}

    def t_ns(self, seconds: float) -> int:
        return T0_NS + int(round(seconds * 1e9))

    def frames(self) -> Iterator[tuple[float, list[tuple[np.ndarray, dict[str, Any]]]]]:
        """Per frame time: every camera's picture and truth record (the record names its
        camera only when there are several)."""
        n = int(self.duration_s * self.fps)
        tile_w = None if self.cameras == 1 else self.view[0] * 2
        for i in range(n):
            t = i / self.fps
            seg = _segment_at(self.segments, t)
            key = id(seg)
            if key not in self.canvases:
                self.canvases = {key: scene.world_canvas(seg.background, self.world, seg.static, tile_w=tile_w)}
            world = self.canvases[key].copy()
            speaking = self._speaker_at(t)
            faces = sample_rig.faces_at(seg.rig, seg.faces, sample_rig.eased(seg.start_s, seg.end_s, t))
            for p in faces:
                s = p.look()
                env = self.openness.get(p.subject)
                openness = float(env[min(len(env) - 1, int(t * RATE16K) // BLOCK)]) if env is not None else 0.0
                scene.paste(world, scene.open_mouth(s, openness), s.alpha, p)
            views = []
            for k, (center, zoom) in enumerate(_cameras(seg, t)):
                m = scene.camera_matrix(center, zoom, self.view)
                boxes = []
                for p in [*faces, *seg.static]:
                    vb = scene.view_box(p.world_box(), m)
                    frac = scene.visible_fraction(vb, self.view)
                    if frac >= 0.5:
                        boxes.append({"subject": p.subject, "kind": p.look().kind, "sprite": p.sprite,
                                      "box": [round(float(v), 1) for v in vb], "visible": round(float(frac), 3),
                                      "speaking": p.subject == speaking})
                truth = {"frame": i, "boxes": boxes} if self.cameras == 1 else \
                    {"frame": i, "camera": f"cam{k}", "boxes": boxes}
                frame = scene.render(world, m, self.view)
                if self.variety is not None:
                    frame = sample_vary.look(frame, t, self.variety, np.random.default_rng([self.seed, sample_vary.STREAM, i, k]))
                views.append((frame, truth))
            yield t, views

    def _speaker_at(self, t: float) -> str | None:
        for ev in self.sounds:
            if ev.kind == "speech" and ev.start_s <= t < ev.end_s:
                return ev.speaker
        return None


def generate(path: str | os.PathLike[str], *, seed: int = 0, duration_s: float = 20.0, size: tuple[int, int] = (320, 240),
             fps: float = 15.0, device_rate: int = 48_000, jpeg_quality: int = 90, cameras: int = 1,
             vary: bool | str | Iterable[str] = False, force: bool = True,
             on_progress: Callable[[float], None] | None = None) -> dict[str, Any]:
    """Write a sample session; returns a summary (counts per stream, split, label counts).
    The file appears only when complete (`files.atomic_output`); with ``force=False`` an
    existing `path` is refused (`UsageError`). `on_progress(seconds)`: how much of the
    session is written, called per message. `cameras` (1..`sample_rig.MAX_CAMERAS`):
    frame streams ``cam0/frame`` … ``cam{N-1}/frame`` over one world (`sample_rig`).
    `vary` (`True`/``"all"``, or axis names: `sample_vary.AXES`): the seed's session with
    lighting, sizes, insets, camera, voices or faces varied (`sample_vary`); the log's
    metadata records ``vary`` and the drawn ``variety``. Without it the session is byte for
    byte what it always was."""
    from sensorfuse.replay.sample_labels import intervals

    if not 1 <= cameras <= sample_rig.MAX_CAMERAS:
        raise UsageError(f"cameras wants 1 to {sample_rig.MAX_CAMERAS}, got {cameras}")
    axes = sample_vary.parse_axes(vary)
    sess = _Session(seed, duration_s, size, fps, device_rate, cameras, axes)
    if sess.variety is not None and "camera" in axes:
        jpeg_quality = sess.variety.camera.jpeg_quality
    session_id = f"sample-{seed}"
    header = HeaderStamper(session_id)
    counts = header.counts

    frame_truth: list[dict[str, Any]] = []

    def frame_msgs() -> Iterator[tuple[int, int, Any]]:
        for t, views in sess.frames():
            t_ns = sess.t_ns(t)
            for k, (frame, truth) in enumerate(views):  # every camera's frame, then every truth record
                frame_truth.append({**truth, "t_ns": t_ns})
                ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
                assert ok
                h = header(f"cam{k}/frame", wire.KIND_TENSOR, t_ns, "camera", dtype="uint8", shape=list(frame.shape),
                           layout="HWC/bgr8")
                yield t_ns, 0, (h, b"", jpeg.tobytes())
            for _, truth in views:
                hb = header("labels/boxes", wire.KIND_RECORD, t_ns, "sample")
                yield t_ns, 5, (hb, wire.encode_record(truth), None)

    def audio_msgs() -> Iterator[tuple[int, int, Any]]:
        blocks = sess.audio.reshape(-1, BLOCK)
        up = device_rate // RATE16K if device_rate else 0
        from scipy.signal import resample_poly  # here: scipy.signal costs every `sensorfuse` command 0.6 s

        device = resample_poly(sess.audio, up, 1).astype(np.float32) if up else None
        for j, block in enumerate(blocks):
            t_ns = T0_NS + j * 20_000_000
            h = header("mic0/audio16k", wire.KIND_AUDIO, t_ns, "microphone", dtype="float32", shape=[BLOCK, 1],
                       layout="TC", rate=RATE16K, sample0=j * BLOCK)
            yield t_ns, 2, (h, block.reshape(-1, 1).tobytes(), None)
            if device is not None:
                n = BLOCK * up
                hd = header("mic0/audio", wire.KIND_AUDIO, t_ns, "microphone", dtype="float32", shape=[n, 1],
                            layout="TC", rate=device_rate, sample0=j * n)
                yield t_ns, 1, (hd, np.ascontiguousarray(device[j * n:(j + 1) * n]).reshape(-1, 1).tobytes(), None)

    def text_msgs() -> Iterator[tuple[int, int, Any]]:
        for t, line, _ in sess.texts:
            t_ns = sess.t_ns(t)
            yield t_ns, 3, (header("text/in", wire.KIND_BYTES, t_ns, "text", encoding="utf-8"), line.encode(), None)

    with files.atomic_output(path, force=force) as f:
        metadata = {"generator": "sensorfuse sample", "seed": str(seed), "split": sess.split,
                    "duration_s": str(duration_s), "fps": str(fps), "size": f"{size[0]}x{size[1]}"}
        if cameras > 1:
            metadata["cameras"] = str(cameras)
        if sess.variety is not None:
            metadata["vary"] = ",".join(sorted(axes))
            metadata["variety"] = json.dumps(sess.variety.summary(), sort_keys=True)
        log = LogWriter(f, metadata=metadata)
        for _, _, (h, payload, jpeg) in heapq.merge(frame_msgs(), audio_msgs(), text_msgs(),
                                                    key=lambda item: (item[0], item[1])):
            log.write(h, wire.encode_header(h), payload, jpeg=jpeg)
            if on_progress is not None:
                on_progress((h.t_ns - T0_NS) / 1e9)
        labels = intervals(sess, frame_truth)
        for rec in labels:
            h = header("labels", wire.KIND_RECORD, rec["start_ns"], "sample")
            log.write(h, wire.encode_header(h), wire.encode_record(rec))
        log.finish()
    summary = {"path": os.fspath(path), "seed": seed, "split": sess.split, "streams": counts,
               "labels": {k: sum(1 for r in labels if r["label"] == k) for k in sorted({r["label"] for r in labels})}}
    if sess.variety is not None:
        summary["variety"] = sess.variety.summary()
    return summary
