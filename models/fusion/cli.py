"""`sensorfuse fusion train` and `sensorfuse fusion eval`.

train: features of generated train sessions (cached) → each strategy trained (fixed seed,
CPU) → ONNX export + parity check → evaluation on held-out sessions → the best strategy
(mean F1 of the three outputs, all modalities) becomes the default head
(`fusion_default.json`). The shipped heads live in models/fusion/data (small files, so
`make demo` needs no training) and are what graphs load; a training run writes into a user
directory (`sensorfuse.models.trained_dir`: `$XDG_DATA_HOME/sensorfuse/fusion`, or `--out`),
never over earlier heads without `--force`, and says how to point a graph at it.

eval: the heads in `--heads` (default: the shipped ones) on held-out sessions; the table
marks the strategy `head: default` loads from that directory (its `fusion_default.json`),
and the best strategy on these sessions is named beside it. It also writes an HTML report
with plots (`--report`, default ``eval-report.html`` in the fusion work directory) and
prints its path.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from sensorfuse.engine import fingerprint, progressbar
from sensorfuse.engine.errors import SensorfuseError
from sensorfuse.perception.fusion import STRATEGIES, FusionHead, manifest_path_for
from sensorfuse.models import corpus, trained_dir

DATA_DIR = Path(__file__).with_name("data")
DEFAULT_FILE = "fusion_default.json"
REPORT_FILE = "eval-report.html"  # `fusion eval`'s pictures (models/fusion/report.py), in work_dir() by default


def work_dir() -> Path:
    return corpus.work_dir("fusion")


def _features(args: argparse.Namespace, seeds: list[int]) -> Any:
    from sensorfuse.models.fusion import dataset, train

    cache = Path(args.cache) if args.cache else None
    return train.stack(dataset.build(seeds, duration_s=args.duration, cache=cache, work_dir=work_dir(),
                                     workers=args.workers))


def output_files(strategies: list[str]) -> list[str]:
    """What `fusion train --strategies ...` writes into its output directory."""
    heads = [name for s in strategies for name in (f"fusion_{s}.onnx", manifest_path_for(Path(), s).name)]
    return [*heads, DEFAULT_FILE, "eval.json", "eval.md"]


def loaded_by_default(heads: Path) -> str | None:
    """The strategy a graph with `head: default` and these heads loads (its fusion_default.json)."""
    try:
        return json.loads((heads / DEFAULT_FILE).read_text())["strategy"]
    except (OSError, ValueError, KeyError):
        return None


def _evaluate(out_dir: Path, strategies: list[str], heldout: Any) -> dict[str, Any]:
    from sensorfuse.models.fusion import evaluate

    results = {}
    for strategy in progressbar.bar(strategies, desc="evaluate", unit="head"):
        head = FusionHead(manifest_path_for(out_dir, strategy))
        results[strategy] = evaluate.evaluate_all(head.run, heldout)
    default = max(results, key=lambda s: (evaluate.mean_f1(results[s]), -strategies.index(s)))
    return {"results": results, "default": default, "mean_f1": {s: evaluate.mean_f1(r) for s, r in results.items()},
            "best_single": evaluate.best_single(results)}


def _cmd_train(args: argparse.Namespace) -> int:
    from sensorfuse.models.fusion import evaluate, train

    t0 = time.perf_counter()
    out_dir = trained_dir.claim_out_dir(args.out, "fusion", output_files(args.strategies), force=args.force)
    train_seeds = list(range(args.train_sessions))
    heldout_seeds = corpus.heldout_seeds(args.heldout_sessions)
    data = _features(args, train_seeds)
    heldout = _features(args, heldout_seeds)
    print(f"features: {data['t_ns'].shape[0]} train ticks, {heldout['t_ns'].shape[0]} held-out ticks "
          f"({time.perf_counter() - t0:.0f} s)")
    cfg = train.TrainConfig(epochs=args.epochs, seed=args.seed)
    for strategy in args.strategies:
        t1 = time.perf_counter()
        model = train.train(strategy, data, cfg)
        trained = {"train_seeds": [train_seeds[0], train_seeds[-1]], "duration_s": args.duration,
                   "epochs": cfg.epochs, "seed": cfg.seed, "ticks": int(data["t_ns"].shape[0])}
        path = train.export(model, out_dir, data, trained=trained)
        print(f"{strategy}: trained and exported {path} in {time.perf_counter() - t1:.0f} s (parity ok)")
    report = _evaluate(out_dir, list(args.strategies), heldout)
    report["heldout_seeds"] = heldout_seeds
    (out_dir / DEFAULT_FILE).write_text(json.dumps({"strategy": report["default"]}) + "\n")
    (out_dir / "eval.json").write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    (out_dir / "eval.md").write_text(evaluate.markdown(report["results"], report["default"]))
    print(evaluate.markdown(report["results"], report["default"]))
    print(f"default head: {report['default']} (mean F1 {report['mean_f1']}); total {time.perf_counter() - t0:.0f} s")
    print(f"heads in {out_dir}; graphs still load the shipped ones. To use these: `perceive` param "
          f"heads_dir: {out_dir} (e.g. `sensorfuse run GRAPH --set perceive.heads_dir={out_dir}`), or "
          f"`sensorfuse demo --head {manifest_path_for(out_dir, report['default'])}`")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from sensorfuse.models.fusion import evaluate

    heads = Path(args.heads)
    strategies = [s for s in STRATEGIES if manifest_path_for(heads, s).is_file()]
    if not strategies:
        raise SensorfuseError(f"no fusion heads in {heads} (run: sensorfuse fusion train)")
    heldout = _features(args, corpus.heldout_seeds(args.heldout_sessions))
    report = _evaluate(heads, strategies, heldout)
    # The table marks what graphs load (`head: default`), which need not be the best here.
    loaded = loaded_by_default(heads)
    print(evaluate.markdown(report["results"], loaded))
    print(f"best strategy on these sessions: {report['default']} (mean F1 {report['mean_f1']}); "
          + (f"`head: default` loads {loaded} ({heads / DEFAULT_FILE})" if loaded else
             f"no {DEFAULT_FILE} in {heads}: `head: default` cannot load from it"))
    report_path = Path(args.report) if args.report else work_dir() / REPORT_FILE
    from sensorfuse.models.fusion import report as html_report

    report_path.parent.mkdir(parents=True, exist_ok=True)
    html_report.write(report_path, report, heads, loaded or report["default"], heldout)
    print(f"HTML report with plots in {report_path}")
    if args.json:
        # what produced these numbers: versions, CPU kernels, the models this process ran
        Path(args.json).write_text(json.dumps({**report, "fingerprint": fingerprint.fingerprint()}, indent=1,
                                              sort_keys=True) + "\n")
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("fusion", help="train and evaluate the fusion head",
                              description="train and evaluate the fusion head (needs torch for train)")
    actions = p.add_subparsers(dest="fusion_command", metavar="ACTION", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--cache", help="model cache (default: $SENSORFUSE_MODEL_CACHE or ~/.cache/...)")
    corpus.add_session_arguments(common)
    t = actions.add_parser("train", parents=[common], help="features, training, export, parity, eval",
                           epilog="examples:\n  sensorfuse fusion train --train-sessions 30 --epochs 40\n"
                                  "  sensorfuse fusion train --out /tmp/heads --force",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("--train-sessions", type=int, default=corpus.TRAIN_SEEDS)
    t.add_argument("--epochs", type=int, default=40)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    t.add_argument("--out", metavar="DIR", help="where heads, eval.json and eval.md go (default: "
                   f"${trained_dir.DATA_HOME_ENV}/sensorfuse/fusion or ~/.local/share/sensorfuse/fusion)")
    t.add_argument("--force", action="store_true", help="replace heads an earlier run wrote there")
    t.set_defaults(func=_cmd_train)
    e = actions.add_parser("eval", parents=[common], help="evaluate trained heads on held-out sessions",
                           epilog="example:\n  sensorfuse fusion eval --json eval.json",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    e.add_argument("--heads", default=str(DATA_DIR), help="directory with fusion_*.manifest.json")
    e.add_argument("--json", help="also write the results here")
    e.add_argument("--report", metavar="FILE.html",
                   help=f"the HTML report with plots (default: {REPORT_FILE} in ~/.cache/sensorfuse/fusion)")
    e.set_defaults(func=_cmd_eval)
