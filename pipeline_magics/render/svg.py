"""Rendering helpers of the pipeline graph: the output format, SVG through Graphviz, escaping and wrapping."""
from __future__ import annotations

import base64
import html
import re
import shutil

from .. import config

DETAIL_WIDTH = 90


def _short(text: str, width: int = DETAIL_WIDTH) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def graph_format() -> str:
    """``auto`` (SVG if Graphviz is there, else Mermaid), or ``svg``/``mermaid``/``text`` from ``PIPELINE_GRAPH``."""
    value = (config.value("graph") or "auto").strip().lower()
    return value if value in ("auto", "svg", "mermaid", "text") else "auto"


def render_svg(dot: str) -> str | None:
    """SVG markup for DOT source via the ``graphviz`` package; None if it or the ``dot`` program is missing."""
    if shutil.which("dot") is None:
        return None
    try:
        import graphviz
    except ImportError:
        return None
    try:
        svg = graphviz.Source(dot).pipe(format="svg", encoding="utf-8")
    except Exception:  # noqa: BLE001 - a picture never breaks the output around it
        return None
    start = svg.find("<svg")
    svg = svg[start:] if start >= 0 else svg
    # scale down to the output's width instead of scrolling sideways
    return svg.replace("<svg ", '<svg style="max-width:100%;height:auto" ', 1)


#: what a graph without its picture says (no Graphviz ``dot`` program)
GRAPHVIZ_HINT = ("for a picture of the graph, install Graphviz's dot: apt-get install graphviz, "
                 "conda install -c conda-forge graphviz or brew install graphviz")


def svg_img(svg: str, alt: str) -> str:
    """The SVG as an ``<img>`` with a data: URI, ``alt`` its text: it survives the HTML sanitizer of an
    untrusted notebook (JupyterLab drops inline ``<svg>``), and keeps the text for readers without images."""
    data = base64.b64encode(svg.encode("utf-8")).decode("ascii")
    return (f"<img style='max-width:100%;height:auto' alt='{html.escape(alt, quote=True)}' "
            f"src='data:image/svg+xml;base64,{data}'/>")


def _wrap(line: str, width: int = 30, most: int = 3) -> list[str]:
    """A long label line as at most ``most`` lines, broken after spaces, commas and slashes."""
    if len(line) <= width:
        return [line]
    lines, current = [], ""
    for token in re.split(r"(?<=[/ ,])", line):
        if current and len(current) + len(token) > width:
            lines.append(current.rstrip())
            current = ""
        current += token
    lines.append(current.rstrip())
    if len(lines) > most:
        lines = lines[: most - 1] + [_short(" ".join(lines[most - 1:]), width)]
    return lines


def _dot(text: str) -> str:
    """Escapes a string for a double-quoted DOT attribute."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


_MERMAID_ESCAPES = {'"': "#quot;", "<": "#lt;", ">": "#gt;", "#": "#35;", "|": "#124;"}


def _mermaid(text: str) -> str:
    """Escapes a string for a quoted Mermaid label."""
    return "".join(_MERMAID_ESCAPES.get(ch, ch) for ch in text)

