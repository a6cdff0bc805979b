"""Where the metrics' figures come from: each is read from something Spark or Delta does anyway.

Nothing here runs a Spark job or reads the data a second time.

| figure | read from | notes |
|---|---|---|
| rows written by file, JDBC and Kafka sinks (batch) | an ``Observation`` on the sink's input, filled by the write itself | Kafka is written through its DataSource V2 path (``load.to_kafka``): the V1 path plans the query again and never fills an Observation |
| bytes written by file sinks (batch) | the output metrics of the write's tasks (``outputBytes`` of the stages of the jobs tagged for the step, in the app status store) | the same figure the Spark UI shows; JDBC and Kafka report none |
| rows and bytes written to Delta (batch) | the ``operationMetrics`` of the commit the write produced (``numOutputRows``, ``numOutputBytes``; a merge's ``numTargetRows*``), found by the step's ``userMetadata`` marker from the table's latest version backwards | read from the commit file through Delta's LogStore: ``DESCRIBE HISTORY`` would run a Spark job (it is the fallback on Spark Connect) |
| ``expect`` counts | an ``Observation`` (drop/warn; a named observation in a stream) or the gate's own aggregate (fail) | |
| ``toMemory``, ``display`` | the action they run anyway | |
| streaming input rows, rates, batch duration | every progress report: a ``StreamingQueryListener`` plus ``recentProgress`` | ``numInputRows`` is what the source produced after the filters it applies itself |
| streaming rows written | Delta: the query's commits (``operationParameters.queryId``); sinks that report ``numOutputRows``: that; others: a named observation in the progress' ``observedMetrics`` | |
"""
from __future__ import annotations

import contextlib
import json
import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

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


def note(record: dict[str, Any], key: str, value: Any, source: str) -> None:
    """Sets ``record[key]`` and remembers where the figure came from."""
    if value is None:
        return
    record[key] = int(value)
    record.setdefault("sources", {})[key] = source


def is_classic(spark: Any) -> bool:
    """True for a classic (py4j) session, whose JVM can be asked for figures directly."""
    return not type(spark).__module__.startswith("pyspark.sql.connect") and hasattr(spark, "_jsparkSession")


# ------------------------------------------------------------ batch observations


def observed(obs: Any) -> dict[str, Any]:
    """An Observation's figures if its action has run, else ``{}`` (never blocks)."""
    jo = getattr(obs, "_jo", None)
    if jo is not None and hasattr(jo, "getOrEmpty"):
        # Classic Spark: ``get`` would wait forever if the action never reached the node.
        try:
            if not _observation_filled(jo):
                return {}
        except Exception:  # noqa: BLE001 - a missing figure is not an error
            return {}
    try:
        return dict(obs.get)
    except Exception:  # noqa: BLE001
        return {}


def _observation_filled(jo: Any) -> bool:
    """Whether a classic Observation's action has run (Spark 4.2 dropped ``getOrEmpty``: its future tells)."""
    try:
        return not jo.getOrEmpty().isEmpty()
    except Exception:  # noqa: BLE001 - py4j: no such method
        return bool(jo.future().isCompleted())


def observe_rows(df: Any, name: str, record: dict[str, Any], after: list[Any], keys: tuple[str, ...]) -> Any:
    """``df`` with an Observation counting its rows; once an action has run, ``after`` fills ``keys``."""
    from pyspark.sql import Observation
    from pyspark.sql import functions as F

    obs = Observation(name)

    def read() -> bool:
        figures = observed(obs)
        if "rows" in figures:
            for key in keys:
                if key not in record:
                    note(record, key, figures["rows"], OBSERVATION)
        return bool(figures)

    after.append(read)
    return df.observe(obs, F.count(F.lit(1)).alias("rows"))


# ------------------------------------------------------------ task output metrics


