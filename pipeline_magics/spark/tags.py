"""Job tags: how a run's (and a step's) Spark jobs are found again, to interrupt them or read their figures.

Spark Connect sends a session's tags with every operation of the thread that added them
and interrupts a tag's operations from any thread. A classic session's own tags belong to
the thread that added them, so there the SparkContext's job tag is used as well.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

from .kind import is_connect

#: a classic thread's own ``spark.job.interruptOnCancel`` before a run set it, by run tag
_INTERRUPT_BEFORE: dict[str, str | None] = {}
INTERRUPT_ON_CANCEL = "spark.job.interruptOnCancel"


def add_tag(spark: Any, tag: str) -> None:
    """Tags the jobs this thread runs from now on, so that ``interrupt_tag`` can find them."""
    try:
        spark.addTag(tag)  # Spark Connect sends it with every operation of this thread
    except Exception:  # noqa: BLE001 - sessions without job tags cannot be interrupted by tag
        pass
    if not is_connect(spark):
        try:
            sc = spark.sparkContext
            sc.addJobTag(tag)  # classic: see interrupt_tag
            # Cancelling interrupts the tasks' threads (as Spark Connect does), so that a task
            # blocked in a call (a sleep, a socket read) stops now rather than at its next batch.
            _INTERRUPT_BEFORE[tag] = sc.getLocalProperty(INTERRUPT_ON_CANCEL)
            sc.setLocalProperty(INTERRUPT_ON_CANCEL, "true")
        except Exception:  # noqa: BLE001
            pass


def remove_tag(spark: Any, tag: str) -> None:
    """Undoes ``add_tag``."""
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


def interrupt_tag(spark: Any, tag: str) -> None:
    """Interrupts the running jobs tagged ``tag``, from whatever thread calls it."""
    try:
        if is_connect(spark):
            spark.interruptTag(tag)
        else:
            spark.sparkContext.cancelJobsWithTag(tag)
    except Exception:  # noqa: BLE001 - nothing running, or a session without job tags
        pass


@contextlib.contextmanager
def job_tag(spark: Any, tag: str) -> Iterator[None]:
    """Tags the classic SparkContext's jobs run inside the block (their figures are read by tag)."""
    sc = spark.sparkContext
    sc.addJobTag(tag)
    try:
        yield
    finally:
        sc.removeJobTag(tag)
