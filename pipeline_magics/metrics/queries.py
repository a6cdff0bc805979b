"""One record per streaming query run: what its live panel shows and what the metrics export.

The session's streaming listener (:mod:`.listener`) and polling ``recentProgress`` feed
one :class:`QueryStore`; each report is counted once, into the :class:`QueryRecord` of
its query run. The widgets subscribe to a query's record; the metrics
(``sources.update_streaming``) hang the same record on the step that started the query.
"""
from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from ..spark.listener import subscribe
from .status import CANCELLED, DONE, FAILED, RUNNING, move
from ..spark.kind import is_classic


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


@dataclass
class QueryRecord:
    """One run of a streaming query: its state, its totals over every batch so far, its latest batch."""

    name: str | None
    id: str
    run_id: str | None = None
    batches: int = 0
    #: numInputRows summed over the batches
    input_rows: int = 0
    #: rows written, from the best source the sink has (set with the step's metrics)
    output_rows: int | None = None
    last_batch_id: int | None = None
    input_rows_per_second: float | None = 0.0
    processed_rows_per_second: float | None = 0.0
    batch_duration_ms: int | None = None
    timestamp: str | None = None
    active: bool = False
    status: str = RUNNING  # running | done | failed | cancelled (moved by ``status.move``)
    error: str | None = None
    first_batch: int | None = None
    #: sum of the sink's numOutputRows, None once a batch reported -1 (the sink does not count)
    sink_rows: int | None = 0
    #: per named observation, the sum of each figure
    observed: dict[str, dict[str, int]] = field(default_factory=dict)
    #: per named observation, the latest batch's figures
    last_observed: dict[str, dict[str, int]] = field(default_factory=dict)
    #: the latest batch's report, as ``progress_figures`` returns it
    last: dict[str, Any] = field(default_factory=dict)
    #: True when reports were missed (only polling, and more than ``recentProgress`` holds passed)
    gap: bool = False
    #: Delta sink: commits of this query read so far
    delta_version: int | None = None
    delta_rows: int = 0
    delta_bytes: int = 0
    delta_commits: int = 0
    #: recent processed rows/s, for the panel's small chart
    rates: deque = field(default_factory=lambda: deque(maxlen=60), repr=False)
    updated: float = field(default_factory=time.time, repr=False)

    # the names the live panel reads
    @property
    def batch_id(self) -> int | None:
        return self.last_batch_id

    @property
    def total_rows(self) -> int:
        return self.input_rows

    @property
    def last_batch_ms(self) -> int | None:
        return self.batch_duration_ms

    def add(self, p: dict[str, Any]) -> bool:
        """Counts one report (a plain dict from ``progress_dict``); False for a batch counted already."""
        batch = p.get("batchId")
        if batch is None or (self.last_batch_id is not None and batch <= self.last_batch_id):
            return False
        if self.last_batch_id is not None and batch > self.last_batch_id + 1:
            self.gap = True
        if self.first_batch is None:
            self.first_batch = batch
        self.last_batch_id = batch
        self.batches += 1
        self.input_rows += int(p.get("numInputRows") or 0)
        sink = (p.get("sink") or {}).get("numOutputRows")
        if sink is None or int(sink) < 0:
            self.sink_rows = None
        elif self.sink_rows is not None:
            self.sink_rows += int(sink)
        for name, row in (p.get("observedMetrics") or {}).items():
            sums = self.observed.setdefault(name, {})
            row = row.asDict() if hasattr(row, "asDict") else (row or {})
            self.last_observed[name] = {}
            for key, value in row.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    sums[key] = sums.get(key, 0) + int(value)
                    self.last_observed[name][key] = int(value)
        self.last = progress_figures(p)
        self.input_rows_per_second = float(p.get("inputRowsPerSecond") or 0.0)
        self.processed_rows_per_second = float(p.get("processedRowsPerSecond") or 0.0)
        self.batch_duration_ms = (p.get("durationMs") or {}).get("triggerExecution", self.batch_duration_ms)
        self.timestamp = p.get("timestamp")
        self.rates.append(self.processed_rows_per_second)
        self.updated = time.time()
        return True

    def ended(self, error: str | None, cancelled: bool) -> None:
        """The query stopped: failed (``error``), cancelled, or done; an end is never rewritten."""
        if move(self, FAILED if error else CANCELLED if cancelled else DONE) and error:
            self.error = error.splitlines()[0]
        self.updated = time.time()

    def to_dict(self) -> dict[str, Any]:
        """The figures the exporters give."""
        keys = ("name", "id", "run_id", "batches", "input_rows", "output_rows", "last_batch_id",
                "input_rows_per_second", "processed_rows_per_second", "batch_duration_ms", "timestamp", "active")
        return {k: getattr(self, k) for k in keys}


