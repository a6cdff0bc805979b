"""A picture of a pipeline: steps as nodes, inputs as edges, coloured by type or, after a run, by status.

:func:`build_graph` turns a :class:`~pipeline_magics.spec.plan.Plan` (and optionally a
run's :class:`~pipeline_magics.metrics.exporters.PipelineMetrics`) into a
:class:`PipelineGraph`, plain data that renders to Graphviz DOT, to Mermaid and to
text. In a notebook the graph shows itself as SVG when Graphviz's ``dot`` is
installed, else as Mermaid in Markdown (JupyterLab 4 draws it), else as text;
``PIPELINE_GRAPH=svg|mermaid|text`` picks one. Nothing here needs Spark or IPython.
"""
from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from .palette import KIND_COLOURS, NODE_STATUS_COLOURS
from .svg import (DETAIL_WIDTH, GRAPHVIZ_HINT, _dot, _mermaid, _short, _wrap, graph_format,  # noqa: F401
                  render_svg, svg_img)
from ..secrets.redaction import MASK, redact
from ..secrets.references import as_reference

if TYPE_CHECKING:
    from ..metrics.model import PipelineMetrics
    from ..spec.plan import Plan, PlannedStep


@dataclass(frozen=True)
class Node:
    """One step: what it is, where it reads or writes, and (after a run) how it went."""

    id: str
    index: int
    label: str
    type: str
    method: str
    streaming: bool
    detail: str = ""
    expectation: str | None = None
    status: str | None = None
    rows_out: int | None = None
    failed_rows: int | None = None

    @property
    def kind(self) -> str:
        """``extract``, ``transform``, ``load``, or ``expect`` for a data-quality rule."""
        return "expect" if self.expectation is not None else self.type

    @property
    def colours(self) -> tuple[str, str]:
        """(fill, border): by status once the step has one, else by kind."""
        if self.status is not None:
            return NODE_STATUS_COLOURS.get(self.status, NODE_STATUS_COLOURS["pending"])
        return KIND_COLOURS[self.kind]

    @property
    def outcome(self) -> str:
        """``done · 200 rows · 3 failing`` after a run, else empty."""
        if self.status is None:
            return ""
        parts = [self.status]
        if self.rows_out is not None:
            parts.append(f"{'wrote ' if self.type == 'load' else ''}{self.rows_out:,} rows")
        if self.failed_rows:
            parts.append(f"{self.failed_rows:,} failing")
        return " · ".join(parts)

    def lines(self) -> list[str]:
        """The label's lines: name, type.method, what it touches, the outcome."""
        second = f"{self.type}.{self.method}" + (" (streaming)" if self.streaming else "")
        third = f"expect {self.expectation}" if self.expectation is not None else self.detail
        return [x for x in (self.label, second, third, self.outcome) if x]


@dataclass(frozen=True)
class Edge:
    """Data flowing from one step's output into another step."""

    source: str
    target: str
    role: str = ""  # "right" for a join's right side, "sql" for a view a query reads


