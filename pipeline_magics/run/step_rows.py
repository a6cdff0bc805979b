"""Every step's rows after a batch run: Observations where the plan cannot tell, else what Spark counted
in the plans it executed for the loads.

Steps already counted (loads, expects) keep their figures. An Observation counts the steps whose rows
the plan cannot show (``observe``): CSV and JSON extracts (their scan counts rows after the filters
pushed into the parsing), ``sql`` steps and what they read (a query of their own), and on Spark Connect
every step (its server keeps the plans). The others get the rows of their part of a load's executed
plan (:mod:`..metrics.plan_rows`), or the reason Spark counted none, which the step table shows as a
tooltip. No Spark job: the plans and their SQL metrics are read from the session's status store.
"""
from __future__ import annotations

import logging
import re
from typing import Any

from ..metrics.model import StepMetrics
from ..metrics.plan_rows import SAME, StepShape, abspath, fill_same, rows_from_plans, upstream
from ..metrics.sources import drain_listener_bus, observe_rows
from ..spark.kind import is_classic
from ..spark.observation import observes_any_frame
from ..spark.sql_plans import (ExecutedPlan, PlanNode, executed_plans, file_totals, jobs_of, latest_execution,
                                root_path)

log = logging.getLogger("pipeline_magics.metrics")

CONNECT = "Spark Connect keeps the SQL metrics of the plans it executes on its server"
OLD_CONNECT = ("Spark Connect keeps the SQL metrics of the plans it executes on its server, and its client counts "
               "a step's rows from 4.2 on")
VIEW = ("a sql step reads it through its temp view, and Spark Connect sends an Observation's figures only to the "
        "DataFrame that holds it")
SKIPPED = "; it skipped {files} of {total} files ({size} of {total_size})"
STREAMING = "a streaming run counts rows per micro-batch: see its query's figures"
NO_COUNT = "Spark's plan has no row count of its own for a {method} step"
NOT_READ = "no load of this run read this step, so Spark never ran it"
UNMATCHED = "the plan Spark executed for the load could not be matched to this step"


class LoadJobs:
    """The Spark jobs of each load step of a run (classic batch runs with metrics)."""

    def __init__(self, spark: Any, tag: str) -> None:
        self.spark, self.tag = spark, tag
        self.on = is_classic(spark)
        self.first = latest_execution(spark) if self.on else -1
        self.by_load: dict[int, set[int]] = {}
        self._before: set[int] = set()

    def load_started(self) -> None:
        if self.on:
            self._before = jobs_of(self.spark, self.tag)

    def load_done(self, index: int) -> None:
        if self.on:
            jobs = jobs_of(self.spark, self.tag)
            self.by_load[index] = jobs - self._before


def observe(run: Any, planned: Any, ctx: Any, out: Any) -> Any:
    """``out`` with an Observation counting its rows where the executed plan cannot (runs with metrics):
    a named one in a streaming run, reported with each micro-batch."""
    if not run.metrics_enabled or not hasattr(out, "observe") or ctx.after or planned.step.type == "load" \
            or ctx.record.rows_out is not None or ctx.record.observation is not None:
        return out
    if run.plan.spec.mode == "streaming":  # a named observation: reported with every micro-batch's progress
        from pyspark.sql import functions as F

        ctx.record.rows_observation = name = marker(run, planned.index)
        return out.observe(name, F.count(F.lit(1)).alias("rows"))
    if run.load_jobs is None or not (run.load_jobs.on or observes_any_frame(run.spark)):
        return out
    if planned.method.observed or planned.index in _read_by_sql(run.plan) or not run.load_jobs.on:
        return observe_rows(out, marker(run, planned.index), ctx.record, ctx.after, ("rows_out",))
    return out


def marker(run: Any, index: int) -> str:
    """The name of step ``index``'s Observation, which the plan's ``CollectMetrics`` node shows."""
    return f"rows_{run.run_id}_{index}"


def query_inputs(plan: Any) -> dict[int, tuple[int, ...]]:
    """The earlier named steps each ``sql`` step's query names (the temp views it reads)."""
    found: dict[int, tuple[int, ...]] = {}
    for p in plan.steps:
        query = (p.step.config or {}).get("query")
        if p.method.reads_views and isinstance(query, str):
            found[p.index] = tuple(q.index for q in plan.steps[:p.index] if q.step.name and
                                   re.search(rf"(?<![\w.]){re.escape(q.step.name)}(?!\w)", query, re.I))
    return found


def _read_by_sql(plan: Any) -> set[int]:
    """Transforms a ``sql`` step reads: observed, so that the query's own operators are never counted as theirs
    (Spark's optimizer would merge a filter of the query into theirs)."""
    return {i for reads in query_inputs(plan).values() for i in reads if plan.steps[i].step.type == "transform"}


