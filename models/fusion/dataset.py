"""Training/evaluation data: features of generated sessions through the runtime code path.

A session is generated (`sensorfuse.replay.sample`), replayed by the real player node and cut into
ticks by the real aligner node (both driven in-process by `sensorfuse.engine.testing.NodeHarness`,
with the `align` params of the built-in demo graph; frames joined to ticks on seq as the
perceive node does, `sensorfuse.perception.join`), and every tick goes through
`sensorfuse.perception.Perception` — the code the perceive node runs. Labels come from the
session's ground truth (`labels`, `labels/boxes`). Features are cached per seed in
`<cache>/fusion-features/<key>/`, keyed by everything that changes them.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from sensorfuse.engine import graph as graph_mod
from sensorfuse.engine import manifest as mf
from sensorfuse.engine import progressbar
from sensorfuse.perception import Encoders, Perception, TickInput, label_embeddings, tick_from_record
from sensorfuse.perception import encoders
from sensorfuse.perception import features as perception_features
from sensorfuse.perception.features import FACE_SLOTS, FEATURES
from sensorfuse.perception.fusion import FEATURE_VERSION
from sensorfuse.perception.join import FrameJoin, FrameRef
from sensorfuse.perception.ticks import attach_frame
from sensorfuse.perception.tracking import iou
from sensorfuse.engine.testing import NodeHarness
from sensorfuse.models import corpus
from sensorfuse.nodes.aligner import AlignerNode
from sensorfuse.replay import sample
from sensorfuse.replay.player import PlayerNode

PORTS = {"cam0/frame": "frame", "mic0/audio16k": "audio", "text/in": "text"}
QUERY_TEXTS: tuple[str, ...] = tuple(t for texts in sample.QUERIES.values() for t in texts) + tuple(sample.COMMANDS)
QUERY_TARGETS: tuple[str | None, ...] = tuple(
    target for target, texts in sample.QUERIES.items() for _ in texts) + (None,) * len(sample.COMMANDS)
TRUTH_IOU = 0.3


def align_params() -> dict[str, Any]:
    return dict(graph_mod.load_decl("demo").nodes["align"].params)


def aligned_inputs(path: Path, *, embed_frames: bool = False) -> Iterator[tuple[str, Any]]:
    """What the perceive node receives from a session, in order: ``("frame", message)`` for
    each camera frame and ``("ticks", record)`` for each tick, which references its frame
    by seq (the demo graph's aligner params) or, with `embed_frames`, carries it."""
    params = align_params()
    if embed_frames:
        streams = {port: dict(sp) for port, sp in params["streams"].items()}
        streams["frame"]["embed"] = True
        params = {**params, "streams": streams}
    aligner = NodeHarness(AlignerNode, params, streams={**{p: st for st, p in PORTS.items()}, "ticks": "align/ticks"})
    for msg in _session_messages(path):
        port = PORTS.get(msg.header.stream)
        if port is None:
            continue
        if port == "frame":
            yield "frame", msg
        for out in aligner.send(port, msg):
            yield "ticks", out.record
    for out in aligner.finish():
        yield "ticks", out.record


def session_ticks(path: Path) -> Iterator[tuple[TickInput, list[dict[str, Any]]]]:
    """(tick with its frame, ground-truth boxes of that frame) in tick order."""
    boxes = {m.header.t_ns: m.record["boxes"] for m in _session_messages(path) if m.header.stream == "labels/boxes"}
    # Offline nothing is dropped on the way: a join that holds every frame loses none.
    join: FrameJoin[TickInput, Any] = FrameJoin(capacity=1_000_000)
    for port, item in aligned_inputs(path):
        if port == "frame":
            ready = join.add_frame(item.header.seq, item.header.t_ns, item)
        else:
            tick = tick_from_record(item)
            ref = tick.frame_wanted
            ready = join.add_tick(tick, FrameRef(ref.seq, ref.t_ns) if ref else None)
        for joined in ready:
            if joined.frame is not None:
                attach_frame(joined.tick, joined.frame.array, joined.frame.header.layout)
            frame_ref = joined.tick.frame_ref
            yield joined.tick, boxes.get(frame_ref.t_ns, []) if frame_ref else []


@functools.lru_cache(maxsize=1)
def _session_messages(path: Path) -> list[Any]:
    player = NodeHarness(PlayerNode, {"path": str(path), "rate": "max"}, streams={})
    messages = player.produce_all()
    player.close()
    return messages


def read_labels(path: Path) -> list[dict[str, Any]]:
    player = NodeHarness(PlayerNode, {"path": str(path), "rate": "max", "streams": ["labels"]}, streams={})
    labels = [m.record for m in player.produce_all()]
    player.close()
    return labels


def match_slots(slot_boxes: list[list[float]], truth: list[dict[str, Any]]) -> list[dict[str, Any] | None]:
    """Each detected face slot's ground-truth face (IoU >= TRUTH_IOU, greedy), or None."""
    faces = [b for b in truth if b["kind"] == "face"]
    pairs = sorted(((iou(np.asarray(s), np.asarray(f["box"])), i, j) for i, s in enumerate(slot_boxes)
                    for j, f in enumerate(faces)), key=lambda p: (-p[0], p[1], p[2]))
    out: list[dict[str, Any] | None] = [None] * len(slot_boxes)
    used: set[int] = set()
    for score, i, j in pairs:
        if score >= TRUTH_IOU and out[i] is None and j not in used:
            out[i], _ = faces[j], used.add(j)
    return out


def covers(labels: list[dict[str, Any]], name: str, t_ns: int) -> bool:
    return any(r["label"] == name and r["start_ns"] <= t_ns < r["end_ns"] for r in labels)


def query_truth(target: str | None, truth: list[dict[str, Any]], labels: list[dict[str, Any]], t_ns: int) -> bool:
    """Is a query of this target true at t (the generator's rule, sample_labels.intervals)?"""
    if target is None:
        return False
    if target == "speaker":
        return covers(labels, "speech", t_ns)
    if target == "cat":
        return any(b["kind"] == "cat" for b in truth)
    return any(b["subject"] == target for b in truth)


def session_features(path: Path, cache: Path | None) -> dict[str, np.ndarray]:
    """Feature and label arrays of one session (one row per tick)."""
    encoders = Encoders(cache)
    perception = Perception(encoders, label_embeddings(encoders))
    labels = read_labels(path)
    rows: dict[str, list[Any]] = {k: [] for k in [*FEATURES, "t_ns", "speaking", "offscreen", "relevance"]}
    for tick, truth in session_ticks(path):
        feats = perception.process(tick)
        for k in FEATURES:
            rows[k].append(feats.inputs[k][0])
        slot_boxes = [next(f.box for f in feats.faces if f.track_id == tid) for tid in feats.slot_ids]
        matched = match_slots(slot_boxes, truth)
        speaking = np.zeros(FACE_SLOTS, np.float32)
        for i, m in enumerate(matched):
            speaking[i] = float(bool(m and m["speaking"]))
        rows["speaking"].append(speaking)
        rows["offscreen"].append(float(covers(labels, "offscreen_speech", feats.t_ns)))
        rows["relevance"].append([float(query_truth(tg, truth, labels, feats.t_ns)) for tg in QUERY_TARGETS])
        rows["t_ns"].append(feats.t_ns)
    out = {k: np.asarray(v, dtype=np.int64 if k == "t_ns" else np.float32) for k, v in rows.items()}
    out["query_embeddings"] = np.stack([perception.text_embedding(t) for t in QUERY_TEXTS])
    return out


def feature_key(cache: Path | None, duration_s: float) -> str:
    cache = cache or mf.default_cache_dir()
    shas = [mf.load(mf.find_manifest(n, cache)).sha256 for n in
            (encoders.FACE_MODEL, encoders.LANDMARK_MODEL, encoders.SCENE_MODEL, encoders.VAD_MODEL,
             encoders.TEXT_MODEL)]
    # the face settings change the features without changing a model or FEATURE_VERSION
    faces = [perception_features.FACE_MIN_SCORE, perception_features.FACE_CONFIRM_PRESENCE,
             perception_features.FACE_PRESENCE_RULE,
             perception_features.FACE_TILE_FRACTION, perception_features.FACE_TRACK_FRAMES,
             perception_features.FACE_TILES_PER_FRAME, perception_features.FACE_TILE_LEVELS,
             perception_features.FACE_TILE_CYCLE]
    blob = json.dumps([FEATURE_VERSION, shas, align_params(), duration_s, QUERY_TEXTS, faces], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def build(seeds: list[int], *, duration_s: float, cache: Path | None, work_dir: Path,
          workers: int = 2, log: Any = progressbar.say) -> dict[int, dict[str, np.ndarray]]:
    """Features of every seed, computed (in `workers` processes) or read from the cache."""
    key_dir = work_dir / f"fusion-features-{feature_key(cache, duration_s)}"
    arrays_of = functools.partial(session_features, cache=cache)
    return corpus.build(seeds, key_dir, arrays_of, duration_s=duration_s, workers=workers, compressed=False, log=log)
