"""Running streaming pipelines: the kernel's registry of runs and their queries, waiting, stopping."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ..spark.causes import root_cause
from ..errors import StreamingQueryError
from ..metrics.sources import update_streaming
from .retry import is_transient
from ..metrics.status import RUNNING
from ..secrets.vault_renewal import RENEWAL


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
    queries: list[tuple[int, Any]] = field(default_factory=list)  # (step index, StreamingQuery)
    started: float = field(default_factory=time.time)

    @property
    def active(self) -> bool:
        return any(_is_active(q) for _, q in self.queries)

    def stop(self) -> None:
        """Stops every query of the run."""
        for _, q in self.queries:
            try:
                q.stop()
            except Exception:  # noqa: BLE001 - already stopped
                pass
        self.refresh()

    def await_termination(self, timeout: float | None = None) -> bool:
        """Waits until all queries end (True) or ``timeout`` seconds pass (False); raises on a failed query."""
        deadline = None if timeout is None else time.time() + timeout
        try:
            for _, q in self.queries:
                left = None if deadline is None else max(0.0, deadline - time.time())
                if left is None:
                    q.awaitTermination()
                elif not q.awaitTermination(left):
                    return False
            return True
        except Exception:  # noqa: BLE001 - the failure is reported below, from the query itself
            pass
        finally:
            self.refresh()
        self.raise_if_failed()
        return True

    def raise_if_failed(self) -> None:
        """Raises ``StreamingQueryError`` for the first query that stopped with an error."""
        for index, q in self.queries:
            exc = _exception(q)
            if exc is not None:
                planned = self.run.plan.steps[index]
                cause, detail = root_cause(exc)
                step = planned.step
                transient = is_transient(exc)  # e.g. a Kafka broker away longer than the source waits
                raise StreamingQueryError(
                    f"query '{q.name}' stopped: {self.run.mask(cause)}", pipeline=self.pipeline, step_index=index,
                    step_name=step.name, step_type=step.type, method=step.method, config=step.config,
                    detail=self.run.mask(detail), params={"query": q.name, "transient": transient},
                    hint="a service was unreachable; run the pipeline again once it is back: it resumes from "
                         "its checkpoint" if transient else None,
                    line=self.run.plan.spec.line_of("steps", index)[0])

    def refresh(self) -> None:
        """Copies the queries' progress into the run's metrics and tells the run's status which queries ended.

        The status only moves forward (``run_state``): a run that failed stays failed, however
        its stopped queries read afterwards.
        """
        update_streaming(self.run, self.queries)  # totals over every batch, with where each comes from
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
                        **self.run.metrics.steps[index].extra.get("progress", {})})
        return out


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
        run = self._runs.get(name)
        if run is None:
            raise KeyError(name)
        run.run.cancel()
        run.stop()

    def stop_all(self) -> list[str]:
        stopped = [n for n, r in self._runs.items() if r.active]
        for name in stopped:
            self.stop(name)
        return stopped


#: The registry of this Python process (one kernel).
REGISTRY = Registry()
RENEWAL.busy = REGISTRY.running  # the Vault token is renewed while a streaming pipeline runs
