"""Runs a plan on a SparkSession, step by step, recording metrics and wrapping failures."""
from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from ..spark.cache import conf_get, persist
from ..spark.causes import root_cause
from ..secrets.credentials import Resolver, SecurityPolicy
from ..errors import PipelineCancelledError, PipelineError, PipelineExecutionError, RetryableError
from ..methods import StepContext
from ..methods.registry import step_label
from ..metrics.model import PipelineMetrics, StepMetrics, StepRecord
from ..metrics.queries import QUERIES
from ..spec.plan import Plan, PlannedStep
from ..secrets.redaction import mask_text
from . import step_rows
from .retry import backoff_delay, is_transient, policy_for, resolve_policy
from ..metrics.status import RUNNING, SKIPPED, RunStatus
from ..spark.tags import _INTERRUPT_BEFORE, add_tag, interrupt_tag, remove_tag  # noqa: F401
from .step_rows import LoadJobs
from .streaming import is_query, stop_queries

log = logging.getLogger("pipeline_magics")


def ignore_update(run: "Run") -> None:
    """What a run calls on each change when nobody watches it."""


@dataclass
class Run:
    """The state of one run: the flag Cancel sets, the metrics and its status, the frames made so far."""

    plan: Plan
    spark: Any
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    cancelled: threading.Event = field(default_factory=threading.Event)
    frames: dict[str, Any] = field(default_factory=dict)
    displays: list[tuple[str, Any]] = field(default_factory=list)
    views: list[str] = field(default_factory=list)
    cached: list[Any] = field(default_factory=list)
    #: steps whose figures arrive with a later action (Observations), read after each step
    pending: list[tuple[PlannedStep, StepContext]] = field(default_factory=list)
    #: streaming queries started by load steps: (step index, StreamingQuery)
    queries: list[tuple[int, Any]] = field(default_factory=list)
    metrics: PipelineMetrics = field(init=False)
    #: the only writer of the run's and its steps' status (``metrics.status``)
    state: RunStatus = field(init=False)
    #: called after each change of a step (the live view redraws)
    on_update: Callable[["Run"], None] = ignore_update
    emit: Callable[[str, Any], None] | None = None
    policy: SecurityPolicy = field(default_factory=SecurityPolicy.from_env)
    resolver: Resolver = field(init=False)
    #: False: no Observations or other counting (``Pipeline.run(collect_metrics=False)``)
    metrics_enabled: bool = True
    #: set when ``execute`` returns (a streaming run's queries may go on running)
    finished: threading.Event = field(default_factory=threading.Event)
    #: batch runs with metrics: the Spark jobs of each load, whose plans count the other steps' rows
    load_jobs: LoadJobs | None = None
    #: steps this run leaves out (``--until``/``--from``): index -> (the kept output standing in for it, or
    #: None) and the note its row in the step table shows
    skip: dict[int, tuple[Any, str]] = field(default_factory=dict)

    #: seconds the caller spent starting the SparkSession for this run (``PipelineMetrics.spark_start``)
    spark_start: float | None = None

    def __post_init__(self) -> None:
        spec = self.plan.spec
        self.metrics = PipelineMetrics(spec.name, self.run_id, spec.mode, spark_start=self.spark_start, steps=[
            StepMetrics(p.index, p.label, p.step.type, p.step.method) for p in self.plan.steps])
        self.state = RunStatus(self.metrics)
        self.resolver = Resolver(self.policy, spec.name)

    @property
    def tag(self) -> str:
        return f"pipeline_magics-{self.plan.spec.name}-{self.run_id}"

    def cancel(self) -> None:
        """Sets the flag, stops this run's streaming queries and interrupts its running Spark jobs."""
        self.cancelled.set()
        # Queries first: their micro-batch jobs carry the run's tag too, and a query whose batch is
        # interrupted under it ends with an error (SPARK_JOB_CANCELLED) instead of simply stopping.
        stop_queries(self.queries)
        interrupt_tag(self.spark, self.tag)
        if self.state.status == RUNNING and not self.finished.is_set():
            # A job the run starts after this (the step was between two jobs) is interrupted too.
            threading.Thread(target=self._interrupt_until_finished, name=f"cancel-{self.run_id}",
                             daemon=True).start()

    def _interrupt_until_finished(self) -> None:
        while not self.finished.wait(0.5):
            interrupt_tag(self.spark, self.tag)

    def mask(self, text: str) -> str:
        return mask_text(text, self.resolver.secrets)