def fill(run: Any, loads: LoadJobs | None) -> None:
    """Gives every step of ``run`` its rows out (and rows in) or the reason Spark counted none."""
    steps = run.metrics.steps
    if loads is None or not loads.on:
        by_view = set().union(*query_inputs(run.plan).values())
        for s in steps:
            if s.rows_out is None and s.type != "load" and s.status == "done":
                s.rows_note = (STREAMING if loads is None else OLD_CONNECT if not observes_any_frame(run.spark)
                               else VIEW if s.index in by_view else CONNECT)
        return
    shapes = _shapes(run)
    drain_listener_bus(run.spark)
    sources = {shape.source for shape in shapes if shape.counts == "scan" and shape.source}
    jobs = set().union(*loads.by_load.values())
    executions = executed_plans(run.spark, loads.first, jobs, sources)
    if not _settled(executions, loads.by_load.values()):
        drain_listener_bus(run.spark)  # the status store has not seen all of it yet: once more
        executions = executed_plans(run.spark, loads.first, jobs, sources)
    plans = {load: [plan for ran, plan in executions if ran & jobs] for load, jobs in loads.by_load.items()}
    scanned: dict[int, PlanNode] = {}
    found, reasons = rows_from_plans(shapes, plans, scanned)
    rows = {s.index: s.rows_out for s in steps}
    for index, (count, _) in found.items():
        if rows[index] is None:
            rows[index] = count
    fill_same(shapes, rows)
    for s in steps:
        if s.rows_out is None and rows[s.index] is not None and rows[s.index] >= 0:
            s.rows_out = rows[s.index]
            s.sources["rows_out"] = found[s.index][1] if found[s.index][0] >= 0 else SAME
    _rows_in(shapes, steps)
    for index, scan in scanned.items():
        _skipped(run, steps[index], scan)
    by_index = {shape.index: shape for shape in shapes}
    read = set().union(*(upstream(by_index, load) for load in loads.by_load)) if loads.by_load else set()
    for shape, s in zip(shapes, steps):
        if s.rows_out is None and s.type != "load" and s.status == "done":
            s.rows_note = reasons.get(shape.index) or (
                NOT_READ if shape.index not in read else
                NO_COUNT.format(method=s.method) if shape.counts is None else UNMATCHED)


def _settled(executions: list[tuple[set[int], ExecutedPlan]], loads: Any) -> bool:
    """Whether every load's execution is in, with the figures of its counting operators."""
    if any(ran and not any(ran & seen for seen, _ in executions) for ran in loads):
        return False
    counting = ("Filter", "Scan", "FileScan", "BatchScan")
    return all(node.rows is not None for _, plan in executions for node in plan.nodes.values()
               if node.name.startswith(counting) or node.name.endswith(("Aggregate", "Join")))


def _skipped(run: Any, sm: StepMetrics, scan: PlanNode) -> None:
    """What a columnar extract's scan skipped, against the files its source holds."""
    totals = file_totals(run.frames.get(run.plan.steps[sm.index].output))
    if totals is None or scan.files_read is None:
        return
    files, size = totals
    sm.extra.update(files_read=scan.files_read, files_skipped=max(0, files - scan.files_read),
                    bytes_read=scan.bytes_read)
    if scan.bytes_read is not None:
        sm.extra["bytes_skipped"] = max(0, size - scan.bytes_read)
    if "rows_out" in sm.sources:
        sm.sources["rows_out"] += SKIPPED.format(
            files=sm.extra["files_skipped"], total=files, size=_size(sm.extra.get("bytes_skipped")),
            total_size=_size(size))


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _shapes(run: Any) -> list[StepShape]:
    plan = run.plan
    index_of = {p.output: p.index for p in plan.steps}
    reads = query_inputs(plan)
    shapes = []
    for p in plan.steps:
        config = p.step.config or {}
        source = next((config[k] for k in ("path", "table") if isinstance(config.get(k), str)), None)
        frames = [*p.inputs, *(config.get(k) for k in p.method.frame_settings)]  # a join's right side too
        inputs = tuple(index_of[n] for n in frames if isinstance(n, str) and n in index_of)
        inputs += tuple(i for i in reads.get(p.index, ()) if i not in inputs)
        if "table" in config and p.output in run.frames:  # a catalog table's scan shows its location
            source = root_path(run.frames[p.output]) or source
        shapes.append(StepShape(p.index, p.label, p.method.plan_rows, inputs,
                                abspath(source) if "path" in config else source, marker(run, p.index)))
    return shapes


def _rows_in(shapes: list[StepShape], steps: list[StepMetrics]) -> None:
    for shape, s in zip(shapes, steps):
        if s.rows_in is None and len(shape.inputs) == 1 and steps[shape.inputs[0]].rows_out is not None:
            s.rows_in = steps[shape.inputs[0]].rows_out
            s.sources.setdefault("rows_in", f"rows out of step {steps[shape.inputs[0]].step}")
