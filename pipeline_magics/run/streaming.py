"""Running streaming pipelines: the kernel's registry of runs and their queries, waiting, stopping."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from . import history
from ..spark.causes import root_cause
from ..errors import StreamingQueryError
from ..metrics.queries import QUERIES
from ..metrics.sources import update_streaming
from .retry import is_transient
from ..metrics.status import RUNNING
from ..secrets.vault_renewal import RENEWAL

#: how often a wait looks at every query of the run (a failed one ends the wait)
POLL_SECONDS = 0.5


def is_query(obj: Any) -> bool:
    """True for a StreamingQuery (classic or Spark Connect).

    Asked of the class: a Spark Connect DataFrame answers any attribute (a column by that name).
    """
    return hasattr(type(obj), "awaitTermination") and hasattr(type(obj), "lastProgress")


@dataclass
class StreamingRun:
    """One streaming pipeline's run in this kernel: its queries and their step indexes."""

    pipeline: str
    run: Any  # engine.Run
    started: float = field(default_factory=time.time)
    _recorded: str | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.run.metrics.refresher = self.refresh  # exporters bring the query figures up to date first

    @property
    def queries(self) -> list[tuple[int, Any]]:
        """The run's queries, as its loads start them: (step index, StreamingQuery)."""
        return self.run.queries

    @property
    def active(self) -> bool:
        return any(_is_active(q) for _, q in self.queries)

    def stop(self, error: str | None = None) -> None:
        """Ends the run: failed with ``error``, else cancelled (its running jobs interrupted); every query
        is stopped, their figures read, and the end written to the history."""
        if error is None:
            self.run.cancel()
        else:
            self._ended()  # the failed query's step is failed, then the run: the others end cancelled
            self.run.state.fail(error)
        stop_queries(self.queries)
        self.refresh()
        self.record()

    def record(self) -> None:
        """Writes the run to the history, once per status it reaches."""
        status = self.run.metrics.status
        if status != self._recorded:
            self._recorded = status
            history.record(self.run)

    def await_termination(self, timeout: float | None = None) -> bool:
        """Waits until all queries end (True) or ``timeout`` seconds pass (False).

        The first query that fails ends the wait at once: the run is stopped (its other queries
        too) and the query's ``StreamingQueryError`` raised.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self.raise_if_failed()
            running = [q for _, q in self.queries if _is_active(q)]
            left = None if deadline is None else deadline - time.monotonic()
            if not running or (left is not None and left <= 0):
                self.refresh()
                self.raise_if_failed()
                return not running
            try:
                running[0].awaitTermination(POLL_SECONDS if left is None else min(POLL_SECONDS, left))
            except Exception:  # noqa: BLE001 - a failed query is reported by raise_if_failed
                pass

    def raise_if_failed(self) -> None:
        """Stops the run and raises ``StreamingQueryError`` when one of its queries stopped with an error."""
        error = self.failure()
        if error is not None:
            self.stop(str(error))
            raise error

    def failure(self) -> StreamingQueryError | None:
        """The error of the first query that stopped with one, or None."""
        for index, q in self.queries:
            exc = _exception(q)
            if exc is not None:
                planned = self.run.plan.steps[index]
                cause, detail = root_cause(exc)
                step = planned.step
                transient = is_transient(exc)  # e.g. a Kafka broker away longer than the source waits
                return StreamingQueryError(
                    f"query '{q.name}' stopped: {self.run.mask(cause)}", pipeline=self.pipeline, step_index=index,
                    step_name=step.name, step_type=step.type, method=step.method, config=step.config,
                    detail=self.run.mask(detail), params={"query": q.name, "transient": transient},
                    hint="a service was unreachable; run the pipeline again once it is back: it resumes from "
                         "its checkpoint" if transient else None,
                    line=self.run.plan.spec.line_of("steps", index)[0])
        return None

    def refresh(self) -> None:
        """Copies the queries' progress into the run's metrics and tells the run's status which queries ended.

        The status only moves forward (``metrics.status``): a run that failed stays failed, however
        its stopped queries read afterwards. A query that failed while others run stops the run.
        """
        update_streaming(self.run, self.queries)  # totals over every batch, with where each comes from
        self._ended()
        if not self.run.state.over and any(_is_active(q) for _, q in self.queries):
            error = self.failure()
            if error is not None:
                self.stop(str(error))

    def _ended(self) -> None:
        """Tells the run's status which queries have ended, and how."""
        cancelled = self.run.cancelled.is_set()
        for index, q in self.queries:
            if _is_active(q):
                continue
            exc = _exception(q)
            error = None if exc is None else self.run.mask(root_cause(exc)[0])
            self.run.state.query_ended(index, error, cancelled)

    def describe(self) -> list[dict[str, Any]]:
        """Per query: name, id, state and the last progress figures."""
        self.refresh()
        out = []
        for index, q in self.queries:
            exc = _exception(q)
            out.append({"query": q.name, "id": str(q.id), "step": self.run.metrics.steps[index].step,
                        "active": _is_active(q), "error": None if exc is None else str(exc).splitlines()[0],
                        **(self.run.metrics.steps[index].progress or {})})
        return out


def stop_queries(queries: list[tuple[int, Any]]) -> None:
    """Stops ``(step index, query)`` pairs on purpose: each query's end is recorded as a cancel."""
    for _, query in queries:
        try:
            QUERIES.cancelling(str(query.id))
            query.stop()
        except Exception:  # noqa: BLE001 - already stopped
            pass


def _is_active(q: Any) -> bool:
    try:
        return bool(q.isActive)
    except Exception:  # noqa: BLE001
        return False


def _exception(q: Any) -> Any:
    try:
        return q.exception()
    except Exception:  # noqa: BLE001
        return None


class Registry:
    """The streaming runs of this kernel, by pipeline name."""

    def __init__(self) -> None:
        self._runs: dict[str, StreamingRun] = {}
        self._lock = threading.Lock()

    def claim(self, name: str, run: Any) -> StreamingRun:
        """Registers a new run; refuses when the same pipeline still has active queries."""
        with self._lock:
            current = self._runs.get(name)
            if current is not None and current.active:
                names = ", ".join(q.name for _, q in current.queries if _is_active(q))
                raise StreamingQueryError(
                    f"pipeline '{name}' is already running (queries: {names})", pipeline=name,
                    code="ALREADY_RUNNING",
                    hint=f"stop it first with %pipeline stop {name} (a second query on the same checkpoint "
                         "would corrupt it)")
            self._runs[name] = StreamingRun(name, run)
            return self._runs[name]

    def get(self, name: str) -> StreamingRun | None:
        return self._runs.get(name)

    def names(self) -> list[str]:
        return list(self._runs)

    def running(self) -> bool:
        """True while a streaming pipeline of this kernel runs: starting (no query yet) or with a running query."""
        for stream in list(self._runs.values()):
            if stream.queries:
                if stream.active:
                    return True
            elif stream.run.state.status == RUNNING:
                return True  # its steps are still running; the queries start with its loads
        return False

    def stop(self, name: str) -> None:
        """Cancels the pipeline's run and stops its queries (``StreamingRun.stop``)."""
        self._runs[name].stop()


#: The registry of this Python process (one kernel).
REGISTRY = Registry()
RENEWAL.busy = REGISTRY.running  # the Vault token is renewed while a streaming pipeline runs