@contextlib.contextmanager
def tagged_write(spark: Any, tag: str, record: dict[str, Any], enabled: bool = True) -> Iterator[None]:
    """Tags the jobs run inside the block; after it, their tasks' output metrics give the bytes written.

    Rows written are kept too (``task_rows_written``), as a cross-check of the Observation.
    """
    if not enabled or not is_classic(spark):
        yield
        return
    sc = spark.sparkContext
    sc.addJobTag(tag)
    try:
        yield
    finally:
        sc.removeJobTag(tag)
    try:
        rows, size = job_output(spark, tag)
    except Exception as exc:  # noqa: BLE001 - a figure Spark does not give is left out, not an error
        log.debug("no task output metrics for %s: %s", tag, exc)
        return
    if size:
        note(record, "bytes_written", size, TASK_OUTPUT)
    if rows:
        record["task_rows_written"] = rows


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
    """The ``operationMetrics`` (as ints) and ``version`` of the commit whose ``userMetadata`` is ``marker``.

    Classic sessions: read from the commit files, from the latest version
    backwards; no Spark job. Elsewhere (Spark Connect), or if that fails,
    ``history(spark, path, table, marker)`` is asked (``DESCRIBE HISTORY``: one job).
    """
    if is_classic(spark):
        try:
            dlog = delta_log(spark, path, table)
            latest = int(dlog.unsafeVolatileSnapshot().version())
            for version in range(latest, max(-1, latest - lookback), -1):
                info = commit_info(spark, dlog, version)
                if info is not None and info.get("userMetadata") == marker:
                    return {**_ints(info.get("operationMetrics")), "version": version}
        except Exception as exc:  # noqa: BLE001 - e.g. a log layout this Delta version does not have
            log.debug("reading the Delta log directly failed (%s); asking its history", exc)
    return history(spark, path, table, marker) if history is not None else None


def _ints(metrics: dict[str, Any] | None) -> dict[str, int]:
    return {k: int(v) for k, v in (metrics or {}).items() if str(v).lstrip("-").isdigit()}


def delta_write_figures(record: dict[str, Any], m: dict[str, int]) -> None:
    """Rows in/out and bytes of one batch Delta commit (its operationMetrics and version) into ``record``."""
    if "numTargetRowsInserted" in m:  # a merge: rows inserted or updated; its source rows came in
        note(record, "rows_out", m["numTargetRowsInserted"] + m.get("numTargetRowsUpdated", 0), DELTA_COMMIT)
        note(record, "rows_in", m.get("numSourceRows"), DELTA_COMMIT)
        for key in ("numTargetRowsInserted", "numTargetRowsUpdated", "numTargetRowsDeleted", "numSourceRows"):
            if key in m:
                record[key] = m[key]
    elif "numOutputRows" in m:
        note(record, "rows_out", m["numOutputRows"], DELTA_COMMIT)
        note(record, "rows_in", m["numOutputRows"], DELTA_COMMIT)
    note(record, "bytes_written", m.get("numOutputBytes", m.get("numTargetBytesAdded")), DELTA_COMMIT)
    if "version" in m:
        record["delta_version"] = m["version"]


# ------------------------------------------------------------ streaming progress


def recent_progress(query: Any) -> list[Any]:
    """The query's recent progress reports: JSON strings on classic sessions, read straight from
    the JVM (PySpark's ``recentProgress`` rebuilds each report as Python objects with hundreds of
    py4j calls: 0.6 s for ten reports), ``recentProgress`` itself on Spark Connect."""
    jsq = getattr(query, "_jsq", None)
    if jsq is not None:
        return [str(p.json()) for p in jsq.recentProgress()]
    return list(query.recentProgress or [])


def progress_dict(progress: Any) -> dict[str, Any]:
    """A progress report as a plain dict, whether given as a dict, a JSON string or a progress object.

    Spark Connect's JSON leaves out the query-wide ``numInputRows`` and rates (they
    are sums over the sources) and gives each observed row as ``{values, schema}``;
    both are brought to the classic form.
    """
    if type(progress) is dict:
        p = progress
    elif isinstance(progress, str):
        p = json.loads(progress)
    else:
        text = getattr(progress, "json", None)  # StreamingQueryProgress (a dict whose values may be Rows)
        if callable(text):
            text = text()
        p = json.loads(text) if isinstance(text, str) else (dict(progress) if isinstance(progress, dict) else {})
    sources = p.get("sources") or []
    for key in ("numInputRows", "inputRowsPerSecond", "processedRowsPerSecond"):
        if p.get(key) is None and sources:
            values = [s.get(key) for s in sources if isinstance(s.get(key), (int, float))]
            p[key] = sum(values) if values else None
    observed = p.get("observedMetrics") or {}
    for name, row in list(observed.items()):
        if isinstance(row, dict) and set(row) == {"values", "schema"}:
            fields = [f.get("name") for f in (row.get("schema") or {}).get("fields", [])]
            observed[name] = dict(zip(fields, row.get("values") or []))
    return p