Subscriber = Callable[[QueryRecord], None]


class QueryStore:
    """The query records of this kernel: by query run (``get``) and by query id (``states``: its latest run).

    A listener subscriber (``started``, ``progress``, ``terminated``), polled as well
    (``poll``); each batch is counted once, in batch order. Views subscribe to a query id.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._runs: dict[str, QueryRecord] = {}
        self.states: dict[str, QueryRecord] = {}
        self._subscribers: dict[str, list[Subscriber]] = {}
        self._cancelling: set[str] = set()

    def state(self, query_id: str, name: str = "", run_id: str | None = None) -> QueryRecord:
        """The record of the query's run ``run_id`` (default: its latest run), made on first use."""
        with self._lock:
            if run_id:
                rec = self._runs.get(run_id)
                if rec is None:
                    latest = self.states.get(query_id)
                    if latest is not None and latest.run_id is None:  # made before its run id was known
                        rec, rec.run_id = latest, run_id
                    else:  # a first run, or a restart: a record of its own
                        rec = QueryRecord(name or None, query_id, run_id)
                    self._runs[run_id] = rec
                    self.states[query_id] = rec
            else:
                rec = self.states.get(query_id)
                if rec is None:
                    rec = self.states[query_id] = QueryRecord(name or None, query_id)
            if name and not rec.name:
                rec.name = name
            return rec

    def get(self, run_id: str) -> QueryRecord | None:
        with self._lock:
            return self._runs.get(str(run_id))

    def add(self, progress: Any) -> None:
        """Counts one progress report (a repeat is ignored)."""
        p = progress_dict(progress)
        if p.get("batchId") is None or p.get("id") is None:
            return
        run_id = p.get("runId")
        with self._lock:
            rec = self.state(str(p["id"]), p.get("name") or "", str(run_id) if run_id else None)
            counted = rec.add(p)
        if counted:
            self._notify(rec)

    def poll(self, query: Any) -> None:
        """Counts the query's ``recentProgress`` (repeats are ignored)."""
        try:
            recent = recent_progress(query)
        except Exception:  # noqa: BLE001 - a stopped Connect query may not answer
            return
        for p in recent:
            self.add(p)

    # ---------------------------------------------------------- the listener's events

    def started(self, query_id: str, name: str, run_id: str | None = None) -> None:
        self._notify(self.state(query_id, name, run_id))

    def progress(self, report: dict[str, Any]) -> None:
        self.add(report)

    def terminated(self, query_id: str, error: str | None, cancelled: bool = False, run_id: str | None = None) -> None:
        cancelled = cancelled or query_id in self._cancelling
        self._cancelling.discard(query_id)
        rec = self.state(query_id, run_id=run_id)
        rec.ended(error, cancelled)
        self._notify(rec)

    def cancelling(self, query_id: str) -> None:
        """The query is being stopped on purpose: its end is a cancel, not a finish."""
        self._cancelling.add(query_id)

    def listen(self, spark: Any, connect: bool = False) -> bool:
        """Counts every progress report of ``spark``'s queries from now on; False where it does not.

        On Spark Connect a listener's reports arrive late, so the metrics poll there; a live
        panel listens anyway (``connect=True``).
        """
        if not connect and not is_classic(spark):
            return False
        return subscribe(spark, self)

    # ---------------------------------------------------------- views

    def subscribe(self, query_id: str, callback: Subscriber) -> None:
        with self._lock:
            self._subscribers.setdefault(query_id, []).append(callback)

    def unsubscribe(self, query_id: str) -> None:
        with self._lock:
            self._subscribers.pop(query_id, None)

    def _notify(self, rec: QueryRecord) -> None:
        for callback in list(self._subscribers.get(rec.id, [])):
            try:
                callback(rec)
            except Exception:  # noqa: BLE001 - a broken view never breaks the stream
                pass


#: The records of this Python process (one kernel).
QUERIES = QueryStore()
