"""Per-tick perceive state of generated sessions, for scoring text queries without graphs.

    .venv/bin/python bench/query_states.py [--out tests/data/queries/states.json.gz] [--heads-out DIR] [--cache DIR]

Generated sessions go through the perceive node in-process exactly as the demo graph feeds
it (`dataset.aligned_inputs`, the node's own code, no sockets). Per tick (every
`--every`-th) it keeps what a query can be matched against — the faces' scores, the VAD,
the scene's top labels, the sound classes and the objects, each as the node last published
them — and the truth at that tick from the session's labels (subjects in view, speech,
sound). `tests/fusion/test_query_paraphrases.py` scores the paraphrase set on this file in
seconds. With `--heads-out`, the fusion head's inputs of the same ticks are saved too
(.npz per session), so `bench/queries.py` can score the head's `relevance` on the same
queries ("before").

Sessions: tuning = train seeds 0-1; held-out = seeds from 1_000_200 (held-out media,
used by nothing else).
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from sensorfuse.engine.node import Out
from sensorfuse.engine.testing import NodeHarness
from sensorfuse.models.fusion import dataset
from sensorfuse.nodes import demo
from sensorfuse.nodes.perceive import PerceiveNode
from sensorfuse.replay import sample

SESSIONS = {"tuning": (0, 1), "heldout": (1_000_200, 1_000_201, 1_000_202, 1_000_203)}
STREAMS = {"ticks": "align/ticks", "frame": "cam0/frame", "detections": "perceive/detections",
           "objects": "perceive/objects", "scene": "perceive/scene", "speech": "perceive/speech",
           "sound": "perceive/sound", "events": "perceive/events"}


def truth_at(labels: list[dict[str, Any]], t_ns: int) -> dict[str, Any]:
    """What is true at `t_ns`: subjects in view (face0, cat, motorcycle...), speech, sound kind."""
    live = [r for r in labels if r["start_ns"] <= t_ns < r["end_ns"]]
    visible = sorted({r["subject"] for r in live if r["label"].endswith("_visible") and "subject" in r
                      and r["label"] != "speaker_visible"})
    sound = next((r["sound"] for r in live if r["label"] == "sound"), None)
    return {"visible": visible, "speech": any(r["label"] == "speech" for r in live), "sound": sound}


def record_session(path: Path, every: int, cache: Path | None) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """(per-tick states, the head's inputs of the same ticks stacked per input name)."""
    h = NodeHarness(PerceiveNode, {"cache": str(cache)} if cache else {}, name="perceive", streams=STREAMS)
    node = h.node
    head_inputs: list[dict[str, np.ndarray]] = []
    run = node.head.run

    def capture(inputs: dict[str, np.ndarray]) -> dict[str, Any]:
        head_inputs.append({k: v.copy() for k, v in inputs.items()})
        return run(inputs)

    node.head.run = capture
    labels, _, _ = demo.read_truth(path)
    last: dict[str, Any] = {"scene": [], "sound": {}, "objects": []}
    states: list[dict[str, Any]] = []
    keep: list[int] = []  # tick indices (the head runs once per tick, in order)
    for port, item in dataset.aligned_inputs(path):
        outs = h.send(port, item if port == "frame" else Out.record("ticks", item, item["t_ns"]))
        ticks: dict[int, dict[str, Any]] = {}
        for m in outs:
            if m.header.stream != "perceive/events":
                ticks.setdefault(m.record["tick"], {})[m.header.stream] = m.record
        for tick in sorted(ticks):
            by_stream = ticks[tick]
            if "perceive/scene" in by_stream:
                last["scene"] = [[n, round(p, 4)] for n, p in by_stream["perceive/scene"]["labels"]]
            if "perceive/sound" in by_stream:
                last["sound"] = by_stream["perceive/sound"]["probabilities"]
            if "perceive/objects" in by_stream:
                last["objects"] = [[o["class"], round(o["score"], 4)]
                                   for o in by_stream["perceive/objects"]["objects"]]
            if tick % every:
                continue
            det = by_stream.get("perceive/detections")
            speech = by_stream.get("perceive/speech")
            if det is None and speech is None:
                continue
            t_ns = (det or speech)["t_ns"]
            keep.append(tick)
            states.append({"t_ns": t_ns, "faces": [round(f["score"], 4) for f in det["faces"]] if det else [],
                           "speech": speech["probability"] if speech else 0.0,
                           "in_speech": speech["in_speech"] if speech else False,
                           "scene": last["scene"], "sound": last["sound"], "objects": last["objects"],
                           "truth": truth_at(labels, t_ns)})
    h.finish()
    h.close()
    stacked = {k: np.concatenate([head_inputs[i][k] for i in keep]) for k in head_inputs[0]} if keep else {}
    return states, stacked


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("tests/data/queries/states.json.gz"))
    ap.add_argument("--heads-out", type=Path, default=None, help="also save the fusion head's inputs here")
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--cache", type=Path, default=None, help="model pack directory (default: the user cache)")
    ap.add_argument("--every", type=int, default=2, help="keep every n-th tick")
    args = ap.parse_args(argv)
    out: dict[str, Any] = {"duration_s": args.duration, "every": args.every, "sessions": []}
    with tempfile.TemporaryDirectory() as tmp:
        for split, seeds in SESSIONS.items():
            for seed in seeds:
                path = Path(tmp) / f"s{seed}.mcap"
                sample.generate(path, seed=seed, duration_s=args.duration)
                states, inputs = record_session(path, args.every, args.cache)
                out["sessions"].append({"seed": seed, "split": split, "ticks": states})
                if args.heads_out:
                    args.heads_out.mkdir(parents=True, exist_ok=True)
                    np.savez_compressed(args.heads_out / f"head_inputs_{seed}.npz", **inputs)
                print(f"seed {seed} ({split}): {len(states)} ticks", file=sys.stderr, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(args.out, "wt") as f:
        json.dump(out, f, separators=(",", ":"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
