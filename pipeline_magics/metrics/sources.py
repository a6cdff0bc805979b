"""Where the metrics' figures come from: each is read from something Spark or Delta does anyway.

Nothing here runs a Spark job or reads the data a second time.

| figure | read from | notes |
|---|---|---|
| rows written by file, JDBC and Kafka sinks (batch) | an ``Observation`` on the sink's input, filled by the write itself | Kafka is written through its DataSource V2 path (``load.to_kafka``): the V1 path plans the query again and never fills an Observation |
| bytes written by file sinks (batch) | the output metrics of the write's tasks (``outputBytes`` of the stages of the jobs tagged for the step, in the app status store) | the same figure the Spark UI shows; JDBC and Kafka report none |
| rows and bytes written to Delta (batch) | the ``operationMetrics`` of the commit the write produced (``numOutputRows``, ``numOutputBytes``; a merge's ``numTargetRows*``), found by the step's ``userMetadata`` marker from the table's latest version backwards | read from the commit file through Delta's LogStore: ``DESCRIBE HISTORY`` would run a Spark job (it is the fallback on Spark Connect) |
| ``expect`` counts | an ``Observation`` (drop/warn; a named observation in a stream) or the gate's own aggregate (fail) | |
| ``toMemory``, ``display`` | the action they run anyway | |
| rows out of CSV and JSON extracts, ``sql`` steps and the transforms a ``sql`` step reads (batch) | an ``Observation`` on the step's output, filled by the loads that read it (``run/step_rows.py`` ``observe``) | the plan would count a CSV or JSON read after the filters Spark pushes into the parsing; a query has no one operator to count |
| rows out of other extracts, filters, aggregates, joins, projections (batch, classic) | the SQL metrics of the plans Spark executed for the loads (``plan_rows``, ``run/step_rows.py``) | a Parquet or Delta read with pushed filters: the rows it read, and the files and bytes it skipped; a step whose work Spark moved (two filters made one, a filter pushed into a JDBC query) gets the reason instead |
| rows out of every step but the loads (batch, Spark Connect) | an ``Observation`` on the step's output | the server keeps the plans' metrics |
| streaming input rows, rates, batch duration | every progress report: a ``StreamingQueryListener`` plus ``recentProgress`` | ``numInputRows`` is what the source produced after the filters it applies itself |
| streaming rows written | Delta: the query's commits (``operationParameters.queryId``); sinks that report ``numOutputRows``: that; others: a named observation in the progress' ``observedMetrics`` | |
"""
from __future__ import annotations

import contextlib
import json
import logging
import threading
from typing import Any, Callable, Iterator

from .model import StepRecord
from .queries import QUERIES
from .queries import progress_dict, progress_figures, recent_progress  # noqa: F401
from ..spark.observation import observed  # noqa: F401  (methods read it from here)
from ..spark.kind import is_classic
from ..spark.tags import job_tag

log = logging.getLogger("pipeline_magics.metrics")

#: figure sources, as recorded in ``StepMetrics.sources``
OBSERVATION = "observation"
TASK_OUTPUT = "task output metrics"
DELTA_COMMIT = "delta commit operationMetrics"
ACTION = "the step's own action"
PROGRESS = "streaming progress (numInputRows)"
SINK_PROGRESS = "streaming progress (sink.numOutputRows)"
STREAM_OBSERVATION = "streaming progress (observedMetrics)"
DELTA_STREAM_COMMITS = "delta commits of the query (operationMetrics)"

#: how many commits back from the latest the Delta marker is looked for
DELTA_LOOKBACK = 50


def note(record: StepRecord, key: str, value: Any, source: str) -> None:
    """Sets the figure ``key`` of ``record`` and remembers where it came from."""
    if value is None:
        return
    setattr(record, key, int(value))
    record.sources[key] = source


# ------------------------------------------------------------ batch observations


def observe_rows(df: Any, name: str, record: StepRecord, after: list[Any], keys: tuple[str, ...]) -> Any:
    """``df`` with an Observation counting its rows; once an action has run, ``after`` fills ``keys``."""
    from pyspark.sql import Observation
    from pyspark.sql import functions as F

    obs = Observation(name)

    def read() -> bool:
        figures = observed(obs)
        if "rows" in figures:
            for key in keys:
                if getattr(record, key) is None:
                    note(record, key, figures["rows"], OBSERVATION)
        return bool(figures)

    after.append(read)
    return df.observe(obs, F.count(F.lit(1)).alias("rows"))


