"""OpenLineage run events of a pipeline run, sent with the OpenLineage Python client.

The pipeline is the job (namespace ``PIPELINE_LINEAGE_NAMESPACE``, name the pipeline's), its
extracts' sources the inputs, its loads' sinks (and quarantine tables) the outputs, each named
by ``datasets``. Events follow the run's status (``RunStatus`` calls :class:`RunLineage` when it
moves): START, then COMPLETE, FAIL (with the masked error) or ABORT; a streaming run also sends
RUNNING as micro-batches complete. Outputs carry schema and column-lineage facets read from the
analyzed plans (``spark.columns``) plus what the spec says a load does to its columns (Kafka's
key/value, CDC's validity columns, quarantine's failed rules). Sending never fails a run: a
transport that fails is reported once, as a warning. ``openlineage`` is imported only when
lineage is on (it takes most of a second).
"""
from __future__ import annotations

import logging
import os
import threading
from datetime import datetime, timezone
from typing import Any

from .. import config
from ..metrics.queries import QUERIES
from ..metrics.status import CANCELLED, DONE, FAILED, RUNNING
from ..secrets.redaction import mask_text
from ..spark.columns import AGGREGATION, TRANSFORMATION, read_plans
from ..spec.plan import Plan, PlannedStep
from .datasets import Dataset, datasets_of, quarantine_of

log = logging.getLogger("pipeline_magics")
PRODUCER = "https://github.com/pipeline-magics/pipeline_magics"
#: per output dataset, per column: the (input dataset, input column, kind) it derives from
ColumnLineage = dict[Dataset, dict[str, list[tuple[Dataset, str, str]]]]
#: per output dataset: the (input dataset, input column, FILTER|JOIN|GROUP_BY|SORT) that decide which rows it gets
Indirect = dict[Dataset, list[tuple[Dataset, str, str]]]
_EVENTS = {RUNNING: "START", DONE: "COMPLETE", FAILED: "FAIL", CANCELLED: "ABORT"}
_clients: dict[str, Any] = {}
_warned: set[str] = set()
_lock = threading.Lock()


def target(given: str | None = None) -> str | None:
    """Where events go: ``given`` (``--lineage``), else the ``lineage`` setting, else ``openlineage`` when the
    client's own ``OPENLINEAGE_URL`` / ``OPENLINEAGE_CONFIG`` is set; None (off) otherwise."""
    chosen = given or config.value("lineage")
    if chosen and chosen.strip().lower() in ("off", "none", "0", "false"):
        return None
    if chosen:
        if chosen != "console" and not chosen.startswith("file:"):
            raise ValueError(f"--lineage {chosen!r}: use console or file:PATH (or OPENLINEAGE_URL / OPENLINEAGE_CONFIG)")
        return chosen
    return "openlineage" if config.outside("OPENLINEAGE_URL") or config.outside("OPENLINEAGE_CONFIG") else None


def client(where: str) -> Any:
    """The OpenLineage client of ``where`` (one per target in this process)."""
    with _lock:
        if where not in _clients:
            from openlineage.client import OpenLineageClient
            from openlineage.client.transport.console import ConsoleConfig, ConsoleTransport
            from openlineage.client.transport.file import FileConfig, FileTransport

            if where == "console":
                _clients[where] = OpenLineageClient(transport=ConsoleTransport(ConsoleConfig()))
            elif where.startswith("file:"):
                path = os.path.abspath(os.path.expanduser(where[len("file:"):]))
                _clients[where] = OpenLineageClient(transport=FileTransport(FileConfig(path, append=True)))
            else:
                _clients[where] = OpenLineageClient()
        return _clients[where]


def attach(run: Any, given: str | None = None) -> "RunLineage | None":
    """Sends ``run``'s events from now on when lineage is configured; None when it is off."""
    try:
        where = target(given)
    except ValueError as exc:  # a bad setting turns lineage off, with a warning, and the run goes on
        _warn_once(str(given or config.value("lineage")), str(exc))
        return None
    if where is None:
        return None
    lineage = RunLineage(run, where)
    run.state.watchers.append(lineage.moved)
    return lineage


