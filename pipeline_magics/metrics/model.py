"""The records of a run: figures per step and per pipeline (and, from :mod:`.queries`, per streaming query).

Counting never runs a DataFrame a second time; each figure is read from
something the run does anyway, and ``StepMetrics.sources`` says from what
(:mod:`.sources` has the table). Steps whose rows nothing counts for free
(extracts and most transforms) keep ``rows_in``/``rows_out`` at None.
"""
from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import dataclass, field, fields
from typing import Any, Callable

from .queries import QueryRecord  # the record of a streaming query run, also the panel's
from .status import STATUSES

log = logging.getLogger("pipeline_magics.metrics")


#: the figures a step's record holds besides its facts (the rest goes under ``extra`` in an export)
FIGURES = ("rows_in", "rows_out", "bytes_written", "failed_rows", "sources")


@dataclass(kw_only=True)
class StepRecord:
    """What a step's method and the figures' sources report about it; a ``StepMetrics`` holds the same.

    A method writes into ``StepContext.record``; the engine copies what is set into the step's
    metrics (``StepMetrics.take``). The facts other layers read are fields; ``extra`` holds the other
    figures, shown as they are (a merge's ``numTargetRows*``, the files a read skipped, …).
    """

    rows_in: int | None = None
    rows_out: int | None = None
    bytes_written: int | None = None
    failed_rows: int | None = None
    #: where each figure came from, e.g. {"rows_out": "observation", "bytes_written": "task output metrics"}
    sources: dict[str, str] = field(default_factory=dict)
    #: the Observation the step's rows are counted by (a load, an ``expect``; in a stream, a named one)
    observation: str | None = None
    #: the Observation ``run/step_rows.py`` put on the step's output, read from a stream's progress
    rows_observation: str | None = None
    #: why Spark counted no rows for the step (a tooltip; ``to_text(reasons=True)``)
    rows_note: str | None = None
    #: what a run that iterates did with the step (reused, kept, sampled, sandboxed), shown under it
    note: str | None = None
    #: loads: where the rows went ({"kind": "delta" | "postgres", …}), for the history
    target: dict[str, Any] | None = None
    #: batch Delta loads: the table's version after the write, and the first version it made
    delta_version: int | None = None
    delta_first_version: int | None = None
    #: streaming Delta loads: the table the query commits to ({"path", "table", "start_version"})
    delta_target: dict[str, Any] | None = None
    #: streaming loads: the trigger ends by itself (``availableNow``, ``once``), so a run waits for it
    finite: bool | None = None
    #: ``expect`` steps: the rules' names, what a failing row does, and the rows failing each rule
    rule_names: list[str] | None = None
    on_fail: str | None = None
    failed_rules: dict[str, int] | None = None
    #: streaming loads: the query's last progress figures
    progress: dict[str, Any] | None = None
    #: other figures, free-form
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def expectation(self) -> str | None:
        """An ``expect`` step's rules, as one label."""
        return None if self.rule_names is None else ", ".join(self.rule_names)

    def facts(self) -> dict[str, Any]:
        """The facts that are set and the free-form figures: what an export shows under ``extra``."""
        set_ = {f.name: getattr(self, f.name) for f in fields(StepRecord)
                if f.name not in FIGURES and f.name != "extra" and getattr(self, f.name) is not None}
        if self.rule_names is not None:
            set_["expectation"] = self.expectation
        return {**set_, **self.extra}

    def take(self, record: "StepRecord") -> None:
        """Copies what ``record`` has set: figures as ints, facts as they are, sources and free-form figures added."""
        for f in fields(StepRecord):
            value = getattr(record, f.name)
            if f.name == "sources":
                self.sources.update(value)
            elif f.name == "extra":
                self.extra.update(value)
            elif value is not None:
                setattr(self, f.name, int(value) if f.name in FIGURES else value)


@dataclass
class StepMetrics(StepRecord):
    """Figures for one step."""

    index: int
    step: str
    type: str
    method: str
    status: str = "pending"
    start: float | None = None
    end: float | None = None
    attempts: int = 0
    error: str | None = None
    #: streaming loads: their query's record (the one its live panel shows)
    query: QueryRecord | None = None

    @property
    def duration(self) -> float | None:
        if self.start is None:
            return None
        return (self.end or time.time()) - self.start

    def to_dict(self) -> dict[str, Any]:
        """The step as the JSON export has it: figures and status, the facts under ``extra``."""
        keys = ("index", "step", "type", "method", "status", "start", "end", "rows_in", "rows_out",
                "bytes_written", "failed_rows", "attempts", "error")
        d: dict[str, Any] = {k: getattr(self, k) for k in keys}
        d["sources"] = dict(self.sources)
        d["query"] = None if self.query is None else self.query.to_dict()
        d["extra"] = copy.deepcopy(self.facts())
        d["duration"] = self.duration
        return d


