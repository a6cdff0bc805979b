"""Rows for the steps nothing else counts, read from the plans Spark executed for the loads.

Spark counts the output rows of its scans, filters, aggregates and joins anyway (the SQL
metrics of the UI). A load's executed plan is walked up from the scan of each extract it
reads, along the steps between that extract and the load: a Filter node's rows are a
``filterRows`` step's, the last aggregate node's an ``aggregate`` step's, a join node's a
``join`` step's; a projection (``counts="same"``) keeps its input's rows when the walk passes
it. Where Spark's optimizer moved a step's work (a filter pushed into the read, two filters
made one), the step gets the reason instead of a number. Pure logic: the plans come from
:mod:`..spark.sql_plans`.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Iterable

from ..spark.sql_plans import ExecutedPlan, PlanNode

#: operators that pass their input's rows on unchanged (or are the write around them)
_PASSING = ("Project", "Exchange", "AQEShuffleRead", "Sort", "ColumnarToRow", "RowToColumnar", "InputAdapter",
            "ShuffleQueryStage", "BroadcastQueryStage", "BroadcastExchange", "ReusedExchange", "TableCacheQueryStage",
            "InMemoryTableScan", "InMemoryRelation", "WholeStageCodegen", "AdaptiveSparkPlan",
            "WriteFiles", "Execute", "AppendData", "OverwriteByExpression", "DeltaInvariantChecker", "Coalesce")

SOURCE = "SQL metrics of the executed plan ({node})"
SAME = "as many rows as its input (it changes columns only)"
READ = ("SQL metrics of the executed plan ({node}): the rows it read; its pushed filters let it skip the files and "
        "row groups that hold none of the rows they keep")
PUSHED = "Spark read the source with later filters pushed into the read, so it counted only the rows that passed them"
#: scans whose pushed filters only skip whole files, row groups or stripes: what they output is what they read
_COLUMNAR = ("Scan parquet", "Scan orc")
CACHED = "Spark read it to fill a cache, in a job that wrote nothing: the loads' plans only reuse that cache"
COMBINED = "Spark's optimizer made this filter and step {other}'s one filter; its rows are counted there"


@dataclass(frozen=True)
class StepShape:
    """What the walk needs of a step: how Spark's plan counts its rows, its inputs, what its scan names."""

    index: int
    label: str
    #: "scan" (an extract), "filter", "aggregate", "join", "same" (a projection), or None (not counted)
    counts: str | None
    inputs: tuple[int, ...] = ()
    #: extracts: the path or table its scan's description names
    source: str | None = None
    #: steps counted by an Observation: its name, which the plan's ``CollectMetrics`` node shows
    marker: str | None = None


def _kind(node: PlanNode) -> str:
    name = node.name
    if name.startswith(("Scan", "FileScan", "BatchScan")):
        return "scan"
    if name == "Filter":
        return "filter"
    if name.endswith("Aggregate"):
        return "aggregate"
    if name == "CollectMetrics":
        return "observe"
    if "Join" in name or name == "CartesianProduct":
        return "join"
    if name.startswith(_PASSING):
        return "passing"
    return "other"


def _norm(path: str) -> str:
    return re.sub(r"^file:/*", "/", path.strip())


def reads(node: PlanNode, source: str) -> bool:
    """Whether scan ``node`` reads ``source`` (a path, or a table name)."""
    if node.location is None:
        return source in node.names
    shown = _norm(node.location.split(",")[0])
    if "_delta_log" in shown:
        return False  # Delta reading its own log
    if shown.endswith("..."):  # Spark abbreviates long locations
        return len(shown) > 20 and _norm(source).startswith(shown[:-3])
    return _norm(source).rstrip("/") == shown.rstrip("/")


def rows_from_plans(steps: list[StepShape], plans: dict[int, list[ExecutedPlan]],
                    scanned: dict[int, PlanNode] | None = None) -> tuple[dict[int, tuple[int, str]], dict[int, str]]:
    """Rows out for steps, and reasons where Spark counted none, from each load's executed ``plans``;
    ``scanned`` gets the scan of each extract whose pushed filters let it skip part of its source."""
    found: dict[int, tuple[int, str]] = {}
    reasons: dict[int, str] = {}
    by_index = {s.index: s for s in steps}
    for load, load_plans in plans.items():
        for extract in upstream(by_index, load):
            shape = by_index[extract]
            if shape.counts != "scan" or not shape.source:
                continue
            paths = list(_paths(by_index, extract, load))
            for plan in load_plans:
                scans = [n for n in plan.nodes.values() if _kind(n) == "scan" and reads(n, shape.source)]
                if len(scans) != 1:
                    continue
                if _from_cache(plan, scans[0]):  # filled by an earlier job, or here: its figures say which
                    reasons.setdefault(extract, CACHED)
                    continue
                columnar = scans[0].name.startswith(_COLUMNAR)
                if scans[0].filtered and columnar and scans[0].rows is not None:
                    found.setdefault(extract, (scans[0].rows, READ.format(node=scans[0].name)))
                    if scanned is not None:
                        scanned.setdefault(extract, scans[0])
                elif scans[0].filtered:
                    reasons.setdefault(extract, PUSHED)
                elif scans[0].rows is not None:
                    found.setdefault(extract, (scans[0].rows, SOURCE.format(node=scans[0].name)))
                if len(paths) == 1:
                    _walk(plan, scans[0], [by_index[i] for i in paths[0]], found, reasons)
    return found, reasons


