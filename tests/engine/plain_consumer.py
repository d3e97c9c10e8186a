"""A protocol v1 consumer written from docs/protocol.md alone: pyzmq, msgpack, numpy.

Usage: python plain_consumer.py ENDPOINT STREAM COUNT
Prints one JSON line per message and a final summary line. Imports nothing of sensorfuse.
"""

import json
import sys

import msgpack
import numpy as np
import zmq

endpoint, stream, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
ctx = zmq.Context()
sub = ctx.socket(zmq.SUB)
sub.connect(endpoint)
sub.setsockopt(zmq.SUBSCRIBE, stream.encode("utf-8"))
seen = 0
while seen < count:
    if not sub.poll(20000):
        sys.exit("no message within 20 s")
    frames = sub.recv_multipart(copy=False)
    topic = frames[0].bytes.decode("utf-8")
    if topic != stream:  # subscriptions match by prefix
        continue
    header = msgpack.unpackb(frames[1].bytes, raw=False)
    if header["proto"] != 1:
        sys.exit(f"unsupported protocol {header['proto']}")
    if header["kind"] == "eos":
        break
    out = {k: header[k] for k in ("stream", "kind", "seq", "t_ns", "t_pub_ns", "src", "session")}
    if header["kind"] in ("tensor", "audio"):
        arr = np.frombuffer(frames[2].buffer, dtype=np.dtype(header["dtype"]).newbyteorder("<"))
        arr = arr.reshape(header["shape"])
        out.update(shape=list(arr.shape), dtype=str(arr.dtype), layout=header.get("layout"),
                   first8=int.from_bytes(bytes(arr.reshape(-1).view(np.uint8)[:8]), "little"),
                   fill=int(arr.reshape(-1).view(np.uint8)[8]))
    elif header["kind"] == "record":
        out["record"] = msgpack.unpackb(frames[2].bytes, raw=False)
    print(json.dumps(out), flush=True)
    seen += 1
ours = sorted(m for m in sys.modules if m.split(".")[0] in ("engine", "nodes", "models", "replay"))
print(json.dumps({"summary": seen, "sensorfuse_modules": ours}), flush=True)