@dataclass
class PipelineMetrics:
    """Figures for one run of a pipeline."""

    pipeline: str
    run_id: str
    mode: str = "batch"
    status: str = "pending"
    start: float | None = None
    end: float | None = None
    steps: list[StepMetrics] = field(default_factory=list)
    error: str | None = None
    #: seconds spent starting the SparkSession the run needed, when no session was running (part of ``duration``)
    spark_start: float | None = None
    #: streaming: brings the query figures up to date (set by the run); exporters call it first
    refresher: Callable[[], None] | None = field(default=None, repr=False, compare=False)

    def refresh(self) -> "PipelineMetrics":
        """Updates live figures (streaming queries) and returns self."""
        if self.refresher is not None:
            try:
                self.refresher()
            except Exception as exc:  # noqa: BLE001 - stale figures beat no export
                log.debug("metrics refresh failed: %s", exc)
        return self

    @property
    def duration(self) -> float | None:
        """Seconds from the start of the run (of the Spark start it waited for, if any) to its end, or to now."""
        if self.start is None:
            return None
        return (self.end or time.time()) - self.start + (self.spark_start or 0.0)

    @property
    def rows_written(self) -> int:
        return sum(s.rows_out or 0 for s in self.steps if s.type == "load")

    @property
    def bytes_written(self) -> int:
        return sum(s.bytes_written or 0 for s in self.steps)

    @property
    def failed_rows(self) -> int:
        return sum(s.failed_rows or 0 for s in self.steps)

    def step(self, name: str) -> StepMetrics:
        """The metrics of the step called ``name`` (or ``stepN``)."""
        for s in self.steps:
            if s.step == name:
                return s
        raise KeyError(f"no step '{name}'; steps are {[s.step for s in self.steps]}")

    def totals(self) -> dict[str, Any]:
        """The run's totals: rows and bytes written, failing rows, steps by status."""
        counts = {status: sum(1 for s in self.steps if s.status == status) for status in STATUSES}
        return {"rows_written": self.rows_written, "bytes_written": self.bytes_written,
                "failed_rows": self.failed_rows, "steps": len(self.steps),
                **{f"steps_{k}": v for k, v in counts.items() if v}}

    def to_dict(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline, "run_id": self.run_id, "mode": self.mode, "status": self.status,
            "start": self.start, "end": self.end, "duration": self.duration, "spark_start": self.spark_start,
            "error": self.error,
            "totals": self.totals(),
            "steps": [s.to_dict() for s in self.steps],
        }

    def to_json(self) -> str:
        """The run as JSON (live figures brought up to date first)."""
        return json.dumps(self.refresh().to_dict(), indent=2, default=str)

    def to_text(self, reasons: bool = False) -> str:
        """A plain table of the steps (live figures brought up to date first); ``reasons`` adds under a
        step whose rows Spark did not count why (the command line's table; the notebook has tooltips)."""
        self.refresh()
        rows = [f"pipeline {self.pipeline}: {self.status} in {fmt_took(self)}"]
        for s in self.steps:
            rows.append(f"  {s.index + 1:>2} {s.step:<20} {s.type + '.' + s.method:<26} {s.status:<9} "
                        f"{fmt_count(s.rows_out):>10} rows {fmt_seconds(s.duration):>8}")
            if s.note:  # what an iterating run did with it: reused, kept, sampled, sandboxed
                rows.append(f"     {s.note}")
            if reasons and s.rows_out is None and s.rows_note:
                rows.append(f"     rows not counted: {s.rows_note}")
            if s.failed_rows is not None:
                rows.append(f"     failed {fmt_count(s.failed_rows)}{fmt_rules(s)}")
            if s.query is not None:
                q = s.query
                rows.append(f"     query {q.name}: {q.batches} batches, {fmt_count(q.input_rows)} rows in, "
                            f"{fmt_rate(q.processed_rows_per_second)} rows/s")
        return "\n".join(rows)


def fmt_seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}s"


def fmt_took(metrics: PipelineMetrics) -> str:
    """A run's time, the Spark start it waited for shown apart: ``12.10s (Spark start 6.30s)``."""
    took = fmt_seconds(metrics.duration)
    return took + (f" (Spark start {fmt_seconds(metrics.spark_start)})" if metrics.spark_start is not None else "")


def fmt_count(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def fmt_rules(s: StepMetrics) -> str:
    """`` (rule: n, rule: n)``: each expectation rule's failing rows, or ""."""
    rules = s.failed_rules or {}
    return " (" + ", ".join(f"{k}: {v:,}" for k, v in rules.items()) + ")" if rules else ""


def fmt_rate(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"
