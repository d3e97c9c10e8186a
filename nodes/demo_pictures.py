"""The demo's HTML report: what the run saw, as pictures (`sensorfuse demo` writes it
beside its other outputs as ``demo-report.html``).

From the run's outputs (events JSONL, the perception recording) and the session it replayed:

- the summary table of `demo_report.table` (same numbers as the console and
  ``demo-report.json``);
- per event type present (truth or detections): one timeline, truth intervals (the labels
  the type is scored against, `demo_report.truth_for`, in the replayed span) above the
  detected ones (one per ``start`` record, from start to end); and a score trace — the
  per-tick score the event rule sees where the recording has it (face: detector score and
  speaking probability per track in ``perceive/detections``; sound classes in
  ``perceive/sound``), the scores of the event phases as dots, and the rule's on/off
  thresholds (`sensorfuse.nodes.perceive_setup.DEFAULT_RULES`);
- a few key frames: the session's frame at the start of the first events, with the face
  boxes, track ids and speaking probability perceive detected in it.

Each timeline image is marked ``data-kind="timeline" data-event-type=... data-truth=N
data-detected=M`` (what it draws), so a test checks the pictures against the summary.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sensorfuse.engine import wire
from sensorfuse.nodes import demo_report, report_plots
from sensorfuse.nodes.report_html import HtmlReport

KEY_FRAMES = 4
#: the perceive rule (DEFAULT_RULES key) behind each event type
RULE_OF = {"face.appeared": "face", **{t: "sound" for t in demo_report.SOUND_TYPES}}
#: event types whose start names a face box: their first starts are the key frames, in this order
KEY_FRAME_TYPES = ("speaker.active", "face.appeared")


def detected_intervals(events: Iterable[dict[str, Any]], end_ns: int) -> dict[str, list[dict[str, Any]]]:
    """Per event type, one interval per event (``start`` record): ``{start_ns, end_ns, key,
    scores: [(t_ns, score) of every phase]}``; an event never ended runs to `end_ns`.
    Phases are joined on ``event_id`` (a face's ``face.present`` / ``face.left`` phases
    belong to its ``face.appeared``)."""
    by_id: dict[str, dict[str, Any]] = {}
    out: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        if e["phase"] == "start":
            interval = {"start_ns": e["start_ns"], "end_ns": end_ns, "key": e["key"], "scores": []}
            by_id[e["event_id"]] = interval
            out.setdefault(e["type"], []).append(interval)
        interval = by_id.get(e["event_id"])
        if interval is None:
            continue  # a phase of an event that started before the log did
        interval["scores"].append((e["t_ns"], e["score"]))
        if e["phase"] == "end" and "end_ns" in e:
            interval["end_ns"] = e["end_ns"]
    return out


def truth_intervals(etype: str, labels: list[dict[str, Any]]) -> list[tuple[str, int, int]]:
    """(row label, start_ns, end_ns) of the truth `etype` is scored against; a query is an
    instant, once per query time (as scored)."""
    truths = demo_report.truth_for(etype, labels)
    if etype == "query.match":
        return [("truth", t, t) for t in sorted({r["start_ns"] for r in truths})]
    return [(f"truth {r['subject']}" if "subject" in r else "truth", r["start_ns"], r["end_ns"]) for r in truths]


def read_perception(path: Path) -> dict[str, list[dict[str, Any]]]:
    """The detections and sound records of a perception recording, by stream suffix."""
    from sensorfuse.replay.mcap_io import LogReader

    out: dict[str, list[dict[str, Any]]] = {"detections": [], "sound": [], "speech": []}
    if not path.is_file():
        return out
    with LogReader(path) as reader:
        for msg in reader.iter_messages(["perceive/detections", "perceive/sound", "perceive/speech"]):
            header, _, payload = msg.decode()
            record = wire.decode_record(payload)
            if record.get("camera", "cam0") == "cam0":  # several cameras: the pictures show the first
                out[header.stream.rsplit("/", 1)[1]].append(record)
    return out


def score_traces(etype: str, perception: dict[str, list[dict[str, Any]]]) -> list[tuple[str, list[float], list[float]]]:
    """The per-tick score the rule of `etype` sees, where the recording holds it."""
    def per_track(field: str) -> list[tuple[str, list[float], list[float]]]:
        tracks: dict[int, tuple[list[float], list[float]]] = {}
        for d in perception["detections"]:
            for f in d["faces"]:
                t, s = tracks.setdefault(f["track_id"], ([], []))
                t.append(d["t_ns"] / 1e9)
                s.append(float(f[field]))
        return [(f"track {tid}", t, s) for tid, (t, s) in sorted(tracks.items())]

    if etype == "face.appeared":
        return per_track("score")
    if etype == "speaker.active":
        return per_track("speaking")
    if etype in demo_report.SOUND_TYPES:
        name = etype.split(".", 1)[1]
        rows = perception["sound"]
        return [(f"{name} probability", [r["t_ns"] / 1e9 for r in rows],
                 [float(r["probabilities"].get(name, 0.0)) for r in rows])]
    if etype == "speech.offscreen":  # the head's off-screen score is not recorded: VAD for context
        rows = perception["speech"]
        return [("VAD speech probability (context)", [r["t_ns"] / 1e9 for r in rows],
                 [float(r["probability"]) for r in rows])]
    return []


def read_frame(session: Path, t_ns: int) -> Any:
    """The session's camera frame captured at `t_ns` as RGB, or None."""
    from sensorfuse.replay.mcap_io import LogReader

    with LogReader(session) as reader:
        for msg in reader.iter_messages(["cam0/frame"], start_ns=t_ns, end_ns=t_ns + 1):
            header, _, payload = msg.decode()
            frame = wire.Message(header, [payload]).array
            return frame[..., ::-1] if (header.layout or "").endswith("bgr8") and frame.ndim == 3 else frame
    return None


