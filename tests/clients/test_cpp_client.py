"""The C++ client (clients/cpp) under AddressSanitizer and UBSan: against the demo graph
(frames, events, end of stream), a hostile publisher (every malformed reason), a
publisher that dies (liveness), a CURVE graph, and the example in docs/protocol.md.

The compiler and headers are installed by the top Makefile (`system-deps`); when they
are missing these tests fail, they do not skip.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest
import yaml
import zmq

from sfhelpers import REPO, SENSORFUSE, free_port, read_jsonl

from sensorfuse.engine import manifest as mf
from sensorfuse.engine import wire
from sensorfuse.replay import sample

CPP = REPO / "clients" / "cpp"
DEBIAN = "g++ pkg-config libzmq3-dev cppzmq-dev libmsgpack-cxx-dev"
SANITIZE = ["-std=c++17", "-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g"]
# halt_on_error: the first report ends the process with exitcode 99, which the tests check.
SANITIZER_ENV = {"ASAN_OPTIONS": "halt_on_error=1:exitcode=99:detect_leaks=1",
                 "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1:exitcode=99"}

pytestmark = pytest.mark.timeout(90)


def toolchain_flags() -> list[str]:
    missing = [tool for tool in ("g++", "pkg-config") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"{' and '.join(missing)} not found: the C++ client tests need `apt-get install {DEBIAN}` "
                    "(the top Makefile's system-deps target installs them)")
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "libzmq"], capture_output=True, text=True)
    if flags.returncode != 0:
        pytest.fail(f"pkg-config knows no libzmq ({flags.stderr.strip()}): apt-get install {DEBIAN}")
    return flags.stdout.split()


def compile_cpp(source: Path, out: Path, extra: list[str]) -> Path:
    cmd = ["g++", *extra, "-Wall", "-Wextra", "-I", str(CPP / "include"), str(source), "-o", str(out),
           *toolchain_flags()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        pytest.fail(f"cannot build {source.name} (apt-get install {DEBIAN}?):\n{done.stderr[-3000:]}")
    assert "warning" not in done.stderr, done.stderr
    return out


@pytest.fixture(scope="module")
def consume(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """clients/cpp/examples/consume.cpp built with AddressSanitizer and UBSan."""
    return compile_cpp(CPP / "examples" / "consume.cpp", tmp_path_factory.mktemp("cpp") / "consume", SANITIZE)


def start(cmd: list[str], out_dir: Path, name: str) -> tuple[subprocess.Popen[bytes], Path, Path]:
    out, err = out_dir / f"{name}.stdout", out_dir / f"{name}.stderr"
    with open(out, "wb") as fo, open(err, "wb") as fe:
        proc = subprocess.Popen(cmd, stdout=fo, stderr=fe, env={**os.environ, **SANITIZER_ENV})
    return proc, out, err


def finish(proc: subprocess.Popen[bytes], out: Path, err: Path, timeout: float) -> tuple[int, str, str]:
    try:
        rc = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"{proc.args[0]} still running after {timeout} s: {out.read_text()[-2000:]}") from None
    stderr = err.read_text(errors="replace")
    assert "Sanitizer" not in stderr and "runtime error" not in stderr, stderr[-4000:]
    assert rc != 99, f"sanitizer exit code: {stderr[-4000:]}"
    return rc, out.read_text(), stderr


def summaries(stdout: str) -> dict[str, dict[str, str]]:
    """`summary stream=S key=value ...` lines of consume, by stream."""
    rows = [dict(tok.split("=", 1) for tok in line.split()[1:]) for line in stdout.splitlines()
            if line.startswith("summary ")]
    return {row["stream"]: row for row in rows}


def fields(line: str) -> dict[str, str]:
    return dict(tok.split("=", 1) for tok in line.split() if "=" in tok)


# --- against the demo graph ---------------------------------------------------------------


@pytest.fixture(scope="module")
def session4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("s4") / "s4.mcap"
    sample.generate(path, seed=0, duration_s=4.0)
    return path


def demo_graph(session: Path, frames_ep: str, events_ep: str) -> dict:
    graph = yaml.safe_load((REPO / "engine" / "graphs" / "demo.yaml").read_text())
    graph["nodes"]["player"]["params"]["path"] = str(session)
    # lock-step: the test wants every message (outside subscribers otherwise drop when behind)
    graph["nodes"]["player"]["expose"] = {"cam0/frame": {"endpoint": frames_ep, "lockstep": True}}
    graph["nodes"]["perceive"]["expose"] = {"perceive/events": {"endpoint": events_ep, "lockstep": True}}
    return graph


def doc_example() -> tuple[str, str]:
    """The C++ program and its compile command from docs/protocol.md."""
    text = (REPO / "docs" / "protocol.md").read_text()
    section = text[text.index("## A consumer in C++"):]
    section = section[:section.index("\n## ", 1)]
    program = re.search(r"```cpp\n(.*?)```", section, re.S).group(1)
    command = next(line for line in section.splitlines() if line.startswith("g++ "))
    return program, command


def test_consumer_receives_the_demo_graph_frames_events_and_end_of_stream(
        consume: Path, session4: Path, model_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    program, command = doc_example()
    (tmp_path / "frames.cpp").write_text(program)
    # As documented (from the repository root), with -O2 swapped for the sanitizers: both
    # together compile for 20 s of CPU.
    assert " -O2 " in command and "-I clients/cpp/include" in command, command
    command = command.replace("-I clients/cpp/include", f"-I {CPP / 'include'}").replace(" -O2 ", f" {' '.join(SANITIZE)} ")
    built = subprocess.run(command, shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, f"the compile command in docs/protocol.md fails:\n{built.stderr[-3000:]}"

    frames_ep, events_ep = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    (tmp_path / "demo.yaml").write_text(yaml.safe_dump(demo_graph(session4, frames_ep, events_ep)))
    # The consumers connect first (ZeroMQ retries until the graph binds): the player waits for
    # the graph's own consumers, which load models for seconds, so nothing is sent before.
    cpp = start([str(consume), "--timeout", "60", frames_ep, "cam0/frame", events_ep, "perceive/events"],
                tmp_path, "consume")
    doc = start([str(tmp_path / "frames"), events_ep, "perceive/events"], tmp_path, "frames")
    monkeypatch.setenv(mf.CACHE_ENV, str(model_cache))
    run = subprocess.run([*SENSORFUSE, "run", "demo.yaml"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr[-3000:]
    rc, stdout, _ = finish(*cpp, timeout=30)
    assert rc == 0, stdout[-3000:]

    graph_frames = [(r["seq"], r["t_ns"]) for r in read_jsonl(tmp_path / "demo-frames.jsonl")]
    graph_events = [(r["seq"], r["t_ns"], r["record"]["type"], r["record"]["phase"])
                    for r in read_jsonl(tmp_path / "demo-events.jsonl")]
    lines = [line.split() for line in stdout.splitlines()]
    frames = [fields(" ".join(w)) for w in lines if w[:2] == ["cam0/frame", "tensor"]]
    events = [fields(" ".join(w)) for w in lines if w[:2] == ["perceive/events", "record"]]
    assert [(int(f["seq"]), int(f["t_ns"])) for f in frames] == graph_frames, "every frame, in order"
    assert {(f["shape"], f["dtype"], f["layout"]) for f in frames} == {("[240,320,3]", "uint8", "HWC/bgr8")}
    assert graph_events, "the 4 s session has events"
    assert [(int(e["seq"]), int(e["t_ns"]), e["type"], e["phase"]) for e in events] == graph_events
    by_stream = summaries(stdout)
    for stream, received in (("cam0/frame", len(graph_frames)), ("perceive/events", len(graph_events))):
        s = by_stream[stream]
        assert (s["received"], s["lost"], s["malformed"], s["eos"], s["gone"]) == (str(received), "0", "0", "yes", "no")
    eos = [fields(" ".join(w)) for w in lines if w[1:2] == ["eos"]]
    assert sorted(int(e["seq"]) for e in eos) == sorted([len(graph_frames), len(graph_events)])

    rc, doc_out, doc_err = finish(*doc, timeout=30)
    assert rc == 0, doc_err
    doc_lines = doc_out.splitlines()
    assert [line.split()[-1] for line in doc_lines[:-1]] == [e[2] for e in graph_events]
    assert doc_lines[-1] == f"eos received={len(graph_events)} lost=0 malformed=0"


# --- a hostile publisher ------------------------------------------------------------------


def pack(**header: object) -> bytes:
    return msgpack.packb({"proto": 1, "kind": "tensor", "seq": 0, "t_ns": 1, **header})


def frame_header(seq: int, **extra: object) -> bytes:
    return pack(**{"stream": "cam0/frame", "seq": seq, "dtype": "uint8", "shape": [2, 3], **extra})


BAD = [  # (reason, frames): one message of each malformed reason in docs/protocol.md
    ("missing_frames", [b"cam0/frame"]),
    ("bad_topic", [b"cam0/frame\xff", frame_header(0), bytes(6)]),
    ("bad_header", [b"cam0/frame", msgpack.packb([1, 2, 3]), bytes(6)]),  # not a map
    ("bad_header", [b"cam0/frame", b"\x85\xa5proto", bytes(6)]),  # truncated
    ("bad_header", [b"cam0/frame", b"\xdd\xff\xff\xff\xff", bytes(6)]),  # claims a 4G-element array
    ("bad_header", [b"cam0/frame", frame_header(0) + b"\x00", bytes(6)]),  # trailing bytes
    ("bad_header", [b"cam0/frame", frame_header(-1), bytes(6)]),  # negative seq
    ("bad_header", [b"cam0/frame", frame_header(0, t_ns="soon"), bytes(6)]),
    ("bad_header", [b"cam0/frame", pack(stream="cam0/frame", seq=0), bytes(6)]),  # tensor without dtype/shape
    ("bad_version", [b"cam0/frame", frame_header(0, proto=2), bytes(6)]),
    ("bad_version", [b"cam0/frame", msgpack.packb({"proto": "1"}), bytes(6)]),
    ("topic_mismatch", [b"cam0/frame", pack(stream="cam1/frame", dtype="uint8", shape=[2, 3]), bytes(6)]),
    ("payload_frames", [b"cam0/frame", frame_header(0), bytes(3), bytes(3)]),
    ("bad_dtype", [b"cam0/frame", frame_header(0, dtype="complex64"), bytes(6)]),
    ("bad_shape", [b"cam0/frame", frame_header(0, shape=[-2, -3]), bytes(6)]),
    ("bad_shape", [b"cam0/frame", frame_header(0, shape=[1 << 40, 1 << 40]), bytes(6)]),
    ("payload_size", [b"cam0/frame", frame_header(0), bytes(5)]),
    ("bad_record", [b"cam0/frame", pack(stream="cam0/frame", kind="record"), b"\xc1"]),
    ("bad_record", [b"cam0/frame", pack(stream="cam0/frame", kind="record"), b"\x91" * 5000 + b"\xc0"]),  # 5000 deep
    ("bad_record", [b"cam0/frame", pack(stream="cam0/frame", kind="record"), b"\x81\xa1a\xa1\xff"]),  # not UTF-8
]


def good(stream: str, kind: str, data: object, seq: int, **fields: object) -> list[bytes]:
    return [bytes(f) for f in wire.encode_message(stream, kind, data, seq=seq, t_ns=1_000 + seq, **fields)]


def idle(stream: str, seq: int, idle_ms: int) -> list[bytes]:
    """An idle message (docs/protocol.md): seq = the next data message's, no payload."""
    return [stream.encode(), pack(stream=stream, kind="idle", seq=seq, meta={"idle_ms": idle_ms})]


