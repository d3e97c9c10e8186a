"""Ground truth of a generated sample session, as interval records on the ``labels`` stream.

Every record has ``label``, ``start_ns``, ``end_ns`` (end exclusive; the session's time
base) and label-specific fields. A session of several cameras (`sensorfuse sample
--cameras N`) labels what each camera sees: the records marked *per camera* below carry
``camera`` (``cam0`` …) there, one record per camera it holds for; the others stay
global. A one-camera session has no ``camera`` field anywhere.

| label | fields | meaning |
|---|---|---|
| ``face_visible`` / ``cat_visible`` / ``object_visible`` | subject, sprite, (camera) | ≥ 50 % of the subject's box in view; *per camera* |
| ``speech`` | speaker (face subject or ``offscreen``), clip, voice, text, split | a speech clip plays |
| ``speaker_visible`` | subject, (camera) | speech whose speaking face is in view (its mouth moves); *per camera* |
| ``offscreen_speech`` | speaker | speech with no visible speaker in any camera (offscreen, or out of view) |
| ``sound`` | sound: alarm / tone / noise / silence | a non-speech sound event (silence = room tone off) |
| ``query`` | text, target, matches | a text query at `start_ns`; `matches` = subjects it is true of then, in any camera |
| ``command`` | text | a scripted text command (matches nothing) |

Visual intervals have frame resolution: ``[first frame, last frame + 1 frame period)``.
The per-frame truth, ``labels/boxes``, is one record per frame (per camera, naming its
``camera``, when there are several): ``frame``, ``boxes`` (subject, kind, sprite, box in
view pixels, visible fraction, speaking).
"""

from __future__ import annotations

from typing import Any


def runs(flags: list[bool], times: list[int], period_ns: int) -> list[tuple[int, int]]:
    """Intervals where `flags` holds: from its first time to the next time after its last
    (the last run ends one `period_ns` after the last time)."""
    out = []
    start = None
    for flag, t in zip(flags, times):
        if flag and start is None:
            start = t
        elif not flag and start is not None:
            out.append((start, t))
            start = None
    if start is not None and times:
        out.append((start, times[-1] + period_ns))
    return out


def intervals(sess: Any, frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """All label records of a session (`sess` is `sensorfuse.replay.sample._Session`), sorted
    by start. `frames`: the ``labels/boxes`` records with their ``t_ns``; with several cameras,
    one per camera per frame, each naming its ``camera``."""
    period_ns = int(round(1e9 / sess.fps))
    views: dict[str | None, list[dict[str, Any]]] = {}
    for f in frames:
        views.setdefault(f.get("camera"), []).append(f)
    times = [f["t_ns"] for f in next(iter(views.values()), [])]
    records: list[dict[str, Any]] = []
    subjects: dict[str, tuple[str, str]] = {}
    for f in frames:
        for b in f["boxes"]:
            subjects[b["subject"]] = (b["kind"], b["sprite"])
    for camera, cam_frames in views.items():
        where = {} if camera is None else {"camera": camera}
        for subject, (kind, sprite_name) in sorted(subjects.items()):
            flags = [any(b["subject"] == subject for b in f["boxes"]) for f in cam_frames]
            for s, e in runs(flags, times, period_ns):
                records.append({"label": f"{kind}_visible", "subject": subject, "sprite": sprite_name, **where,
                                "start_ns": s, "end_ns": e})
    speech_frames = [False] * len(times)
    for ev in sess.sounds:
        s, e = sess.t_ns(ev.start_s), sess.t_ns(ev.end_s)
        if ev.kind == "speech":
            clip = ev.clip or {}
            records.append({"label": "speech", "speaker": ev.speaker, "clip": clip.get("clip"),
                            "voice": clip.get("voice"), "text": clip.get("text"), "split": clip.get("split"),
                            "start_ns": s, "end_ns": e})
            for i, t in enumerate(times):
                if s <= t < e:
                    speech_frames[i] = True
        else:
            records.append({"label": "sound", "sound": ev.kind, "start_ns": s, "end_ns": e})
    visible_speaker = [False] * len(times)
    for camera, cam_frames in views.items():
        where = {} if camera is None else {"camera": camera}
        visible_speaker = [seen or any(b["speaking"] for b in f["boxes"]) for seen, f in zip(visible_speaker, cam_frames)]
        for subject in sorted(s for s, (k, _) in subjects.items() if k == "face"):
            flags = [any(b["speaking"] and b["subject"] == subject for b in f["boxes"]) for f in cam_frames]
            for s, e in runs(flags, times, period_ns):
                records.append({"label": "speaker_visible", "subject": subject, **where, "start_ns": s, "end_ns": e})
    offscreen = [sp and not vis for sp, vis in zip(speech_frames, visible_speaker)]
    for s, e in runs(offscreen, times, period_ns):
        speaker = sess._speaker_at((s - sess.t_ns(0)) / 1e9)
        records.append({"label": "offscreen_speech", "speaker": speaker, "start_ns": s, "end_ns": e})
    for t, line, target in sess.texts:
        t_ns = sess.t_ns(t)
        if target is None:
            records.append({"label": "command", "text": line, "start_ns": t_ns, "end_ns": t_ns})
            continue
        boxes = [b for cam_frames in views.values() for b in _frame_at(cam_frames, t_ns)]
        if target == "speaker":
            matches = [b["subject"] for b in boxes if b["speaking"]]
            speaker = sess._speaker_at(t)
            if speaker is not None and not matches:
                matches = ["offscreen"]
        elif target == "cat":
            matches = [b["subject"] for b in boxes if b["kind"] == "cat"]
        else:
            matches = [b["subject"] for b in boxes if b["subject"] == target]
        records.append({"label": "query", "text": line, "target": target, "matches": list(dict.fromkeys(matches)),
                        "start_ns": t_ns, "end_ns": t_ns})
    records.sort(key=lambda r: (r["start_ns"], r["label"]))
    return records


def _frame_at(frames: list[dict[str, Any]], t_ns: int) -> list[dict[str, Any]]:
    """The boxes of the last frame at or before `t_ns` (none before the first frame)."""
    frame = max((f for f in frames if f["t_ns"] <= t_ns), key=lambda f: f["t_ns"], default=None)
    return frame["boxes"] if frame else []
