"""``sdp run|dry-run DIR``: an SDP project run on the notebook's Spark, its flows as steps.

The project is loaded and registered as ``spark-pipelines`` does (pyspark's own
``pyspark.pipelines.cli`` functions), then its pipeline events are read one by one:
each flow is a step of a ``PipelineMetrics`` (status, start, end, rows written from
its Delta commits), so the live view, the exporters and Cancel work as for ``%%pipeline``.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import PipelineCancelledError, PipelineError, PipelineExecutionError
from ..metrics.model import PipelineMetrics, StepMetrics
from ..metrics.exporters import export
from ..run.pipeline import PipelineResult
from ..metrics.status import RunStatus
from ..metrics.sources import drain_listener_bus
from ..spark.kind import is_classic
from ..spark.session import get_session
from ..spark.sql_plans import latest_execution, rows_written
from .connect import connect_functions, connect_session, require_sdp

_FLOW = re.compile(r"^Flow '?(?P<flow>.+?)'? (?:is|has) (?P<state>[A-Z_]+)\.")
#: a flow written to a table format with no commit history, on a Spark Connect notebook session
CONNECT = "Spark Connect keeps the SQL metrics of the flow's write on its server, and the table has no Delta history"
_RUN = re.compile(r"^Run (?:is|has) (?P<state>[A-Z_]+)")
_UNRESOLVED = re.compile(r"^Failed to resolve flow: '?(?P<flow>.+?)'?\.\s*\nError: (?P<error>.+)")
STATES = {"QUEUED": "pending", "PLANNING": "running", "STARTING": "running", "RUNNING": "running",
          "COMPLETED": "done", "FAILED": "failed", "STOPPED": "cancelled", "SKIPPED": "skipped",
          "EXCLUDED": "skipped", "IDLE": "done"}
RUN_STATES = {"COMPLETED": "done", "FAILED": "failed", "CANCELED": "cancelled", "CANCELLED": "cancelled"}


def _short(name: str) -> str:
    """``spark_catalog.default.orders`` -> ``orders`` (a flow's name as its step)."""
    return re.sub(r"^spark_catalog\.default\.", "", name.replace("`", ""))


@dataclass
class Flows:
    """What the definitions registered: flow -> target, target -> its kind and location."""

    flows: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)

    def kind(self, flow: str) -> str:
        target = self.flows.get(flow, flow)
        return self.outputs.get(target, ("flow", {}))[0]

    def views(self) -> set[str]:
        return {name for name, (kind, _) in self.outputs.items() if kind == "view"}


def _recording_registry(spark: Any, graph_id: str, flows: Flows) -> Any:
    from pyspark.pipelines import output as out
    from pyspark.pipelines.spark_connect_graph_element_registry import SparkConnectGraphElementRegistry

    kinds = ((out.MaterializedView, "materialized_view"), (out.StreamingTable, "streaming_table"),
             (out.TemporaryView, "view"), (out.Sink, "sink"))

    class Recording(SparkConnectGraphElementRegistry):
        def register_output(self, output: Any) -> None:
            kind = next((k for cls, k in kinds if isinstance(output, cls)), "table")
            where = dict(getattr(output, "table_properties", None) or getattr(output, "options", None) or {})
            flows.outputs[output.name] = (kind, where)
            super().register_output(output)

        def register_flow(self, flow: Any) -> None:
            flows.flows[flow.name] = flow.target
            super().register_flow(flow)

        def register_sql(self, sql_text: str, file_path: Any) -> None:
            try:
                super().register_sql(sql_text, file_path)
            except Exception as exc:  # noqa: BLE001 - named after its file by _definition_error
                exc.sdp_file = str(file_path)  # type: ignore[attr-defined]
                raise

    return Recording(spark, graph_id)


def definition_error(exc: BaseException, root: Path, pipeline: str) -> PipelineError:
    """A definition file that Spark or Python refused, named with its line (``SDP_DEFINITION_INVALID``)."""
    text = str(exc).strip() or type(exc).__name__
    first = text.splitlines()[0][:400]
    where, line = getattr(exc, "sdp_file", None), None
    if isinstance(exc, SyntaxError) and exc.filename:
        where, line = exc.filename, exc.lineno
    if where is None:  # a Python definition: the deepest frame inside the project
        inside = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith(str(root) + os.sep)]
        if inside:
            where, line = inside[-1].filename, inside[-1].lineno
    spark_line = re.search(r"\(line (\d+), pos (\d+)\)", text)
    if spark_line and line is None:
        line = int(spark_line.group(1))
    name = os.path.relpath(str(where), root) if where and os.path.isabs(str(where)) else where
    at = f"{name}, line {line}" if name and line else (name or "a definition file")
    return PipelineExecutionError(f"{at}: {first}", code="SDP_DEFINITION_INVALID", pipeline=pipeline, detail=text,
                                  params={"file": name, "line": line},
                                  hint=f"fix {name or 'the definition'} and run again (spark-pipelines dry-run "
                                       "checks a project without running it)")


