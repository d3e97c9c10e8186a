"""The record schemas as Markdown field tables, kept in step with docs/protocol.md.

docs/protocol.md holds one generated block per schema between ``<!-- schema:NAME -->``
and ``<!-- /schema:NAME -->``; a test checks them against the files. After editing a
schema, rewrite the blocks::

    python -m sensorfuse.engine.schemas.render docs/protocol.md
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from sensorfuse.engine.schemas import RECORD_SCHEMAS, schema_for

Row = tuple[str, str, bool, str]
TYPE_NAMES = {"integer": "int", "number": "float", "string": "str", "boolean": "bool", "null": "nil",
              "array": "array", "object": "map"}
BLOCK = re.compile(r"(<!-- schema:(?P<name>[a-z]+) -->\n)(?P<body>.*?)(<!-- /schema:(?P=name) -->)", re.S)


def _literal(value: Any) -> str:
    return f"`{value}`" if isinstance(value, str) else f"`{str(value).lower()}`"


def _range(node: dict[str, Any]) -> str:
    low, high = node.get("minimum"), node.get("maximum")
    if low is not None and high is not None:
        return f" {low}..{high}"
    return f" ≥ {low}" if low is not None else ""


def type_of(node: dict[str, Any]) -> str:
    """A short type with its constraints: ``float 0..1``, ``int ≥ 0``, ``[4 × float]``, an enum."""
    if "enum" in node:
        return " \\| ".join(_literal(v) for v in node["enum"])
    if "const" in node:
        return _literal(node["const"])
    if node.get("contentEncoding") == "base16":
        return "bin"
    if "type" not in node:
        alternatives = [type_of(alt) for alt in node.get("oneOf", ())] or ["any"]
        return " or ".join(dict.fromkeys(alternatives))
    kinds = [node["type"]] if isinstance(node["type"], str) else node["type"]
    names = []
    for kind in kinds:
        if kind == "array":
            names.append(_array_type(node))
        elif kind == "object" and isinstance(node.get("additionalProperties"), dict):
            names.append(f"map str → {type_of(node['additionalProperties'])}")
        else:
            names.append(TYPE_NAMES[kind] + (_range(node) if kind in ("integer", "number") else ""))
    return " or ".join(names)


def _array_type(node: dict[str, Any]) -> str:
    if "prefixItems" in node:
        return f"[{', '.join(type_of(p) for p in node['prefixItems'])}]"
    inner = type_of(node["items"]) if isinstance(node.get("items"), dict) else "any"
    count = node.get("minItems")
    return f"[{count} × {inner}]" if count is not None and count == node.get("maxItems") else f"[{inner}, …]"


class _Renderer:
    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root

    def resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        """A node with its local ``$ref`` (``#/$defs/...``) filled in."""
        if "$ref" not in node:
            return node
        target: Any = self.root
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        return {**target, **{k: v for k, v in node.items() if k != "$ref"}}

    def rows(self, node: dict[str, Any], prefix: str = "", note: str = "") -> list[Row]:
        out: list[Row] = []
        for key, child in node.get("properties", {}).items():
            child = self.resolve(child)
            path = prefix + key
            meaning = child.get("description", "")
            out.append((path, type_of(child), key in node.get("required", ()), f"{note}: {meaning}" if note else meaning))
            out += self.inside(child, path)
        return out

    def inside(self, node: dict[str, Any], path: str) -> list[Row]:
        """Rows for what a field contains: its keys, its items' keys, a map's values, alternatives."""
        out = self.rows(node, f"{path}.")
        items = node.get("items")
        if isinstance(items, dict):
            out += self.rows(self.resolve(items), f"{path}[].")
        values = node.get("additionalProperties")
        if isinstance(values, dict):
            out += self.rows(self.resolve(values), f"{path}.*.")
            out += self.alternatives(values, f"{path}.*.")
        return out + self.alternatives(node, f"{path}.")

    def alternatives(self, node: dict[str, Any], prefix: str) -> list[Row]:
        out: list[Row] = []
        for alt in node.get("oneOf", ()):
            alt = self.resolve(alt)
            out += self.rows(alt, prefix, alt.get("title", ""))
        return out


def _table(rows: list[Row]) -> list[str]:
    lines = ["| field | type | required | meaning |", "|---|---|---|---|"]
    for path, kind, required, meaning in rows:
        lines.append(f"| `{path}` | {kind} | {'yes' if required else 'no'} | {meaning.replace('|', chr(92) + '|')} |")
    return lines


def render(name: str) -> str:
    """The Markdown of one schema: its description and field table; a schema of variants
    (``oneOf`` at the top, e.g. status by ``event``) gets a table per variant."""
    schema = schema_for(name)
    assert schema is not None, name
    r = _Renderer(schema)
    lines = [f"Schema `{name}.schema.json`: {schema['description']}", ""]
    variants = schema.get("oneOf", ())
    if not variants:
        lines += _table(r.rows(schema))
    for variant in variants:
        lines += [f"**{variant['title']}**", "", *_table(r.rows(variant)), ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def update(text: str) -> str:
    """`text` (docs/protocol.md) with every schema block rewritten from the files."""
    return BLOCK.sub(lambda m: m.group(1) + render(m.group("name")) + m.group(4), text)


def stale(text: str) -> list[str]:
    """Schemas whose block in `text` is missing or differs from the files."""
    found = {m.group("name"): m.group("body") for m in BLOCK.finditer(text)}
    return [name for name in RECORD_SCHEMAS if found.get(name) != render(name)]


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m sensorfuse.engine.schemas.render docs/protocol.md", file=sys.stderr)
        return 2
    path = Path(argv[0])
    path.write_text(update(path.read_text(encoding="utf-8")), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
