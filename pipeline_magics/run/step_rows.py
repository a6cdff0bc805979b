"""Every step's rows after a batch run: what Spark counted in the plans it executed for the loads.

Steps already counted (loads, expects) keep their figures; the others get the rows of their
part of a load's executed plan (:mod:`..metrics.plan_rows`), or the reason Spark counted
none, which the step table shows as a tooltip. No Spark job: the plans and their SQL metrics
are read from the session's status store.
"""
from __future__ import annotations

import logging
from typing import Any

from ..metrics.model import StepMetrics
from ..metrics.plan_rows import SAME, StepShape, abspath, fill_same, rows_from_plans, upstream
from ..metrics.sources import drain_listener_bus
from ..spark.kind import is_classic
from ..spark.sql_plans import ExecutedPlan, executed_plans, jobs_of, latest_execution

log = logging.getLogger("pipeline_magics.metrics")

CONNECT = "Spark Connect keeps the SQL metrics of the plans it executes on its server"
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


def fill(run: Any, loads: LoadJobs | None) -> None:
    """Gives every step of ``run`` its rows out (and rows in) or the reason Spark counted none."""
    steps = run.metrics.steps
    if loads is None or not loads.on:
        why = CONNECT if loads is not None else STREAMING
        for s in steps:
            if s.rows_out is None and s.type != "load" and s.status == "done":
                s.extra["rows_note"] = why
        return
    shapes = _shapes(run.plan)
    drain_listener_bus(run.spark)
    sources = {shape.source for shape in shapes if shape.counts == "scan" and shape.source}
    jobs = set().union(*loads.by_load.values())
    executions = executed_plans(run.spark, loads.first, jobs, sources)
    if not _settled(executions, loads.by_load.values()):
        drain_listener_bus(run.spark)  # the status store has not seen all of it yet: once more
        executions = executed_plans(run.spark, loads.first, jobs, sources)
    plans = {load: [plan for ran, plan in executions if ran & jobs] for load, jobs in loads.by_load.items()}
    found, reasons = rows_from_plans(shapes, plans)
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
    by_index = {shape.index: shape for shape in shapes}
    read = set().union(*(upstream(by_index, load) for load in loads.by_load)) if loads.by_load else set()
    for shape, s in zip(shapes, steps):
        if s.rows_out is None and s.type != "load" and s.status == "done":
            s.extra["rows_note"] = reasons.get(shape.index) or (
                NOT_READ if shape.index not in read else
                NO_COUNT.format(method=s.method) if shape.counts is None else UNMATCHED)


def _settled(executions: list[tuple[set[int], ExecutedPlan]], loads: Any) -> bool:
    """Whether every load's execution is in, with the figures of its counting operators."""
    if any(ran and not any(ran & seen for seen, _ in executions) for ran in loads):
        return False
    counting = ("Filter", "Scan", "FileScan", "BatchScan")
    return all(node.rows is not None for _, plan in executions for node in plan.nodes.values()
               if node.name.startswith(counting) or node.name.endswith(("Aggregate", "Join")))


def _shapes(plan: Any) -> list[StepShape]:
    index_of = {p.output: p.index for p in plan.steps}
    shapes = []
    for p in plan.steps:
        config = p.step.config or {}
        source = next((config[k] for k in ("path", "table") if isinstance(config.get(k), str)), None)
        frames = [*p.inputs, *(config.get(k) for k in p.method.frame_settings)]  # a join's right side too
        inputs = tuple(index_of[n] for n in frames if isinstance(n, str) and n in index_of)
        shapes.append(StepShape(p.index, p.label, p.method.plan_rows, inputs,
                                abspath(source) if "path" in config else source))
    return shapes


def _rows_in(shapes: list[StepShape], steps: list[StepMetrics]) -> None:
    for shape, s in zip(shapes, steps):
        if s.rows_in is None and len(shape.inputs) == 1 and steps[shape.inputs[0]].rows_out is not None:
            s.rows_in = steps[shape.inputs[0]].rows_out
            s.sources.setdefault("rows_in", f"rows out of step {steps[shape.inputs[0]].step}")
