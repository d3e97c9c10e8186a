"""docs/client.md's snippets run as the page says: `sensorfuse run examples/client.yaml`,
then its subscriber, then its publisher (on a free port instead of 5700)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from sfhelpers import REPO, SENSORFUSE, free_port, read_jsonl, wait_for

PORT = "5700"


def snippets() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (REPO / "docs" / "client.md").read_text(), flags=re.DOTALL)


def test_the_subscriber_and_publisher_snippets_run_against_the_example_graph(tmp_path: Path) -> None:
    subscribe, publish = snippets()
    assert 'Subscriber("relay/frame")' in subscribe and f"tcp://127.0.0.1:{PORT}" in publish
    port = str(free_port())
    graph = tmp_path / "client.yaml"
    graph.write_text((REPO / "examples" / "client.yaml").read_text().replace(PORT, port))
    runs = Path(tempfile.mkdtemp(prefix="sf", dir="/tmp"))  # short: ipc:// paths are limited
    env = {**os.environ, "SENSORFUSE_RUNS": str(runs)}  # "the newest run" is this one
    procs: list[subprocess.Popen[str]] = []

    def start(*cmd: str) -> subprocess.Popen[str]:
        procs.append(subprocess.Popen(cmd, cwd=tmp_path, env=env, text=True, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, start_new_session=True))
        return procs[-1]

    try:
        run = start(*SENSORFUSE, "run", str(graph))
        wait_for(lambda: (runs / "current" / "plan.json").exists() or run.poll() is not None, 30, "the run to start")
        assert run.poll() is None, run.communicate()[1]
        sub = start(sys.executable, "-c", subscribe)
        pub = start(sys.executable, "-c", publish.replace(PORT, port))
        pub_out, pub_err = pub.communicate(timeout=60)
        assert pub.returncode == 0, pub_err
        sub_out, sub_err = sub.communicate(timeout=30)
        assert sub.returncode == 0, sub_err
        _, run_err = run.communicate(timeout=30)
        assert run.returncode == 0, run_err
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        shutil.rmtree(runs, ignore_errors=True)
    lines = sub_out.splitlines()
    *frames, last = lines
    assert re.fullmatch(rf"end of stream after {len(frames)} messages, lost 0", last), sub_out
    assert len(frames) >= 30, "the subscriber starts well within the publisher's 3 s"
    assert all(re.fullmatch(r"\d+ \d+ \(120, 160, 3\) uint8", f) for f in frames), frames[:3]
    assert [int(f.split()[0]) for f in frames] == list(range(90 - len(frames), 90)), "every frame since it joined"
    assert [r["seq"] for r in read_jsonl(tmp_path / "frames.jsonl")] == list(range(90))
