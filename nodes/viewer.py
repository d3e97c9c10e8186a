"""Viewer: what the graph sees, live in the Rerun viewer (docs/view.md).

Ports (all optional; `--view` wires those the graph has, nodes/view.py)
    frame       (in, latest)       camera frames, logged JPEG-encoded at most `max_width` wide
    audio       (in, drop_oldest)  16 kHz audio, decimated to `audio_points_per_s`
    detections  (in, drop_oldest)  perceive/detections: face boxes, track ids, landmarks, speaking
    speech      (in, drop_oldest)  perceive/speech: VAD probability
    sound       (in, drop_oldest)  perceive/sound: sound-class probabilities
    scene       (in, drop_oldest)  perceive/scene: top scene labels
    scores      (in, drop_oldest)  perceive/scores: each tick's event scores with their on/off thresholds
    events      (in, drop_oldest)  perceive/events: start/end lanes, a log line
    text        (in, drop_oldest)  text/in: the query lines
    truth       (in, drop_oldest)  labels/boxes of a sample session: the true boxes

Every message is logged at its capture time (event time) on the ``capture`` timeline
(`sensorfuse.nodes.view_rerun`). No output: the node never slows the graph — its inputs
never block a publisher, and what it cannot keep up with is dropped and counted by the
runtime (``overflow``) like any consumer's.

Where it goes: ``connect`` (a ``rerun+http://127.0.0.1:PORT/proxy`` URI of a viewer or
`rerun --serve-web` server) or ``save`` (an .rrd file); exactly one. The SDK batches
what is logged for at most ``flush_ms`` (its default, 200 ms, would delay the picture)
or ``flush_bytes``, whichever comes first.

Failure behaviour: neither or both of ``connect`` / ``save`` is a startup error (not
restarted). A viewer that goes away is the SDK's to report (it logs and drops); the
graph goes on.

Config example::

    viewer:
      kind: viewer
      params: {save: view.rrd, jpeg_quality: 80, max_width: 640}
      inputs: {frame: {stream: cam0/frame, policy: latest, queue: 1}, events: perceive/events}
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Annotated

import msgspec

from sensorfuse.engine import wire
from sensorfuse.engine.errors import StartupError
from sensorfuse.engine.node import InputSpec, Node, Out
from sensorfuse.engine.params import PositiveFloat, PositiveInt

Quality = Annotated[int, msgspec.Meta(ge=1, le=100)]


class ViewerNode(Node):
    class Params(msgspec.Struct, forbid_unknown_fields=True):
        connect: str | None = None
        save: str | None = None
        #: one recording per run by default (the session id): a restarted viewer node adds to it
        recording_id: str | None = None
        jpeg_quality: Quality = 80
        max_width: PositiveInt = 640
        audio_points_per_s: PositiveInt = 200
        flush_ms: PositiveFloat = 20.0
        flush_bytes: PositiveInt = 1 << 20

    inputs = {
        "frame": InputSpec(kind=wire.KIND_TENSOR, policy="latest", queue=1, required=False),
        "audio": InputSpec(kind=wire.KIND_AUDIO, policy="drop_oldest", queue=16, required=False),
        **{port: InputSpec(kind=wire.KIND_RECORD, policy="drop_oldest", queue=queue, required=False)
           for port, queue in (("detections", 4), ("speech", 16), ("sound", 8), ("scene", 4), ("events", 256),
                               ("scores", 16), ("truth", 4))},
        "text": InputSpec(kind=wire.KIND_BYTES, policy="drop_oldest", queue=16, required=False),
    }

    def start(self) -> None:
        p = self.params
        if (p.connect is None) == (p.save is None):
            raise StartupError("viewer: set exactly one of `connect` (a rerun+http:// URI) and `save` (an .rrd path)")
        if p.save is not None and not os.path.isdir(os.path.dirname(os.path.abspath(p.save))):
            raise StartupError(f"viewer: save: no directory for {p.save!r}")
        from sensorfuse.nodes.view_rerun import DrawSettings, RerunLog, open_recording

        self.rec = open_recording(p.recording_id or self.ctx.session, connect=p.connect, save=p.save,
                                  flush_ms=p.flush_ms, flush_bytes=p.flush_bytes)
        settings = DrawSettings(jpeg_quality=p.jpeg_quality, max_width=p.max_width,
                                audio_points_per_s=p.audio_points_per_s)
        self.draw = RerunLog(self.rec, settings)

    def step(self, port: str, msg: wire.Message) -> Iterable[Out]:
        if not self.draw.log(msg):
            self.ctx.reject(msg.header.stream, "not_drawn")
        return ()

    def finish(self) -> Iterable[Out]:
        self.rec.flush()
        return ()

    def stop(self) -> None:
        rec = getattr(self, "rec", None)
        if rec is not None:
            rec.flush()
            rec.disconnect()