def execute(run: Run) -> None:
    """Runs every step of ``run.plan``; raises a ``PipelineError`` on failure (metrics say where)."""
    spec, spark = run.plan.spec, run.spark
    run.state.start()
    previous_confs = {k: conf_get(spark, k) for k in spec.spark}
    for key, value in spec.spark.items():
        spark.conf.set(key, str(value).lower() if isinstance(value, bool) else str(value))
    add_tag(spark, run.tag)
    if spec.mode == "batch" and run.metrics_enabled:
        run.load_jobs = LoadJobs(spark, run.tag)
    if spec.mode == "streaming" and run.metrics_enabled:
        QUERIES.listen(spark)  # before any query starts, so that no progress report is missed
    try:
        for planned in run.plan.steps:
            if run.cancelled.is_set():
                raise PipelineCancelledError("the run was cancelled", pipeline=spec.name,
                                             step_index=planned.index, step_name=planned.step.name,
                                             step_type=planned.step.type, method=planned.step.method)
            if planned.index in run.skip:
                _left_out(run, planned, *run.skip[planned.index])
            else:
                _run_step(run, planned)
        run.state.steps_over(run.cancelled.is_set())  # done, unless a streaming query runs on
    except PipelineError as exc:
        if run.cancelled.is_set() and not isinstance(exc, PipelineCancelledError):
            exc = PipelineCancelledError("the run was cancelled", pipeline=spec.name, step_index=exc.step_index,
                                         step_name=exc.step_name, step_type=exc.step_type, method=exc.method)
        # Failed first: the queries stopped below then leave their steps cancelled, whatever reads them.
        run.state.fail(str(exc), cancelled=isinstance(exc, PipelineCancelledError))
        stop_queries(run.queries)  # a half-started streaming pipeline is stopped whole
        raise exc from None
    finally:
        read_pending(run)
        if run.metrics_enabled:
            _count_steps(run)
        remove_tag(spark, run.tag)
        run.finished.set()
        for key, value in previous_confs.items():
            spark.conf.unset(key) if value is None else spark.conf.set(key, value)
        run.on_update(run)


def _run_step(run: Run, planned: PlannedStep) -> None:
    """Runs one step: its method (retried when a service is away), then its output kept and its figures read."""
    sm = run.metrics.steps[planned.index]
    _step_started(run, planned)
    attempt = _Attempt(run, planned)
    try:
        out = _call_with_retries(attempt)
        out = _keep_output(run, planned, attempt.ctx, out)
        _fill_rows(run, planned, sm, attempt.ctx.record)
        _step_finished(run, planned, query=is_query(out))
    except PipelineError as exc:
        _step_failed(run, planned, attempt.ctx, exc)
        raise
    except Exception as exc:  # noqa: BLE001 - every failure becomes a PipelineExecutionError
        raise _execution_error(run, planned, exc) from None
    finally:
        sm.end = time.time()
        run.on_update(run)


def _step_started(run: Run, planned: PlannedStep) -> None:
    run.state.step_started(planned.index)
    if planned.step.type == "load" and run.load_jobs is not None:
        run.load_jobs.load_started()
    run.metrics.steps[planned.index].start = time.time()
    run.on_update(run)


