"""What Spark is doing for the running step: its stages, and their tasks done out of all.

Classic sessions ask the SparkContext's status tracker when the live view redraws (a few
py4j calls a second, only while a cell shows widgets). Spark Connect sends the figures
with each operation's results; a progress handler registered on the session for the run
keeps the latest. Either way nothing is added to the run's own Spark jobs.
"""
from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from typing import Any, Iterable

from .kind import is_classic, is_connect


@dataclass(frozen=True)
class StageProgress:
    """The stages running now and their tasks."""

    stages: int
    tasks_done: int
    tasks_total: int

    def __str__(self) -> str:
        plural = "s" if self.stages != 1 else ""
        return f"Spark: {self.stages} stage{plural} running · {self.tasks_done:,}/{self.tasks_total:,} tasks"


def _progress(stages: Iterable[tuple[int, int]]) -> StageProgress | None:
    """``(tasks done, tasks)`` per running stage -> their sum, or None when no stage runs."""
    stages = list(stages)
    if not stages:
        return None
    return StageProgress(len(stages), sum(done for done, _ in stages), sum(total for _, total in stages))


class StageWatch:
    """The running stages of ``spark``'s work, read with ``now()``; ``close()`` when the run ends."""

    def __init__(self, spark: Any) -> None:
        self.spark = spark
        self._latest: StageProgress | None = None
        self._lock = threading.Lock()
        self._connect = is_connect(spark) and hasattr(spark, "registerProgressHandler")
        if self._connect:
            spark.registerProgressHandler(self._on_progress)

    def _on_progress(self, stages: Any, inflight_tasks: int, operation_id: Any, done: bool) -> None:
        """Spark Connect's progress handler: the operation's stages so far."""
        running = [(s.num_completed_tasks, s.num_tasks) for s in stages or () if not s.done]
        with self._lock:
            self._latest = None if done else _progress(running)

    def now(self) -> StageProgress | None:
        """The stages running now (None: none, or nothing to ask)."""
        if self._connect:
            with self._lock:
                return self._latest
        if not is_classic(self.spark):
            return None
        try:
            tracker = self.spark.sparkContext.statusTracker()
            infos = [tracker.getStageInfo(i) for i in tracker.getActiveStageIds()]
        except Exception:  # noqa: BLE001 - a stopped context: nothing runs
            return None
        return _progress((i.numCompletedTasks, i.numTasks) for i in infos if i is not None)

    def close(self) -> None:
        """Stops listening (Spark Connect)."""
        if self._connect:
            with contextlib.suppress(Exception):
                self.spark.removeProgressHandler(self._on_progress)
            self._connect = False
            self._latest = None
