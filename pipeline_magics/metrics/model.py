"""The records of a run: figures per step and per pipeline (and, from :mod:`.queries`, per streaming query).

Counting never runs a DataFrame a second time; each figure is read from
something the run does anyway, and ``StepMetrics.sources`` says from what
(:mod:`.sources` has the table). Steps whose rows nothing counts for free
(extracts and most transforms) keep ``rows_in``/``rows_out`` at None.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable

from .queries import QueryRecord  # the record of a streaming query run, also the panel's
from .status import STATUSES

log = logging.getLogger("pipeline_magics.metrics")


@dataclass
class StepMetrics:
    """Figures for one step."""

    index: int
    step: str
    type: str
    method: str
    status: str = "pending"
    start: float | None = None
    end: float | None = None
    rows_in: int | None = None
    rows_out: int | None = None
    bytes_written: int | None = None
    failed_rows: int | None = None
    attempts: int = 0
    error: str | None = None
    #: where each figure came from, e.g. {"rows_out": "observation", "bytes_written": "task output metrics"}
    sources: dict[str, str] = field(default_factory=dict)
    #: streaming loads: their query's record (the one its live panel shows)
    query: QueryRecord | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def duration(self) -> float | None:
        if self.start is None:
            return None
        return (self.end or time.time()) - self.start

    def to_dict(self) -> dict[str, Any]:
        d = asdict(replace(self, query=None))
        d["query"] = None if self.query is None else self.query.to_dict()
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
            if s.extra.get("note"):  # what an iterating run did with it: reused, kept, sampled, sandboxed
                rows.append(f"     {s.extra['note']}")
            if reasons and s.rows_out is None and s.extra.get("rows_note"):
                rows.append(f"     rows not counted: {s.extra['rows_note']}")
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
    rules = s.extra.get("failed_rules") or {}
    return " (" + ", ".join(f"{k}: {v:,}" for k, v in rules.items()) + ")" if rules else ""


def fmt_rate(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"
