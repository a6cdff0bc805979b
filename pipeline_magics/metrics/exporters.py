"""The exporters of a run's metrics: Prometheus (text and Pushgateway), JSON files and log records."""
from __future__ import annotations

import logging
import os
import tempfile
from typing import Any, Iterable

from .model import PipelineMetrics, fmt_count, fmt_rules, fmt_seconds
from .status import STATUSES

log = logging.getLogger("pipeline_magics.metrics")

# ------------------------------------------------------------------ Prometheus


class _Families:
    """Builds metric families; a family with no samples is left out."""

    def __init__(self) -> None:
        self.families: dict[str, Any] = {}

    def add(self, kind: str, name: str, doc: str, labels: dict[str, str], value: float | None) -> None:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        if value is None:
            return
        key = f"{name}_total" if kind == "counter" else name
        fam = self.families.get(key)
        if fam is None:
            cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            fam = self.families[key] = cls(name, doc, labels=list(labels))
        fam.add_metric(list(labels.values()), float(value))


def metric_families(metrics: PipelineMetrics) -> list[Any]:
    """The run as Prometheus metric families (names with units, ``_total`` on counters)."""
    f = _Families()
    for s in metrics.steps:
        lv = {"pipeline": metrics.pipeline, "step": s.step, "method": s.method}
        f.add("gauge", "pipeline_step_duration_seconds", "Wall time of the step.", lv, s.duration)
        f.add("gauge", "pipeline_step_start_timestamp_seconds", "When the step started (Unix time).", lv, s.start)
        f.add("gauge", "pipeline_step_end_timestamp_seconds", "When the step ended (Unix time).", lv, s.end)
        f.add("counter", "pipeline_step_input_rows", "Rows the step read.", lv, s.rows_in)
        f.add("counter", "pipeline_step_output_rows", "Rows the step produced or wrote.", lv, s.rows_out)
        f.add("counter", "pipeline_step_written_bytes", "Bytes the step wrote, where Spark reports them.", lv,
              s.bytes_written)
        f.add("counter", "pipeline_step_failed_expectation_rows", "Rows failing the step's expectation.", lv,
              s.failed_rows)
        for rule, failed in (s.failed_rules or {}).items():
            f.add("counter", "pipeline_expectation_failed_rows", "Rows failing one expectation rule.",
                  {**lv, "rule": rule}, failed)
        f.add("counter", "pipeline_step_attempts", "Attempts the step took (retries + 1).", lv, s.attempts)
        f.add("gauge", "pipeline_step_success", "1 when the step succeeded, else 0.", lv,
              1 if s.status == "done" else 0)
        for status in STATUSES:
            f.add("gauge", "pipeline_step_status", "1 for the step's current status, 0 for the others.",
                  {**lv, "status": status}, 1 if s.status == status else 0)
        q = s.query
        if q is not None:
            ql = {**lv, "query": q.name or q.id}
            f.add("counter", "pipeline_query_batches", "Micro-batches the query has run.", ql, q.batches)
            f.add("counter", "pipeline_query_input_rows", "Rows the query read (numInputRows).", ql, q.input_rows)
            f.add("counter", "pipeline_query_output_rows", "Rows the query wrote to its sink.", ql, q.output_rows)
            f.add("gauge", "pipeline_query_last_batch_id", "Id of the query's latest batch.", ql, q.last_batch_id)
            f.add("gauge", "pipeline_query_input_rows_per_second", "Arrival rate in the latest batch.", ql,
                  q.input_rows_per_second)
            f.add("gauge", "pipeline_query_processed_rows_per_second", "Processing rate in the latest batch.", ql,
                  q.processed_rows_per_second)
            f.add("gauge", "pipeline_query_batch_duration_seconds", "Duration of the latest batch.", ql,
                  None if q.batch_duration_ms is None else q.batch_duration_ms / 1000)
            f.add("gauge", "pipeline_query_active", "1 while the query runs.", ql, 1 if q.active else 0)
    pl = {"pipeline": metrics.pipeline}
    f.add("gauge", "pipeline_run_duration_seconds", "Wall time of the run (so far, while it runs).", pl,
          metrics.duration)
    f.add("gauge", "pipeline_run_start_timestamp_seconds", "When the run started (Unix time).", pl, metrics.start)
    f.add("gauge", "pipeline_run_end_timestamp_seconds", "When the run ended (Unix time).", pl, metrics.end)
    f.add("gauge", "pipeline_run_success", "1 when the run succeeded, else 0.", pl, 1 if metrics.status == "done" else 0)
    for status in STATUSES:
        f.add("gauge", "pipeline_run_status", "1 for the run's current status, 0 for the others.",
              {**pl, "status": status}, 1 if metrics.status == status else 0)
    f.add("counter", "pipeline_output_rows", "Rows the run's loads wrote.", pl, metrics.rows_written)
    f.add("counter", "pipeline_written_bytes", "Bytes the run's loads wrote, where Spark reports them.", pl,
          metrics.bytes_written)
    f.add("counter", "pipeline_failed_expectation_rows", "Rows failing the run's expectations.", pl,
          metrics.failed_rows)
    f.add("gauge", "pipeline_steps", "Steps in the pipeline.", pl, len(metrics.steps))
    return list(f.families.values())


