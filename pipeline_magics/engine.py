"""Runs a plan on a SparkSession, step by step, recording metrics and wrapping failures."""
from __future__ import annotations

import logging
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from .credentials import Resolver, SecurityPolicy
from .errors import PipelineCancelledError, PipelineError, PipelineExecutionError, RetryableError
from .methods import StepContext
from .metrics import PipelineMetrics, StepMetrics
from .plan import Plan, PlannedStep
from .redaction import mask_text
from .retry import backoff_delay, is_transient, policy_for, resolve_policy
from .session import is_connect
from .streaming import is_query

log = logging.getLogger("pipeline_magics")



def root_cause(exc: BaseException) -> tuple[str, str]:
    """One readable line for ``exc`` (the deepest JVM cause where there is one) and the full detail."""
    detail = "".join(traceback.format_exception(exc))
    jvm_trace = getattr(exc, "_stackTrace", None)
    if jvm_trace:
        detail += "\nJVM stack trace:\n" + str(jvm_trace)
    innermost = _innermost(exc)
    if innermost is not None:
        return innermost[:400], detail
    text = str(exc).strip() or type(exc).__name__
    first = text.splitlines()[0]
    if len(first) > 400:
        first = first[:400] + "…"
    if not hasattr(exc, "getCondition") and not isinstance(exc, (ValueError, KeyError)):
        first = f"{type(exc).__name__}: {first}"
    return first, detail


def _first_line(text: Any) -> str:
    return (str(text or "").strip().splitlines() or [""])[0]


def _innermost(exc: BaseException) -> str | None:
    """The message of the innermost cause of a wrapped Spark failure, or None when not wrapped.

    PySpark keeps causes as converted Python exceptions (``_cause``) and the JVM
    exception itself (``_origin`` / ``java_exception``); both chains are followed.
    """
    current: Any = exc
    for _ in range(50):
        if getattr(current, "_cause", None) is None:
            break
        current = current._cause
    java = getattr(current, "_origin", None) or getattr(current, "java_exception", None)
    try:
        depth = 0
        while java is not None and java.getCause() is not None and depth < 50:
            java, depth = java.getCause(), depth + 1
        if java is not None and (depth or current is not exc or not hasattr(exc, "getCondition")):
            message = _first_line(java.getMessage())
            # Spark's own messages start with their [CONDITION]; others need the class name.
            return message if message.startswith("[") else f"{java.getClass().getSimpleName()}: {message}"
    except Exception:  # noqa: BLE001 - fall back to the Python text
        pass
    if current is not exc:
        return _first_line(getattr(current, "_desc", None) or current)
    return None


@dataclass
class Run:
    """The state of one run: the flag Cancel sets, the metrics, the frames made so far."""

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
    on_update: Callable[["Run"], None] = lambda run: None
    emit: Callable[[str, Any], None] | None = None
    policy: SecurityPolicy = field(default_factory=SecurityPolicy.from_env)
    resolver: Resolver = field(init=False)
    #: False: no Observations or other counting (``Pipeline.run(collect_metrics=False)``)
    metrics_enabled: bool = True
    #: set when ``execute`` returns (a streaming run's queries may go on running)
    finished: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        spec = self.plan.spec
        self.metrics = PipelineMetrics(spec.name, self.run_id, spec.mode, steps=[
            StepMetrics(p.index, p.label, p.step.type, p.step.method) for p in self.plan.steps])
        self.resolver = Resolver(self.policy, spec.name)

    @property
    def tag(self) -> str:
        return f"pipeline_magics-{self.plan.spec.name}-{self.run_id}"

    def cancel(self) -> None:
        """Sets the flag, stops this run's streaming queries and interrupts its running Spark jobs."""
        self.cancelled.set()
        from .progress import HUB

        # Queries first: their micro-batch jobs carry the run's tag too, and a query whose batch is
        # interrupted under it ends with an error (SPARK_JOB_CANCELLED) instead of simply stopping.
        for _, query in self.queries:
            try:
                HUB.cancelling(str(query.id))
                query.stop()
            except Exception:  # noqa: BLE001 - already stopped
                pass
        _interrupt_tag(self.spark, self.tag)
        if self.metrics.status == "running" and not self.finished.is_set():
            # A job the run starts after this (the step was between two jobs) is interrupted too.
            threading.Thread(target=self._interrupt_until_finished, name=f"cancel-{self.run_id}",
                             daemon=True).start()

    def _interrupt_until_finished(self) -> None:
        while not self.finished.wait(0.5):
            _interrupt_tag(self.spark, self.tag)

    def mask(self, text: str) -> str:
        return mask_text(text, self.resolver.secrets)


