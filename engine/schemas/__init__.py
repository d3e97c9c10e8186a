"""JSON Schemas of the record streams, shipped with the package: one file per stream kind.

Like the stream table (`sensorfuse.engine.streams`), a concrete stream name selects its
schema by its last path component: ``perceive/events`` → ``events.schema.json``,
``cam0/status`` and ``recorder/status`` → ``status.schema.json``. The files are the
single source: docs/protocol.md renders its record tables from them
(`sensorfuse.engine.schemas.render`) and the recorder embeds them in MCAP channels.

A schema describes a record as JSON (the form the jsonl sink writes and `as_json` gives):
a msgpack ``bin`` value is its lowercase hex string (``"contentEncoding": "base16"``).
Validate with any JSON Schema (2020-12) validator::

    import jsonschema
    from sensorfuse.engine.schemas import as_json, schema_for
    jsonschema.validate(as_json(record), schema_for("perceive/events"))
"""

from __future__ import annotations

import functools
import importlib.resources
import json
from typing import Any

#: stream kinds (last path component) with a record schema, in the order docs/protocol.md lists them
RECORD_SCHEMAS = ("events", "scores", "detections", "objects", "speech", "transcripts", "sound", "scene", "ticks", "status",
                  "metrics")
SUFFIX = ".schema.json"


@functools.cache
def schema_text(name: str) -> str:
    """The schema file of a stream kind, exactly as shipped (KeyError for an unknown kind)."""
    if name not in RECORD_SCHEMAS:
        raise KeyError(f"no record schema {name!r} (known: {', '.join(RECORD_SCHEMAS)})")
    return (importlib.resources.files(__name__) / f"{name}{SUFFIX}").read_text(encoding="utf-8")


def schema_name(stream: str) -> str | None:
    """The record schema a concrete stream name selects, or None."""
    name = stream.rsplit("/", 1)[-1]
    return name if name in RECORD_SCHEMAS else None


def schema_for(stream: str) -> dict[str, Any] | None:
    """The JSON Schema (a fresh dict) of a record stream, by its last path component; None
    for streams that carry no records of a known shape."""
    name = schema_name(stream)
    return json.loads(schema_text(name)) if name is not None else None


def as_json(value: Any) -> Any:
    """A decoded record in the JSON form the schemas describe: bytes as lowercase hex,
    tuples as lists (what the jsonl sink writes)."""
    if isinstance(value, dict):
        return {k: as_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [as_json(v) for v in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    return value
