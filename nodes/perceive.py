"""Perceive: aligned ticks in; detections, scene labels, speech activity and fused events out.

Ports
    ticks       (in)  ``align/ticks`` records (`sensorfuse.nodes.aligner`): members ``frame`` (camera
                      frame), ``audio`` (16 kHz window), ``text`` (latest text line),
                      ``said`` (optional: latest spoken line; the newer of the two is the
                      query); other names via ``frame_port`` / ``audio_port`` / ``text_port`` /
                      ``said_port``.
    cameras     (param) several cameras: ``cameras: [cam0, cam1, ...]`` names the tick members
                      that hold their frames (embedded: aligner ``embed: true``); each camera
                      is perceived on its own (faces found for all of them in one batched
                      step), the audio and the query once; every per-camera output carries
                      ``camera`` and event keys read ``cam1:track:7`` (docs/time.md,
                      "Several cameras")
    heard       (in, optional) what was said: text lines (UTF-8 bytes, ``t_ns`` = the end of
                      the sentence), the transcribe node's ``heard`` output. Not aligned: a
                      line counts for queries about words ("did someone say hello?") at
                      ticks from ``heard_delay_ms`` after its ``t_ns`` to ``heard_window_ms``
                      after it (docs/queries.md); one that arrives after such a tick was scored
                      is counted (gauge ``heard_late``) and counts from then on; a line that
                      is not UTF-8 text is rejected (``bad_heard``). With ``policy: block``
                      (lock-step replay) a tick waits until the stream's watermark is past
                      ``t - heard_delay_ms``: no line is late, at any rate (transcribe sends
                      watermarks in line).
    frame       (in, optional) the camera stream itself, for ticks whose frame member is a
                      reference (aligner ``embed: false``): perceive joins tick and frame
                      on ``seq`` (`sensorfuse.perception.join`) and the ~1 MB frame crosses
                      one socket, zero-copy, instead of being copied into every tick.
    detections  (out) per tick with a frame: ``{tick, t_ns, frame: {stream, seq},
                      size: [h, w], faces: [{track_id, box, score, keypoints, mouth_open,
                      speaking, on_object?}]}`` (boxes x0,y0,x1,y1 and keypoints in frame pixels,
                      clipped to the frame; ``on_object``: the class of the tracked cat, dog or
                      motorcycle the face lies on, ``face_veto``: it starts no face or speaker
                      event, gauge ``faces_vetoed``)
    objects     (out) when an object-detector result enters (every ``objects_period_ms`` of
                      event time, at ``objects_delay_ms`` after its frame): ``{tick, t_ns,
                      frame_t_ns, size: [h, w], objects: [{class, track_id, box, score}]}``, only
                      the configured ``classes`` (docs/objects.md)
    scene       (out) when a scene result enters: ``{tick, t_ns, frame_t_ns (the frame it
                      describes), labels: [[name, p], ...], embedding_f32: bytes (1280 float32)}``
    speech      (out) per tick with audio: ``{tick, t_ns, probability, in_speech}``
    sound       (out) when the sound-event classifier ran (every ``sound_period_ms`` of event
                      time, on the last 0.5 s of audio): ``{tick, t_ns, probabilities:
                      {speech, alarm, tone, noise, background}}`` (docs/sound.md)
    events      (out) fused events, docs/protocol.md ("Events"); text lines are queries scored
                      against what is perceived (``query_score: labels``, docs/queries.md) from
                      ``query_delay_ms`` after their line until ``query_ttl_ms`` or a ``cancel`` line
    scores      (out) per tick, what the event rules were given: ``{tick, t_ns, scores: {rule:
                      {key: score}}, queries: {key: text}, thresholds: {rule: {on, off}}}``
                      (docs/protocol.md); built only when the port is wired

Every output's record schema ships in `sensorfuse.engine.schemas` (docs/protocol.md,
"Record streams").

Rates: face detector + landmarks every frame, scene encoder every ``scene_period_ms``
of event time on a worker thread (its result enters at the first tick ``scene_delay_ms``
of event time after its frame, so it never lengthens a tick), object detector the same way
every ``objects_period_ms`` (the whole frame and ``objects_tiles`` of its quarters; off with
``classes: []``), VAD on each new audio
sample once, text encoder once per distinct line, sound-event classifier every
``sound_period_ms``, fusion head every tick. Everything runs on event time: replay gives
the same outputs as live, at any rate.

Failure behaviour: models (pack + fusion head + sound classifier) load and warm up in
`start` (a throwaway pass over a synthetic ``warmup_frame``-sized tick, so first-call
costs do not land on the first real frames); a missing model, a head trained on other
features or inconsistent timing parameters fail start with the reason named (not
restarted), as does an unknown name in ``classes`` (the error lists the closest known
ones). A malformed tick is rejected and counted (``bad_tick``; NaN/inf audio is
one); a modality the aligner reports missing degrades the scores (masks), never crashes
the node. A referenced frame that never arrives (dropped on the way, or no ``frame`` input
wired) is counted (``frame_not_received`` / ``frame_not_wired``, on the frame stream); the
tick goes on without vision. A model (pack, head or sound classifier) that outputs NaN/Inf
makes its tick count as missing (``bad_output`` on the ticks stream, naming the model and
output): no outputs for it, event state unchanged. When the ticks (and frames) end, every
active event is ended (not lock-step on `heard`: without waiting for the transcriber's last line).

Config example::

    perceive:
      kind: perceive
      params: {head: default, scene_period_ms: 333, sound: default,  # head: early | late | attention | PATH
               classes: [person, car, dog],  # object classes (COCO names); [] turns objects off
               query_ttl_ms: 0}  # queries live until a `cancel` line
      inputs: {ticks: {stream: align/ticks, policy: block}, frame: {stream: cam0/frame, policy: block},
               heard: {stream: speech/heard, policy: drop_oldest, queue: 64}}  # transcribe's lines
      outputs: {detections: perceive/detections, objects: perceive/objects, scene: perceive/scene,
                speech: perceive/speech, sound: perceive/sound, events: perceive/events,
                scores: perceive/scores}
"""