def execute(run: Run) -> None:
    """Runs every step of ``run.plan``; raises a ``PipelineError`` on failure (metrics say where)."""
    spec, spark, m = run.plan.spec, run.spark, run.metrics
    m.status, m.start = "running", time.time()
    previous_confs = {k: _conf_get(spark, k) for k in spec.spark}
    for key, value in spec.spark.items():
        spark.conf.set(key, str(value).lower() if isinstance(value, bool) else str(value))
    _add_tag(spark, run.tag)
    if spec.mode == "streaming" and run.metrics_enabled:
        from .figures import STREAMS

        STREAMS.listen(spark)  # before any query starts, so that no progress report is missed
    try:
        for planned in run.plan.steps:
            if run.cancelled.is_set():
                raise PipelineCancelledError("the run was cancelled", pipeline=spec.name,
                                             step_index=planned.index, step_name=planned.step.name,
                                             step_type=planned.step.type, method=planned.step.method)
            _run_step(run, planned)
        m.status = "running" if run.queries else "done"
    except PipelineError as exc:
        for _, query in run.queries:  # a half-started streaming pipeline is stopped whole
            try:
                query.stop()
            except Exception:  # noqa: BLE001
                pass
        if run.cancelled.is_set() and not isinstance(exc, PipelineCancelledError):
            exc = PipelineCancelledError("the run was cancelled", pipeline=spec.name, step_index=exc.step_index,
                                         step_name=exc.step_name, step_type=exc.step_type, method=exc.method)
        m.status = "cancelled" if isinstance(exc, PipelineCancelledError) else "failed"
        m.error = str(exc)
        for s in m.steps:
            if s.status in ("pending", "running"):
                s.status = "cancelled" if m.status == "cancelled" else s.status
        raise exc from None
    finally:
        read_pending(run)
        if m.status != "running":
            m.end = time.time()
        _remove_tag(spark, run.tag)
        run.finished.set()
        for key, value in previous_confs.items():
            spark.conf.unset(key) if value is None else spark.conf.set(key, value)
        run.on_update(run)


