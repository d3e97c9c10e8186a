"""`sensorfuse sound train` and `sensorfuse sound eval`.

train: log-mel frames and per-sample truth of generated train sessions (cached) → the
audio-event encoder trained (fixed seed, CPU) → ONNX export + parity check → evaluation on
held-out sessions, written into the manifest (`eval`) and to eval.md. The shipped model
lives in models/sound/data (small, so nothing needs training) and is what graphs load; a
training run writes into a user directory (`sensorfuse.models.trained_dir`:
`$XDG_DATA_HOME/sensorfuse/sound`, or `--out`), never over an earlier model without
`--force`, and says how to point a graph at it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from sensorfuse.engine import fingerprint
from sensorfuse.engine.errors import SensorfuseError
from sensorfuse.perception.sound import SoundClassifier
from sensorfuse.models import corpus, trained_dir
from sensorfuse.models.sound import DATA_DIR, MANIFEST_FILE, MODEL_NAME

#: What `sound train` writes into its output directory.
OUTPUT_FILES = (f"{MODEL_NAME}.onnx", MANIFEST_FILE, "eval.md")


def _sessions(args: argparse.Namespace, seeds: list[int]) -> Any:
    from sensorfuse.models.sound import dataset

    return dataset.build(seeds, duration_s=args.duration, work_dir=corpus.work_dir("sound"), workers=args.workers)


def _evaluate(manifest_path: Path, heldout: Any, heldout_seeds: list[int]) -> dict[str, Any]:
    from sensorfuse.models.sound import evaluate

    result = evaluate.evaluate(SoundClassifier(manifest_path), heldout)
    result["heldout_seeds"] = [heldout_seeds[0], heldout_seeds[-1]]
    return result


def _cmd_train(args: argparse.Namespace) -> int:
    import numpy as np

    from sensorfuse.models.sound import dataset, evaluate, train

    t0 = time.perf_counter()
    out_dir = trained_dir.claim_out_dir(args.out, "sound", OUTPUT_FILES, force=args.force)
    train_seeds = list(range(args.train_sessions))
    heldout_seeds = corpus.heldout_seeds(args.heldout_sessions)
    sessions = _sessions(args, train_seeds)
    heldout = _sessions(args, heldout_seeds)
    print(f"sessions: {len(sessions)} train, {len(heldout)} held-out ({time.perf_counter() - t0:.0f} s)")
    cfg = train.TrainConfig(epochs=args.epochs, seed=args.seed)
    t1 = time.perf_counter()
    model = train.train(sessions, cfg)
    example = dataset.windows(sessions[train_seeds[0]], stride_frames=7).features[:256]
    trained = {"train_seeds": [train_seeds[0], train_seeds[-1]], "duration_s": args.duration,
               "epochs": cfg.epochs, "seed": cfg.seed, "stride_frames": cfg.stride_frames, "gain_db": cfg.gain_db,
               "train_seconds": round(time.perf_counter() - t1, 1)}
    path = train.export(model, out_dir, np.ascontiguousarray(example), trained=trained)
    print(f"trained and exported {path} in {time.perf_counter() - t1:.0f} s (parity ok)")
    result = _evaluate(path, heldout, heldout_seeds)
    manifest = json.loads(path.read_text())
    manifest["eval"] = result
    path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    (out_dir / "eval.md").write_text(evaluate.markdown(result, heldout_seeds))
    print(evaluate.markdown(result, heldout_seeds))
    print(f"total {time.perf_counter() - t0:.0f} s")
    print(f"model in {path}; graphs still load the shipped one. To use this one: `perceive` param sound: {path} "
          f"(e.g. `sensorfuse run GRAPH --set perceive.sound={path}`)")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from sensorfuse.models.sound import evaluate

    path = Path(args.model)
    if not path.is_file():
        raise SensorfuseError(f"no sound model at {path} (run: sensorfuse sound train)")
    heldout_seeds = corpus.heldout_seeds(args.heldout_sessions)
    result = _evaluate(path, _sessions(args, heldout_seeds), heldout_seeds)
    print(evaluate.markdown(result, heldout_seeds))
    if args.json:
        # what produced these numbers: versions, CPU kernels, the models this process ran
        Path(args.json).write_text(json.dumps({**result, "fingerprint": fingerprint.fingerprint()}, indent=1,
                                              sort_keys=True) + "\n")
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("sound", help="train and evaluate the audio-event encoder",
                              description="train and evaluate the audio-event encoder (needs torch for train)")
    actions = p.add_subparsers(dest="sound_command", metavar="ACTION", required=True)
    common = argparse.ArgumentParser(add_help=False)
    corpus.add_session_arguments(common)
    t = actions.add_parser("train", parents=[common], help="sessions, training, export, parity, eval",
                           epilog="example:\n  sensorfuse sound train --train-sessions 30 --epochs 12",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("--train-sessions", type=int, default=corpus.TRAIN_SEEDS)
    t.add_argument("--epochs", type=int, default=12)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", metavar="DIR", help="where the model, its manifest and eval.md go (default: "
                   f"${trained_dir.DATA_HOME_ENV}/sensorfuse/sound or ~/.local/share/sensorfuse/sound)")
    t.add_argument("--force", action="store_true", help="replace a model an earlier run wrote there")
    t.set_defaults(func=_cmd_train)
    e = actions.add_parser("eval", parents=[common], help="evaluate a trained model on held-out sessions",
                           epilog="example:\n  sensorfuse sound eval --json eval.json",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    e.add_argument("--model", default=str(DATA_DIR / MANIFEST_FILE), help="the model's manifest")
    e.add_argument("--json", help="also write the results here")
    e.set_defaults(func=_cmd_eval)