@dataclass
class _Attempt:
    """One try of a step's method: its settings (credentials read once, kept for the retries) and its context."""

    run: Run
    planned: PlannedStep
    config: Any = None
    #: the context of the latest try (None until its settings are read); a failure records its figures
    ctx: StepContext | None = None

    def __call__(self) -> Any:
        run, planned = self.run, self.planned
        self.ctx = None
        if self.config is None:
            self.config = planned.config(run.resolver.resolve(planned.step.config, planned.label))
        self.ctx = StepContext(
            spark=run.spark, pipeline=run.plan.spec.name, run_id=run.run_id, step=planned.step, index=planned.index,
            mode=run.plan.spec.mode, inputs=[run.frames[n] for n in planned.inputs], frames=run.frames,
            emit=lambda kind, payload: _emit(run, planned, kind, payload),
            metrics_enabled=run.metrics_enabled, cached=run.cached,
            run_version=int((run.metrics.start or time.time()) * 1000),
        )
        return planned.method.func(self.ctx, self.config)


def _call_with_retries(attempt: _Attempt) -> Any:
    """Reads the credentials, then runs the method; a transient failure of either is tried again after a
    backoff, up to the step's retry policy (the credentials' own policy while they are not read)."""
    run, planned = attempt.run, attempt.planned
    sm = run.metrics.steps[planned.index]
    method_policy = policy_for(planned.step, run.plan.spec.mode)
    tries = 0
    while True:
        tries += 1
        sm.attempts = tries
        try:
            return attempt()
        except Exception as exc:  # noqa: BLE001 - classified below
            policy = method_policy if attempt.config is not None else resolve_policy(planned.step)
            transient = is_transient(exc) and not run.cancelled.is_set()
            if not transient or tries >= policy.attempts:
                if transient and tries > 1:
                    raise _retries_exhausted(run, planned, exc, tries) from None
                raise
            delay = backoff_delay(policy, tries)
            log.warning("%s step %s: attempt %d of %d failed (%s); retrying in %.1fs", run.plan.spec.name,
                        planned.label, tries, policy.attempts, run.mask(root_cause(exc)[0]), delay)
            if attempt.ctx is not None:  # Observations of the failed attempt never fill
                attempt.ctx.after.clear()
            if run.cancelled.wait(delay):
                raise PipelineCancelledError("the run was cancelled") from None


def _keep_output(run: Run, planned: PlannedStep, ctx: StepContext, out: Any) -> Any:
    """What the method returned, counted: a streaming query joins the run's queries; a frame is the step's
    output (cached if the step asks, a temp view by the step's name)."""
    step = planned.step
    out = step_rows.observe(run, planned, ctx, out)
    if ctx.after:
        run.pending.append((planned, ctx))
    if is_query(out):
        run.queries.append((planned.index, out))
        ctx.record.extra["query"] = out.name
    elif out is not None:
        if step.cache:
            out = persist(run.spark, out, step.cacheStorageLevel or "MEMORY_AND_DISK")
            run.cached.append(out)
        run.frames[planned.output] = out
        if step.name and not out.isStreaming:
            out.createOrReplaceTempView(step.name)
            run.views.append(step.name)
    return out


def _step_finished(run: Run, planned: PlannedStep, query: bool) -> None:
    if planned.step.type == "load" and run.load_jobs is not None:
        run.load_jobs.load_done(planned.index)
    run.state.step_finished(planned.index, query=query)
    read_pending(run)


def _place(run: Run, planned: PlannedStep) -> dict[str, Any]:
    """Where a step's error happened: the pipeline, the step and its line in the spec."""
    step = planned.step
    line, column = run.plan.spec.line_of("steps", planned.index)
    return dict(pipeline=run.plan.spec.name, step_index=planned.index, step_name=step.name, step_type=step.type,
                method=step.method, config=step.config, line=line, column=column)


