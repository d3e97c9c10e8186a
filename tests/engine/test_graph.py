"""Graph planning: validation errors a user can act on, and derived endpoints."""

from __future__ import annotations

import pytest

from sensorfuse.engine.errors import UsageError
from sensorfuse.engine.graph import load_decl, plan

RELAY = {
    "name": "t",
    "nodes": {
        "producer": {"kind": "synthetic", "params": {"count": 3}, "outputs": {"out": "cam0/frame"}},
        "relay": {"kind": "relay", "inputs": {"in": {"stream": "cam0/frame", "policy": "block"}},
                  "outputs": {"out": "relay/frame"}},
        "sink": {"kind": "jsonl", "params": {"path": "x.jsonl"}, "inputs": {"in": "relay/frame"}},
    },
}


def test_plan_derives_ipc_endpoints_order_and_back_pressure() -> None:
    p = plan(load_decl(RELAY), "/tmp/R")
    assert p.order == ["producer", "relay", "sink"]
    assert p.nodes["producer"].bind == {"cam0/frame": ["ipc:///tmp/R/s/cam0.frame"]}
    assert p.nodes["relay"].inputs[0].endpoints == ["ipc:///tmp/R/s/cam0.frame"]
    assert p.nodes["producer"].nodrop["cam0/frame"] is True  # a block consumer exists
    assert p.nodes["relay"].nodrop["relay/frame"] is False
    assert p.nodes["producer"].subscribers == {"cam0/frame": 1}
    # The table default applies when neither the graph nor the class says otherwise.
    assert p.nodes["sink"].inputs[0].policy == "drop_oldest"


def test_cross_host_streams_use_derived_tcp_ports() -> None:
    nodes = {n: {**d, "host": "a"} for n, d in RELAY["nodes"].items()}
    nodes["sink"]["host"] = "b"
    g = {**RELAY, "hosts": {"a": "10.0.0.1", "b": "10.0.0.2"}, "ports_base": 50000, "nodes": nodes}
    p = plan(load_decl(g), "/tmp/R")
    port = 50000 + sorted(p.producers).index("relay/frame")
    assert p.nodes["sink"].inputs[0].endpoints == [f"tcp://10.0.0.1:{port}"]
    assert p.nodes["relay"].bind["relay/frame"] == ["ipc:///tmp/R/s/relay.frame", f"tcp://10.0.0.1:{port}"]
    # Same-host hops stay on ipc.
    assert p.nodes["relay"].inputs[0].endpoints == ["ipc:///tmp/R/s/cam0.frame"]
    g["nodes"]["relay"]["host"] = "local"  # a producer on a host with no address
    with pytest.raises(UsageError, match="host 'local' has no address"):
        plan(load_decl(g), "/tmp/R")


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"relay": {"kind": "nope"}}, "unknown node kind 'nope'"),
        ({"relay": {"kind": "relay", "inputs": {"in": "missing/stream"}, "outputs": {"out": "relay/frame"}}},
         "which no node produces"),
        ({"relay": {"kind": "relay", "inputs": {"bogus": "cam0/frame"}, "outputs": {"out": "relay/frame"}}},
         "has no input port 'bogus'"),
        ({"relay": {"kind": "relay", "inputs": {"in": "cam0/frame"}, "outputs": {"out": "cam0/frame"}}},
         "produced by both"),
        ({"relay": {"kind": "relay", "outputs": {"out": "relay/frame"}}}, "needs input 'in'"),
        ({"relay": {"kind": "relay", "inputs": {"in": {"stream": "cam0/frame", "policy": "sometimes"}},
                    "outputs": {"out": "relay/frame"}}}, "policy 'sometimes'"),
    ],
)
def test_bad_graphs_are_refused_with_a_clear_message(patch: dict, message: str) -> None:
    g = {**RELAY, "nodes": {**RELAY["nodes"], **patch}}
    with pytest.raises(UsageError, match=message):
        plan(load_decl(g), "/tmp/R")


def test_unknown_graph_keys_and_missing_files_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="unknown field"):
        load_decl({**RELAY, "nodez": {}})
    with pytest.raises(UsageError, match="no graph file"):
        load_decl("does/not/exist.yaml")