def key_frame_times(detected: dict[str, list[dict[str, Any]]], detections: dict[int, dict[str, Any]]) -> list[int]:
    """Frame times to show: the first starts of face events; without any, frames evenly
    through the run, those with faces first."""
    times: list[int] = []
    for etype in KEY_FRAME_TYPES:
        for interval in detected.get(etype, []):
            if interval["start_ns"] not in times and interval["start_ns"] in detections:
                times.append(interval["start_ns"])
    if times:
        return sorted(times[:KEY_FRAMES])
    pool = sorted(t for t, d in detections.items() if d["faces"]) or sorted(detections)
    step = max(len(pool) // (KEY_FRAMES + 1), 1)
    return pool[step::step][:KEY_FRAMES] or pool[:1]


def build(*, session: Path, events: list[dict[str, Any]], labels: list[dict[str, Any]] | None,
          perception_log: Path, summary: dict[str, Any]) -> HtmlReport:
    """The report page. `events`: event records; `labels`: the truth of the replayed span
    (None: the session has no labels); `summary`: `sensorfuse.nodes.demo.summarize`'s."""
    from sensorfuse.nodes.perceive_setup import DEFAULT_RULES  # here: it imports the inference runtime

    perception = read_perception(perception_log)
    times = sorted({e["t_ns"] for e in events} | {d["t_ns"] for d in perception["detections"]}
                   | {r["start_ns"] for r in labels or []} | {r["end_ns"] for r in labels or []})
    t1_ns = times[-1] if times else 1
    t_range = (times[0] / 1e9 if times else 0.0, max(t1_ns / 1e9, 1.0))  # the session's clock, seconds
    detected = detected_intervals(events, t1_ns)
    page = HtmlReport(f"sensorfuse demo: {session.name}")
    _summary_section(page, summary)
    page.heading("Events: truth vs detected")
    page.paragraph("Per event type: truth intervals (green) above detected events (blue, start to end); "
                   "then the score the event rule sees with its on/off thresholds; dots are the event phases.",
                   note=True)
    for etype in demo_report.EVENT_TYPES:
        truth = truth_intervals(etype, labels) if labels is not None else []
        found = detected.get(etype, [])
        if not truth and not found:
            continue
        rows: list[tuple[str, list[tuple[float, float]], str]] = []
        for label in dict.fromkeys(r[0] for r in truth):
            rows.append((label, [(s / 1e9, e / 1e9) for lab, s, e in truth if lab == label],
                         report_plots.TRUTH_COLOR))
        for key in dict.fromkeys(i["key"] for i in found):
            rows.append((f"detected {key}", [(i["start_ns"] / 1e9, i["end_ns"] / 1e9)
                                             for i in found if i["key"] == key], report_plots.DETECTED_COLOR))
        page.heading(etype, 3)
        page.figure(report_plots.timeline(f"{etype}: {len(truth)} truth, {len(found)} detected", rows, t_range),
                    alt=f"{etype} timeline", data={"kind": "timeline", "event-type": etype, "truth": len(truth),
                                                   "detected": len(found)})
        rule = DEFAULT_RULES[RULE_OF.get(etype, etype)]
        points = [(t / 1e9, s) for i in found for t, s in i["scores"]]
        page.figure(report_plots.score_trace(f"{etype} score", score_traces(etype, perception), points,
                                             on=rule.on, off=rule.off, t_range=t_range),
                    alt=f"{etype} score trace", data={"kind": "scores", "event-type": etype, "on": rule.on,
                                                      "off": rule.off})
    _key_frames(page, session, detected, perception, DEFAULT_RULES["speaker.active"].on)
    return page


def _summary_section(page: HtmlReport, summary: dict[str, Any]) -> None:
    page.heading("Summary")
    scores = summary["scores"]
    if scores is None:
        page.paragraph(f"No labels in {summary['session']}: events are not scored ({summary['events']} events).")
    else:
        if summary["cut_short"]:
            page.paragraph(f"Scored against the truth of the replayed span ({summary['replayed_s']:.1f} s of "
                           f"{summary['session_s'] or 0:.1f} s).")
        rows = demo_report.table_rows(scores)
        page.table(list(demo_report.TABLE_HEADER), rows, row_data=[{"type": r[0]} for r in rows], name="scores")
    lat = summary["latency_ms"]
    if lat:
        import numpy as np

        p50, p99 = np.percentile(lat, [50, 99])
        page.paragraph(f"capture→event latency: p50 {p50:.1f} ms, p99 {p99:.1f} ms over {len(lat)} events")
    page.paragraph(f"frames: {summary['frames_published']} published; events: {summary['events']} records; drops: "
                   + (", ".join(f"{k}={v}" for k, v in sorted(summary["drops"].items())) or "none"))


def _key_frames(page: HtmlReport, session: Path, detected: dict[str, list[dict[str, Any]]],
                perception: dict[str, list[dict[str, Any]]], speaking_on: float) -> None:
    by_time = {d["t_ns"]: d for d in perception["detections"]}
    times = key_frame_times(detected, by_time)
    if not times:
        return
    page.heading("Key frames")
    page.paragraph("The session's frame at the start of the first face events, with what perceive detected "
                   f"in it: box, track id, speaking probability (red: at or above {speaking_on:g}).", note=True)
    page.begin_group("frames")
    for t in times:
        image = read_frame(session, t)
        if image is None:
            continue
        faces = by_time[t]["faces"]
        boxes = [(f["box"], f"track {f['track_id']} speaking {f['speaking']:.2f}", f["speaking"] >= speaking_on)
                 for f in faces]
        page.figure(report_plots.annotated_frame(image, boxes, f"t = {t / 1e9:.2f} s"),
                    alt=f"frame at {t} ns", data={"kind": "frame", "t-ns": t, "faces": len(faces)})
    page.end_group()


def write(path: Path, **inputs: Any) -> Path:
    """`build` the page and write it to `path`; returns `path`."""
    return build(**inputs).write(path)
