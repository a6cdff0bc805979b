"""A run's status as a small state machine: the one writer of the run's and its steps' status.

    pending ──> running ──> done
       │           ├──────> failed
       └───────────┴──────> cancelled

``done``, ``failed`` and ``cancelled`` are terminal: a move out of one is ignored (the
call returns False). Late news races with the run itself (a refresh that reads a query
stopped by the run's own failure, a listener's report after a cancel), and none of it may
rewrite what happened. Views (the result, ``%pipeline list``/``status``, widgets,
exporters) read ``PipelineMetrics.status``; they never work a status out themselves.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

PENDING, RUNNING, DONE, FAILED, CANCELLED = "pending", "running", "done", "failed", "cancelled"
#: steps only: one a dry run validated, one the engine left out (a Spark Declarative Pipelines flow)
CHECKED, SKIPPED = "checked", "skipped"
STATUSES = (PENDING, RUNNING, DONE, FAILED, CANCELLED)
TERMINAL = frozenset({DONE, FAILED, CANCELLED})
_MOVES = {PENDING: frozenset({RUNNING, FAILED, CANCELLED, CHECKED, SKIPPED}),
          RUNNING: frozenset({DONE, FAILED, CANCELLED})}


def move(record: Any, status: str) -> bool:
    """Sets ``record.status`` if the machine allows the move; False when it does not (e.g. out of a terminal state)."""
    if status not in _MOVES.get(record.status, ()):
        return False
    record.status = status
    return True


class RunStatus:
    """The status of one run (``PipelineMetrics``) and of its steps, moved only through these calls.

    A streaming load whose query runs stays ``running`` after ``execute`` returns; the run is
    over once every step has been started (``steps_over``) and no query runs any more.
    """

    def __init__(self, metrics: Any, clock: Callable[[], float] = time.time) -> None:
        self.metrics = metrics
        self.clock = clock
        self._lock = threading.RLock()
        self._steps_over = False
        #: called with the run's new status after each move of the run (e.g. OpenLineage events)
        self.watchers: list[Callable[[str], None]] = []

    @property
    def status(self) -> str:
        return self.metrics.status

    @property
    def over(self) -> bool:
        """True once the run is in a terminal state."""
        return self.metrics.status in TERMINAL

    def start(self) -> None:
        """The run begins."""
        with self._lock:
            if move(self.metrics, RUNNING):
                self.metrics.start = self.clock()
                self._moved()

    def step_started(self, index: int) -> None:
        """A step begins (its retries keep it running)."""
        with self._lock:
            move(self.metrics.steps[index], RUNNING)

    def step_finished(self, index: int, query: bool = False) -> None:
        """A step has done its work; a streaming load (``query``) goes on running with its query."""
        if not query:
            with self._lock:
                move(self.metrics.steps[index], DONE)

    def step_failed(self, index: int, error: str, cancelled: bool = False) -> None:
        """A step failed (or was cancelled while it ran)."""
        with self._lock:
            sm = self.metrics.steps[index]
            if move(sm, CANCELLED if cancelled else FAILED):
                sm.error = error

    def step_left_out(self, index: int, status: str) -> None:
        """A step that does not run: ``checked`` (a dry run) or ``skipped``."""
        with self._lock:
            move(self.metrics.steps[index], status)

    def query_ended(self, index: int, error: str | None = None, cancelled: bool = False) -> None:
        """A streaming step's query has stopped: with ``error``, on purpose (``cancelled``), or finished."""
        with self._lock:
            sm = self.metrics.steps[index]
            if move(sm, FAILED if error else CANCELLED if cancelled else DONE) and error:
                sm.error = error
            self._settle(cancelled)

    def steps_over(self, cancelled: bool = False) -> None:
        """Every step has been started (``execute`` returned): the run ends unless a query still runs."""
        with self._lock:
            self._steps_over = True
            self._settle(cancelled)

    def fail(self, error: str | None, cancelled: bool = False) -> None:
        """The run ends failed (or cancelled); the queries it stopped leave their steps cancelled.

        ``error`` describes the failure (it replaces a shorter one a query's end gave).
        """
        with self._lock:
            m = self.metrics
            moved = move(m, CANCELLED if cancelled else FAILED)
            if moved:
                m.end = self.clock()
            if error and m.status in (FAILED, CANCELLED):
                m.error = error
            for sm in m.steps:
                if sm.status == RUNNING or (cancelled and sm.status == PENDING):
                    move(sm, CANCELLED)
            if moved:
                self._moved()

    def _settle(self, cancelled: bool) -> None:
        m = self.metrics
        if not self._steps_over or m.status in TERMINAL or any(s.status == RUNNING for s in m.steps):
            return
        failed = next((s for s in m.steps if s.status == FAILED), None)
        if failed is not None:
            self.fail(m.error or failed.error)
        elif cancelled:
            self.fail(None, cancelled=True)
        elif move(m, DONE):
            m.end = self.clock()
            self._moved()

    def _moved(self) -> None:
        for watcher in list(self.watchers):
            try:
                watcher(self.metrics.status)
            except Exception:  # noqa: BLE001 - a watcher never changes how the run goes
                pass
