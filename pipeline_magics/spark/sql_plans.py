"""The plans Spark executed for given jobs, with the rows each plan node output (the SQL metrics of the UI).

Read from the session's SQL status store, as the Spark UI's SQL tab reads them: no Spark job,
nothing read again. Classic sessions only (Spark Connect keeps them on its server).
"""
from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field
from typing import Any

from .kind import is_classic

_QUOTED = r'"((?:[^"\\]|\\.)*)"'
_NODE = re.compile(rf'^\s*(\d+) \[id="node\d+"(?: labelType="html")? label={_QUOTED} tooltip={_QUOTED}\];', re.M)
_EDGE = re.compile(r'^\s*(\d+)->(\d+)(?: \[label="([\d,]*)"[^\]]*\])?;', re.M)
_ROWS_LABEL = re.compile(r"number of output rows: ([\d,]+)")
#: how Delta Lake's own queries (its log, its statistics) are described, or their call site
_BOOKKEEPING = ("Delta: ", "$anonfun$recordDeltaOperation")


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
        if str(execution.description()).startswith(_BOOKKEEPING):
            continue  # Delta reading its own log around a write: large plans, none of the pipeline's data
        ran = {int(j) for j in str(execution.jobs().keySet().mkString(",")).split(",") if j}
        if ran & jobs:
            plans.append((ran, _plan(store, int(execution.executionId()))))
    return plans


def _plan(store: Any, execution_id: int) -> ExecutedPlan:
    """The plan as the UI draws it (Graphviz DOT with each node's SQL metrics): one call into the JVM."""
    dot = str(store.planGraph(execution_id).makeDotFile(store.executionMetrics(execution_id)))
    nodes: dict[int, PlanNode] = {}
    for node_id, label, tooltip in _NODE.findall(dot):
        name = re.search(r"<b>(.*?)</b>", label)
        rows = _ROWS_LABEL.search(label)  # Spark 4.0, 4.1: the node's metrics are in its label
        nodes[int(node_id)] = PlanNode(int(node_id), (name.group(1) if name else label).strip(),
                                       codecs.decode(tooltip, "unicode_escape"),
                                       int(rows.group(1).replace(",", "")) if rows else None)
    parent: dict[int, int] = {}
    for child, to, rows in _EDGE.findall(dot):
        parent[int(child)] = int(to)
        if int(to) in nodes:
            nodes[int(to)].children.append(int(child))
        if rows and int(child) in nodes:  # Spark 4.2: a node's output rows label the edge to its parent
            nodes[int(child)].rows = int(rows.replace(",", ""))
    return ExecutedPlan(execution_id, nodes, parent)
