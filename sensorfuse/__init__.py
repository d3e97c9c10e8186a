"""sensorfuse: a streaming multimodal perception engine.

Camera, microphone and text streams are captured by separate processes, stamped at
capture, carried over ZeroMQ, aligned on their timestamps, run through ONNX encoders and
a fusion head, and turned into detections and events that consumers subscribe to.

Everything installs under this one package; the repository's top-level folders map to
its subpackages (see pyproject.toml ``[tool.setuptools] package-dir``):

- ``sensorfuse.engine``  runtime: wire format, clocks, transport, node runtime, supervisor,
  graphs, alignment, inference sessions, perception, event logic, CLI (no torch);
- ``sensorfuse.nodes``   one module per node kind (camera, microphone, text, aligner,
  perceive, sinks);
- ``sensorfuse.replay``  MCAP recorder and player, sample-session generator, log tools;
- ``sensorfuse.models``  model pack builder, fusion and sound training (build time; the
  builder needs torch, the runtime does not).

The public names below are the stable surface for code that embeds the engine; they are
imported on first use, so ``import sensorfuse`` stays cheap (no numpy, no zmq).

>>> import sensorfuse
>>> sensorfuse.PROTOCOL_VERSION
1
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> module that defines it (loaded lazily by ``__getattr__``).
_PUBLIC = {
    "PROTOCOL_VERSION": "sensorfuse.engine.wire",
    "Message": "sensorfuse.engine.wire",
    "ProtocolError": "sensorfuse.engine.wire",
    "decode_message": "sensorfuse.engine.wire",
    "encode_message": "sensorfuse.engine.wire",
    "Node": "sensorfuse.engine.node",
    "InputSpec": "sensorfuse.engine.node",
    "OutputSpec": "sensorfuse.engine.node",
    "Out": "sensorfuse.engine.node",
    "NodeHarness": "sensorfuse.engine.testing",
    "StartupError": "sensorfuse.engine.errors",
    "run": "sensorfuse.engine.inproc",
    "GraphRun": "sensorfuse.engine.inproc",
}

__all__ = ["__version__", *_PUBLIC]

if TYPE_CHECKING:
    from sensorfuse.engine.errors import StartupError
    from sensorfuse.engine.inproc import GraphRun, run
    from sensorfuse.engine.node import InputSpec, Node, Out, OutputSpec
    from sensorfuse.engine.testing import NodeHarness
    from sensorfuse.engine.wire import (PROTOCOL_VERSION, Message, ProtocolError, decode_message,
                                        encode_message)


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'sensorfuse' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
