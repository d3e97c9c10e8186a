"""Python client for sensorfuse streams: subscribe to a running graph, or publish into one.

Light to import: pyzmq, msgspec and numpy, plus the engine's wire format and key handling
(no YAML, no onnxruntime, no scipy), so it fits in any process that wants a graph's
output or feeds it. docs/client.md is the guide; docs/protocol.md the wire format.

- `Subscriber(stream, run_dir=... | endpoint=...)`: iterate decoded messages, the end of
  stream last; counts of received, lost, restarts and malformed; `PublisherLost` when the
  publisher falls silent for 3 idle periods.
- `Publisher(stream, endpoint)`: frames, audio, text and records into `external.inputs`,
  with the headers and clock the engine expects; end of stream on `close()`.
"""

from __future__ import annotations

from sensorfuse.client.message import KIND_IDLE, Message, PublisherLost
from sensorfuse.client.publisher import Publisher
from sensorfuse.client.subscriber import Subscriber

__all__ = ["KIND_IDLE", "Message", "Publisher", "PublisherLost", "Subscriber"]