# ------------------------------------------------------------ task output metrics


@contextlib.contextmanager
def tagged_write(spark: Any, tag: str, record: StepRecord, enabled: bool = True) -> Iterator[None]:
    """Tags the jobs run inside the block; after it, their tasks' output metrics give the bytes written.

    Rows written are kept too (``task_rows_written``), as a cross-check of the Observation.
    """
    if not enabled or not is_classic(spark):
        yield
        return
    with job_tag(spark, tag):
        yield
    try:
        rows, size = job_output(spark, tag)
    except Exception as exc:  # noqa: BLE001 - a figure Spark does not give is left out, not an error
        log.debug("no task output metrics for %s: %s", tag, exc)
        return
    if size:
        note(record, "bytes_written", size, TASK_OUTPUT)
    if rows:
        record.extra["task_rows_written"] = rows


def drain_listener_bus(spark: Any, timeout_ms: int = 5_000) -> None:
    """Waits until Spark's listeners have seen every event so far (the status store and our listener).

    Not from a listener's own callback (e.g. a widget refreshing on a query's end): that
    runs on the bus (through py4j's callback thread), which could never drain while it waits.
    """
    if is_classic(spark) and not in_py4j_callback():
        try:
            spark.sparkContext._jsc.sc().listenerBus().waitUntilEmpty(timeout_ms)
        except Exception:  # noqa: BLE001 - a busy bus only means figures arrive later
            pass


def in_py4j_callback() -> bool:
    """True on a thread py4j runs for calls from the JVM (listener callbacks, foreachBatch)."""
    target = getattr(threading.current_thread(), "_target", None)
    return type(getattr(target, "__self__", None)).__module__.startswith("py4j")


def job_output(spark: Any, tag: str) -> tuple[int, int]:
    """Records and bytes written by the stages of the jobs tagged ``tag`` (task output metrics)."""
    drain_listener_bus(spark)
    jsc = spark.sparkContext._jsc.sc()
    store = jsc.statusStore()
    stage_ids: set[int] = set()
    for job_id in jsc.statusTracker().getJobIdsForTag(tag):
        ids = store.job(job_id).stageIds()
        stage_ids.update(int(ids.apply(i)) for i in range(ids.size()))
    rows = size = 0
    for stage_id in stage_ids:
        try:
            stage = store.lastStageAttempt(stage_id)
        except Exception:  # noqa: BLE001 - a stage that never ran (skipped) has no data
            continue
        rows += int(stage.outputRecords())
        size += int(stage.outputBytes())
    return rows, size


# ------------------------------------------------------------ Delta commits


def delta_log(spark: Any, path: str | None = None, table: str | None = None) -> Any:
    """The table's ``DeltaLog`` (JVM object) through the JVM's ``DeltaTable``; nothing is read."""
    tables = spark._jvm.io.delta.tables.DeltaTable
    jdt = tables.forName(spark._jsparkSession, table) if table else tables.forPath(spark._jsparkSession, path)
    return jdt.deltaLog()


def delta_latest_version(spark: Any, path: str | None = None, table: str | None = None) -> int:
    """The version the driver last saw (-1 when there is no table yet); no Spark job."""
    try:
        return int(delta_log(spark, path, table).unsafeVolatileSnapshot().version())
    except Exception:  # noqa: BLE001 - no table yet
        return -1


def commit_info(spark: Any, dlog: Any, version: int) -> dict[str, Any] | None:
    """The ``commitInfo`` of one commit, read from its file (its first action), or None."""
    file = spark._jvm.org.apache.spark.sql.delta.util.FileNames.unsafeDeltaFile(dlog.logPath(), version)
    lines = dlog.store().readAsIterator(file, dlog.newDeltaHadoopConf())
    try:
        for _ in range(1000):  # commitInfo is written first; the cap only guards odd logs
            if not lines.hasNext():
                return None
            action = json.loads(lines.next())
            if "commitInfo" in action:
                return action["commitInfo"]
    finally:
        lines.close()
    return None


