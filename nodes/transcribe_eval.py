"""Word error rate of the transcribe node on labelled sessions (docs/speech.md).

Runs the node in-process (`NodeHarness`) on each session's ``mic0/audio16k`` and scores
its transcripts against the ``speech`` labels the sample generator writes (the sentence
each clip speaks): a transcript belongs to the label it overlaps most in capture time;
one that overlaps none counts its words as insertions. WER = all word edits / all
reference words (`sensorfuse.perception.speech_text.words_error_rate`). Speed is
decode seconds per second of segment audio, on one thread.

    python -m sensorfuse.nodes.transcribe_eval SESSION.mcap [SESSION.mcap ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from sensorfuse.perception.speech_text import words_error_rate
from sensorfuse.engine.testing import NodeHarness
from sensorfuse.nodes.transcribe import TranscribeNode
from sensorfuse.replay.player import PlayerNode

AUDIO = "mic0/audio16k"


def replay(session: Path, streams: list[str]) -> list[Any]:
    player = NodeHarness(PlayerNode, {"path": str(session), "rate": "max", "streams": streams}, streams={})
    try:
        return player.produce_all()
    finally:
        player.close()


def transcribe_session(session: Path, params: dict[str, Any] | None = None) -> tuple[list[dict[str, Any]], float]:
    """The node's transcript records on the session's audio, and its decode-time ratio."""
    node = NodeHarness(TranscribeNode, params or {}, streams={"audio": AUDIO, "transcripts": "perceive/transcripts",
                                                              "events": "speech/events", "text": "speech/text"})
    try:
        published = []
        for msg in replay(session, [AUDIO]):
            published += node.send("audio", msg, seq=msg.header.seq)
        published += node.finish()
        ratio = node.node.decode_s / max(node.node.decoded_audio_s, 1e-9)
    finally:
        node.close()
    return [m.record for m in published if m.header.stream == "perceive/transcripts"], ratio


def pair_with_labels(transcripts: list[dict[str, Any]], labels: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(spoken sentence, transcribed text) per speech label, plus ("", text) for a transcript
    that overlaps no speech."""
    speech = sorted((r for r in labels if r["label"] == "speech"), key=lambda r: r["start_ns"])
    heard: list[list[str]] = [[] for _ in speech]
    pairs: list[tuple[str, str]] = []
    for rec in transcripts:
        if not rec["text"]:
            continue
        overlaps = [min(rec["end_ns"], lab["end_ns"]) - max(rec["start_ns"], lab["start_ns"]) for lab in speech]
        best = max(range(len(speech)), key=lambda i: overlaps[i], default=None)
        if best is None or overlaps[best] <= 0:
            pairs.append(("", rec["text"]))
        else:
            heard[best].append(rec["text"])
    return [(lab["text"], " ".join(h)) for lab, h in zip(speech, heard)] + pairs


def evaluate(sessions: list[Path], params: dict[str, Any] | None = None) -> dict[str, Any]:
    pairs: list[tuple[str, str]] = []
    ratios = []
    for session in sessions:
        transcripts, ratio = transcribe_session(session, params)
        labels = [m.record for m in replay(session, ["labels"])]
        pairs += pair_with_labels(transcripts, labels)
        ratios.append(ratio)
    return {**score_pairs(pairs), "decode_s_per_audio_s": round(sum(ratios) / max(len(ratios), 1), 3)}


def score_pairs(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """WER, the number of spoken sentences and the pairs, from `pair_with_labels`."""
    return {"wer": round(words_error_rate(pairs), 4), "sentences": sum(1 for ref, _ in pairs if ref),
            "pairs": [{"spoken": ref, "heard": hyp} for ref, hyp in pairs]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sensorfuse.nodes.transcribe_eval", description=__doc__.split("\n")[0])
    parser.add_argument("sessions", nargs="+", type=Path, help="labelled sessions (sensorfuse sample -o ...)")
    args = parser.parse_args(argv)
    result = evaluate(args.sessions)
    for pair in result["pairs"]:
        print(f"{pair['spoken']!r:40} -> {pair['heard']!r}")
    print(json.dumps({k: v for k, v in result.items() if k != "pairs"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
