"""The embedding surface: a plain consumer written from docs/protocol.md, and CurveZMQ."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import zmq

from sfhelpers import free_port, wait_for

PLAIN_CONSUMER = Path(__file__).with_name("plain_consumer.py")


def producer_graph(expose: str, keys: str | None = None) -> dict:
    g = {"name": "expose", "nodes": {"camera": {
        "kind": "synthetic", "params": {"rate_hz": 30, "count": 0, "shape": [48, 64, 3]},
        "outputs": {"out": "cam0/frame"}, "expose": {"cam0/frame": expose}}}}
    if keys:
        g["security"] = {"keys": keys}
    return g


def test_plain_consumer_decodes_frames_without_sensorfuse(graph_run) -> None:
    ep = f"tcp://127.0.0.1:{free_port()}"
    run = graph_run(producer_graph(ep))
    run.wait_running()
    out = subprocess.run([sys.executable, "-I", str(PLAIN_CONSUMER), ep, "cam0/frame", "20"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(x) for x in out.stdout.splitlines()]
    msgs, summary = lines[:-1], lines[-1]
    assert summary == {"summary": 20, "sensorfuse_modules": []}
    seqs = [m["seq"] for m in msgs]
    assert seqs == list(range(seqs[0], seqs[0] + 20)), "consecutive seq"
    for m in msgs:
        assert m["shape"] == [48, 64, 3] and m["dtype"] == "uint8" and m["layout"] == "HWC/bgr8"
        assert m["first8"] == m["seq"] and m["fill"] == m["seq"] % 251  # synthetic payload: index-stamped
        assert m["src"] == "camera" and m["session"].startswith("expose-")
        assert m["t_pub_ns"] >= m["t_ns"]


def test_non_loopback_bind_without_keys_is_refused(graph_run) -> None:
    run = graph_run(producer_graph(f"tcp://0.0.0.0:{free_port()}"))
    assert run.wait_exit(30) == 1
    err = run.stderr()
    assert "refusing to bind" in err and "CurveZMQ" in err and "sensorfuse keys generate" in err
    node = run.status()["nodes"]["camera"]
    assert node["state"] == "failed" and node["restarts"] == 0, "a refused bind must not be retried"


def _receives(ep: str, *, server_key: bytes | None, client: tuple[bytes, bytes] | None, timeout_ms: int) -> bool:
    ctx = zmq.Context()
    try:
        sub = ctx.socket(zmq.SUB)
        sub.linger = 0
        if server_key is not None and client is not None:
            sub.curve_serverkey = server_key
            sub.curve_publickey, sub.curve_secretkey = client
        sub.connect(ep)
        sub.setsockopt(zmq.SUBSCRIBE, b"cam0/frame")
        return bool(sub.poll(timeout_ms))
    finally:
        ctx.destroy(0)


def test_with_keys_only_peers_holding_the_server_key_can_subscribe(graph_run, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    gen = subprocess.run([sys.executable, "-m", "sensorfuse.engine.cli", "keys", "generate", str(keys)], capture_output=True,
                         text=True, timeout=60)
    assert gen.returncode == 0, gen.stderr
    port = free_port()
    run = graph_run(producer_graph(f"tcp://0.0.0.0:{port}", keys=str(keys)))
    run.wait_running()
    import zmq.auth

    server_pub, _ = zmq.auth.load_certificate(keys / "server.key")
    client = zmq.auth.load_certificate(keys / "client.key_secret")
    ep = f"tcp://127.0.0.1:{port}"
    assert _receives(ep, server_key=server_pub, client=client, timeout_ms=10000), "keyed peer got nothing"
    assert not _receives(ep, server_key=None, client=None, timeout_ms=1500), "a plain peer received data"
    wrong_pub, _ = zmq.curve_keypair()
    assert not _receives(ep, server_key=wrong_pub, client=client, timeout_ms=1500), "a peer with the wrong key received data"
    wait_for(lambda: run.node("camera")["state"] == "running", 5, "camera still running")


def test_two_hosts_one_graph_file(graph_run, tmp_path: Path) -> None:
    """The same graph started with --host a and --host b: the stream crosses over tcp."""
    base = free_port()
    g = {"name": "split", "hosts": {"a": "127.0.0.1", "b": "127.0.0.1"}, "ports_base": base,
         "nodes": {"camera": {"kind": "synthetic", "host": "a", "params": {"rate_hz": 50, "count": 60, "shape": [8, 8, 3]},
                              "outputs": {"out": "cam0/frame"}},
                   "sink": {"kind": "jsonl", "host": "b", "params": {"path": "b.jsonl"},
                            "inputs": {"in": {"stream": "cam0/frame", "policy": "block"}}}}}
    run_a = graph_run(g, ["--host", "a"])
    run_b = graph_run(g, ["--host", "b"])
    assert run_b.wait_exit(60) == 0, run_b.stderr()
    assert run_a.wait_exit(30) == 0, run_a.stderr()
    assert set(run_a.status()["nodes"]) == {"camera"} and set(run_b.status()["nodes"]) == {"sink"}
    rows = [json.loads(x) for x in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert [r["seq"] for r in rows] == list(range(60))
