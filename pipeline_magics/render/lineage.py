"""A picture of column lineage: input columns and output columns as nodes, derivations as edges.

Drawn by :class:`~pipeline_magics.render.graph.PipelineGraph` (SVG, Mermaid, DOT or text), as the
step graphs are: an input column is drawn as an extract, an output column as a load, each edge
labelled with how the column is derived (identity, transformation, aggregation).
"""
from __future__ import annotations

import posixpath
from typing import Any, Mapping

from .graph import Edge, Node, PipelineGraph

#: (namespace, name) of a dataset
Dataset = tuple[str, str]


def lineage_graph(pipeline: str, columns: Mapping[Dataset, Mapping[str, list[tuple[Dataset, str, str]]]],
                  column: str | None = None, mode: str = "batch") -> PipelineGraph:
    """The graph of ``columns`` (per output dataset, per column, its sources); ``column``: only that output column."""
    nodes: dict[tuple[str, Dataset, str], Node] = {}
    edges: list[Edge] = []

    def node(kind: str, dataset: Dataset, name: str) -> Node:
        key = (kind, dataset, name)
        if key not in nodes:
            nodes[key] = Node(f"c{len(nodes)}", len(nodes), name, kind, _short(dataset), mode == "streaming")
        return nodes[key]

    for dataset, fields in columns.items():
        for name, sources in fields.items():
            if column is not None and name != column:
                continue
            target = node("load", dataset, name)
            for source, field, how in sources:
                edges.append(Edge(node("extract", source, field).id, target.id, how.lower()))
    ordered = sorted(nodes.values(), key=lambda n: (n.type != "extract", n.index))
    title = f"{pipeline}: column lineage" + (f" of {column}" if column else "")
    return PipelineGraph(title, mode, tuple(ordered), tuple(dict.fromkeys(edges)))


def _short(dataset: Dataset) -> str:
    """A dataset's name as a node shows it: its last path part, or its topic or table."""
    namespace, name = dataset
    return posixpath.basename(name.rstrip("/")) or name if namespace == "file" or "/" in name else name


def as_rows(columns: Mapping[Dataset, Mapping[str, list[tuple[Dataset, str, str]]]]) -> list[dict[str, Any]]:
    """The lineage as rows (output dataset, column, input dataset, input column, how) for tables and tests."""
    return [{"output": f"{d[0]}:{d[1]}", "column": c, "input": f"{s[0]}:{s[1]}", "input_column": f, "how": how}
            for d, fields in columns.items() for c, sources in fields.items() for s, f, how in sources]
