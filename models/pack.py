"""The default model pack: one table, one row per model (STYLE.md: one table per concern)."""

from __future__ import annotations

from sensorfuse.models import build_objects as objects
from sensorfuse.models import build_speech_text as speech_text
from sensorfuse.models import build_vision as vision
from sensorfuse.models import npm, sources
from sensorfuse.models.builder import PackEntry

# recipe 2 of the MediaPipe entries: a symbolic batch dimension (models/mediapipe.py)
PACK: tuple[PackEntry, ...] = (
    PackEntry("blazeface_short", "face detector, short range (128 px)",
              vision.build_blazeface_short, (sources.BLAZEFACE_SHORT,), recipe=2),
    PackEntry("blazeface_full", "face detector, full range (192 px)",
              vision.build_blazeface_full, (sources.BLAZEFACE_FULL,), recipe=2),
    PackEntry("face_landmarks", "468-point face mesh",
              vision.build_face_landmarks, (sources.FACE_LANDMARK,), recipe=2),
    PackEntry("efficientnet_lite0", "ImageNet labels + 1280-d image embedding",
              vision.build_efficientnet, (sources.EFFICIENTNET_LITE0,), needs_torch=True),
    PackEntry("efficientnet_lite0_int8", "the same, int8 static QDQ",
              vision.build_efficientnet_int8, (sources.EFFICIENTNET_LITE0,), recipe=2,
              depends=("efficientnet_lite0",)),
    PackEntry("silero_vad", "voice activity, 16 kHz streaming",
              speech_text.build_silero, (sources.SILERO_VAD,)),
    PackEntry("minilm_l6_v2", "384-d sentence embedding",
              speech_text.build_minilm, (sources.MINILM_WEIGHTS, sources.MINILM_TOKENIZER),
              needs_torch=True),
    PackEntry("minilm_l6_v2_int8", "the same, int8 dynamic",
              speech_text.build_minilm_int8, (sources.MINILM_WEIGHTS, sources.MINILM_TOKENIZER),
              depends=("minilm_l6_v2",)),
    PackEntry("nanodet_m_416", "objects: 80 COCO classes, boxes (416 px)",
              objects.build_nanodet, (npm.NANODET_GRAPH, npm.NANODET_WEIGHTS)),
    PackEntry("mobilenet_v2", "bring-your-own example: alternative image encoder",
              vision.build_mobilenet_v2, (sources.MOBILENET_V2,), needs_torch=True),
)
NAMES: tuple[str, ...] = tuple(entry.name for entry in PACK)
