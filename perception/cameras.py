"""Several cameras, one perception: per-camera vision, audio and text once per tick.

A multi-camera tick (docs/time.md, "Several cameras") carries one frame member per camera
beside the audio window and the text. `CameraSet` keeps one `Perception` per camera
(each its own lip histories and scene stage), all on the same opened models, and one
`FacePipeline` for all cameras: a tick's faces are found in one batched step (one detector
call over every camera's frame, regions and tiles, one landmark call over all their
candidates: `sensorfuse.perception.faces`), each camera with its own tracks, tiles and
regions; track ids come from one counter, so an id names one face on one camera and a
track never moves between cameras. The audio and the query are processed once, by the
first camera's perception, and every camera's features share them, so each camera's
fusion-head run sees the same sound with its own faces.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sensorfuse.perception.encoders import Encoders, to_rgb
from sensorfuse.perception.features import MODALITY_INPUTS, Perception, TickFeatures
from sensorfuse.perception.ticks import TickInput

#: what the first camera's audio pass sets on its features, copied to the other cameras'
AUDIO_FIELDS = ("speech_prob", "in_speech", "speech_since_ns", "sound_probs")


class CameraSet:
    """One `Perception` per camera name, fed the tick of every camera at once."""

    def __init__(self, encoders: Encoders, label_embeddings: np.ndarray, cameras: Sequence[str],
                 **kwargs: Any) -> None:
        if not cameras or len(set(cameras)) != len(cameras):
            raise ValueError(f"cameras: distinct names wanted, got {list(cameras)}")
        self.cameras = list(cameras)
        sound = kwargs.pop("sound", None)
        self.views = [Perception(encoders, label_embeddings, sound=sound if i == 0 else None, **kwargs)
                      for i in range(len(self.cameras))]
        self.faces = self.views[0].face_pipeline(len(self.cameras))

    @property
    def frames(self) -> int:
        return sum(v.frames for v in self.views)

    @property
    def audio_blocks(self) -> int:
        return self.views[0].audio_blocks

    def text_embedding(self, text: str) -> np.ndarray:
        return self.views[0].text_embedding(text)

    def process(self, ticks: Sequence[TickInput]) -> list[TickFeatures]:
        """`ticks`: this tick as each camera sees it (`ticks.camera_ticks`), in camera order."""
        if len(ticks) != len(self.views):
            raise ValueError(f"{len(ticks)} camera ticks for {len(self.views)} cameras")
        rgbs = [to_rgb(t.frame, t.frame_layout) if t.frame is not None else None for t in ticks]
        found = self.faces.step(rgbs)  # every camera's faces in one batched step
        first = self.views[0].process(ticks[0], found[0], rgbs[0])
        out = [first]
        for view, tick, faces, rgb in zip(self.views[1:], ticks[1:], found[1:], rgbs[1:]):
            tick.audio = None  # heard once, by the first camera's perception
            feats = view.process(tick, faces, rgb)
            for name in MODALITY_INPUTS["audio"]:
                feats.inputs[name] = first.inputs[name]
            for name in AUDIO_FIELDS:
                setattr(feats, name, getattr(first, name))
            feats.status["audio"] = first.status.get("audio", "absent")
            out.append(feats)
        return out