@dataclass
class QueryTotals:
    """Everything one run of a streaming query has reported so far, summed over its batches."""

    id: str
    run_id: str
    name: str | None = None
    first_batch: int | None = None
    last_batch: int | None = None
    batches: int = 0
    input_rows: int = 0
    #: sum of the sink's numOutputRows, None once a batch reported -1 (the sink does not count)
    sink_rows: int | None = 0
    #: per named observation, the sum of each figure
    observed: dict[str, dict[str, int]] = field(default_factory=dict)
    #: the latest batch's report, as ``progress_figures`` returns it
    last: dict[str, Any] = field(default_factory=dict)
    #: True when reports were missed (only polling, and more than ``recentProgress`` holds passed)
    gap: bool = False
    #: Delta sink: commits of this query read so far
    delta_version: int | None = None
    delta_rows: int = 0
    delta_bytes: int = 0
    delta_commits: int = 0


class StreamTracker:
    """Totals per streaming query run, fed by a listener and by polling ``recentProgress``.

    Each batch is counted once: reports are taken in batch order, and a batch
    id not above the last one counted is a repeat.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[str, QueryTotals] = {}
        self._scan = threading.Lock()  # one Delta log scan at a time: two would count commits twice

    def add(self, progress: Any) -> None:
        """Counts one progress report (a repeat is ignored)."""
        p = progress_dict(progress)
        run_id, batch = p.get("runId"), p.get("batchId")
        if run_id is None or batch is None:
            return
        with self._lock:
            t = self._runs.get(run_id)
            if t is None:
                t = self._runs[run_id] = QueryTotals(str(p.get("id")), run_id, p.get("name"))
            if t.last_batch is not None and batch <= t.last_batch:
                return
            if t.last_batch is not None and batch > t.last_batch + 1:
                t.gap = True
            if t.first_batch is None:
                t.first_batch = batch
            t.last_batch = batch
            t.batches += 1
            t.input_rows += int(p.get("numInputRows") or 0)
            sink = (p.get("sink") or {}).get("numOutputRows")
            if sink is None or int(sink) < 0:
                t.sink_rows = None
            elif t.sink_rows is not None:
                t.sink_rows += int(sink)
            for name, row in (p.get("observedMetrics") or {}).items():
                sums = t.observed.setdefault(name, {})
                row = row.asDict() if hasattr(row, "asDict") else (row or {})
                for key, value in row.items():
                    if isinstance(value, (int, float)) and not isinstance(value, bool):
                        sums[key] = sums.get(key, 0) + int(value)
            t.last = progress_figures(p)

    def poll(self, query: Any) -> None:
        """Counts the query's ``recentProgress`` (repeats are ignored)."""
        try:
            recent = recent_progress(query)
        except Exception:  # noqa: BLE001 - a stopped Connect query may not answer
            return
        for p in recent:
            self.add(p)

    def get(self, run_id: str) -> QueryTotals | None:
        with self._lock:
            return self._runs.get(str(run_id))

    def listen(self, spark: Any) -> bool:
        """Counts every progress report of ``spark``'s queries from now on; False where it cannot
        (Spark Connect: a listener there runs late, so the figures are polled)."""
        if not is_classic(spark):
            return False
        from .listener import subscribe

        return subscribe(spark, self)

    def progress(self, report: dict[str, Any]) -> None:
        """A report from the session's listener (``listener.subscribe``)."""
        self.add(report)

    def delta_commits(self, spark: Any, totals: QueryTotals, path: str | None, table: str | None,
                      start_version: int) -> None:
        """Adds the rows and bytes of the Delta commits this query run made since they were last read."""
        if is_classic(spark):
            with self._scan:
                self._delta_commits(spark, totals, path, table, start_version)

    def _delta_commits(self, spark: Any, totals: QueryTotals, path: str | None, table: str | None,
                       start_version: int) -> None:
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


def progress_figures(progress: Any) -> dict[str, Any]:
    """The figures of one progress report that the metrics keep."""
    if not progress:
        return {}
    p = progress_dict(progress)
    sink = p.get("sink") or {}
    return {
        "batch_id": p.get("batchId"),
        "input_rows": p.get("numInputRows"),
        "input_rows_per_second": p.get("inputRowsPerSecond"),
        "processed_rows_per_second": p.get("processedRowsPerSecond"),
        "batch_duration_ms": (p.get("durationMs") or {}).get("triggerExecution"),
        "sink_rows": sink.get("numOutputRows"),
        "timestamp": p.get("timestamp"),
    }


#: The tracker of this Python process (one kernel).
STREAMS = StreamTracker()