def _run_step(run: Run, planned: PlannedStep) -> None:
    spec, step = run.plan.spec, planned.step
    sm = run.metrics.steps[planned.index]
    sm.status, sm.start = "running", time.time()
    run.on_update(run)
    context = dict(pipeline=spec.name, step_index=planned.index, step_name=step.name, step_type=step.type,
                   method=step.method, config=step.config)
    line, column = spec.line_of("steps", planned.index)
    method_policy = policy_for(step, spec.mode)
    ctx: StepContext | None = None
    config: Any = None
    try:
        attempt = 0
        while True:  # credentials are read, then the method runs; a transient failure of either is retried
            attempt += 1
            sm.attempts = attempt
            ctx = None
            try:
                if config is None:
                    config = planned.config(run.resolver.resolve(step.config, planned.label))
                ctx = StepContext(
                    spark=run.spark, pipeline=spec.name, run_id=run.run_id, step=step, index=planned.index,
                    mode=spec.mode, inputs=[run.frames[n] for n in planned.inputs], frames=run.frames,
                    emit=lambda kind, payload: _emit(run, planned, kind, payload),
                    metrics_enabled=run.metrics_enabled, cached=run.cached,
                    run_version=int((run.metrics.start or time.time()) * 1000),
                )
                out = planned.method.func(ctx, config)
                break
            except Exception as exc:  # noqa: BLE001 - classified below
                policy = method_policy if config is not None else resolve_policy(step)
                transient = is_transient(exc) and not run.cancelled.is_set()
                if not transient or attempt >= policy.attempts:
                    if transient and attempt > 1:
                        raise _retries_exhausted(run, exc, attempt, line, column) from None
                    raise
                delay = backoff_delay(policy, attempt)
                log.warning("%s step %s: attempt %d of %d failed (%s); retrying in %.1fs", spec.name,
                            planned.label, attempt, policy.attempts, run.mask(root_cause(exc)[0]), delay)
                if ctx is not None:  # Observations of the failed attempt never fill
                    ctx.after.clear()
                if run.cancelled.wait(delay):
                    raise PipelineCancelledError("the run was cancelled") from None
        if ctx.after:
            run.pending.append((planned, ctx))
        if is_query(out):
            run.queries.append((planned.index, out))
            sm.extra["query"] = out.name
        elif out is not None:
            if step.cache:
                out = persist(run.spark, out, step.cacheStorageLevel or "MEMORY_AND_DISK")
                run.cached.append(out)
            run.frames[planned.output] = out
            if step.name and not out.isStreaming:
                out.createOrReplaceTempView(step.name)
                run.views.append(step.name)
        _fill_rows(run, planned, sm, ctx.record)
        sm.status = "running" if is_query(out) else "done"
        read_pending(run)
    except PipelineError as exc:
        if ctx is not None:
            _fill_rows(run, planned, sm, ctx.record)
        exc.with_context(**context, line=line, column=column)
        exc.message = run.mask(exc.message)
        exc.hint = run.mask(exc.hint) if exc.hint else exc.hint
        sm.status, sm.error = ("cancelled" if run.cancelled.is_set() else "failed"), str(exc)
        raise
    except Exception as exc:  # noqa: BLE001 - every failure becomes a PipelineExecutionError
        cause, detail = root_cause(exc)
        sm.status = "cancelled" if run.cancelled.is_set() else "failed"
        sm.error = run.mask(cause)
        raise PipelineExecutionError(run.mask(cause), detail=run.mask(detail), line=line, column=column,
                                     **context) from None
    finally:
        sm.end = time.time()
        run.on_update(run)


def read_pending(run: Run) -> None:
    """Collects the figures of Observations whose action has run by now."""
    for planned, ctx in list(run.pending):
        if all(read() for read in ctx.after):
            run.pending.remove((planned, ctx))
        _fill_rows(run, planned, run.metrics.steps[planned.index], ctx.record)


def _fill_rows(run: Run, planned: PlannedStep, sm: StepMetrics, record: dict[str, Any]) -> None:
    for key in ("rows_in", "rows_out", "bytes_written", "failed_rows"):
        if record.get(key) is not None:
            setattr(sm, key, int(record[key]))
    sm.sources.update(record.get("sources") or {})
    sm.extra.update({k: v for k, v in record.items() if k not in ("rows_in", "rows_out", "bytes_written",
                                                                  "failed_rows", "sources")})
    if sm.rows_in is None and planned.inputs:
        upstream = [s for s in run.metrics.steps if s.step in planned.inputs or
                    f"step{s.index + 1}" in planned.inputs]
        if len(upstream) == 1 and upstream[0].rows_out is not None:
            sm.rows_in = upstream[0].rows_out
            sm.sources.setdefault("rows_in", f"rows out of step {upstream[0].step}")


def _retries_exhausted(run: Run, exc: Exception, attempts: int, line: int | None,
                       column: int | None) -> RetryableError:
    """The error of a step whose service stayed unreachable for all its attempts."""
    cause, detail = (exc.message, exc.detail) if isinstance(exc, PipelineError) else root_cause(exc)
    return RetryableError(
        f"failed after {attempts} attempts: {run.mask(cause)}", detail=run.mask(detail or ""),
        params={"attempts": attempts, "cause": run.mask(cause), "cause_code": getattr(exc, "code", None)},
        line=line, column=column,
        hint="the service stayed unreachable; raise the step's retry: {attempts, backoffSeconds} or try again later")


