"""Column lineage read from a DataFrame's analyzed logical plan: which source columns each output column comes from.

The analyzed plan names every attribute ``name#exprId``; an expression's output keeps its
inputs' ids or makes a new one (``expr AS name#id``), so an output column is followed down
to the attributes of the plan's leaves (the relations read). Classic sessions give the plan's
text through py4j (one call), Spark Connect through the client's explain request (one RPC, no
job): both are the same text, read by the same parser here, so both give the same lineage.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from .kind import is_classic

IDENTITY, TRANSFORMATION, AGGREGATION = "IDENTITY", "TRANSFORMATION", "AGGREGATION"
_RANK = {IDENTITY: 0, TRANSFORMATION: 1, AGGREGATION: 2}
#: plans wider than Spark's default (25 fields) would print "... N more fields"
_MAX_FIELDS = "spark.sql.debug.maxToStringFields"
_ID = re.compile(r"#(\d+)L?\b")
_ATTR = re.compile(r"^(.+)#(\d+)L?$")
_NODE = re.compile(r"^([ :|+\-]*)[~'!]?(\w+)(.*)$")
_LEAF_ATTR = re.compile(r"([^\s,\[\]()]+)#(\d+)L?")
_HASH = re.compile(r"@[0-9a-f]{4,}|#\d+L?")
#: nodes whose condition or keys decide which rows reach the output (OpenLineage's INDIRECT subtypes)
_INDIRECT = {"Filter": "FILTER", "Join": "JOIN", "Sort": "SORT"}


@dataclass(frozen=True)
class Leaf:
    """A relation the plan reads: its text without ids (``signature``), its attributes' ids and names."""

    signature: str
    ids: tuple[int, ...]
    names: tuple[str, ...]


@dataclass
class Node:
    name: str
    args: str
    children: list["Node"] = field(default_factory=list)


@dataclass
class PlanColumns:
    """One plan's columns: per output column, the (leaf, source column) pairs it derives from and how."""

    leaves: list[Leaf]
    #: output column name -> {(leaf index, source column): IDENTITY|TRANSFORMATION|AGGREGATION}
    columns: dict[str, dict[tuple[int, str], str]]
    #: (leaf index, source column) -> subtypes (FILTER, JOIN, GROUP_BY, SORT) affecting every output row
    indirect: dict[tuple[int, str], set[str]]


def plan_text(df: Any) -> str:
    """The analyzed logical plan of ``df`` as text (classic: py4j; Connect: the explain request)."""
    if is_classic(df.sparkSession):
        return df._jdf.queryExecution().analyzed().toString()
    text = df._explain_string(extended=True)
    start = text.find("== Analyzed Logical Plan ==")
    end = text.find("== Optimized Logical Plan ==")
    body = text[start:end if end > 0 else None].splitlines()[2:]  # the header, then the schema line
    return "\n".join(body)


def read_plans(spark: Any, frames: Iterable[Any]) -> list[PlanColumns | None]:
    """The column lineage of each frame (None for one whose plan cannot be read), reading all fields of wide plans."""
    previous = spark.conf.get(_MAX_FIELDS, None)
    spark.conf.set(_MAX_FIELDS, "100000")
    try:
        out: list[PlanColumns | None] = []
        for df in frames:
            try:
                out.append(columns_of(parse(plan_text(df)), list(df.columns)))
            except Exception:  # noqa: BLE001 - a plan not read leaves that output without column lineage
                out.append(None)
        return out
    finally:
        spark.conf.unset(_MAX_FIELDS) if previous is None else spark.conf.set(_MAX_FIELDS, previous)


def parse(text: str) -> Node:
    """The plan's tree from its text (one node a line, children indented by three characters)."""
    root: Node | None = None
    stack: list[tuple[int, Node]] = []
    for line in text.splitlines():
        m = _NODE.match(line)
        if not m or not line.strip():
            continue
        depth = len(m.group(1)) // 3
        node = Node(m.group(2), m.group(3).strip())
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if stack:
            stack[-1][1].children.append(node)
        elif root is None:
            root = node
        stack.append((depth, node))
    if root is None:
        raise ValueError("empty plan")
    return root


def split_top(text: str, sep: str = ",") -> list[str]:
    """``text`` split at ``sep`` outside brackets and quotes."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"`":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return [p for p in parts if p]


def groups(args: str) -> list[str]:
    """The contents of the top-level ``[...]`` lists of a node's arguments."""
    out, depth, start = [], 0, 0
    for i, ch in enumerate(args):
        if ch == "[":
            if depth == 0:
                start = i + 1
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth == 0:
                out.append(args[start:i])
    return out