from __future__ import annotations

import itertools
import re
from collections import deque
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import msgspec

from sensorfuse.engine import wire
from sensorfuse.engine import manifest as mf
from sensorfuse.engine.errors import StartupError, UsageError
from sensorfuse.engine.events import EventTracker, Observation
from sensorfuse.engine.inference import NonFiniteOutput
from sensorfuse.engine.node import InputSpec, Node, Out, OutputSpec
from sensorfuse.engine.params import NonNegativeFloat, PositiveFloat, PositiveInt, Probability, param_error
from sensorfuse.perception import (Encoders, FusionHead, Perception, Ports, label_embeddings, object_tiles,
                                   tick_from_record)
from sensorfuse.perception.cameras import CameraSet
from sensorfuse.perception.encoders import to_rgb
from sensorfuse.perception.features import TickFeatures, warm_up
from sensorfuse.perception.join import FRAME_NOT_RECEIVED, FrameJoin, FrameRef, Joined
from sensorfuse.perception.observations import FACE_VETO, Observer
from sensorfuse.perception.queries import QueryMatcher
from sensorfuse.perception.query_life import ActiveQueries
from sensorfuse.perception.said import HeardLines
from sensorfuse.perception.objects import (OBJECT_MODEL, ObjectDetector, ObjectsResult, ObjectStage,
                                                  UnknownClass, check_classes, default_tiles_per_run)
from sensorfuse.perception.sound import SoundClassifier
from sensorfuse.perception.ticks import BadTick, TickInput, attach_frame, camera_ticks
from sensorfuse.nodes.perceive_setup import (DEFAULT_CLASSES, DEFAULT_RULES, MS, PACK_MODELS, RuleParams,
                                            default_heads_dir, default_sound_manifest, outdated, resolve_head)

END_OF_STREAM = 2**63 - 1  # a watermark past every capture time