class RunCollector:
    """A ``prometheus_client`` collector over one or more runs' metrics (registered with a registry)."""

    def __init__(self, runs: Iterable[PipelineMetrics]) -> None:
        self.runs = list(runs)

    def collect(self) -> Iterable[Any]:
        merged: dict[str, Any] = {}
        for run in self.runs:
            for fam in metric_families(run.refresh()):
                if fam.name in merged and type(merged[fam.name]) is type(fam):
                    merged[fam.name].samples.extend(fam.samples)
                else:
                    merged.setdefault(fam.name, fam)
        return list(merged.values())


def registry_for(*runs: PipelineMetrics) -> Any:
    """A fresh ``CollectorRegistry`` exposing ``runs``."""
    from prometheus_client import CollectorRegistry

    reg = CollectorRegistry(auto_describe=False)
    reg.register(RunCollector(runs))
    return reg


def to_prometheus(*runs: PipelineMetrics) -> str:
    """The Prometheus text exposition (format 0.0.4) of one or more runs."""
    from prometheus_client import generate_latest

    return generate_latest(registry_for(*runs)).decode()


def push(metrics: PipelineMetrics, gateway: str, job: str = "pipeline_magics", timeout: float = 10) -> None:
    """Pushes the run to a Prometheus Pushgateway, grouped by job and pipeline (replacing that group)."""
    from prometheus_client import push_to_gateway

    push_to_gateway(gateway, job=job, registry=registry_for(metrics),
                    grouping_key={"pipeline": metrics.pipeline}, timeout=timeout)


# ------------------------------------------------------------------ logging


def log_records(metrics: PipelineMetrics, logger: logging.Logger | None = None) -> None:
    """One structured record per step (``extra={"pipeline_metrics": ...}``), then one for the run."""
    logger = logger or log
    for s in metrics.steps:
        d = s.to_dict()
        level = logging.WARNING if s.status == "failed" else logging.INFO
        logger.log(level, "pipeline %s step %s (%s.%s): %s in %s, rows in %s, rows out %s, bytes %s, failed rows %s%s",
                   metrics.pipeline, s.step, s.type, s.method, s.status, fmt_seconds(s.duration), fmt_count(s.rows_in),
                   fmt_count(s.rows_out), fmt_count(s.bytes_written), fmt_count(s.failed_rows), fmt_rules(s),
                   extra={"pipeline_metrics": {"event": "pipeline_step", "pipeline": metrics.pipeline,
                                               "run_id": metrics.run_id, **d}})
    logger.log(logging.WARNING if metrics.status == "failed" else logging.INFO,
               "pipeline %s %s in %s: %s rows written", metrics.pipeline, metrics.status,
               fmt_seconds(metrics.duration), fmt_count(metrics.rows_written),
               extra={"pipeline_metrics": {"event": "pipeline_run", **{k: v for k, v in metrics.to_dict().items()
                                                                        if k != "steps"}}})


# ------------------------------------------------------------------ export


EXPORTERS = "prometheus:PATH, json:PATH, pushgateway:URL or log[:LOGGER]"


def _write_atomically(path: str, text: str) -> None:
    """Writes ``text`` so that a reader (e.g. node_exporter's textfile collector) never sees half of it."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".pipeline_metrics.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def export(metrics: PipelineMetrics, target: str) -> None:
    """Exports to ``prometheus:PATH``, ``json:PATH``, ``pushgateway:URL`` or ``log[:LOGGER]``."""
    kind, _, where = target.partition(":")
    metrics.refresh()
    if kind == "log":
        log_records(metrics, logging.getLogger(where) if where else None)
        return
    if kind not in ("prometheus", "json", "pushgateway"):
        raise ValueError(f"unknown metrics exporter '{kind}'; use {EXPORTERS}")
    if not where:
        example = "localhost:9091" if kind == "pushgateway" else f"/tmp/{metrics.pipeline}.{'prom' if kind == 'prometheus' else 'json'}"
        raise ValueError(f"--metrics {kind} needs {'an address' if kind == 'pushgateway' else 'a path'}, "
                         f"e.g. {kind}:{example}")
    if kind == "pushgateway":
        push(metrics, where)
    else:
        _write_atomically(where, to_prometheus(metrics) if kind == "prometheus" else metrics.to_json())


def check_target(target: str) -> None:
    """Raises ``ValueError`` for a target ``export`` would refuse, before anything runs."""
    kind, _, where = target.partition(":")
    if kind not in ("prometheus", "json", "pushgateway", "log"):
        raise ValueError(f"unknown metrics exporter '{kind}'; use {EXPORTERS}")
    if kind != "log" and not where:
        raise ValueError(f"--metrics {kind} needs {'an address' if kind == 'pushgateway' else 'a path'}")
