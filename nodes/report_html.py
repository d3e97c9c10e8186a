"""A self-contained HTML report: headings, tables and matplotlib figures as embedded PNGs.

One file with no outside references (images are ``data:image/png;base64`` URIs, the style
is inline), so it can be mailed, attached to CI or opened from any directory. Every
picture and table cell carries ``data-*`` attributes saying what it shows (kind, event
type, counts), so a test or a script can check a report without reading pixels. When the
page has loaded, a small inline script sets ``data-images-decoded`` on ``<body>`` to the
number of pictures the browser decoded (headless checks read it from the DOM).

Figures are built with matplotlib's object API (`matplotlib.figure.Figure`, Agg canvas):
no pyplot state, no display needed.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

_STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; max-width: 1100px; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
td, th { border: 1px solid #bbb; padding: 2px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
img { display: block; margin: 0.4em 0; max-width: 100%; }
.frames img { display: inline-block; margin-right: 0.5em; }
p.note { color: #555; }
"""
_DECODED_SCRIPT = """
window.addEventListener("load", function () {
  var n = 0;
  document.querySelectorAll("img").forEach(function (img) { if (img.complete && img.naturalWidth > 0) n++; });
  document.body.setAttribute("data-images-decoded", String(n));
});
"""


def png_base64(fig: Figure, *, dpi: int = 80) -> str:
    """The figure as a base64 PNG (the figure is not kept)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _attrs(data: dict[str, Any]) -> str:
    return "".join(f' data-{k}="{html.escape(str(v))}"' for k, v in data.items())


class HtmlReport:
    """Build a page top to bottom, then `write` it."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.parts: list[str] = []

    def heading(self, text: str, level: int = 2) -> None:
        self.parts.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def paragraph(self, text: str, *, note: bool = False) -> None:
        css = ' class="note"' if note else ""
        self.parts.append(f"<p{css}>{html.escape(text)}</p>")

    def table(self, header: list[str], rows: list[list[Any]], *, row_data: list[dict[str, Any]] | None = None,
              name: str = "") -> None:
        """A table; each cell is marked ``data-col`` (its column header) and each row with
        `row_data` attributes, so ``tr[data-type=x] td[data-col=events]`` finds a number."""
        out = [f'<table{_attrs({"table": name}) if name else ""}><tr>'
               + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"]
        for i, row in enumerate(rows):
            extra = _attrs(row_data[i]) if row_data else ""
            cells = "".join(f'<td data-col="{html.escape(h)}">{html.escape(str(v))}</td>' for h, v in zip(header, row))
            out.append(f"<tr{extra}>{cells}</tr>")
        self.parts.append("".join(out) + "</table>")

    def figure(self, fig: Figure, *, alt: str, data: dict[str, Any]) -> None:
        """The figure as an embedded PNG; `data` become ``data-*`` attributes (say ``kind``)."""
        self.parts.append(f'<img alt="{html.escape(alt)}"{_attrs(data)} '
                          f'src="data:image/png;base64,{png_base64(fig)}">')

    def begin_group(self, css_class: str) -> None:
        self.parts.append(f'<div class="{css_class}">')

    def end_group(self) -> None:
        self.parts.append("</div>")

    def render(self) -> str:
        body = "\n".join(self.parts)
        return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(self.title)}</title>"
                f"<style>{_STYLE}</style><script>{_DECODED_SCRIPT}</script></head>\n"
                f"<body><h1>{html.escape(self.title)}</h1>\n{body}\n</body></html>\n")

    def write(self, path: Path) -> Path:
        """Write atomically (a reader never sees half a report); returns `path`."""
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(self.render(), encoding="utf-8")
        tmp.replace(path)
        return path
