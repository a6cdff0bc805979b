"""Live state of streaming queries, fed by a StreamingQueryListener (not by polling).

Pure logic: the listener updates :class:`QueryState` objects; views (widgets,
text) read them and are told to refresh, at most a few times a second.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

Subscriber = Callable[["QueryState"], None]


@dataclass
class QueryState:
    """What a panel shows for one streaming query."""

    name: str
    id: str
    status: str = "running"  # running | done | failed | cancelled
    batch_id: int | None = None
    input_rows_per_second: float = 0.0
    processed_rows_per_second: float = 0.0
    total_rows: int = 0
    last_batch_ms: int | None = None
    error: str | None = None
    #: recent processed rows/s, for the small chart
    rates: deque = field(default_factory=lambda: deque(maxlen=60))
    updated: float = field(default_factory=time.time)

    def apply_progress(self, p: dict[str, Any]) -> None:
        """Takes one progress report (the dict form of ``StreamingQueryProgress``)."""
        self.batch_id = p.get("batchId", self.batch_id)
        self.input_rows_per_second = float(p.get("inputRowsPerSecond") or 0.0)
        self.processed_rows_per_second = float(p.get("processedRowsPerSecond") or 0.0)
        self.total_rows += int(p.get("numInputRows") or 0)
        self.last_batch_ms = (p.get("durationMs") or {}).get("triggerExecution", self.last_batch_ms)
        self.rates.append(self.processed_rows_per_second)
        self.updated = time.time()


class ProgressHub:
    """Query states by id, and who wants to hear about them."""

    def __init__(self) -> None:
        self.states: dict[str, QueryState] = {}
        self._subscribers: dict[str, list[Subscriber]] = {}
        self._cancelling: set[str] = set()
        self._lock = threading.Lock()

    def cancelling(self, query_id: str) -> None:
        """The query is being stopped on purpose: its end is a cancel, not a finish."""
        self._cancelling.add(query_id)

    def state(self, query_id: str, name: str = "") -> QueryState:
        with self._lock:
            if query_id not in self.states:
                self.states[query_id] = QueryState(name, query_id)
            return self.states[query_id]

    def subscribe(self, query_id: str, callback: Subscriber) -> None:
        with self._lock:
            self._subscribers.setdefault(query_id, []).append(callback)

    def unsubscribe(self, query_id: str) -> None:
        with self._lock:
            self._subscribers.pop(query_id, None)

    def _notify(self, state: QueryState) -> None:
        for callback in list(self._subscribers.get(state.id, [])):
            try:
                callback(state)
            except Exception:  # noqa: BLE001 - a broken view never breaks the stream
                pass

    def started(self, query_id: str, name: str) -> None:
        s = self.state(query_id, name)
        s.name = name or s.name
        self._notify(s)

    def progress(self, progress: dict[str, Any]) -> None:
        s = self.state(str(progress.get("id")), progress.get("name") or "")
        s.apply_progress(progress)
        self._notify(s)

    def terminated(self, query_id: str, error: str | None, cancelled: bool = False) -> None:
        cancelled = cancelled or query_id in self._cancelling
        self._cancelling.discard(query_id)
        s = self.state(query_id)
        s.status = "failed" if error else ("cancelled" if cancelled else "done")
        s.error = (error or "").splitlines()[0] if error else None
        self._notify(s)


HUB = ProgressHub()


def listen(spark: Any, hub: ProgressHub = HUB) -> None:
    """Feeds ``hub`` from ``spark``'s streaming listener (added once per session)."""
    from .listener import subscribe

    subscribe(spark, hub)


class Throttle:
    """Lets a refresh through at most every ``interval`` seconds; the last one is never lost."""

    def __init__(self, refresh: Callable[[], None], interval: float = 0.3) -> None:
        self.refresh = refresh
        self.interval = interval
        self._last = 0.0
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    def __call__(self, *_: Any) -> None:
        with self._lock:
            wait = self._last + self.interval - time.time()
            if wait <= 0:
                self._last = time.time()
                self._fire()
            elif self._timer is None:
                self._timer = threading.Timer(wait, self._deferred)
                self._timer.daemon = True
                self._timer.start()

    def _deferred(self) -> None:
        with self._lock:
            self._timer = None
            self._last = time.time()
        self._fire()

    def _fire(self) -> None:
        try:
            self.refresh()
        except Exception:  # noqa: BLE001
            pass

    def flush(self) -> None:
        """Refreshes now (e.g. when a run ends)."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._last = time.time()
        self._fire()


def sparkline(values: Any, width: int = 160, height: int = 32) -> str:
    """A small SVG line chart of ``values`` (rows/s), scaled to its own maximum."""
    points = list(values)[-60:]
    if len(points) < 2:
        return f"<svg width='{width}' height='{height}'></svg>"
    top = max(points) or 1.0
    step = width / (len(points) - 1)
    coords = " ".join(f"{i * step:.1f},{height - 2 - (v / top) * (height - 4):.1f}" for i, v in enumerate(points))
    return (f"<svg width='{width}' height='{height}' role='img' aria-label='rows per second'>"
            f"<polyline fill='none' stroke='#1565c0' stroke-width='1.5' points='{coords}'/></svg>")
