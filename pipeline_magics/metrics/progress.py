"""Live state of streaming queries for views: the records of :mod:`.queries`, fed by the session's
StreamingQueryListener, and the throttle that redraws views at most a few times a second.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

from .queries import QUERIES, QueryStore


def listen(spark: Any, hub: QueryStore = QUERIES) -> None:
    """Feeds ``hub`` from ``spark``'s streaming listener (added once per session), on Spark Connect too."""
    hub.listen(spark, connect=True)


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
