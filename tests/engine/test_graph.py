"""Graph planning: validation errors a user can act on, and derived endpoints."""

from __future__ import annotations

import pytest

from sensorfuse.engine.errors import UsageError
from sensorfuse.engine.graph import _endpoints_clash, load_decl, parse_yaml, plan

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


def test_graph_yaml_has_yaml_1_2_booleans_and_no_duplicate_keys() -> None:
    assert parse_yaml("on: 1\noff: no\nyes: true\nb: False\n") == {"on": 1, "off": "no", "yes": True, "b": False}
    assert parse_yaml("base: &b {x: 1}\nnode: {<<: *b, x: 2}\n")["node"] == {"x": 2}  # merges may override
    with pytest.raises(UsageError, match=r"^g.yaml: duplicate key 'a' at lines 1 and 3 "):
        parse_yaml("a: 1\nb: 2\na: 3\n", "g.yaml")
    with pytest.raises(UsageError, match=r"^duplicate key 'y' on line 1 "):
        parse_yaml("x: {y: 1, y: 2}")
    with pytest.raises(UsageError) as caught:
        parse_yaml("a: [1, 2\n", "g.yaml")
    assert str(caught.value) == "g.yaml: not valid YAML at line 2, column 1: expected ',' or ']', but got '<stream end>'"


@pytest.mark.parametrize(("params", "expected"), [
    ({"rules": {"face": {"on": 0.7, "off": 0.2}, "sound": {"on": "x", "off": 0}}},
     "rules.sound.on: expected a number >= 0 and <= 1, got 'x'"),
    ({"rules": {"face": {"on": 0.5}}}, "rules.face.off: required, not given"),
    ({"rules": {"face": {"on": 0.5, "off": 0.1, "hold": 3}}}, "rules.face.hold: unknown parameter (known: on, off,"),
    ({"rules": {"nobody": {"on": 0.5, "off": 0.1}}}, "rules: unknown event rules nobody (known: face,"),
    ({"warmup_frame": [480]}, "warmup_frame: expected a list of 2 items, got [480]"),
    ({"scene_delay_ms": 400}, "scene_delay_ms: expected a scene delay below scene_period_ms (333.0), got 400"),
])
def test_param_errors_name_the_nested_field_and_value(params: dict, expected: str) -> None:
    g = {"name": "p", "external": {"inputs": {"align/ticks": "tcp://127.0.0.1:6001"}},
         "nodes": {"perceive": {"kind": "perceive", "params": params, "inputs": {"ticks": "align/ticks"}}}}
    with pytest.raises(UsageError) as caught:
        plan(load_decl(g), "/tmp/R")
    assert str(caught.value).startswith(f"graph p: node perceive: {expected}")


def test_params_are_checked_on_every_host_files_only_on_this_one() -> None:
    g = {"name": "h", "hosts": {"b": "10.0.0.2"},
         "nodes": {"cam": {"kind": "camera", "host": "b", "params": {"source": "only-on-b.mp4"},
                           "outputs": {"frame": "cam0/frame"}}}}
    plan(load_decl(g), "/tmp/R")  # the file is on host b: not looked for here
    g["nodes"]["cam"]["params"]["fps"] = 0
    with pytest.raises(UsageError, match="node cam: fps: expected a number > 0 or null, got 0"):
        plan(load_decl(g), "/tmp/R")
    g["nodes"]["cam"]["params"]["fps"] = 30
    g["nodes"]["cam"]["host"] = "local"
    with pytest.raises(UsageError, match="node cam: source: video file 'only-on-b.mp4' does not exist"):
        plan(load_decl(g), "/tmp/R")


@pytest.mark.parametrize(("a", "b", "clash"), [
    ("tcp://127.0.0.1:6000", "tcp://127.0.0.1:6000", True),
    ("tcp://127.0.0.1:6000", "tcp://localhost:6000", True),
    ("tcp://*:6000", "tcp://10.0.0.1:6000", True),
    ("tcp://10.0.0.1:6000", "tcp://10.0.0.2:6000", False),
    ("tcp://127.0.0.1:6000", "tcp://127.0.0.1:6001", False),
    ("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", True),  # the same string: refused either way
    ("ipc:///tmp/x", "ipc:///tmp/y", False),
])
def test_endpoint_clashes(a: str, b: str, clash: bool) -> None:
    assert _endpoints_clash(a, b) is clash


def test_an_expose_on_an_external_producers_endpoint_is_refused() -> None:
    g = {**RELAY, "external": {"inputs": {"ext/in": "tcp://127.0.0.1:6200"}},
         "nodes": {**RELAY["nodes"], "producer": {**RELAY["nodes"]["producer"],
                                                  "expose": {"cam0/frame": "tcp://*:6200"}}}}
    with pytest.raises(UsageError, match=r"node 'producer' \(stream 'cam0/frame'\) and an external program "
                                         r"\(stream 'ext/in'\) both bind tcp://\*:6200 and tcp://127.0.0.1:6200"):
        plan(load_decl(g), "/tmp/R")


def test_decl_fields_have_bounds() -> None:
    with pytest.raises(UsageError, match=r"^graph: nodes.relay.inputs.in.queue: expected an integer >= 1 or null, got 0$"):
        load_decl({**RELAY, "nodes": {**RELAY["nodes"], "relay": {
            "kind": "relay", "inputs": {"in": {"stream": "cam0/frame", "queue": 0}}, "outputs": {"out": "relay/frame"}}}})
    with pytest.raises(UsageError, match=r"^graph: supervisor.max_restarts: expected an integer >= 0, got -1$"):
        load_decl({**RELAY, "supervisor": {"max_restarts": -1}})
