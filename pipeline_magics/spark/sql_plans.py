"""The plans Spark executed for given jobs, with the rows each plan node output (the SQL metrics of the UI).

Read from the session's SQL status store, as the Spark UI's SQL tab reads them: no Spark job,
nothing read again. Classic sessions only (Spark Connect keeps them on its server).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .kind import is_classic

#: separates the items of a Scala collection's ``mkString`` (metric values may hold newlines)
_SEP = "\u0001"
_ROWS_METRIC = re.compile(r"SQLPlanMetric\(number of output rows,(\d+),")
_EDGE = re.compile(r"SparkPlanGraphEdge\((\d+),(\d+)\)")


@dataclass
class PlanNode:
    """One operator of an executed plan: its name (``Filter``, ``Scan csv``), its description, its output rows."""

    id: int
    name: str
    desc: str
    rows: int | None
    children: list[int] = field(default_factory=list)


@dataclass
class ExecutedPlan:
    """One SQL execution's plan: nodes by id, and each node's parent (the operator its rows go to)."""

    execution_id: int
    nodes: dict[int, PlanNode]
    parent: dict[int, int]


def _store(spark: Any) -> Any:
    return spark._jsparkSession.sharedState().statusStore()


def latest_execution(spark: Any) -> int:
    """The id of the session's latest SQL execution (-1 before any, or on Spark Connect)."""
    if not is_classic(spark):
        return -1
    store = _store(spark)
    count = int(store.executionsCount())
    return int(store.executionsList(count - 1, 1).head().executionId()) if count else -1


def jobs_of(spark: Any, tag: str) -> set[int]:
    """The ids of the jobs tagged ``tag`` so far."""
    return {int(j) for j in spark.sparkContext._jsc.sc().statusTracker().getJobIdsForTag(tag)}


def executed_plans(spark: Any, after: int, jobs: set[int]) -> list[tuple[set[int], ExecutedPlan]]:
    """The SQL executions after execution ``after`` that ran any of ``jobs``: the jobs each ran, and its plan.

    Oldest first. Call once Spark's listeners have seen the executions' ends (``drain_listener_bus``).
    """
    if not jobs or not is_classic(spark):
        return []
    store = _store(spark)
    count = int(store.executionsCount())
    newest = latest_execution(spark)
    recent = min(count, max(0, newest - after))
    plans = []
    executions = store.executionsList(count - recent, recent)
    for i in range(executions.size()):
        execution = executions.apply(i)
        ran = {int(j) for j in str(execution.jobs().keySet().mkString(",")).split(",") if j}
        if ran & jobs:
            plans.append((ran, _plan(store, int(execution.executionId()))))
    return plans


def _plan(store: Any, execution_id: int) -> ExecutedPlan:
    graph = store.planGraph(execution_id)
    values = {}
    for item in str(store.executionMetrics(execution_id).mkString(_SEP)).split(_SEP):
        key, _, value = item.partition(" -> ")
        values[key.strip()] = value.strip()
    nodes: dict[int, PlanNode] = {}
    all_nodes = graph.allNodes()
    for i in range(all_nodes.size()):
        node = all_nodes.apply(i)
        metric = _ROWS_METRIC.search(str(node.metrics().mkString(_SEP)))
        value = values.get(metric.group(1), "") if metric else ""
        rows = int(value.replace(",", "")) if value.replace(",", "").isdigit() else None
        nodes[int(node.id())] = PlanNode(int(node.id()), str(node.name()).strip(), str(node.desc()), rows)
    parent: dict[int, int] = {}
    for child, to in _EDGE.findall(str(graph.edges().mkString(_SEP))):
        parent[int(child)] = int(to)
        if int(to) in nodes:
            nodes[int(to)].children.append(int(child))
    return ExecutedPlan(execution_id, nodes, parent)