class PerceiveNode(Node):
    class Params(msgspec.Struct, forbid_unknown_fields=True):
        head: str = "default"
        heads_dir: str | None = None
        cache: str | None = None
        scene_period_ms: PositiveFloat = 333.0
        scene_delay_ms: NonNegativeFloat = 100.0
        sound: str = "default"  # the sound-event classifier: default, off, or a manifest path
        sound_period_ms: PositiveFloat = 100.0
        warmup_frame: tuple[PositiveInt, PositiveInt] = (480, 640)  # height, width of the synthetic warm-up frame
        top_k: PositiveInt = 5
        frame_port: str = "frame"
        audio_port: str = "audio"
        text_port: str = "text"
        said_port: str = "said"  # a spoken query (transcribe's text output), docs/speech.md
        #: several cameras: the tick members holding their frames (embedded: the aligner's
        #: ``embed: true``), one perception each, named in every output (docs/time.md)
        cameras: list[str] = []
        #: onnxruntime intra-op threads per model: more than 1 lets the batched face calls of
        #: several cameras use more cores (bench/cameras.py, docs/benchmarks.md)
        threads: PositiveInt = 1
        frame_buffer: PositiveInt = 32  # frames held for ticks still to come (and ticks waiting for frames)
        rules: dict[str, RuleParams] = {}
        classes: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_CLASSES))  # [] turns objects off
        #: a face on a tracked object of these classes (and on no person) starts no face or
        #: speaker event (docs/fusion.md, "False faces"); default: cat, dog, motorcycle among
        #: `classes`; [] turns the veto off
        face_veto: list[str] | None = None
        objects_period_ms: PositiveFloat = 333.0
        #: a run with its tiles takes ~220 ms on one core (docs/objects.md): a result due before
        #: its run is done holds the ticks up
        objects_delay_ms: NonNegativeFloat = 300.0
        #: how many of the frame's 4 overlapping quarters each detector run adds to the whole
        #: frame (small subjects; in rotation when fewer than 4; 0: whole frame only); default:
        #: all 4 with one camera, none with several (`tiles_per_run`)
        objects_tiles: int | None = None
        objects_min_score: Probability | None = None  # default: the detector manifest's min_score
        #: what scores a text query: "labels" (what it is about, perceived now: docs/queries.md)
        #: or "head" (the fusion head's relevance, the tick's own text only)
        query_score: Literal["labels", "head"] = "labels"
        query_ttl_ms: NonNegativeFloat = 2500.0  # how long a query lives after its line; 0: until cancelled
        #: a query is scored from this long after its line (the same events however late, within
        #: it, the line reached the ticks: perception/query_life.py)
        query_delay_ms: NonNegativeFloat = 500.0
        max_queries: PositiveInt = 8  # live at once; a new one ends the oldest
        #: a heard line (the `heard` input) counts for queries about words this long after its end...
        heard_window_ms: PositiveFloat = 30_000.0
        #: ...from this long after it: Whisper's decoding time, so the same events whenever the
        #: line arrived within it (perception/said.py)
        heard_delay_ms: NonNegativeFloat = 2000.0

        def __post_init__(self) -> None:
            if len(set(self.cameras)) != len(self.cameras) or not all(re.fullmatch(r"[A-Za-z0-9_.-]+", c)
                                                                       for c in self.cameras):
                raise param_error("cameras", "distinct tick member names of letters, digits, _ . -", self.cameras)
            unknown = sorted(set(self.rules) - set(DEFAULT_RULES))
            if unknown:
                raise ValueError(f"rules: unknown event rules {', '.join(unknown)} (known: {', '.join(DEFAULT_RULES)})")
            if self.scene_delay_ms >= self.scene_period_ms:
                raise param_error("scene_delay_ms", f"a scene delay below scene_period_ms ({self.scene_period_ms})",
                                  self.scene_delay_ms)
            if self.query_ttl_ms and self.query_delay_ms >= self.query_ttl_ms:
                raise param_error("query_delay_ms", f"a query delay below query_ttl_ms ({self.query_ttl_ms})",
                                  self.query_delay_ms)
            if self.heard_delay_ms >= self.heard_window_ms:
                raise param_error("heard_delay_ms", f"a delay below heard_window_ms ({self.heard_window_ms})",
                                  self.heard_delay_ms)
            if self.objects_tiles is not None and not 0 <= self.objects_tiles <= object_tiles.COUNT:
                raise param_error("objects_tiles", f"0..{object_tiles.COUNT} tiles per run", self.objects_tiles)
            if self.objects_delay_ms >= self.objects_period_ms:
                raise param_error("objects_delay_ms",
                                  f"an objects delay below objects_period_ms ({self.objects_period_ms})",
                                  self.objects_delay_ms)

        def tiles_per_run(self, cameras: int) -> int:
            """Object tiles each camera's runs add: `objects_tiles`, else `default_tiles_per_run`."""
            return self.objects_tiles if self.objects_tiles is not None else default_tiles_per_run(cameras)

    inputs = {
        "ticks": InputSpec(kind="record", policy="drop_oldest", queue=8),
        "frame": InputSpec(kind="tensor", policy="drop_oldest", queue=8, required=False,
                           doc="camera frames for ticks that reference theirs by seq"),
        "heard": InputSpec(kind="bytes", policy="drop_oldest", queue=64, required=False,
                           doc="what was said: transcribe's text lines, for queries about words"),
    }
    outputs = {
        "detections": OutputSpec(kind="record", doc="faces with boxes, keypoints, track ids, speaking"),
        "objects": OutputSpec(kind="record", doc="objects of the configured classes: boxes, scores, track ids"),
        "scene": OutputSpec(kind="record", doc="scene top-k labels + embedding"),
        "speech": OutputSpec(kind="record", doc="speech activity per tick"),
        "sound": OutputSpec(kind="record", doc="sound-event class probabilities (docs/sound.md)"),
        "events": OutputSpec(kind="record", doc="fused events (docs/protocol.md)"),
        "scores": OutputSpec(kind="record", doc="per tick, the scores the event rules see, with thresholds"),
    }

    @classmethod
    def check(cls, params: Params) -> None:
        """The pack's models, the fusion head and the sound classifier are where `start` will
        look (a missing pack model crashed `start` with a traceback, and was restarted)."""
        untracked = [c for c in params.face_veto or () if c not in params.classes]
        if untracked:
            raise UsageError(f"face_veto: {', '.join(untracked)} not among the tracked classes "
                             f"({', '.join(params.classes) or 'none'}): only a tracked object can veto a face")
        cache = Path(params.cache) if params.cache else None
        for model in (*PACK_MODELS, *((OBJECT_MODEL,) if params.classes else ())):
            try:
                manifest_path = mf.find_manifest(model, cache)
                manifest = mf.load(manifest_path)
                mf.check_present(manifest_path, manifest)
            except mf.ManifestError as err:
                raise UsageError(f"cache: {err}") from None
            if outdated(model, manifest):
                raise UsageError(f"cache: {manifest_path} takes a batch of 1 (built by an older sensorfuse; the "
                                 "face pipeline batches its crops): `sensorfuse models build` rebuilds it")
            if model == OBJECT_MODEL and manifest.labels is not None:
                try:
                    check_classes(params.classes, (manifest_path.parent / manifest.labels.file).read_text().splitlines())
                except UnknownClass as err:
                    raise UsageError(f"classes: {err}") from None
        head = resolve_head(params.head, Path(params.heads_dir) if params.heads_dir else default_heads_dir())
        if not head.is_file():
            raise UsageError(f"head: fusion head manifest {str(head)!r} does not exist")
        if params.sound not in ("default", "off") and not Path(params.sound).is_file():
            raise UsageError(f"sound: sound model manifest {params.sound!r} does not exist")

    def start(self) -> None:
        p = self.params
        heads_dir = Path(p.heads_dir) if p.heads_dir else default_heads_dir()
        self.encoders = Encoders(Path(p.cache) if p.cache else None, threads=p.threads)
        self.head = FusionHead(resolve_head(p.head, heads_dir))
        labels = label_embeddings(self.encoders)
        timing = {"scene_period_ns": round(p.scene_period_ms * MS), "scene_delay_ns": round(p.scene_delay_ms * MS)}
        sound = None if p.sound == "off" else SoundClassifier(
            default_sound_manifest() if p.sound == "default" else Path(p.sound))
        self.scene_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scene")
        #: camera name -> its object stage (None: one camera, outputs without a camera name)
        self.object_stages = self._object_stages(Path(p.cache) if p.cache else None)
        self.objects = next(iter(self.object_stages.values()), None)  # the detector, for the query matcher
        kwargs: dict[str, Any] = dict(scene_executor=self.scene_worker, top_k=p.top_k, sound=sound,
                                      sound_period_ns=round(p.sound_period_ms * MS), **timing)
        try:
            self.perception: Perception | CameraSet = CameraSet(self.encoders, labels, p.cameras, **kwargs) \
                if p.cameras else Perception(self.encoders, labels, **kwargs)
        except ValueError as exc:  # e.g. scene_delay_ms not below scene_period_ms (SceneStage checks)
            raise StartupError(f"perceive: {exc}") from None
        warm_up(self.encoders, labels, p.warmup_frame, **timing)
        matcher = self._query_matcher(labels, Path(p.cache) if p.cache else None) \
            if p.query_score == "labels" else None
        self.ports = Ports(p.frame_port, p.audio_port, p.text_port, p.said_port)
        rules = {**DEFAULT_RULES, **p.rules}
        self.trackers = {name: EventTracker(r.rule(name)) for name, r in rules.items()}
        queries = ActiveQueries(round(p.query_ttl_ms * MS), p.max_queries, round(p.query_delay_ms * MS))
        self.heard = HeardLines(round(p.heard_window_ms * MS), round(p.heard_delay_ms * MS))
        #: lock-step (a `block` heard input): a tick waits here until the heard stream's
        #: watermark says every line that counts for it has come (`_when_heard`)
        self.heard_lockstep = "heard" in self.ctx.blocking
        self.held: deque[list[TickInput]] = deque()
        self.heard_watermark: int | None = None  # no later heard line ends before this
        veto = p.face_veto if p.face_veto is not None else [c for c in FACE_VETO if c in p.classes]
        self.observer = Observer(self.trackers, self.object_stages, matcher, queries, self.perception.text_embedding,
                                 self.heard, face_veto=veto)
        #: the `scores` record is built only for a graph that listens to it
        self.scores_wired = "scores" in self.ctx.outputs
        self.thresholds = {name: {"on": r.on, "off": r.off} for name, r in rules.items()}
        self.last_t: int | None = None
        self.ended: set[str] = set()  # input ports whose streams have ended
        self.finished = False
        #: event_id -> (record of its last phase, t_ns) for every open event (`snapshot`)
        self.open_events: dict[str, tuple[dict[str, Any], int]] = {}
        self.join: FrameJoin[TickInput, wire.Message] = FrameJoin(capacity=p.frame_buffer)
        self.frame_wired = "frame" in self.ctx.inputs
        self.ctx.log.info("perceive: fusion head %s (%s), models on %s", self.head.path.name, self.head.strategy,
                          sorted(set(self.encoders.providers.values())))

    def _query_matcher(self, scene_embeddings: Any, cache: Path | None) -> QueryMatcher:
        """Queries are matched against every COCO class (not only the configured ones, so
        "is there a giraffe?" is understood and never matches), scene labels, speech, sounds."""
        if self.objects is not None:
            classes = list(self.objects.detector.labels)
        else:
            try:
                manifest_path = mf.find_manifest(OBJECT_MODEL, cache)
                labels = mf.load(manifest_path).labels
                classes = (manifest_path.parent / labels.file).read_text().splitlines() if labels else []
            except (mf.ManifestError, OSError):
                classes = []
        return QueryMatcher(self.encoders.embed_texts, object_classes=classes or list(DEFAULT_CLASSES),
                            scene_labels=self.encoders.labels, scene_embeddings=scene_embeddings)

    def accepts(self, port: str) -> bool:
        # Lock-step (`block` inputs): a frame waits in its queue rather than evict one whose
        # tick has not come yet, and a tick rather than push the oldest waiting tick on
        # without its frame (ticks can run ahead of frames still in the socket). Never both:
        # frames are held only while no tick waits. Other policies keep the newest and count.
        if port not in self.ctx.blocking:
            return True
        if port == "ticks" and len(self.held) >= self.params.frame_buffer:
            return False  # waiting for the heard stream's watermark: hold the aligner back
        if port == "frame":
            return self.join.wants_frame()
        return port != "ticks" or "frame" not in self.ctx.blocking or self.join.wants_tick()

    def _object_stages(self, cache: Path | None) -> dict[str | None, ObjectStage]:
        """One object stage per camera (None: the one camera), on one detector and worker."""
        p = self.params
        if not p.classes:
            return {}
        self.objects_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="objects")
        try:
            detector = ObjectDetector(mf.find_manifest(OBJECT_MODEL, cache))
            ids = itertools.count(1)  # an object track id names one object on one camera
            cameras = p.cameras or [None]
            return {camera: ObjectStage(detector, p.classes, period_ns=round(p.objects_period_ms * MS),
                                        delay_ns=round(p.objects_delay_ms * MS), min_score=p.objects_min_score,
                                        executor=self.objects_worker, ids=ids,
                                        tiles_per_run=p.tiles_per_run(len(cameras)))
                    for camera in cameras}
        except (UnknownClass, mf.ManifestError) as exc:
            raise StartupError(f"perceive: {exc}") from None

    def step(self, port: str, msg: wire.Message) -> Iterable[Out]:
        if port == "frame":
            return self._run(self.join.add_frame(msg.header.seq, msg.header.t_ns, msg))
        if port == "heard":
            self._heard(msg)
            return []
        try:
            record = msg.record
            if not isinstance(record, dict):
                raise BadTick(f"tick is a {type(record).__name__}, not a map")
            if self.params.cameras:
                return self._when_heard(self._camera_ticks(msg.header.stream, record))
            tick = tick_from_record(record, self.ports)
        except (BadTick, ValueError) as exc:
            self.ctx.reject(msg.header.stream, "bad_tick", str(exc))
            return []
        wanted = tick.frame_wanted
        if wanted is not None and not self.frame_wired:
            self.ctx.reject(wanted.stream, "frame_not_wired",
                            f"tick {tick.index} references frame seq {wanted.seq}: wire perceive's `frame` input "
                            "to that stream, or set `embed: true` on the aligner's frame stream")
            tick.frame_wanted, tick.status["vision"] = None, "frame_not_wired"
            wanted = None
        return self._run(self.join.add_tick(tick, FrameRef(wanted.seq, wanted.t_ns) if wanted else None))

    def _heard(self, msg: wire.Message) -> None:
        """Remember a line that was said (counted when late: a tick it counts for was scored)."""
        h = msg.header
        try:
            if h.kind != wire.KIND_BYTES:
                raise ValueError(f"a {h.kind} message, not a text line")
            text = msg.text.strip()
        except (ValueError, UnicodeDecodeError) as exc:
            self.ctx.reject(h.stream, "bad_heard", f"seq {h.seq}: {exc}")
            return
        if not text:
            self.ctx.reject(h.stream, "bad_heard", f"seq {h.seq}: an empty line")
            return
        if self.heard.add(h.t_ns, text, self.last_t):
            self.ctx.log.warning("heard line seq %d (%.3f s) arrived after tick %.3f s: counted from now on "
                                 "(heard_delay_ms %.0f)", h.seq, h.t_ns / 1e9, (self.last_t or 0) / 1e9,
                                 self.params.heard_delay_ms)
        self.ctx.gauge("heard_lines", float(self.heard.received))
        self.ctx.gauge("heard_late", float(self.heard.late))
        self.ctx.gauge("heard_evicted", float(self.heard.evicted))

    def _camera_ticks(self, stream: str, record: dict[str, Any]) -> list[TickInput]:
        """A multi-camera tick per camera; a frame sent by reference cannot be joined here
        (one `frame` input): counted, and that camera has no vision this tick."""
        ticks = camera_ticks(record, self.ports, self.params.cameras)
        members = record.get("members") or {}
        for camera, tick in zip(self.params.cameras, ticks):
            if camera not in members:  # the aligner has no such port: a wiring mistake, not a missing frame
                self.ctx.reject(stream, "camera_not_in_tick",
                                f"tick {tick.index}: no member {camera!r} (the tick has {', '.join(members) or 'none'})")
                tick.status["vision"] = "camera_not_in_tick"
            elif tick.frame_wanted is not None:
                self.ctx.reject(stream, "frame_not_embedded",
                                f"tick {tick.index}: camera {camera!r} sent its frame by reference; "
                                "several cameras need `embed: true` on the aligner's frame streams")
                tick.frame_wanted, tick.status["vision"] = None, "frame_not_embedded"
        return ticks

    def end(self, port: str) -> Iterable[Out]:
        if port == "heard":
            self.heard_watermark = END_OF_STREAM
            return self._when_heard([])
        self.ended.add(port)
        outs = self._run(self.join.end_frames()) if port == "frame" else []
        if not self.heard_lockstep and self.ended >= {"ticks", *(("frame",) if self.frame_wired else ())}:
            # the ticks are over: end the events now, not when the transcriber (still
            # decoding the last sentence) ends the heard stream; no later line could count
            outs += self.finish()
        return outs

    def watermark(self, port: str, seq: int, t_ns: int) -> Iterable[Out]:
        if port != "heard":
            return []
        self.heard_watermark = max(self.heard_watermark or t_ns, t_ns)
        return self._when_heard([])

    def _when_heard(self, ticks: list[TickInput]) -> list[Out]:
        """Perceive `ticks` (one tick: one per camera) now, or in lock-step once the heard
        stream's watermark has passed ``t - heard_delay_ms``: every line that counts for the
        tick has come, so none is late however far the ticks ran ahead of Whisper."""
        if not self.heard_lockstep:
            return self._perceive(ticks) if ticks else []
        if ticks:
            self.held.append(ticks)
        delay = round(self.params.heard_delay_ms * MS)
        outs: list[Out] = []
        while self.held and self.heard_watermark is not None and self.heard_watermark > self.held[0][0].t_ns - delay:
            outs += self._perceive(self.held.popleft())
        return outs

    def _run(self, joined: list[Joined[TickInput, wire.Message]]) -> list[Out]:
        outs: list[Out] = []
        for item in joined:
            tick = item.tick
            wanted = tick.frame_wanted
            stream = self.ctx.inputs.get("frame", wanted.stream if wanted else "")
            if wanted is not None and item.frame is not None:
                try:
                    attach_frame(tick, item.frame.array, item.frame.header.layout)
                except (BadTick, ValueError, TypeError) as exc:
                    self.ctx.reject(stream, "bad_frame", str(exc))
                    tick.status["vision"] = "bad_frame"
            elif wanted is not None:
                reason = item.missing or FRAME_NOT_RECEIVED
                self.ctx.reject(stream, reason, f"tick {tick.index}: frame seq {wanted.seq}")
                tick.status["vision"] = reason
            outs.extend(self._when_heard([tick]))
        return outs

    def _perceive(self, ticks: list[TickInput]) -> list[Out]:
        """One tick: as the one camera sees it, or as each of the cameras does (camera order)."""
        try:
            if isinstance(self.perception, CameraSet):
                feats_list = self.perception.process(ticks)
            else:
                feats_list = [self.perception.process(ticks[0])]
            scores_list = [self.head.run(feats.inputs) for feats in feats_list]
        except NonFiniteOutput as exc:
            # A model gave NaN/Inf: the tick counts as missing (no outputs, event state kept
            # as it was), so a broken model cannot start and end events at random.
            self.ctx.reject(self.ctx.inputs.get("ticks", "ticks"), "bad_output", f"tick {ticks[0].index}: {exc}")
            return []
        cameras: list[str | None] = list(self.params.cameras) or [None]
        views = list(zip(cameras, feats_list, scores_list))
        first = feats_list[0]
        self.last_t = first.t_ns
        objects = {}
        for camera, tick in zip(cameras, ticks):
            stage = self.object_stages.get(camera)
            if stage is not None:
                objects[camera] = stage.step(tick.t_ns, to_rgb(tick.frame, tick.frame_layout)
                                             if tick.frame is not None else None)
        self.ctx.gauge("frames", float(self.perception.frames))
        self.ctx.gauge("audio_blocks", float(self.perception.audio_blocks))
        self.ctx.gauge("ticks", float(first.index + 1))
        obs = self.observer.observe(views)
        self.ctx.gauge("faces_vetoed", float(self.observer.vetoed_total))
        outs = []
        for i, (camera, feats, scores) in enumerate(views):
            outs += self._outputs(feats, scores, camera, heard=i == 0)
            result = objects.get(camera)
            if result is not None:
                outs.append(self._objects_out(feats, result, camera))
        if self.scores_wired:
            outs.append(self._scores_out(first, obs))
        return [*outs, *self._events(first.t_ns, obs)]

    def finish(self) -> list[Out]:
        """End of input: ticks still waiting are perceived and every open event ends (once)."""
        if self.finished:
            return []
        self.finished = True
        outs = self._run(self.join.end_frames())
        self.heard_watermark = END_OF_STREAM  # every input has ended: no line is coming
        outs += self._when_heard([])
        if self.last_t is None:
            return outs
        events = [e for name in self.trackers for e in self.trackers[name].flush(self.last_t)]
        return [*outs, *(self._event_out(e, self.last_t) for e in events)]

    def snapshot(self, port: str) -> Iterable[Out]:
        """A late subscriber of `events` gets the last phase of every open event first."""
        if port != "events":
            return []
        return [Out.record("events", rec, t, snapshot=True) for rec, t in self.open_events.values()]

    # -- outputs -------------------------------------------------------------------------
    def _outputs(self, feats: TickFeatures, scores: dict[str, Any], camera: str | None = None,
                 heard: bool = True) -> list[Out]:
        """A camera's detections and scene (named by `camera` when there are several), and
        what is heard (`heard`: speech and sound, once a tick)."""
        outs = []
        t = feats.t_ns
        named = {"camera": camera} if camera is not None else {}
        if feats.frame_shape is not None:
            speaking = {tid: float(scores["speaking"][0, i]) for i, tid in enumerate(feats.slot_ids)}
            frame_ref = feats.frame_ref
            vetoed = self.observer.vetoed
            faces = [{"track_id": f.track_id, "box": f.box, "score": f.score, "keypoints": f.keypoints,
                      "mouth_open": f.mouth_open, "speaking": round(speaking.get(f.track_id, 0.0), 4),
                      **({"on_object": vetoed[(camera, f.track_id)]} if (camera, f.track_id) in vetoed else {})}
                     for f in feats.faces]
            outs.append(Out.record("detections", {
                "tick": feats.index, "t_ns": t, **named, "size": list(feats.frame_shape), "faces": faces,
                "frame": {"stream": frame_ref.stream, "seq": frame_ref.seq} if frame_ref else None}, t))
        if feats.scene_fresh and feats.scene_top is not None and feats.scene_embedding is not None:
            outs.append(Out.record("scene", {
                "tick": feats.index, "t_ns": t, **named, "frame_t_ns": feats.scene_frame_t_ns,
                "labels": [[n, p] for n, p in feats.scene_top],
                "embedding_f32": feats.scene_embedding.astype("<f4").tobytes()}, t))
        if not heard:
            return outs
        if feats.speech_prob is not None:
            outs.append(Out.record("speech", {"tick": feats.index, "t_ns": t, "probability": feats.speech_prob,
                                              "in_speech": feats.in_speech}, t))
        if feats.sound_probs is not None:
            outs.append(Out.record("sound", {"tick": feats.index, "t_ns": t, "probabilities": feats.sound_probs}, t))
        return outs

    @staticmethod
    def _objects_out(feats: TickFeatures, result: ObjectsResult, camera: str | None = None) -> Out:
        objects = [{"class": o.label, "track_id": o.track_id, "box": o.box, "score": o.score}
                   for o in result.objects]
        named = {"camera": camera} if camera is not None else {}
        return Out.record("objects", {"tick": feats.index, "t_ns": feats.t_ns, **named,
                                      "frame_t_ns": result.frame_t_ns, "size": list(result.size),
                                      "objects": objects}, feats.t_ns)

    def _events(self, t_ns: int, obs: dict[str, dict[str, Observation]]) -> list[Out]:
        outs = []
        for name, tracker in self.trackers.items():
            for event in tracker.step(t_ns, obs[name]):
                outs.append(self._event_out(event, t_ns))
        return outs

    def _scores_out(self, feats: TickFeatures, obs: dict[str, dict[str, Observation]]) -> Out:
        """The tick's scores as the event rules see them, keyed like the events (`key`)."""
        queries = {key: o.subject["query"] for key, o in obs["query.match"].items()}
        return Out.record("scores", {
            "tick": feats.index, "t_ns": feats.t_ns,
            "scores": {name: {key: o.score for key, o in by_key.items()} for name, by_key in obs.items()},
            "queries": queries, "thresholds": self.thresholds}, feats.t_ns)

    def _event_out(self, event: Any, t_ns: int) -> Out:
        """One event phase to publish; the events open after it are kept for `snapshot`."""
        rec = self._event_record(event)
        if rec["phase"] == "end":
            self.open_events.pop(rec["event_id"], None)
        else:
            self.open_events[rec["event_id"]] = (rec, t_ns)
        return Out.record("events", rec, t_ns)

    def stop(self) -> None:
        for name in ("scene_worker", "objects_worker"):
            worker = getattr(self, name, None)
            if worker is not None:
                worker.shutdown(wait=True, cancel_futures=True)

    @staticmethod
    def _event_record(event: Any) -> dict[str, Any]:
        rec: dict[str, Any] = event.record()
        if rec["type"] == "face":  # one tracker, two documented types: appeared (start) / left (end)
            rec["type"] = {"start": "face.appeared", "end": "face.left"}.get(rec["phase"], "face.present")
            rec["event_id"] = rec["event_id"].replace("face:", "face.present:")
        elif rec["type"] == "object":  # like faces: object.appeared (start) / object.left (end)
            rec["type"] = {"start": "object.appeared", "end": "object.left"}.get(rec["phase"], "object.present")
            rec["event_id"] = rec["event_id"].replace("object:", "object.present:")
        elif rec["type"] == "sound":  # one tracker, a type per class: sound.alarm, sound.tone, sound.noise
            rec["type"] = f"sound.{rec['key']}"
        return rec
