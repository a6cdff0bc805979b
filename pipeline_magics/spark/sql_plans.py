"""The plans Spark executed for given jobs, with the rows each plan node output (the SQL metrics of the UI).

Read from the session's SQL status store, as the Spark UI's SQL tab reads them: no Spark job,
nothing read again. Classic sessions only (Spark Connect keeps them on its server).

A description can hold a condition's literals, and a condition may come from Vault: only
scans' descriptions are read, with py4j's debug log held back for this thread meanwhile, and
only what is needed is kept (where the scan reads, whether filters were pushed into it, which
of the pipeline's sources it names).
"""
from __future__ import annotations

import contextlib
import logging
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from .kind import is_classic

#: separates the items of a Scala collection's ``mkString`` (metric values may hold newlines)
_SEP = "\u0001"
_METRIC = re.compile(r"SQLPlanMetric\((number of output rows|number of files read|size of files read),(\d+),")
_OBSERVATION = re.compile(r"CollectMetrics (\S+), ")
_UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}
_EDGE = re.compile(r"SparkPlanGraphEdge\((\d+),(\d+)\)")
#: a scan's description: its files (``Location: InMemoryFileIndex(1 paths)[file:/...]``), filters pushed into it
_LOCATION = re.compile(r"Location: \w+\(\d+ paths?\)\[([^\]]*)\]")
_FILTERED = re.compile(r"(PushedFilters|DataFilters|PartitionFilters): \[[^\]]")
#: how Delta Lake's own queries (its log, its statistics) are described, or their call site
_BOOKKEEPING = ("Delta: ", "$anonfun$recordDeltaOperation")
SCANS = ("Scan", "FileScan", "BatchScan")


@dataclass
class PlanNode:
    """One operator of an executed plan: its name (``Filter``, ``Scan csv``) and output rows; for a scan,
    its location, whether filters were pushed into it, which of the given sources it names, the files and
    bytes it read; for a ``CollectMetrics``, its Observation's name (in ``names``)."""

    id: int
    name: str
    rows: int | None
    location: str | None = None
    filtered: bool = False
    names: frozenset[str] = frozenset()
    children: list[int] = field(default_factory=list)
    files_read: int | None = None
    bytes_read: int | None = None


@dataclass
class ExecutedPlan:
    """One SQL execution's plan: nodes by id, and each node's parent (the operator its rows go to)."""

    execution_id: int
    nodes: dict[int, PlanNode]
    parent: dict[int, int]


_quiet = threading.local()


class _HeldBack(logging.Filter):
    """Drops py4j's records made on a thread inside ``_unlogged``."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(_quiet, "on", False)


_HELD_BACK = _HeldBack()


@contextlib.contextmanager
def _unlogged() -> Iterator[None]:
    """py4j logs every answer at DEBUG: plan text read here is kept out of that log."""
    for name in ("py4j.clientserver", "py4j.java_gateway"):
        logger = logging.getLogger(name)
        if _HELD_BACK not in logger.filters:
            logger.addFilter(_HELD_BACK)
    _quiet.on = True
    try:
        yield
    finally:
        _quiet.on = False


def _names(desc: str, source: str) -> bool:
    """Whether a scan's description names ``source`` (a table or a path) as a whole word."""
    return bool(re.search(rf"(?<![\w.]){re.escape(source)}(?![\w])", desc))


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


def executed_plans(spark: Any, after: int, jobs: set[int], sources: Iterable[str] = ()
                   ) -> list[tuple[set[int], ExecutedPlan]]:
    """The SQL executions after execution ``after`` that ran any of ``jobs``: the jobs each ran, and its plan
    (its scans checked for naming each of ``sources``, a path or a table).

    Oldest first. Call once Spark's listeners have seen the executions' ends (``drain_listener_bus``).
    """
    if not jobs or not is_classic(spark):
        return []
    with _unlogged():
        return _executed_plans(spark, after, jobs, tuple(sources))


def _executed_plans(spark: Any, after: int, jobs: set[int], sources: tuple[str, ...]
                    ) -> list[tuple[set[int], ExecutedPlan]]:
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
            plans.append((ran, _plan(store, int(execution.executionId()), sources)))
    return plans