def serve(ep: str) -> tuple[zmq.Context, zmq.Socket]:
    ctx = zmq.Context()
    pub = ctx.socket(zmq.XPUB)
    pub.linger = 1000
    pub.setsockopt(zmq.XPUB_VERBOSE, 1)
    pub.bind(ep)
    return ctx, pub


def wait_subscribed(pub: zmq.Socket, topics: int) -> None:
    for _ in range(topics):  # the consumer's subscriptions: the slow joiner is past
        assert pub.poll(20000), "the consumer did not subscribe"
        assert pub.recv()[:1] == b"\x01"


def test_malformed_messages_are_counted_by_reason_and_good_ones_still_arrive(consume: Path, tmp_path: Path) -> None:
    ep = f"tcp://127.0.0.1:{free_port()}"
    ctx, pub = serve(ep)
    try:
        proc = start([str(consume), "--timeout", "30", ep, "cam0/frame", ep, "mic0/audio"], tmp_path, "consume")
        wait_subscribed(pub, 2)
        pixels = np.arange(6, dtype=np.uint8).reshape(2, 3)
        audio = np.linspace(-1, 1, 32, dtype=np.float32).reshape(16, 2)
        messages = [
            good("cam0/frame", "tensor", pixels, 0),
            *[frames for _, frames in BAD],
            good("cam0/frame2", "tensor", pixels, 0),  # another stream sharing the prefix: not ours
            [b"cam0/frame", pack(stream="cam0/frame", kind="hologram")],  # a newer kind: skipped
            good("cam0/frame", "tensor", pixels, 1, layout="HWC/bgr8"),
            idle("cam0/frame", 3, idle_ms=5000),  # seq 2 was lost
            good("cam0/frame", "tensor", pixels, 3),
            good("cam0/frame", "eos", None, 4),
            good("mic0/audio", "audio", audio, 0, rate=16000, sample0=0),
            # headers of another length: one of the float32 payloads lands misaligned in libzmq's
            # receive buffer (the client copies it rather than read floats at an odd address)
            good("mic0/audio", "audio", audio, 1, rate=16000, sample0=16, src="x"),
            good("mic0/audio", "eos", None, 2),
        ]
        for frames in messages:
            pub.send_multipart(frames)
        rc, stdout, _ = finish(*proc, timeout=30)
    finally:
        ctx.destroy(0)
    assert rc == 0, stdout
    s = summaries(stdout)["cam0/frame"]
    want: dict[str, int] = {}
    for reason, _ in BAD:
        want[reason] = want.get(reason, 0) + 1
    assert {k.removeprefix("malformed."): int(v) for k, v in s.items() if k.startswith("malformed.")} == want
    assert (s["received"], s["lost"], s["idle"], s["unknown_kind"], s["malformed"], s["eos"]) == (
        "3", "1", "1", "1", str(len(BAD)), "yes")
    frames = [fields(line) for line in stdout.splitlines() if line.startswith("cam0/frame tensor")]
    assert [(f["seq"], f["shape"], f["first"]) for f in frames] == [("0", "[2,3]", "0"), ("1", "[2,3]", "0"),
                                                                    ("3", "[2,3]", "0")]
    sounds = [fields(line) for line in stdout.splitlines() if line.startswith("mic0/audio audio")]
    assert [(f["seq"], f["shape"], f["first"], f["rate"]) for f in sounds] == [("0", "[16,2]", "-1", "16000"),
                                                                               ("1", "[16,2]", "-1", "16000")]
    a = summaries(stdout)["mic0/audio"]
    assert (a["received"], a["lost"], a["malformed"], a["eos"]) == ("2", "0", "0", "yes")