def column_lineage(plan: Plan, frames: dict[str, Any], spark: Any) -> tuple[ColumnLineage, Indirect, dict[Dataset, Any]]:
    """Per output dataset its columns' lineage and the input columns deciding its rows (filters, joins,
    grouping, sorting), and the frame each dataset's schema comes from. Only plans are read: no job runs."""
    extracts = [p for p in plan.steps if p.step.type == "extract" and p.output in frames and datasets_of(p)]
    writes = [(p, ds, q) for p in plan.steps if p.inputs and p.inputs[0] in frames for q in (False, True)
              for ds in (quarantine_of(p) if q else datasets_of(p) if p.step.type == "load" else [])]
    sources = [frames[p.output] for p in extracts]
    read = read_plans(spark, sources + [frames[p.inputs[0]] for p, _, _ in writes])
    by_id: dict[int, list[Dataset]] = {}
    by_signature: dict[str, list[Dataset]] = {}
    for p, pc in zip(extracts, read):
        for leaf in pc.leaves if pc else ():
            for i in leaf.ids:
                by_id.setdefault(i, datasets_of(p))
            by_signature.setdefault(leaf.signature, datasets_of(p))
    out: ColumnLineage = {}
    indirect: Indirect = {}
    schemas: dict[Dataset, Any] = {ds: frames[p.output] for p in extracts for ds in datasets_of(p)}
    for (p, ds, quarantine), pc in zip(writes, read[len(sources):]):
        frame = frames[p.inputs[0]]
        schemas[ds] = frame
        if pc is None:
            continue
        leaf_sets = [next((by_id[i] for i in leaf.ids if i in by_id), by_signature.get(leaf.signature, []))
                     for leaf in pc.leaves]
        cols = {c: [(d, col, kind) for (leaf, col), kind in srcs.items() for d in leaf_sets[leaf]]
                for c, srcs in pc.columns.items()}
        out[ds] = _sink_columns(p, cols, quarantine)
        indirect[ds] = sorted((d, col, sub) for (leaf, col), subs in pc.indirect.items() for sub in subs
                              for d in leaf_sets[leaf])
    return out, indirect, schemas


def _sink_columns(p: PlannedStep, cols: dict[str, list[Any]], quarantine: bool) -> dict[str, list[Any]]:
    """What the sink does to its input's columns, from the spec."""
    c = p.step.config

    def changed(fields: list[Any]) -> list[Any]:
        return sorted({(d, col, AGGREGATION if k == AGGREGATION else TRANSFORMATION) for d, col, k in fields})

    if quarantine:
        return {**cols, "_failed_rules": changed([f for fs in cols.values() for f in fs])}
    if p.step.method == "toKafka":
        value = cols.get(c["value"], []) if c.get("value") else [f for fs in cols.values() for f in fs]
        return {**({"key": changed(cols.get(c["key"], []))} if c.get("key") else {}), "value": changed(value)}
    if c.get("mode") in ("scd1", "scd2"):
        kept = {k: v for k, v in cols.items() if k not in (c.get("exceptColumns") or [])}
        if c["mode"] == "scd2":
            seq = changed(cols.get(c.get("sequenceBy", ""), []))
            kept.update({"__START_AT": seq, "__END_AT": seq})
        return kept
    return cols