def _delta_rows(spark: Any, target: str, where: dict[str, str], since: int) -> tuple[int, int | None]:
    """The newest version of a Delta target and the rows its commits after ``since`` wrote."""
    location = where.get("location") or where.get("path")
    ident = f"delta.`{location}`" if location else target
    try:
        history = spark.sql(f"DESCRIBE HISTORY {ident}").select("version", "operationMetrics").collect()
    except Exception:  # noqa: BLE001 - not a Delta table (yet): no figure
        return -1, None
    newest = max((r["version"] for r in history), default=-1)
    rows = [int((r["operationMetrics"] or {}).get("numOutputRows", 0)) for r in history if r["version"] > since]
    return newest, (sum(rows) if rows else None)


class SdpRun:
    """One run of an SDP project; ``cancel()`` interrupts it from any thread."""

    def __init__(self, project: str | Path, *, dry: bool = False, full_refresh: Sequence[str] = (),
                 full_refresh_all: bool = False, refresh: Sequence[str] = ()) -> None:
        require_sdp()
        from pyspark.pipelines import cli

        path = Path(project)
        self.spec_path = path if path.is_file() else cli.find_pipeline_spec(path.resolve())
        self.spec = cli.load_pipeline_spec(self.spec_path)
        self.dry, self.full_refresh, self.refresh_only = dry, list(full_refresh), list(refresh)
        self.full_refresh_all = full_refresh_all
        self.metrics = PipelineMetrics(self.spec.name, uuid.uuid4().hex[:12], mode="sdp")
        self.state = RunStatus(self.metrics)  # the one writer of the run's and its flows' status
        self.flows = Flows()
        self.on_update: Callable[[PipelineMetrics], None] = lambda m: None
        self.cancelled = threading.Event()
        self._session: Any = None
        self._versions: dict[str, int] = {}
        self._first = -1  # the notebook session's latest SQL execution before the run

    def cancel(self) -> None:
        """Stops the run: its Spark Connect operations are interrupted."""
        self.cancelled.set()
        if self._session is not None:
            with contextlib.suppress(Exception):
                self._session.interruptAll()

    def _step(self, flow: str) -> StepMetrics:
        name = _short(flow)
        for s in self.metrics.steps:
            if s.step == name:
                return s
        step = StepMetrics(len(self.metrics.steps), name, "load", self.flows.kind(name))
        self.metrics.steps.append(step)
        return step

    def _event(self, spark: Any, message: str) -> None:
        run = _RUN.match(message)
        if run:
            ended = RUN_STATES.get(run.group("state"))
            if ended in ("failed", "cancelled"):
                self.state.fail(None, cancelled=ended == "cancelled")
            return
        unresolved = _UNRESOLVED.match(message)
        if unresolved:  # the graph is checked before any flow runs
            step = self._step(unresolved.group("flow"))
            self.state.step_failed(step.index, unresolved.group("error").strip())
            return
        flow = _FLOW.match(message)
        if not flow or _short(flow.group("flow")) in self.flows.views():
            return
        step = self._step(flow.group("flow"))
        status = STATES.get(flow.group("state"), step.status)
        if status == "running" and step.start is None:
            step.start = time.time()
        if status in ("done", "failed", "cancelled", "skipped"):
            step.end = time.time()
            if step.start is None:
                step.start = step.end
        if status == "done":
            self._count(spark, step)
        if status == "running":
            self.state.step_started(step.index)
        elif status == "done":
            self.state.step_started(step.index)  # a flow may report only its end
            self.state.step_finished(step.index)
        elif status in ("failed", "cancelled"):
            error = message.split("Error:", 1)[1].strip().splitlines()[0] if "Error:" in message else ""
            self.state.step_failed(step.index, error, cancelled=status == "cancelled")
        elif status == "skipped":
            self.state.step_left_out(step.index, "skipped")

    def _targets(self) -> dict[str, tuple[str, dict[str, str]]]:
        """Flow (its step name) -> its target and the target's properties."""
        return {_short(f): (t, self.flows.outputs.get(t, ("", {}))[1]) for f, t in self.flows.flows.items()}

    def _count(self, spark: Any, step: StepMetrics) -> None:
        target, where = self._targets().get(step.step, (step.step, {}))
        _, rows = _delta_rows(spark, target, where, self._versions.get(step.step, -1))
        if rows is not None:
            step.rows_out = rows
            step.sources["rows_out"] = "delta commits"
        elif is_classic(spark):  # its Connect server runs in this JVM: the write's own SQL metrics
            drain_listener_bus(spark)
            rows = rows_written(spark, self._first, target)
            if rows is not None:
                step.rows_out, step.sources["rows_out"] = rows, "SQL metrics of the flow's write"
        else:
            step.rows_note = CONNECT

    def run(self, spark: Any) -> PipelineMetrics:
        """Registers the definitions and runs the graph on ``spark``'s Spark; returns the metrics."""
        from pyspark.pipelines import cli
        from pyspark.pipelines.spark_connect_pipeline import create_dataflow_graph, start_run

        m = self.metrics
        self.state.start()
        try:
            with connect_session(spark) as session:
                self._session = session
                self._configure(session, self.spec.configuration)
                graph = create_dataflow_graph(session, default_catalog=self.spec.catalog,
                                              default_database=self.spec.database, sql_conf=self.spec.configuration)
                registry = _recording_registry(session, graph, self.flows)
                try:
                    with connect_functions(), contextlib.redirect_stdout(io.StringIO()):
                        cli.register_definitions(self.spec_path, registry, self.spec, session, graph)
                except Exception as exc:  # noqa: BLE001 - a broken definition, named by file and line
                    raise definition_error(exc, self.spec_path.parent.resolve(), self.spec.name) from None
                for flow in self.flows.flows:
                    if self.flows.kind(flow) != "view":
                        self._step(flow)
                for name, (target, where) in self._targets().items():
                    self._versions[name] = _delta_rows(spark, target, where, 0)[0]
                self._first = latest_execution(spark)
                self.on_update(m)
                if self.cancelled.is_set():
                    raise PipelineCancelledError("cancelled", pipeline=self.spec.name)
                events = start_run(session, graph, full_refresh=self.full_refresh,
                                   full_refresh_all=self.full_refresh_all, refresh=self.refresh_only,
                                   dry=self.dry, storage=self.spec.storage)
                for result in events:
                    if "pipeline_event_result" in result:
                        self._event(spark, result["pipeline_event_result"].event.message)
                        self.on_update(m)
            for s in m.steps:  # a flow whose end was not reported ended with the run
                self.state.step_finished(s.index)
            self.state.steps_over()
        except PipelineError as exc:
            self._fail(exc)
            raise
        except Exception as exc:  # noqa: BLE001 - one readable line; the whole text for last-error
            error = self._error(exc)
            self._fail(error)
            raise error from None
        finally:
            if self._session is not None:
                self._configure(self._session, {k: None for k in self.spec.configuration})
            self._session = None
            self.on_update(m)
        if self.dry:
            for s in m.steps:
                self.state.step_left_out(s.index, "checked")
        return m

    @staticmethod
    def _configure(session: Any, confs: dict[str, str | None]) -> None:
        """Sets (None: unsets) the project's configuration on the Connect session for one run."""
        for key, value in confs.items():
            with contextlib.suppress(Exception):  # static confs belong to the server
                session.conf.set(key, value) if value is not None else session.conf.unset(key)

    def _error(self, exc: Exception) -> PipelineError:
        if self.cancelled.is_set():
            return PipelineCancelledError("cancelled", pipeline=self.spec.name)
        text = str(exc).strip()
        first = next((ln.strip() for ln in text.splitlines() if ln.strip()), type(exc).__name__)
        failed = next((s for s in self.metrics.steps if s.status == "failed" and s.error), None)
        message = f"flow '{failed.step}' failed: {failed.error}" if failed else first
        detail = "\n".join([text] + [f"flow {s.step}: {s.error}" for s in self.metrics.steps if s.error])
        return PipelineExecutionError(message, code="SDP_RUN_FAILED", pipeline=self.spec.name, detail=detail,
                                      step_name=failed.step if failed else None,
                                      params={"error_class": getattr(exc, "getCondition", lambda: None)()})

    def _fail(self, error: PipelineError) -> None:
        self.state.fail(str(error), cancelled=isinstance(error, PipelineCancelledError))


def run_project(project: str | Path, spark: Any = None, *, dry: bool = False, full_refresh: Sequence[str] = (),
                full_refresh_all: bool = False, refresh: Sequence[str] = (), metrics: Sequence[str] = (),
                on_update: Callable[[PipelineMetrics], None] | None = None,
                sdp_run: SdpRun | None = None) -> PipelineResult:
    """Runs (or dry-runs) an SDP project on ``spark`` (default: the active or a new local session)."""
    job = sdp_run or SdpRun(project, dry=dry, full_refresh=full_refresh, full_refresh_all=full_refresh_all,
                            refresh=refresh)
    if on_update is not None:
        job.on_update = on_update
    error: PipelineError | None = None
    try:
        job.run(get_session(spark))
    except PipelineError as exc:
        error = exc
    for target in metrics:
        export(job.metrics, target)
    result = PipelineResult(job.spec.name, job.metrics, error=error)
    if error is not None:
        error.result = result
        raise error
    return result