def _step_failed(run: Run, planned: PlannedStep, ctx: StepContext | None, exc: PipelineError) -> None:
    """The step failed with ``exc``: the figures its try recorded are kept, the error told where, secrets masked."""
    if ctx is not None:
        _fill_rows(run, planned, run.metrics.steps[planned.index], ctx.record)
    exc.with_context(**_place(run, planned))
    exc.message = run.mask(exc.message)
    exc.hint = run.mask(exc.hint) if exc.hint else exc.hint
    run.state.step_failed(planned.index, str(exc), cancelled=run.cancelled.is_set())


def _execution_error(run: Run, planned: PlannedStep, exc: Exception) -> PipelineExecutionError:
    """The step failed with an error of Spark's or Python's: its root cause, masked, as a ``PipelineError``."""
    cause, detail = root_cause(exc)
    run.state.step_failed(planned.index, run.mask(cause), cancelled=run.cancelled.is_set())
    return PipelineExecutionError(run.mask(cause), detail=run.mask(detail), **_place(run, planned))


def _left_out(run: Run, planned: PlannedStep, frame: Any, note: str) -> None:
    """A step the run does not run; a kept output (``frame``) stands in for its own, view included."""
    run.state.step_left_out(planned.index, SKIPPED)
    run.metrics.steps[planned.index].note = note
    if frame is not None:
        run.frames[planned.output] = frame
        if planned.step.name:
            frame.createOrReplaceTempView(planned.step.name)
            run.views.append(planned.step.name)


def read_pending(run: Run) -> None:
    """Collects the figures of Observations whose action has run by now."""
    for planned, ctx in list(run.pending):
        if all(read() for read in ctx.after):
            run.pending.remove((planned, ctx))
        _fill_rows(run, planned, run.metrics.steps[planned.index], ctx.record)


def _count_steps(run: Run) -> None:
    """Rows for the steps nothing counted yet, from the plans Spark executed (``step_rows``)."""
    try:
        step_rows.fill(run, run.load_jobs)
    except Exception as exc:  # noqa: BLE001 - a figure missing never fails a run
        log.debug("step rows from SQL metrics: %s", exc)


def _fill_rows(run: Run, planned: PlannedStep, sm: StepMetrics, record: StepRecord) -> None:
    """Copies what the step's method recorded into its metrics; its rows in, if none, are the rows out of its
    one input."""
    sm.take(record)
    if sm.rows_in is None and planned.inputs:
        upstream = [s for s in run.metrics.steps if s.step in planned.inputs or
                    step_label(s.index) in planned.inputs]
        if len(upstream) == 1 and upstream[0].rows_out is not None:
            sm.rows_in = upstream[0].rows_out
            sm.sources.setdefault("rows_in", f"rows out of step {upstream[0].step}")


def _retries_exhausted(run: Run, planned: PlannedStep, exc: Exception, attempts: int) -> RetryableError:
    """The error of a step whose service stayed unreachable for all its attempts."""
    cause, detail = (exc.message, exc.detail) if isinstance(exc, PipelineError) else root_cause(exc)
    line, column = run.plan.spec.line_of("steps", planned.index)
    return RetryableError(
        f"failed after {attempts} attempts: {run.mask(cause)}", detail=run.mask(detail or ""),
        params={"attempts": attempts, "cause": run.mask(cause), "cause_code": getattr(exc, "code", None)},
        line=line, column=column,
        hint="the service stayed unreachable; raise the step's retry: {attempts, backoffSeconds} or try again later")


def _emit(run: Run, planned: PlannedStep, kind: str, payload: Any) -> None:
    run.displays.append((planned.label, payload))
    if run.emit is not None:
        run.emit(kind, payload)


def release(run: Run) -> None:
    """Drops the run's temp views and caches (its frames stay usable; they recompute)."""
    for name in run.views:
        try:
            run.spark.catalog.dropTempView(name)
        except Exception:  # noqa: BLE001
            pass
    for df in run.cached:
        try:
            df.unpersist()
        except Exception:  # noqa: BLE001
            pass
    run.views.clear()
    run.cached.clear()

