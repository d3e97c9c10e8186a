"""A recorded log read back with the `mcap` library alone (plus its protobuf decoder):
no sensorfuse code is used on the reading side."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import msgspec
from mcap.reader import make_reader
from mcap.stream_reader import StreamReader
from mcap_protobuf.decoder import DecoderFactory

from tests.replay.replay_helpers import payload_bytes


def test_standard_reader_sees_streams_counts_payloads_and_crcs(recorded: Path, session_msgs: list) -> None:
    published = collections.defaultdict(list)
    for m in session_msgs:
        published[m.stream].append(m)

    got = collections.defaultdict(list)
    with open(recorded, "rb") as f:
        reader = make_reader(f, validate_crcs=True, decoder_factories=[DecoderFactory()])
        summary = reader.get_summary()
        assert summary is not None and summary.statistics is not None
        assert summary.statistics.message_count == len(session_msgs)
        assert summary.statistics.chunk_count > 1
        assert all(ci.compression == "zstd" for ci in summary.chunk_indexes)
        for schema, channel, message, decoded in reader.iter_decoded_messages(log_time_order=False):
            got[channel.topic].append((schema.name, message, decoded))

    assert set(got) == set(published)
    for topic, items in got.items():
        assert len(items) == len(published[topic]), topic
        for (schema, message, decoded), original in zip(items, published[topic]):
            h = original.header
            assert (decoded.sensorfuse.seq, decoded.sensorfuse.t_ns) == (h.seq, h.t_ns)
            assert (decoded.sensorfuse.src, decoded.sensorfuse.session) == (h.src, h.session)
            assert message.log_time == h.t_ns and message.sequence == h.seq
            raw = payload_bytes(original)
            if schema == "foxglove.RawImage":
                assert decoded.data == raw
                assert (decoded.height, decoded.width, decoded.encoding) == (h.shape[0], h.shape[1], "bgr8")
            elif schema == "foxglove.RawAudio":
                assert decoded.sensorfuse_payload == raw
                assert decoded.sample_rate == h.rate and decoded.format == "pcm-s16"
                assert len(decoded.data) == 2 * h.shape[0] * h.shape[1]
            elif schema == "foxglove.Log" and topic == "perceive/events":  # a line per event, exact record beside
                assert decoded.sensorfuse_payload == raw and decoded.name == "speaking"
                assert json.loads(decoded.sensorfuse_json)["nested"] == {"seqs": [1, 2, 3]}
            elif schema == "foxglove.Log":
                assert decoded.message.encode("utf-8") == raw
            elif schema == "foxglove.ImageAnnotations":
                assert decoded.sensorfuse_payload == raw
                assert len(decoded.points) == 1 and len(decoded.points[0].points) == 4
                assert decoded.points[0].points[0].x == msgspec.msgpack.decode(raw)["faces"][0]["box"][0]
            else:
                assert schema == "sensorfuse.Message"
                assert decoded.payload == raw

    # Sequential read with every CRC checked (chunks and summary), to the end magic.
    with open(recorded, "rb") as f:
        records = list(StreamReader(f, validate_crcs=True).records)
    assert type(records[-1]).__name__ == "Footer"