def delta_commit(spark: Any, marker: str, path: str | None = None, table: str | None = None,
                 history: Callable[[Any, str | None, str | None, str], dict[str, int] | None] | None = None,
                 lookback: int = DELTA_LOOKBACK) -> dict[str, int] | None:
    """The ``operationMetrics`` (as ints) and ``version`` of the commit whose ``userMetadata`` is ``marker``
    among the latest ``lookback``; the figures add up over consecutive commits with that marker (a step
    that committed twice), whose first version is ``first_version``.

    Classic sessions: read from the commit files, from the latest version
    backwards; no Spark job. Elsewhere (Spark Connect), or if reading them fails,
    ``history(spark, path, table, marker)`` is asked (``DESCRIBE HISTORY``: one job).
    """
    if is_classic(spark):
        try:
            dlog = delta_log(spark, path, table)
            version = latest = int(dlog.unsafeVolatileSnapshot().version())
            found = None
            while version >= 0 and (found is not None or version > latest - lookback):
                info = commit_info(spark, dlog, version)
                if info is None or info.get("userMetadata") != marker:
                    if found is not None:
                        break
                else:
                    found = add_figures(found, {**_ints(info.get("operationMetrics")), "version": version})
                version -= 1
            return found  # None: not among them (asking the history would not find it either)
        except Exception as exc:  # noqa: BLE001 - e.g. a log layout this Delta version does not have
            log.debug("reading the Delta log directly failed (%s); asking its history", exc)
    return history(spark, path, table, marker) if history is not None else None


def add_figures(found: dict[str, int] | None, older: dict[str, int]) -> dict[str, int]:
    """``found`` (a later commit's figures, or None) plus an older commit's: the later ``version`` stays,
    the older one is ``first_version``."""
    if found is None:
        return {**older, "first_version": older["version"]}
    summed = {k: v + older.get(k, 0) for k, v in found.items() if k not in ("version", "first_version")}
    return {**older, **summed, "version": found["version"], "first_version": older["version"]}


def _ints(metrics: dict[str, Any] | None) -> dict[str, int]:
    return {k: int(v) for k, v in (metrics or {}).items() if str(v).lstrip("-").isdigit()}


def delta_write_figures(record: StepRecord, m: dict[str, int]) -> None:
    """Rows in/out and bytes of one batch Delta commit (its operationMetrics and version) into ``record``."""
    if "numTargetRowsInserted" in m:  # a merge: rows inserted or updated; its source rows came in
        note(record, "rows_out", m["numTargetRowsInserted"] + m.get("numTargetRowsUpdated", 0), DELTA_COMMIT)
        note(record, "rows_in", m.get("numSourceRows"), DELTA_COMMIT)
        for key in ("numTargetRowsInserted", "numTargetRowsUpdated", "numTargetRowsDeleted", "numSourceRows"):
            if key in m:
                record.extra[key] = m[key]
    elif "numOutputRows" in m:
        note(record, "rows_out", m["numOutputRows"], DELTA_COMMIT)
        note(record, "rows_in", m["numOutputRows"], DELTA_COMMIT)
    note(record, "bytes_written", m.get("numOutputBytes", m.get("numTargetBytesAdded")), DELTA_COMMIT)
    if "version" in m:
        record.delta_version = m["version"]
        record.delta_first_version = m.get("first_version", m["version"])  # the table before it: one less


# ------------------------------------------------------------ streaming queries

_SCAN = threading.Lock()  # one Delta log scan at a time: two would count commits twice


def delta_stream_commits(spark: Any, totals: Any, path: str | None, table: str | None, start_version: int) -> None:
    """Adds the rows and bytes of the Delta commits a query run (``queries.QueryRecord``) made since last read."""
    if is_classic(spark):
        with _SCAN:
            _delta_commits(spark, totals, path, table, start_version)


def _delta_commits(spark: Any, totals: Any, path: str | None, table: str | None, start_version: int) -> None:
    try:
        dlog = delta_log(spark, path, table)
        latest = int(dlog.unsafeVolatileSnapshot().version())
    except Exception:  # noqa: BLE001 - no table yet: nothing committed
        return
    first = max(start_version, totals.delta_version if totals.delta_version is not None else start_version) + 1
    for version in range(first, latest + 1):
        try:
            info = commit_info(spark, dlog, version) or {}
        except Exception:  # noqa: BLE001 - a commit file cleaned up already
            totals.gap = True
            continue
        params = info.get("operationParameters") or {}
        epoch = params.get("epochId")
        if params.get("queryId") == totals.id and epoch is not None and \
                (totals.first_batch is None or int(epoch) >= totals.first_batch):
            m = info.get("operationMetrics") or {}
            totals.delta_rows += int(m.get("numOutputRows") or 0)
            totals.delta_bytes += int(m.get("numOutputBytes") or 0)
            totals.delta_commits += 1
        totals.delta_version = version