def test_a_publisher_that_stops_without_eos_is_gone_after_three_idle_periods(consume: Path, tmp_path: Path) -> None:
    ep = f"tcp://127.0.0.1:{free_port()}"
    ctx, pub = serve(ep)
    try:
        proc = start([str(consume), "--timeout", "30", ep, "cam0/frame"], tmp_path, "consume")
        wait_subscribed(pub, 1)
        pub.send_multipart(good("cam0/frame", "bytes", b"hi", 0))
        pub.send_multipart(idle("cam0/frame", 1, idle_ms=200))
        last_sent = time.monotonic()
        rc, stdout, _ = finish(*proc, timeout=30)  # then nothing: as if the graph was killed
        took = time.monotonic() - last_sent
    finally:
        ctx.destroy(0)
    assert rc == 1, stdout
    assert "cam0/frame gone after_ms=600" in stdout.splitlines()
    assert 0.6 <= took < 10, f"gone detected {took:.2f} s after the last message (3 x 200 ms)"
    s = summaries(stdout)["cam0/frame"]
    assert (s["received"], s["idle"], s["eos"], s["gone"]) == ("1", "1", "no", "yes")


# --- CurveZMQ -----------------------------------------------------------------------------


def test_curve_keys_from_sensorfuse_keys_generate(consume: Path, graph_run, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    gen = subprocess.run([*SENSORFUSE, "keys", "generate", str(keys)], capture_output=True, text=True, timeout=60)
    assert gen.returncode == 0, gen.stderr
    port = free_port()
    ep = f"tcp://127.0.0.1:{port}"
    keyed = start([str(consume), "--keys", str(keys), "--timeout", "30", ep, "cam0/frame"], tmp_path, "keyed")
    plain = start([str(consume), "--timeout", "6", ep, "cam0/frame"], tmp_path, "plain")
    graph = {"name": "curve", "security": {"keys": str(keys)}, "nodes": {"camera": {
        "kind": "synthetic", "params": {"rate_hz": 30, "count": 60, "shape": [8, 8, 3]},
        "outputs": {"out": "cam0/frame"}, "expose": {"cam0/frame": f"tcp://0.0.0.0:{port}"}}}}
    run = graph_run(graph)
    rc, stdout, _ = finish(*keyed, timeout=40)
    assert rc == 0, stdout + run.stderr()
    s = summaries(stdout)["cam0/frame"]
    assert int(s["received"]) > 0 and (s["lost"], s["malformed"], s["eos"]) == ("0", "0", "yes")
    rc, stdout, _ = finish(*plain, timeout=20)
    assert rc == 1, "a consumer without the server key must not complete the handshake"
    assert summaries(stdout)["cam0/frame"]["received"] == "0"
    assert run.wait_exit(30) == 0, run.stderr()


def test_the_readme_fragment_compiles(tmp_path: Path) -> None:
    """clients/cpp/README.md's "Use" block, wrapped in main(), is valid C++ against the headers."""
    readme = (CPP / "README.md").read_text()
    fragment = re.search(r"## Use\n\n```cpp\n(.*?)```", readme, re.S).group(1)
    source = tmp_path / "fragment.cpp"
    source.write_text(f"#include <sensorfuse/client.hpp>\nint main() {{\n{fragment}}}\n")
    compile_cpp(source, tmp_path / "fragment", ["-std=c++17", "-fsyntax-only"])
