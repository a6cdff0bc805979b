"""One streaming listener per session, handing each event on as plain data.

PySpark's ``StreamingQueryListener`` rebuilds every progress report as Python objects
through a hundred or more py4j calls (about 60 ms a report on 2 cores, on Spark's
listener bus, for every query of the session, once per listener). On classic sessions
this module implements Spark's ``PythonStreamingQueryListener`` interface itself and
reads each report as one JSON string, once for all subscribers. On Spark Connect,
PySpark's listener is used: its events arrive as JSON already.

A subscriber has any of ``started(query_id, name, run_id)``, ``progress(report: dict)`` and
``terminated(query_id, error, cancelled, run_id)``; a failing subscriber never breaks the listener bus.
"""
from __future__ import annotations

import json
import logging
import threading
from typing import Any

from .kind import is_classic

log = logging.getLogger("pipeline_magics")

_lock = threading.Lock()
#: each session that has a listener (kept, so that its id is not reused), with its fan-out, by id
_FANOUTS: dict[int, tuple[Any, "_Fanout"]] = {}


class _Fanout:
    def __init__(self) -> None:
        self.subscribers: list[Any] = []

    def send(self, event: str, *args: Any) -> None:
        for subscriber in list(self.subscribers):
            handler = getattr(subscriber, event, None)
            if handler is None:
                continue
            try:
                handler(*args)
            except Exception as exc:  # noqa: BLE001 - never let a figure or a view break Spark's bus
                log.debug("streaming %s event not handled by %r: %s", event, subscriber, exc)


def subscribe(spark: Any, subscriber: Any) -> bool:
    """Hands ``spark``'s streaming events to ``subscriber`` from now on (the listener is added on
    first use); False where no listener can be added."""
    session = spark._jsparkSession if is_classic(spark) else spark  # a classic session's JVM side, else itself
    with _lock:
        _, fanout = _FANOUTS.get(id(session), (None, None))
        if fanout is None:
            fanout = _Fanout()
            try:
                _register(spark, fanout)
            except Exception as exc:  # noqa: BLE001
                log.debug("no streaming listener (%s); progress is polled", exc)
                return False
            _FANOUTS[id(session)] = (session, fanout)
        if subscriber not in fanout.subscribers:
            fanout.subscribers.append(subscriber)
    return True


def _register(spark: Any, fanout: _Fanout) -> None:
    if not is_classic(spark):
        spark.streams.addListener(_connect_listener(fanout))
        return
    from pyspark import SparkContext
    from pyspark.java_gateway import ensure_callback_server_started

    gateway = SparkContext._gateway
    ensure_callback_server_started(gateway)
    wrapper = gateway.jvm.org.apache.spark.sql.streaming.PythonStreamingQueryListenerWrapper
    spark.streams._jsqm.addListener(wrapper(_JvmListener(fanout)))


class _JvmListener:
    """Spark's ``PythonStreamingQueryListener``, implemented over py4j with a few calls an event."""

    def __init__(self, fanout: _Fanout) -> None:
        self.fanout = fanout

    def onQueryStarted(self, event: Any) -> None:  # noqa: N802 - Spark's interface
        self.fanout.send("started", str(event.id().toString()), event.name() or "", str(event.runId().toString()))

    def onQueryProgress(self, event: Any) -> None:  # noqa: N802
        self.fanout.send("progress", json.loads(event.progress().json()))

    def onQueryIdle(self, event: Any) -> None:  # noqa: N802
        pass

    def onQueryTerminated(self, event: Any) -> None:  # noqa: N802
        error = event.exception()
        self.fanout.send("terminated", str(event.id().toString()), error.get() if error.isDefined() else None,
                         False, str(event.runId().toString()))

    class Java:
        implements = ["org.apache.spark.sql.streaming.PythonStreamingQueryListener"]


def _connect_listener(fanout: _Fanout) -> Any:
    from pyspark.sql.streaming import StreamingQueryListener

    class ConnectListener(StreamingQueryListener):
        def onQueryStarted(self, event: Any) -> None:
            fanout.send("started", str(event.id), event.name or "", str(event.runId))

        def onQueryProgress(self, event: Any) -> None:
            fanout.send("progress", json.loads(event.progress.json))

        def onQueryIdle(self, event: Any) -> None:
            pass

        def onQueryTerminated(self, event: Any) -> None:
            fanout.send("terminated", str(event.id), event.exception, False, str(event.runId))

    return ConnectListener()