def update_streaming(run: Any, queries: list[tuple[int, Any]]) -> None:
    """Brings the figures of a streaming run's steps up to date from its queries (``engine.Run``).

    Totals cover every batch of the query's current run: reports come from the
    listener (all of them, once the listener bus is drained) and ``recentProgress``.
    """
    enabled = getattr(run, "metrics_enabled", True)
    if enabled:
        drain_listener_bus(run.spark)
    observations: dict[str, dict[str, int]] = {}
    last: dict[str, tuple[int | None, dict[str, int]]] = {}
    for index, q in queries:
        sm = run.metrics.steps[index]
        QUERIES.poll(q)
        try:
            ids = (q.name, str(q.id), str(q.runId))
        except Exception:  # noqa: BLE001 - a stopped Connect query may not answer
            continue
        qm = t = sm.query = QUERIES.state(ids[1], ids[0] or "", ids[2])  # the record the live panel shows too
        try:
            qm.active = bool(q.isActive)
        except Exception:  # noqa: BLE001
            qm.active = False
        if not t.batches:
            continue
        sm.progress = dict(t.last)
        sm.rows_in, sm.sources["rows_in"] = t.input_rows, PROGRESS
        target, observation = sm.delta_target, sm.observation
        if enabled and target and is_classic(run.spark):  # Connect: the log is out of reach, see below
            delta_stream_commits(run.spark, t, target.get("path"), target.get("table"),
                                 int(target.get("start_version", -1)))
            qm.output_rows, source = t.delta_rows, DELTA_STREAM_COMMITS
            sm.bytes_written, sm.sources["bytes_written"] = t.delta_bytes, DELTA_STREAM_COMMITS
        elif t.sink_rows is not None:
            qm.output_rows, source = t.sink_rows, SINK_PROGRESS
        elif observation in t.observed:
            qm.output_rows, source = t.observed[observation].get("rows", 0), STREAM_OBSERVATION
        else:
            qm.output_rows, source = None, ""
        if qm.output_rows is not None:
            sm.rows_out, sm.sources["rows_out"] = qm.output_rows, source
        if t.gap:
            sm.extra["figures_incomplete"] = True  # progress reports were missed (polling only)
        observations.update(t.observed)
        last.update({name: (t.last_batch_id, row) for name, row in t.last_observed.items()})
    _step_rows(run, observations, last)
    # Steps counted by a named observation inside a query (a streaming ``expect``).
    for sm in run.metrics.steps:
        sums = observations.get(sm.observation or "")
        if sm.type == "load" or sums is None:
            continue
        n, bad = sums.get("n", 0), sums.get("bad", 0)
        sm.rows_in, sm.failed_rows = n, bad
        sm.rows_out = n - bad if sm.on_fail in ("drop", "quarantine") else n
        sm.failed_rules = {r: sums.get(f"r{i}", 0) for i, r in enumerate(sm.rule_names or [])}
        sm.sources.update(rows_in=STREAM_OBSERVATION, rows_out=STREAM_OBSERVATION, failed_rows=STREAM_OBSERVATION)


def _step_rows(run: Any, observations: dict[str, dict[str, int]],
               last: dict[str, tuple[int | None, dict[str, int]]]) -> None:
    """Rows out of the streaming steps counted by their named observation: in total, and in the latest batch;
    rows in from the step before."""
    steps = run.metrics.steps
    for sm in steps:
        name = sm.rows_observation
        if name not in observations:
            continue
        sm.rows_out, sm.sources["rows_out"] = observations[name].get("rows", 0), STREAM_OBSERVATION
        batch, row = last.get(name, (None, {}))
        sm.extra["last_batch"] = {"batch_id": batch, "rows_out": row.get("rows", 0)}
    index_of = {p.output: p.index for p in run.plan.steps}
    for p, sm in zip(run.plan.steps, steps):
        upstream = steps[index_of[p.inputs[0]]] if len(p.inputs) == 1 and p.inputs[0] in index_of else None
        if sm.rows_in is None and upstream is not None and upstream.rows_out is not None:
            sm.rows_in, sm.sources["rows_in"] = upstream.rows_out, f"rows out of step {upstream.step}"