def upstream(steps: dict[int, StepShape], index: int) -> set[int]:
    """The steps whose rows reach step ``index`` (itself left out)."""
    seen: set[int] = set()
    todo = list(steps[index].inputs)
    while todo:
        i = todo.pop()
        if i not in seen and i in steps:
            seen.add(i)
            todo.extend(steps[i].inputs)
    return seen


def _paths(steps: dict[int, StepShape], start: int, end: int) -> Iterable[list[int]]:
    """Every chain of steps from ``start`` to ``end`` (both left out)."""
    def back(i: int, tail: list[int]) -> Iterable[list[int]]:
        for j in steps[i].inputs:
            if j == start:
                yield tail
            elif j in steps:
                yield from back(j, [j, *tail])

    return back(end, [])


def _walk(plan: ExecutedPlan, scan: PlanNode, chain: list[StepShape], found: dict[int, tuple[int, str]],
          reasons: dict[int, str]) -> None:
    """Up from ``scan`` to the plan's root, matching operators to the steps of ``chain`` in order."""
    i, same, aggregate = 0, [], None

    def settle(rows: int | None, node: str) -> None:
        nonlocal i, same
        for s in same:  # the walk passed them: they kept their input's rows
            found.setdefault(s.index, (-1, SAME))
        same = []
        if rows is not None:
            found.setdefault(chain[i].index, (rows, SOURCE.format(node=node)))
        i += 1

    node: PlanNode | None = scan
    while node is not None:
        node = plan.nodes.get(plan.parent.get(node.id, -1))
        kind = "root" if node is None else _kind(node)
        if kind == "observe":
            j = i + (aggregate is not None)  # an aggregate right below it is settled first
            if not (j < len(chain) and chain[j].counts == "observed" and chain[j].marker in node.names):
                kind = "passing"  # another step's Observation, or the load's own
        if aggregate is not None and kind not in ("aggregate", "passing"):
            settle(*aggregate)
            aggregate = None
        while i < len(chain) and chain[i].counts == "same":
            same.append(chain[i])
            i += 1
        if i >= len(chain):  # every step matched: what is left is the load's own (the write)
            if kind == "root":
                settle(None, "")
            if kind == "passing":
                continue
            return
        if kind == "root":
            return
        want = chain[i].counts
        if kind == "passing" or (kind == "filter" and want == "join"):  # Spark's own null filter of join keys
            continue
        if want == "observed":  # a query of its own (sql): its Observation, counted apart, marks where it ends
            if kind == "observe":
                settle(None, node.name)
            continue
        if kind == "aggregate" and want == "aggregate":
            aggregate = (node.rows, node.name)
        elif kind == "filter" and want == "filter":
            run = [i]  # this filter step and the filters right after it (projections between)
            for j in range(i + 1, len(chain)):
                if chain[j].counts not in ("same", "filter"):
                    break
                if chain[j].counts == "filter":
                    run.append(j)
            if len(run) > 1 and not _next_is_filter(plan, node):  # Spark made them one Filter
                for k in run[:-1]:
                    reasons.setdefault(chain[k].index, COMBINED.format(other=chain[run[-1]].label))
                i, same = run[-1], []
            settle(node.rows, node.name)
        elif kind == "join" and want == "join":
            settle(node.rows, node.name)
        else:
            return


def _from_cache(plan: ExecutedPlan, node: PlanNode) -> bool:
    """Whether ``node`` sits under a cached relation that this plan read without running ``node``."""
    above = plan.nodes.get(plan.parent.get(node.id, -1))
    while above is not None:
        if above.name.startswith(("InMemoryTableScan", "InMemoryRelation")):
            return not node.rows  # a cache filled by this plan counted its rows; a reused one shows 0
        above = plan.nodes.get(plan.parent.get(above.id, -1))
    return False


def _next_is_filter(plan: ExecutedPlan, node: PlanNode) -> bool:
    """Whether the first operator above ``node`` that changes rows is another Filter."""
    above = plan.nodes.get(plan.parent.get(node.id, -1))
    while above is not None and _kind(above) == "passing":
        above = plan.nodes.get(plan.parent.get(above.id, -1))
    return above is not None and _kind(above) == "filter"


def fill_same(steps: list[StepShape], rows_out: dict[int, int | None]) -> dict[int, int]:
    """The rows of the projections the walk passed (marked -1), from their inputs, in step order."""
    filled = {}
    for s in sorted(steps, key=lambda s: s.index):
        upstream = rows_out.get(s.inputs[0]) if len(s.inputs) == 1 else None
        if rows_out.get(s.index) == -1 and upstream is not None and upstream >= 0:
            rows_out[s.index] = filled[s.index] = upstream
    return filled


def abspath(path: str | None) -> str | None:
    """A local path as the plan shows it (absolute); a URL (s3a://, hdfs://) as written."""
    if not path or "://" in path:
        return path
    return os.path.abspath(path)