def _element(text: str) -> tuple[int, str, list[int], bool]:
    """(output id, name, the ids it reads, whether it is the bare attribute) of ``expr AS name#id`` or ``name#id``."""
    expr, sep, target = text.rpartition(" AS ")
    m = _ATTR.match(target if sep else text)
    if m is None:
        raise ValueError(f"not a named expression: {text}")
    refs = [int(i) for i in _ID.findall(expr)] if sep else [int(m.group(2))]
    return int(m.group(2)), m.group(1), refs, not sep or _ATTR.match(expr) is not None


class _Graph:
    """Edges from each attribute id to the ids it is computed from, and the leaves' attributes."""

    def __init__(self) -> None:
        self.edges: dict[int, list[tuple[int, str]]] = {}
        self.leaf_of: dict[int, tuple[int, str]] = {}
        self.leaves: list[Leaf] = []
        self.indirect: list[tuple[int, str]] = []

    def outputs(self, node: Node) -> list[tuple[int, str]]:
        """(id, name) of what ``node`` outputs, recording on the way how each id is made."""
        kids = [self.outputs(c) for c in node.children]
        lists = groups(node.args)
        if not node.children:
            attrs = list(dict.fromkeys((int(m.group(2)), m.group(1)) for m in _LEAF_ATTR.finditer(node.args)))
            index = len(self.leaves)
            self.leaves.append(Leaf(_HASH.sub("", f"{node.name} {node.args}"), tuple(i for i, _ in attrs),
                                    tuple(n for _, n in attrs)))
            for i, name in attrs:
                self.leaf_of.setdefault(i, (index, name))
            return attrs
        if node.name in ("Project", "Aggregate", "Window") and lists:
            keys = set()
            if node.name == "Aggregate":
                keys = {i for e in split_top(lists[0]) for i in (int(x) for x in _ID.findall(e))}
                self.indirect += [(i, "GROUP_BY") for i in keys]
            made = []
            for element in split_top(lists[1] if node.name == "Aggregate" and len(lists) > 1 else lists[0]):
                out, name, refs, bare = _element(element)
                kind = IDENTITY if bare else TRANSFORMATION
                if node.name == "Aggregate" and not (bare and set(refs) <= keys):
                    kind = AGGREGATION
                if out not in refs:
                    self.edges.setdefault(out, []).extend((r, kind) for r in refs)
                made.append((out, name))
            return (kids[0] if node.name == "Window" else []) + made
        if node.name == "Union":
            for other in kids[1:]:
                for (first, _), (theirs, _) in zip(kids[0], other):
                    self.edges.setdefault(first, []).append((theirs, IDENTITY))
            return kids[0]
        if node.name == "Generate" and lists:
            refs = [int(i) for i in _ID.findall(split_top(node.args)[0])]
            made = [(int(m.group(2)), m.group(1)) for e in split_top(lists[-1]) if (m := _ATTR.match(e))]
            for out, _ in made:
                self.edges.setdefault(out, []).extend((r, TRANSFORMATION) for r in refs)
            return kids[0] + made
        if node.name in _INDIRECT:
            self.indirect += [(int(i), _INDIRECT[node.name]) for i in _ID.findall(node.args)]
        if node.name == "Join" and ("LeftSemi" in node.args or "LeftAnti" in node.args):
            return kids[0]
        return [a for k in kids for a in k]

    def sources(self, i: int, seen: frozenset[int] = frozenset()) -> dict[tuple[int, str], str]:
        """The leaf columns ``i`` derives from, each with the strongest kind of change on the way."""
        out: dict[tuple[int, str], str] = {}
        if i in self.leaf_of:
            out[self.leaf_of[i]] = IDENTITY
        for src, kind in self.edges.get(i, ()):
            if src in seen:
                continue
            for key, deeper in self.sources(src, seen | {i}).items():
                strongest = max(kind, deeper, key=_RANK.__getitem__)
                if key not in out or _RANK[strongest] > _RANK[out[key]]:
                    out[key] = strongest
        return out


def columns_of(root: Node, names: list[str]) -> PlanColumns:
    """The lineage of each output column of the plan ``root`` (``names``: the DataFrame's columns, in order)."""
    graph = _Graph()
    outputs = graph.outputs(root)
    columns = {name: graph.sources(i) for name, (i, _) in zip(names, outputs)}
    indirect: dict[tuple[int, str], set[str]] = {}
    for i, subtype in graph.indirect:
        for key in graph.sources(i):
            indirect.setdefault(key, set()).add(subtype)
    return PlanColumns(graph.leaves, columns, indirect)