def _emit(run: Run, planned: PlannedStep, kind: str, payload: Any) -> None:
    run.displays.append((planned.label, payload))
    if run.emit is not None:
        run.emit(kind, payload)


#: the confs Spark's cache turns off in a clone of the session to plan a cached query
_CACHE_CONFS_OFF = ("spark.sql.sources.bucketing.autoBucketedScan.enabled",
                    "spark.sql.adaptive.applyFinalStageShuffleOptimizations")


def persist(spark: Any, df: Any, level: str) -> Any:
    """``df.persist(level)`` without the session clone Spark makes for it.

    Spark's CacheManager plans a cached query in a clone of the session with ``_CACHE_CONFS_OFF``
    off, unless they are off already. Each clone leaves an ``ExecutionListenerBus`` on the
    SparkContext's listener bus for good (about 240 KB of heap and one more listener every event
    goes to, per cached step and run). They are set off on the session for the call instead.
    """
    from pyspark import StorageLevel

    previous = {key: _conf_get(spark, key) for key in _CACHE_CONFS_OFF}
    try:
        for key in _CACHE_CONFS_OFF:
            spark.conf.set(key, "false")
        return df.persist(getattr(StorageLevel, level))
    finally:
        for key, value in previous.items():
            spark.conf.unset(key) if value is None else spark.conf.set(key, value)


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


def _conf_get(spark: Any, key: str) -> str | None:
    try:
        return spark.conf.get(key, None)
    except Exception:  # noqa: BLE001
        return None


#: a classic thread's own ``spark.job.interruptOnCancel`` before a run set it, by run tag
_INTERRUPT_BEFORE: dict[str, str | None] = {}
INTERRUPT_ON_CANCEL = "spark.job.interruptOnCancel"


def _add_tag(spark: Any, tag: str) -> None:
    """Tags the jobs this thread runs from now on, so that ``_interrupt_tag`` can find them."""
    try:
        spark.addTag(tag)  # Spark Connect sends it with every operation of this thread
    except Exception:  # noqa: BLE001 - sessions without job tags cannot be interrupted by tag
        pass
    if not is_connect(spark):
        try:
            sc = spark.sparkContext
            sc.addJobTag(tag)  # classic: see _interrupt_tag
            # Cancelling interrupts the tasks' threads (as Spark Connect does), so that a task
            # blocked in a call (a sleep, a socket read) stops now rather than at its next batch.
            _INTERRUPT_BEFORE[tag] = sc.getLocalProperty(INTERRUPT_ON_CANCEL)
            sc.setLocalProperty(INTERRUPT_ON_CANCEL, "true")
        except Exception:  # noqa: BLE001
            pass


def _remove_tag(spark: Any, tag: str) -> None:
    try:
        spark.removeTag(tag)
    except Exception:  # noqa: BLE001
        pass
    if not is_connect(spark):
        try:
            sc = spark.sparkContext
            sc.removeJobTag(tag)
            if tag in _INTERRUPT_BEFORE:
                sc.setLocalProperty(INTERRUPT_ON_CANCEL, _INTERRUPT_BEFORE.pop(tag))  # None removes it
        except Exception:  # noqa: BLE001
            pass


def _interrupt_tag(spark: Any, tag: str) -> None:
    """Interrupts the run's running jobs (those tagged ``tag``), from whatever thread calls it.

    Spark Connect interrupts a tag's operations on the server, whichever thread asks. A
    classic session's own tags belong to the thread that added them (its ``interruptTag``
    finds nothing from another thread), so there the SparkContext's job tag is cancelled.
    """
    try:
        if is_connect(spark):
            spark.interruptTag(tag)
        else:
            spark.sparkContext.cancelJobsWithTag(tag)
    except Exception:  # noqa: BLE001 - nothing running, or a session without job tags
        pass