@dataclass(frozen=True)
class PipelineGraph:
    """The steps of a pipeline and how data flows between them."""

    name: str
    mode: str
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    status: str | None = None

    @property
    def title(self) -> str:
        return f"pipeline {self.name} ({self.mode})" + (f": {self.status}" if self.status else "")

    def node(self, label: str) -> Node:
        """The node of the step called ``label`` (or ``stepN``)."""
        for n in self.nodes:
            if n.label == label:
                return n
        raise KeyError(f"no step '{label}'; steps are {[n.label for n in self.nodes]}")

    def links(self) -> set[tuple[str, str]]:
        """The edges as (from step, to step) label pairs."""
        by_id = {n.id: n.label for n in self.nodes}
        return {(by_id[e.source], by_id[e.target]) for e in self.edges}

    # ------------------------------------------------------------- renderers

    @property
    def depth(self) -> int:
        """Steps on the longest path through the graph."""
        longest: dict[str, int] = {}
        for n in self.nodes:  # steps come in order, so every input is seen before its step
            longest[n.id] = 1 + max((longest[e.source] for e in self.edges if e.target == n.id), default=0)
        return max(longest.values(), default=0)

    @property
    def direction(self) -> str:
        """Left to right for short pipelines; top to bottom once a row of steps would be too wide."""
        return "LR" if self.depth <= 5 else "TB"

    def to_dot(self) -> str:
        """Graphviz DOT source."""
        out = ["digraph pipeline {",
               f'  graph [rankdir={self.direction}, label="{_dot(self.title)}", labelloc=t, '
               'fontname="Helvetica", fontsize=12];',
               '  node [fontname="Helvetica", fontsize=10, style="filled,rounded", shape=box];',
               '  edge [color="#616161", fontname="Helvetica", fontsize=9];']
        shapes = {"extract": "box", "transform": "box", "expect": "hexagon", "load": "cylinder"}
        for n in self.nodes:
            fill, border = n.colours
            style = "filled,rounded" + (",dashed" if n.streaming else "")
            label = "\\n".join(_dot(x) for line in n.lines() for x in _wrap(line))
            width = ', penwidth=2' if n.status == "failed" or n.failed_rows else ""
            width += ', margin="0.02,0.04"' if n.kind == "expect" else ""  # hexagons pad a lot by default
            out.append(f'  {n.id} [label="{label}", shape={shapes[n.kind]}, style="{style}", '
                       f'fillcolor="{fill}", color="{border}"{width}, tooltip="{_dot(n.label)}"];')
        for e in self.edges:
            out.append(f'  {e.source} -> {e.target}' + (f' [label="{_dot(e.role)}"]' if e.role else "") + ";")
        out.append("}")
        return "\n".join(out)

    def to_mermaid(self) -> str:
        """A Mermaid flowchart (JupyterLab 4 renders it in Markdown)."""
        shapes = {"extract": ('(["', '"])'), "transform": ('["', '"]'), "expect": ('{{"', '"}}'),
                  "load": ('[("', '")]')}
        out = [f"flowchart {'LR' if self.direction == 'LR' else 'TD'}"]
        for n in self.nodes:
            opening, closing = shapes[n.kind]
            text = "<br/>".join([f"<b>{_mermaid(n.lines()[0])}</b>", *(_mermaid(x) for x in n.lines()[1:])])
            out.append(f"  {n.id}{opening}{text}{closing}")
        for e in self.edges:
            out.append(f"  {e.source} -->" + (f"|{_mermaid(e.role)}|" if e.role else "") + f" {e.target}")
        for n in self.nodes:
            fill, border = n.colours
            extra = ",stroke-dasharray:4 3" if n.streaming else ""
            width = ",stroke-width:2px" if n.status == "failed" or n.failed_rows else ""
            out.append(f"  style {n.id} fill:{fill},stroke:{border}{extra}{width}")
        return "\n".join(out)

    def to_text(self) -> str:
        """A plain-text picture: one line per step with what flows into it."""
        by_id = {n.id: n for n in self.nodes}
        width = max((len(n.label) for n in self.nodes), default=4)
        method_width = max((len(f"{n.type}.{n.method}") for n in self.nodes), default=8)
        out = [f"{self.title}, {len(self.nodes)} steps"]
        for n in self.nodes:
            sources = [by_id[e.source].label + (f" ({e.role})" if e.role else "")
                       for e in self.edges if e.target == n.id]
            mark = "◆" if n.kind == "expect" else {"extract": "▶", "load": "■"}.get(n.type, "●")
            line = f"  {mark} {n.index + 1:>2}. {n.label:<{width}}  {n.type + '.' + n.method:<{method_width}}"
            if sources:
                line += "  ← " + ", ".join(sources)
            detail = f"expect {n.expectation}" if n.expectation is not None else n.detail
            if detail:
                line += f"  [{detail}]"
            if n.streaming:
                line += "  (streaming)"
            if n.outcome:
                line += f"  — {n.outcome}"
            out.append(line.rstrip())
        return "\n".join(out)

    def svg(self) -> str | None:
        """The graph as SVG through Graphviz; None without the ``dot`` program or the ``graphviz`` package."""
        return render_svg(self.to_dot())

    def mimebundle(self, details: str = "", note: str = "", fmt: str | None = None) -> dict[str, str]:
        """A display bundle: SVG (in HTML), else Mermaid (in Markdown), else text; ``details`` folded below."""
        fmt = fmt or graph_format()
        text = self.to_text() + (f"\n\n{details}" if details else "") + (f"\n{note}" if note else "")
        bundle = {"text/plain": text}
        fold = (f"<details><summary>settings</summary><pre>{html.escape(details)}</pre></details>"
                if details else "")
        svg = self.svg() if fmt in ("auto", "svg") else None
        if svg:
            bundle["text/html"] = (f"<div class='pipeline-graph'>{svg_img(svg, self.to_text())}{fold}"
                                   + (f"<i>{html.escape(note)}</i>" if note else "") + "</div>")
        elif fmt in ("auto", "mermaid"):
            md = f"```mermaid\n{self.to_mermaid()}\n```\n"
            if details:
                md += f"\n<details><summary>settings</summary>\n\n```text\n{details}\n```\n\n</details>\n"
            if note:
                md += f"\n*{note}*\n"
            bundle["text/markdown"] = md
        else:
            hint = f"<i>{html.escape(GRAPHVIZ_HINT)}</i><br/>" if fmt == "svg" else ""  # asked for a picture
            bundle["text/html"] = (f"<pre class='pipeline-graph'>{html.escape(self.to_text())}</pre>{hint}{fold}"
                                   + (f"<i>{html.escape(note)}</i>" if note else ""))
        return bundle

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return self.mimebundle()

    def __repr__(self) -> str:
        return self.to_text()