class RunLineage:
    """The OpenLineage events of one run: called by the run's status when it moves, and per micro-batch."""

    def __init__(self, run: Any, where: str) -> None:
        from openlineage.client.uuid import generate_new_uuid

        self.run, self.where = run, where
        self.run_uuid = str(generate_new_uuid())
        self.namespace = config.value("lineage_namespace") or "pipeline_magics"
        self.columns: ColumnLineage | None = None
        self._datasets: tuple[list[Any], list[Any]] | None = None
        self._batches: set[Any] = set()
        self._sending = threading.Lock()

    def moved(self, status: str) -> None:
        """The run's status moved to ``status``: START, COMPLETE, FAIL or ABORT."""
        if status in _EVENTS:
            self.send(_EVENTS[status], full=status != RUNNING)

    def prepare(self) -> None:
        """Reads the plans now (a streaming run's queries have started), and sends RUNNING per micro-batch."""
        self._facets()
        for _, query in self.run.queries:
            QUERIES.subscribe(str(query.id), self._batch)

    def _batch(self, record: Any) -> None:
        key = (record.id, getattr(record, "batch_id", None))
        if key[1] is None or key in self._batches or self.run.state.over:
            return
        self._batches.add(key)
        threading.Thread(target=self.send, args=("RUNNING", True), daemon=True, name="lineage").start()

    def _facets(self) -> tuple[list[Any], list[Any]]:
        """Inputs and outputs with their facets (read once per run)."""
        if self._datasets is None:
            frames = dict(self.run.frames)
            cols, indirect, schemas = column_lineage(self.run.plan, frames, self.run.spark) if frames else ({}, {}, {})
            self.columns = cols
            self._datasets = self._build(cols, indirect, schemas)
        return self._datasets

    def _build(self, cols: ColumnLineage, indirect: Indirect, schemas: dict[Dataset, Any]) -> tuple[list[Any], list[Any]]:
        from openlineage.client.event_v2 import InputDataset, OutputDataset
        from openlineage.client.facet_v2 import column_lineage_dataset as cl

        inputs, outputs = self._named()
        ins = [InputDataset(ns, n, facets=self._schema(schemas.get((ns, n)))) for ns, n in inputs]
        outs = []
        for ns, n in outputs:
            facets = self._schema(schemas.get((ns, n)), cols.get((ns, n)))
            if (ns, n) in cols:
                facets["columnLineage"] = cl.ColumnLineageDatasetFacet(fields={
                    col: cl.Fields(inputFields=[
                        cl.InputField(d[0], d[1], f, transformations=[cl.Transformation(
                            "DIRECT", kind, masking=False)]) for d, f, kind in srcs])
                    for col, srcs in cols[(ns, n)].items() if srcs}, dataset=[
                    cl.InputField(d[0], d[1], f, transformations=[cl.Transformation("INDIRECT", sub)])
                    for d, f, sub in indirect.get((ns, n), [])])
            outs.append(OutputDataset(ns, n, facets=facets))
        return ins, outs

    def _schema(self, frame: Any, cols: dict[str, Any] | None = None) -> dict[str, Any]:
        from openlineage.client.facet_v2 import schema_dataset

        try:
            fields = [(f.name, f.dataType.simpleString()) for f in frame.schema.fields] if frame is not None else []
        except Exception:  # noqa: BLE001 - a frame that cannot be analysed has no schema facet
            fields = []
        if cols is not None:  # the sink's own columns (Kafka's key/value, CDC's validity, failed rules)
            types = dict(fields)
            special = {"_failed_rules": "array<string>", "key": "string", "value": "string"}
            fields = [(c, types.get(c) or special.get(c) or next(
                (types[f] for _, f, _ in cols[c] if f in types), "string")) for c in cols]
        if not fields:
            return {}
        return {"schema": schema_dataset.SchemaDatasetFacet(
            fields=[schema_dataset.SchemaDatasetFacetFields(name=n, type=t) for n, t in fields])}

    def _named(self) -> tuple[list[Dataset], list[Dataset]]:
        """The datasets the spec names (all a START event can say)."""
        steps = self.run.plan.steps
        ins = [d for p in steps if p.step.type == "extract" for d in datasets_of(p)]
        outs = [d for p in steps for d in (datasets_of(p) if p.step.type == "load" else []) + quarantine_of(p)]
        mask = self.run.mask
        return ([(mask(ns), mask(n)) for ns, n in dict.fromkeys(ins)],
                [(mask(ns), mask(n)) for ns, n in dict.fromkeys(outs)])

    def event(self, kind: str, full: bool) -> Any:
        """The run event ``kind`` (START, RUNNING, COMPLETE, FAIL, ABORT) of this run."""
        from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
        from openlineage.client.facet_v2 import error_message_run, job_type_job, processing_engine_run
        import pyspark

        if full:
            try:
                ins, outs = self._facets()
            except Exception as exc:  # noqa: BLE001 - lineage that cannot be read leaves the names only
                log.debug("column lineage not read: %s", exc)
                full = False
        if not full:
            names = self._named()
            ins, outs = [InputDataset(*d) for d in names[0]], [OutputDataset(*d) for d in names[1]]
        facets: dict[str, Any] = {"processing_engine": processing_engine_run.ProcessingEngineRunFacet(
            version=pyspark.__version__, name="spark", openlineageAdapterVersion=_version())}
        error = self.run.metrics.error
        if kind == "FAIL" and error:
            facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
                message=self.run.mask(mask_text(error)), programmingLanguage="python")
        streaming = self.run.plan.spec.mode == "streaming"
        job = Job(self.namespace, self.run.plan.spec.name, facets={"jobType": job_type_job.JobTypeJobFacet(
            processingType="STREAMING" if streaming else "BATCH", integration="SPARK", jobType="PIPELINE")})
        return RunEvent(eventType=RunState[kind], eventTime=datetime.now(timezone.utc).isoformat(),
                        run=Run(self.run_uuid, facets=facets), job=job, inputs=ins, outputs=outs, producer=PRODUCER)

    def send(self, kind: str, full: bool = True) -> None:
        """Builds and sends one event; a failure is a warning, once per target, never the run's failure."""
        with self._sending:
            try:
                client(self.where).emit(self.event(kind, full))
            except Exception as exc:  # noqa: BLE001 - lineage never fails a run
                _warn_once(self.where, self.run.mask(str(exc).splitlines()[0] if str(exc) else type(exc).__name__))


def _warn_once(where: str, why: str) -> None:
    if where not in _warned:
        _warned.add(where)
        log.warning("OpenLineage events to %s are not sent: %s", where, mask_text(why))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pipeline_magics")
    except PackageNotFoundError:
        return "0"

