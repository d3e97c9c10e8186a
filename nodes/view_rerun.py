"""What the viewer draws: sensorfuse messages logged to a Rerun recording.

One `RerunLog` serves the live viewer node (nodes/viewer.py) and `sensorfuse log view`
(a recorded MCAP log): each message is logged at its capture time (``t_ns``, event time)
on the ``capture`` timeline, so scrubbing a replay shows what the engine saw then.

Entities (docs/view.md):

    camera/image            camera frames, JPEG-encoded (`jpeg_quality`), at most `max_width` wide
    camera/faces            perceive/detections: boxes labelled with the track id, red while speaking
    camera/landmarks        the faces' keypoints
    camera/truth            labels/boxes of a sample session (ground truth), when the log has them
    audio/waveform          the 16 kHz audio, decimated to `audio_points_per_s` (peak per bucket)
    audio/vad               perceive/speech probability
    sound/<class>           perceive/sound class probabilities
    scores/<rule>/<key>     perceive/scores: every tick's score an event rule sees, by event key
                            (query.match: by the query's text), with scores/<rule>/threshold/{on,off}
    events/active/<type>/<key>  1 from an event's start to its end, 0 outside: the timeline
    events/log              one line per event phase
    text/in                 text lines (queries); their match scores are scores/query.match/<text>
    scene                   the scene encoder's top labels
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from sensorfuse.engine import wire

if TYPE_CHECKING:
    import rerun as rr

TIMELINE = "capture"
#: Speaking faces are drawn red, others green (RGB).
SPEAKING_COLOR = (230, 40, 40)
FACE_COLOR = (40, 200, 80)
TRUTH_COLOR = (250, 220, 0)
#: A face counts as speaking in the picture above this `speaking` probability.
SPEAKING_AT = 0.5


@dataclass(frozen=True)
class DrawSettings:
    jpeg_quality: int = 80
    max_width: int = 640
    audio_points_per_s: int = 200


#: perceive's event rules (`perceive/scores`), a score plot each
SCORE_RULES = ("speaker.active", "speech.offscreen", "query.match", "sound", "face")


def blueprint() -> Any:
    """A stable layout: the camera with its boxes, audio and events below, the event log aside."""
    import rerun.blueprint as rrb

    return rrb.Blueprint(
        rrb.Horizontal(
            rrb.Vertical(
                rrb.Spatial2DView(origin="camera", name="camera"),
                rrb.TimeSeriesView(origin="audio", name="audio"),
                rrb.Tabs(*(rrb.TimeSeriesView(origin=f"scores/{rule}", name=rule) for rule in SCORE_RULES),
                         name="event scores"),
                row_shares=[3, 1, 1],
            ),
            rrb.Vertical(
                rrb.TimeSeriesView(origin="events/active", name="events"),
                rrb.TimeSeriesView(origin="sound", name="sound classes"),
                rrb.TextLogView(origin="/", contents=["events/log", "text/**", "scene"], name="log"),
            ),
            column_shares=[3, 2],
        ),
        collapse_panels=True,
    )


APPLICATION_ID = "sensorfuse"
# rerun is imported where it is used: it is an optional extra (`sensorfuse[view]`), and every
# node module imports without it.


def open_recording(recording_id: str, *, connect: str | None = None, save: str | None = None,
                   flush_ms: float = 20.0, flush_bytes: int = 1 << 20) -> rr.RecordingStream:
    """A recording stream sent to a viewer (`connect`, a rerun+http:// URI) or written to an
    .rrd file (`save`), with the layout of `blueprint`. The SDK batches for at most `flush_ms`
    (its default 200 ms would delay the live picture) or `flush_bytes`."""
    import rerun as rr

    batcher = rr.ChunkBatcherConfig(flush_tick=datetime.timedelta(milliseconds=flush_ms), flush_num_bytes=flush_bytes)
    rec = rr.RecordingStream(APPLICATION_ID, recording_id=recording_id, batcher_config=batcher)
    if save is not None:
        rec.save(save, default_blueprint=blueprint())
    else:
        rec.connect_grpc(connect, default_blueprint=blueprint())
    return rec


class RerunLog:
    """Logs sensorfuse messages to one Rerun recording stream."""

    def __init__(self, rec: rr.RecordingStream, settings: DrawSettings = DrawSettings()) -> None:
        self.rec = rec
        self.settings = settings
        #: frame stream's scale factor (logged width / frame width), for boxes drawn on it
        self.scale = 1.0

    def log(self, msg: wire.Message) -> bool:
        """Log one message by its stream's last component; False for a stream the viewer does not draw."""
        import rerun as rr

        h = msg.header
        if h.kind == wire.KIND_EOS or h.meta.get("snapshot"):
            return False
        suffix = h.stream.rsplit("/", 1)[-1]
        self.rec.set_time(TIMELINE, duration=np.timedelta64(h.t_ns, "ns"))
        if h.kind == wire.KIND_TENSOR and suffix == "frame":
            self.frame(msg.array)
        elif h.kind == wire.KIND_AUDIO and suffix in ("audio16k", "audio"):
            self.audio(h.t_ns, msg.array, h.rate or 16000)
        elif h.kind == wire.KIND_BYTES and h.encoding == "utf-8":
            self.rec.log("text/in", rr.TextLog(msg.text))
        elif h.kind == wire.KIND_RECORD and isinstance(msg.record, dict):
            return self.record(h.stream, suffix, msg.record, h.t_ns)
        else:
            return False
        return True

    def record(self, stream: str, suffix: str, rec: dict[str, Any], t_ns: int) -> bool:
        import rerun as rr

        if suffix == "detections":
            self.faces(rec.get("faces") or [])
        elif stream == "labels/boxes":
            self.truth(rec.get("boxes") or [])
        elif suffix == "speech":
            self.rec.log("audio/vad", rr.Scalars(float(rec["probability"])))
        elif suffix == "sound":
            for name, p in (rec.get("probabilities") or {}).items():
                self.rec.log(f"sound/{name}", rr.Scalars(float(p)))
        elif suffix == "events" and "phase" in rec:
            self.event(rec)
        elif suffix == "scores":
            self.scores(rec)
        elif suffix == "scene":
            labels = ", ".join(f"{n} {p:.2f}" for n, p in rec.get("labels") or [])
            self.rec.log("scene", rr.TextLog(labels))
        else:
            return False
        return True

    def frame(self, image: np.ndarray) -> None:
        import rerun as rr

        h, w = image.shape[:2]
        self.scale = min(1.0, self.settings.max_width / w) if w else 1.0
        if self.scale < 1.0:
            image = cv2.resize(image, (round(w * self.scale), round(h * self.scale)), interpolation=cv2.INTER_AREA)
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.settings.jpeg_quality])
        if ok:  # frames are BGR; OpenCV's JPEG is what every viewer decodes as RGB
            self.rec.log("camera/image", rr.EncodedImage(contents=jpeg.tobytes(), media_type="image/jpeg"))

    def faces(self, faces: list[dict[str, Any]]) -> None:
        import rerun as rr

        s = self.scale
        boxes = np.array([f["box"] for f in faces], dtype=np.float32).reshape(-1, 4) * s
        speaking = [float(f.get("speaking") or 0.0) >= SPEAKING_AT for f in faces]
        labels = [f"#{f['track_id']}{' speaking' if sp else ''}" for f, sp in zip(faces, speaking)]
        colors = [SPEAKING_COLOR if sp else FACE_COLOR for sp in speaking]
        self.rec.log("camera/faces", rr.Boxes2D(array=boxes, array_format=rr.Box2DFormat.XYXY, labels=labels,
                                                colors=colors, class_ids=[f["track_id"] for f in faces]))
        points = [np.asarray(f.get("keypoints") or [], dtype=np.float32).reshape(-1, 2) for f in faces]
        self.rec.log("camera/landmarks", rr.Points2D(np.concatenate(points) * s if points else np.zeros((0, 2)),
                                                     radii=1.5, colors=FACE_COLOR))

    def truth(self, boxes: list[Any]) -> None:
        """A sample session's true boxes: {subject, kind, box, speaking, ...} (replay/sample.py)."""
        import rerun as rr

        arr = np.array([b["box"] for b in boxes], dtype=np.float32).reshape(-1, 4)
        labels = [f"{b.get('kind', '')} {b.get('subject', '')}{' speaking' if b.get('speaking') else ''}"
                  for b in boxes]
        self.rec.log("camera/truth", rr.Boxes2D(array=arr * self.scale, array_format=rr.Box2DFormat.XYXY,
                                                colors=TRUTH_COLOR, labels=labels))

    def audio(self, t_ns: int, samples: np.ndarray, rate: int) -> None:
        """The block decimated to peaks (the sample of largest magnitude per bucket), stamped
        sample-exactly from the block's capture time."""
        import rerun as rr

        mono = np.asarray(samples, dtype=np.float32).reshape(len(samples), -1)[:, 0]
        step = max(1, rate // max(1, self.settings.audio_points_per_s))
        n = len(mono) // step
        if n == 0:
            return
        buckets = mono[: n * step].reshape(n, step)
        peaks = buckets[np.arange(n), np.abs(buckets).argmax(axis=1)]
        times = t_ns + (np.arange(n, dtype=np.int64) * step * 1_000_000_000) // rate
        self.rec.send_columns("audio/waveform", indexes=[rr.TimeColumn(TIMELINE, duration=times.astype("timedelta64[ns]"))],
                              columns=rr.Scalars.columns(scalars=peaks.astype(np.float64)))

    def scores(self, rec: dict[str, Any]) -> None:
        """One tick of perceive/scores: a line per event key (a query's by its text) and the
        rule's on/off thresholds as lines beside them."""
        import rerun as rr

        queries = rec.get("queries") or {}
        for rule, by_key in (rec.get("scores") or {}).items():
            for key, score in by_key.items():
                name = queries.get(key, key) if rule == "query.match" else key
                self.rec.log(f"scores/{rule}/{rr.escape_entity_path_part(str(name))}", rr.Scalars(float(score)))
        for rule, th in (rec.get("thresholds") or {}).items():
            self.rec.log(f"scores/{rule}/threshold/on", rr.Scalars(float(th["on"])))
            self.rec.log(f"scores/{rule}/threshold/off", rr.Scalars(float(th["off"])))

    def event(self, ev: dict[str, Any]) -> None:
        import rerun as rr

        type_, phase = ev["type"], ev["phase"]
        key = str(ev.get("key", "")).replace("/", "_")
        score = float(ev.get("score") or 0.0)
        # face.appeared / face.left are one event: its lane is named after the rule (face)
        lane_path = f"events/active/{'face' if type_.startswith('face.') else type_}/{key}"
        if phase == "start":
            self.rec.set_time(TIMELINE, duration=np.timedelta64(int(ev.get("start_ns", ev["t_ns"])), "ns"))
            self.rec.log(lane_path, rr.Scalars(1.0))
        elif phase == "end":
            self.rec.set_time(TIMELINE, duration=np.timedelta64(int(ev.get("end_ns", ev["t_ns"])), "ns"))
            self.rec.log(lane_path, rr.Scalars(0.0))
        subject = ev.get("subject") or {}
        what = f"{subject['query']!r}" if subject.get("query") else ev.get("key", "")
        self.rec.set_time(TIMELINE, duration=np.timedelta64(int(ev["t_ns"]), "ns"))
        self.rec.log("events/log", rr.TextLog(f"{type_} {phase} {what} score {score:.2f}", level="INFO"))