# ------------------------------------------------------------------- building


def build_graph(plan: "Plan", metrics: "PipelineMetrics | None" = None) -> PipelineGraph:
    """The graph of ``plan``; with a run's ``metrics``, nodes carry status and row counts."""
    streaming = plan.spec.mode == "streaming"
    counted = frame_rows(plan, metrics) if metrics is not None and not streaming else {}
    producers: dict[str, str] = {}  # output key -> node id of the latest step producing it
    views: dict[str, str] = {}  # named outputs, readable from sql
    nodes: list[Node] = []
    edges: list[Edge] = []
    for p in plan.steps:
        node_id = f"s{p.index + 1}"
        sm = metrics.steps[p.index] if metrics is not None and p.index < len(metrics.steps) else None
        step = p.step
        expectation = None
        if step.method == "expect":
            rules = step.config.get("rules")
            what = ", ".join(rules) if isinstance(rules, dict) else step.config.get("condition", "?")
            expectation = f"{what} → {step.config.get('onFail', 'fail')}"
        nodes.append(Node(
            node_id, p.index, p.label, step.type, step.method, streaming, _detail(p, plan.spec.name, streaming),
            _short(expectation) if expectation else None,
            sm.status if sm else None,
            (sm.rows_out if sm.rows_out is not None else counted.get(p.output)) if sm else None,
            sm.failed_rows if sm else None,
        ))
        sources = [(name, "") for name in p.inputs]
        sources += [(step.config[s], s) for s in p.method.frame_settings if isinstance(step.config.get(s), str)]
        if p.method.reads_views and isinstance(step.config.get("query"), str):
            query = step.config["query"]
            read = tables_read(query)
            sources += [(name, "sql") for name in views if name not in p.inputs and name.lower() in read]
        for name, role in sources:
            if name in producers:
                edge = Edge(producers[name], node_id, role)
                if edge not in edges:
                    edges.append(edge)
        if step.type != "load":
            producers[p.output] = node_id
            if step.name:
                views[step.name] = node_id
    return PipelineGraph(plan.spec.name, plan.spec.mode, tuple(nodes), tuple(edges),
                         metrics.status if metrics is not None else None)


def frame_rows(plan: "Plan", metrics: "PipelineMetrics") -> dict[str, int]:
    """Row counts of the run's DataFrames by output name, from the metrics only (nothing is counted again).

    A step that measured its own output counts; otherwise a load that wrote a frame
    whole (not ``display``, which shows only the first rows; not a merge, which counts
    changed rows) tells how many rows that frame had.
    """
    rows: dict[str, int] = {}
    for p in plan.steps:
        sm = metrics.steps[p.index] if p.index < len(metrics.steps) else None
        if sm is None or sm.status != "done":
            continue
        if p.step.type != "load" and sm.rows_out is not None:
            rows[p.output] = sm.rows_out
        elif p.step.type == "load" and len(p.inputs) == 1 and p.method.sink != "display":
            written = sm.rows_in if sm.rows_in is not None else (
                sm.rows_out if p.step.config.get("mode") != "merge" else None)
            if written is not None:
                rows.setdefault(p.inputs[0], written)
    return rows