def _plan(store: Any, execution_id: int, sources: tuple[str, ...]) -> ExecutedPlan:
    graph = store.planGraph(execution_id)
    values = {}
    for item in str(store.executionMetrics(execution_id).mkString(_SEP)).split(_SEP):
        key, _, value = item.partition(" -> ")
        values[key.strip()] = value.strip().replace(",", "")
    nodes: dict[int, PlanNode] = {}
    all_nodes = graph.allNodes()
    for i in range(all_nodes.size()):
        node = all_nodes.apply(i)
        name = str(node.name()).strip()
        if name.startswith("WholeStageCodegen"):
            continue  # a cluster of the nodes below, which have the figures
        metrics = {m: values.get(i, "") for m, i in _METRIC.findall(str(node.metrics().mkString(_SEP)))}
        value = metrics.get("number of output rows", "")
        plan_node = PlanNode(int(node.id()), name, int(value) if value.isdigit() else None)
        if name.startswith(SCANS):
            desc = str(node.desc())
            location = _LOCATION.search(desc)
            plan_node.location = location.group(1) if location else None
            plan_node.filtered = bool(_FILTERED.search(desc))
            plan_node.names = frozenset(s for s in sources if _names(desc, s))
            files = metrics.get("number of files read", "")
            plan_node.files_read = int(files) if files.isdigit() else None
            plan_node.bytes_read = _bytes(metrics.get("size of files read", ""))
        elif name == "CollectMetrics":
            observation = _OBSERVATION.search(str(node.desc()))
            plan_node.names = frozenset([observation.group(1)] if observation else [])
        nodes[plan_node.id] = plan_node
    parent: dict[int, int] = {}
    for child, to in _EDGE.findall(str(graph.edges().mkString(_SEP))):
        parent[int(child)] = int(to)
        if int(to) in nodes:
            nodes[int(to)].children.append(int(child))
    return ExecutedPlan(execution_id, nodes, parent)


def _bytes(shown: str) -> int | None:
    """A size as the status store shows it (``155.3 KiB``), in bytes (to the shown precision)."""
    number, _, unit = shown.partition(" ")
    try:
        return int(float(number) * _UNITS[unit])
    except (KeyError, ValueError):
        return None


def _location(df: Any) -> Any:
    """The file index of the one relation ``df`` reads (raises if it reads none, or several)."""
    leaves = df._jdf.queryExecution().analyzed().collectLeaves()
    if leaves.size() != 1:
        raise ValueError("not one relation")
    return leaves.apply(0).relation().location()


def root_path(df: Any) -> str | None:
    """Where the one file relation ``df`` reads lies (a catalog table's location), as its scans show it."""
    try:
        return str(_location(df).rootPaths().head().toString())
    except Exception:  # noqa: BLE001 - not a file source, or a Spark Connect DataFrame
        return None


def file_totals(df: Any) -> tuple[int, int] | None:
    """The files and bytes of the file index ``df`` reads (one source), as listed when it was planned; no job.

    Delta tables: their snapshot's figures (from its checksum or its computed state)."""
    try:
        location = _location(df)
        if "Tahoe" in location.getClass().getName():
            snapshot = location.getSnapshot()
            return int(snapshot.numOfFiles()), int(snapshot.sizeInBytes())
        return len(location.inputFiles()), int(location.sizeInBytes())
    except Exception:  # noqa: BLE001 - not a file source (a JDBC or Kafka relation), or no such API here
        return None


#: the operators that write a table, whose output rows are the rows written
_WRITES = ("Execute InsertInto", "Execute CreateDataSourceTableAsSelect", "Execute SaveIntoDataSource", "AppendData",
           "OverwriteByExpression", "OverwritePartitionsDynamic")


def rows_written(spark: Any, after: int, table: str) -> int | None:
    """The rows the SQL executions after execution ``after`` wrote into ``table`` (as their write operators
    counted them), or None if none wrote it. Classic sessions only; no Spark job."""
    if not is_classic(spark):
        return None
    name = table.replace("`", "")
    with _unlogged():
        store = _store(spark)
        count = int(store.executionsCount())
        recent = min(count, max(0, latest_execution(spark) - after))
        executions = store.executionsList(count - recent, recent)
        total = None
        for i in range(executions.size()):
            plan = _plan(store, int(executions.apply(i).executionId()), ())
            graph = store.planGraph(plan.execution_id).allNodes()
            descs = {int(graph.apply(j).id()): str(graph.apply(j).desc()) for j in range(graph.size())
                     if str(graph.apply(j).name()).startswith(_WRITES)}
            for node_id, desc in descs.items():
                rows = plan.nodes[node_id].rows
                if rows is not None and _names(desc.replace("`", ""), name):
                    total = (total or 0) + rows
        return total
