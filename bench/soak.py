"""Soak: the demo graph replaying its session in a loop for minutes, every process's
memory and file descriptors sampled per interval.

A leak shows as RSS growing after warm-up; the table gives each process's RSS at the
first sample after warm-up and at the end, the growth rate (least-squares slope over the
post-warm-up samples, MB per hour), fds min/max, and the perceive events' publish →
receipt p99 from the status. The target (issue 16): every process under 5 MB/h, fds flat.

    .venv/bin/python bench/soak.py [--minutes 10] [--interval 20] [--warmup 60] [--cache DIR] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import yaml

from _common import machine_description, markdown_table
from sensorfuse.engine import fingerprint
from sensorfuse.engine import manifest as mf
from sensorfuse.nodes import demo

RUNTIME = "sensorfuse.engine.runtime"


def node_processes(supervisor: psutil.Process) -> dict[str, psutil.Process]:
    out = {"supervisor": supervisor}
    for child in supervisor.children():
        try:
            argv = child.cmdline()
        except psutil.Error:
            continue
        if RUNTIME in argv:
            out[argv[argv.index(RUNTIME) + 2]] = child
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--interval", type=float, default=20.0, help="seconds between samples")
    ap.add_argument("--warmup", type=float, default=60.0, help="seconds before growth is measured")
    ap.add_argument("--cache", type=Path, default=None, help="model pack (default: the user cache)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    session = demo.ensure_session()
    cache = (args.cache or mf.default_cache_dir()).absolute()
    samples: dict[str, list[tuple[float, float, int]]] = {}
    latency: list[float] = []
    with tempfile.TemporaryDirectory(prefix="sf-soak") as tmp:
        work = Path(tmp)
        decl = demo.demo_graph(session, work, rate=1.0, cache=cache, quiet=True)
        decl["nodes"]["player"]["params"]["loop"] = True
        decl["nodes"]["recorder"]["params"]["split_mb"] = 8  # rotate: bounded open-file size over the soak
        (work / "graph.yaml").write_text(yaml.safe_dump(decl))
        run_dir = work / "run"
        proc = subprocess.Popen([sys.executable, "-m", "sensorfuse.engine.cli", "run", str(work / "graph.yaml"),
                                 "--run-dir", str(run_dir), "--duration", str(args.minutes * 60)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        supervisor = psutil.Process(proc.pid)
        t0 = time.monotonic()
        while proc.poll() is None:
            time.sleep(args.interval)
            if proc.poll() is not None:
                break  # ended during the sleep: its processes are gone or zombies
            now = time.monotonic() - t0
            for name, p in node_processes(supervisor).items():
                try:
                    samples.setdefault(name, []).append((now, p.memory_info().rss / 2**20, p.num_fds()))
                except psutil.Error:
                    continue
            try:
                status = json.loads((run_dir / "status.json").read_text())
                p99 = status["nodes"]["events"]["streams"]["perceive/events"].get("transit_p99_ms")
                if p99 is not None:
                    latency.append(float(p99))
            except (OSError, ValueError, KeyError):
                pass
        stderr = proc.stderr.read() if proc.stderr else ""
        graph_fp = json.loads((run_dir / "fingerprint.json").read_text()) if (run_dir / "fingerprint.json").is_file() \
            else fingerprint.fingerprint()
    rows, results = [], {}
    for name, series in sorted(samples.items()):
        after = [(t, rss, fds) for t, rss, fds in series if t >= args.warmup]
        if len(after) < 2:
            continue
        t = np.array([s[0] for s in after]) / 3600.0
        rss = np.array([s[1] for s in after])
        slope = float(np.polyfit(t, rss, 1)[0])
        fds = [s[2] for s in after]
        results[name] = {"rss_start_mb": round(rss[0], 1), "rss_end_mb": round(rss[-1], 1),
                         "growth_mb_per_h": round(slope, 2), "fds_min": min(fds), "fds_max": max(fds)}
        rows.append([name, f"{rss[0]:.1f}", f"{rss[-1]:.1f}", f"{slope:+.2f}", f"{min(fds)}–{max(fds)}",
                     "yes" if slope < 5.0 and max(fds) - min(fds) <= 2 else "NO"])
    print(machine_description())
    print(f"soak: {args.minutes:g} min of the demo graph at rate 1 in a loop, samples every {args.interval:g} s, "
          f"growth after {args.warmup:g} s; exit {proc.returncode}\n")
    print(markdown_table(["process", "RSS MB (after warm-up)", "RSS MB (end)", "growth MB/h", "fds",
                          "< 5 MB/h, fds flat"], rows))
    if latency:
        print(f"\nperceive/events publish → receipt p99 over the run: min {min(latency):.1f} ms, "
              f"max {max(latency):.1f} ms")
    if proc.returncode != 0:
        print(stderr[-2000:], file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps({"results": results, "latency_p99_ms": latency,
                                         "fingerprint": graph_fp}, indent=1))
    return 0 if proc.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
