"""Run metrics: per step and per pipeline figures, and their exporters (Prometheus, JSON, logging).

Where each figure comes from, so none needs a second pass over the data:
- rows written by file, JDBC and Kafka sinks: an ``Observation`` on the sink's
  input, filled by the write itself;
- rows and bytes written to Delta: the commit's own ``operationMetrics``;
- ``expect`` counts: an ``Observation`` (drop/warn) or the gate's one aggregate (fail);
- ``toMemory`` and ``display``: the action they run anyway.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

log = logging.getLogger("pipeline_magics.metrics")


def observed(obs: Any) -> dict[str, Any]:
    """An Observation's figures if its action has run, else ``{}`` (never blocks)."""
    jo = getattr(obs, "_jo", None)
    if jo is not None and hasattr(jo, "getOrEmpty"):
        # Classic Spark: ``get`` would wait forever if the action never reached the node.
        try:
            if jo.getOrEmpty().isEmpty():
                return {}
        except Exception:  # noqa: BLE001 - a missing figure is not an error
            return {}
    try:
        return dict(obs.get)
    except Exception:  # noqa: BLE001
        return {}


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
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def duration(self) -> float | None:
        if self.start is None:
            return None
        return (self.end or time.time()) - self.start

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
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

    @property
    def duration(self) -> float | None:
        if self.start is None:
            return None
        return (self.end or time.time()) - self.start

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

    def to_dict(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline, "run_id": self.run_id, "mode": self.mode, "status": self.status,
            "start": self.start, "end": self.end, "duration": self.duration, "error": self.error,
            "totals": {"rows_written": self.rows_written, "bytes_written": self.bytes_written,
                       "failed_rows": self.failed_rows, "steps": len(self.steps)},
            "steps": [s.to_dict() for s in self.steps],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)

    def to_text(self) -> str:
        """A plain table of the steps."""
        rows = [f"pipeline {self.pipeline}: {self.status} in {fmt_seconds(self.duration)}"]
        for s in self.steps:
            rows.append(f"  {s.index + 1:>2} {s.step:<20} {s.type + '.' + s.method:<26} {s.status:<9} "
                        f"{fmt_count(s.rows_out):>10} rows {fmt_seconds(s.duration):>8}")
        return "\n".join(rows)


def fmt_seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}s"


def fmt_count(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


# ------------------------------------------------------------------ exporters


def to_prometheus(metrics: PipelineMetrics) -> str:
    """The Prometheus text exposition of one run."""
    from prometheus_client import CollectorRegistry, Gauge, generate_latest

    reg = CollectorRegistry()
    labels = ["pipeline", "step", "method"]
    duration = Gauge("pipeline_step_duration_seconds", "Step wall time", labels, registry=reg)
    rows_in = Gauge("pipeline_step_rows_in", "Rows read by the step", labels, registry=reg)
    rows_out = Gauge("pipeline_step_rows_out", "Rows produced or written by the step", labels, registry=reg)
    written = Gauge("pipeline_step_written_bytes", "Bytes written by the step", labels, registry=reg)
    failed = Gauge("pipeline_step_failed_expectation_rows", "Rows failing the step's expectation", labels,
                   registry=reg)
    ok = Gauge("pipeline_step_success", "1 when the step succeeded", labels, registry=reg)
    for s in metrics.steps:
        lv = (metrics.pipeline, s.step, s.method)
        if s.duration is not None:
            duration.labels(*lv).set(s.duration)
        for gauge, value in ((rows_in, s.rows_in), (rows_out, s.rows_out), (written, s.bytes_written),
                             (failed, s.failed_rows)):
            if value is not None:
                gauge.labels(*lv).set(value)
        ok.labels(*lv).set(1 if s.status == "done" else 0)
    Gauge("pipeline_duration_seconds", "Pipeline wall time", ["pipeline"], registry=reg).labels(
        metrics.pipeline).set(metrics.duration or 0)
    Gauge("pipeline_success", "1 when the run succeeded", ["pipeline"], registry=reg).labels(
        metrics.pipeline).set(1 if metrics.status == "done" else 0)
    return generate_latest(reg).decode()


def export(metrics: PipelineMetrics, target: str) -> None:
    """Exports to ``prometheus:PATH``, ``json:PATH`` or ``log``."""
    kind, _, path = target.partition(":")
    if kind == "log":
        for s in metrics.steps:
            log.info("pipeline step", extra={"pipeline_metrics": {"pipeline": metrics.pipeline, **s.to_dict()}})
        log.info("pipeline %s %s in %.2fs", metrics.pipeline, metrics.status, metrics.duration or 0,
                 extra={"pipeline_metrics": metrics.to_dict()})
        return
    if not path:
        raise ValueError(f"--metrics {kind} needs a path, e.g. {kind}:/tmp/{metrics.pipeline}.{kind[:4]}")
    text = {"prometheus": to_prometheus, "json": PipelineMetrics.to_json}.get(kind)
    if text is None:
        raise ValueError(f"unknown metrics exporter '{kind}'; use prometheus:PATH, json:PATH or log")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text(metrics))