_FROM = re.compile(r"\b(from|join)\b", re.I)
_CLAUSE_END = re.compile(r"\b(where|group|order|having|limit|join|union|intersect|except|on|using|"
                         r"lateral|window|cluster|distribute|sort)\b|[;()]", re.I)


def tables_read(query: str) -> set[str]:
    """The (lower-cased) names a SQL query reads after FROM or JOIN, comma lists included.

    A heuristic, for drawing only: the engine itself lets Spark resolve the views.
    """
    names: set[str] = set()
    for match in _FROM.finditer(query):
        rest = query[match.end():]
        end = _CLAUSE_END.search(rest)
        clause = rest[: end.start()] if end else rest
        items = clause.split(",") if match.group(1).lower() == "from" else clause.split(",")[:1]
        for item in items:
            words = item.split()
            if words:
                names.add(words[0].strip("`").lower())
    return names


def _ref(value: Any) -> str:
    """A config value as short text; credential references as ``vault:…`` / ``env:…``."""
    ref = as_reference(value)
    if ref is not None:
        return f"{ref.source}:{ref.path}" + (f"#{ref.key}" if ref.key else "")
    if isinstance(value, dict):
        return MASK if value else ""
    if isinstance(value, (list, tuple)):
        return ", ".join(_ref(v) for v in value)
    return "" if value is None else str(value)


_TRANSFORM_DETAIL: dict[str, Callable[[dict[str, Any]], str]] = {
    "filterRows": lambda c: _ref(c.get("condition")),
    "sql": lambda c: _ref(c.get("query")),
    "join": lambda c: f"{c.get('how', 'inner')} join on {_ref(c.get('on'))}",
    "aggregate": lambda c: f"by {_ref(c.get('groupBy'))}" if c.get("groupBy") else "one total row",
    "withColumn": lambda c: f"{_ref(c.get('column'))} = {_ref(c.get('expr'))}",
    "selectColumns": lambda c: _ref(c.get("columns")),
    "dropColumns": lambda c: "drop " + _ref(c.get("columns")),
    "dropDuplicates": lambda c: "by " + _ref(c.get("columns")) if c.get("columns") else "whole rows",
    "renameColumns": lambda c: ", ".join(f"{k} → {v}" for k, v in (c.get("mapping") or {}).items()),
    "withWatermark": lambda c: f"{_ref(c.get('column'))} late by {_ref(c.get('delay'))}",
    "window": lambda c: f"{_ref(c.get('timeColumn'))} every {_ref(c.get('duration'))}",
    "repartition": lambda c: " by ".join(x for x in (_ref(c.get("numPartitions")), _ref(c.get("columns"))) if x),
    "coalesce": lambda c: f"{_ref(c.get('numPartitions'))} partitions",
}


def _detail(p: "PlannedStep", pipeline: str, streaming: bool) -> str:
    """What a step touches: a source or sink target, or the gist of a transform (secrets masked)."""
    cfg = redact(p.step.config)
    method = p.step.method
    if p.step.type == "transform":
        describe = _TRANSFORM_DETAIL.get(method)
        return _short(describe(cfg)) if describe else ""
    sink = p.method.sink
    if sink in ("memory", "display"):
        where = cfg.get("queryName") or p.step.name or f"{pipeline}_{p.label}".replace("-", "_")
        text = f"memory table {where}" if sink == "memory" or streaming else f"notebook, {cfg.get('n', 20)} rows"
    else:
        what = next((_ref(cfg[k]) for k in ("path", "table", "topic", "subscribePattern", "query", "queryName")
                     if cfg.get(k)), "")
        where = _ref(cfg.get("url")).removeprefix("jdbc:postgresql://").split("?")[0] or (
            f"{cfg['host']}/{cfg.get('database', '')}" if cfg.get("host") else _ref(cfg.get("bootstrapServers")))
        what = what if len(what) <= DETAIL_WIDTH // 2 else "…" + what[-(DETAIL_WIDTH // 2 - 1):]  # the tail names it
        text = f"{what} @ {where}" if what and where else what or where
        if p.step.type == "load" and cfg.get("mode") and sink != "kafka":
            text += f" ({cfg['mode']})"
    trigger = cfg.get("trigger") if streaming else None
    if isinstance(trigger, dict):
        text += ", " + ("every " + str(trigger["processingTime"]) if trigger.get("processingTime")
                        else "available now" if trigger.get("availableNow") else "once")
    return _short(text)
