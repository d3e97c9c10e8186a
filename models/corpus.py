"""The generated corpus the project's own models train on: seeds, a per-seed cache, CLI flags.

Train sessions are seeds 0..N-1 (train media), held-out sessions seeds from
`sensorfuse.replay.sample.HELDOUT_SEED_BASE` on (unseen voices, sentences, faces, backgrounds).
What a model computes from one session (features, labels) is cached as one ``.npz`` per
seed under a directory whose name carries the key of everything that changes it; a seed
missing there is generated into a temporary file, computed and written atomically.

The fusion head's dataset (`sensorfuse.models.fusion.dataset`) and the audio-event encoder's
(`sensorfuse.models.sound.dataset`) both use it.
"""

from __future__ import annotations

import argparse
import functools
import os
import tempfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from sensorfuse.engine import manifest as mf
from sensorfuse.engine import progressbar
from sensorfuse.replay import sample

TRAIN_SEEDS = 30
HELDOUT_BASE = sample.HELDOUT_SEED_BASE
HELDOUT_SEEDS = 8
SessionArrays = Callable[[Path], dict[str, np.ndarray]]


def work_dir(name: str) -> Path:
    """Where a model's session cache lives: beside the model cache (`~/.cache/sensorfuse/<name>`)."""
    return mf.default_cache_dir().parent / name


def heldout_seeds(n: int) -> list[int]:
    return [HELDOUT_BASE + i for i in range(n)]


def add_session_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags every train/eval command shares: session length, held-out count, workers."""
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per generated session")
    parser.add_argument("--heldout-sessions", type=int, default=HELDOUT_SEEDS)
    parser.add_argument("--workers", type=int, default=2, help="processes generating sessions")


def _one(arrays_of: SessionArrays, duration_s: float, compressed: bool, seed: int, out_path: str) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / f"s{seed}.mcap"
        sample.generate(log, seed=seed, duration_s=duration_s)
        arrays = arrays_of(log)
    tmp_out = f"{out_path}.tmp.npz"
    (np.savez_compressed if compressed else np.savez)(tmp_out, **arrays)
    os.replace(tmp_out, out_path)
    return out_path


def build(seeds: list[int], key_dir: Path, arrays_of: SessionArrays, *, duration_s: float, workers: int = 2,
          compressed: bool = True, log: Any = progressbar.say) -> dict[int, dict[str, np.ndarray]]:
    """`arrays_of(session path)` of every seed, computed (in `workers` processes; `arrays_of`
    must pickle) or read from `key_dir`."""
    key_dir.mkdir(parents=True, exist_ok=True)
    todo = [s for s in seeds if not (key_dir / f"seed-{s}.npz").is_file()]
    if todo:
        log(f"computing {len(todo)} sessions ({duration_s:g} s each) in {key_dir}")
        job = functools.partial(_one, arrays_of, duration_s, compressed)
        paths = [str(key_dir / f"seed-{s}.npz") for s in todo]
        with progressbar.bar(total=len(todo), desc="sessions", unit="session") as bar:
            if workers > 1 and len(todo) > 1:
                with ProcessPoolExecutor(workers) as pool:
                    for done in pool.map(job, todo, paths):
                        log(f"  {Path(done).name}")
                        bar.update(1)
            else:
                for seed, path in zip(todo, paths):
                    log(f"  {Path(job(seed, path)).name}")
                    bar.update(1)
    out = {}
    for s in seeds:
        with np.load(key_dir / f"seed-{s}.npz") as data:
            out[s] = {k: data[k] for k in data.files}
    return out
