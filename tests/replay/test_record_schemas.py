"""A log's record channels carry the stream's JSON Schema in their metadata; other
channels do not, and replay still reads every message back byte for byte."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from mcap.reader import make_reader

from sensorfuse.engine import schemas, wire
from sensorfuse.replay.mcap_io import RECORD_SCHEMA_KEY, LogReader, LogWriter


def frames(stream: str, kind: str, payload: object, seq: int, **fields: object) -> list[bytes]:
    return [bytes(f) for f in wire.encode_message(stream, kind, payload, seq=seq, t_ns=seq + 1, src="t", **fields)]


def test_record_channels_carry_their_json_schema(tmp_path: Path) -> None:
    path = tmp_path / "s.mcap"
    speech = {"tick": 0, "t_ns": 1, "probability": 0.5, "in_speech": False}
    status = {"event": "recorder_error", "error": "OSError: disk full", "files": ["a.mcap"]}
    with open(path, "wb") as f:
        log = LogWriter(f)
        sent = [frames("perceive/speech", wire.KIND_RECORD, speech, 0), frames("rec/status", wire.KIND_RECORD, status, 0),
                frames("cam0/frame", wire.KIND_TENSOR, np.zeros((2, 2, 3), np.uint8), 0, layout="HWC/bgr8"),
                frames("perceive/speech", wire.KIND_EOS, None, 1)]
        for message in sent:
            log.write_frames(message)
        log.finish()
    with open(path, "rb") as f:
        summary = make_reader(f).get_summary()
    assert summary is not None
    meta = {(c.topic, c.metadata["kind"]): c.metadata.get(RECORD_SCHEMA_KEY) for c in summary.channels.values()}
    assert meta == {("perceive/speech", "record"): schemas.schema_text("speech"),
                    ("rec/status", "record"): schemas.schema_text("status"),
                    ("cam0/frame", "tensor"): None}
    with LogReader(path) as reader:
        got = [(m.topic, m.decode()[1:]) for m in reader.iter_messages()]
    assert got == [(m[0].decode(), (m[1], m[2] if len(m) > 2 else b"")) for m in sent]
