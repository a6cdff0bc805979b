"""ipywidgets views over a run's state: step table, streaming query panels, Cancel and Stop.

Thin on purpose: the run's status (``metrics/status.py`` ``RunStatus``) updates ``PipelineMetrics`` and the
listener updates each query's ``QueryRecord`` (the record the metrics read too); these
classes only draw them, throttled to a few updates a second.
"""
from __future__ import annotations

import html
import time
from typing import Any, Callable

try:
    import ipywidgets as W
except ImportError as exc:  # pragma: no cover - ipywidgets is a dependency
    raise ImportError("the live view needs ipywidgets: pip install ipywidgets (or use --no-widgets)") from exc

from ..metrics.model import PipelineMetrics, fmt_took
from ..metrics.progress import Throttle, sparkline
from ..metrics.queries import QUERIES, QueryRecord, QueryStore
from ..metrics.status import TERMINAL
from ..render.palette import STATUS_COLOURS
from ..run.pipeline import steps_table


class QueryPanel:
    """One streaming query: state, batch, rates, total rows, last batch time, a chart, Stop."""

    def __init__(self, state: QueryRecord, on_stop: Callable[[], None]) -> None:
        self.state = state
        self.header = W.HTML()
        self.figures = W.HTML()
        self.chart = W.HTML()
        self.stop_button = W.Button(description="Stop", icon="stop", layout=W.Layout(width="80px"))
        self.stop_button.on_click(lambda _: on_stop())
        self.widget = W.VBox([W.HBox([self.header, self.stop_button]), self.figures, self.chart],
                             layout=W.Layout(border="1px solid #ddd", padding="4px", margin="4px 0"))
        self.refresh = Throttle(self.draw)
        self.draw()

    def draw(self) -> None:
        s = self.state
        colour = STATUS_COLOURS.get(s.status, "#000")
        self.header.value = (f"<b>{html.escape(s.name or s.id)}</b> "
                             f"<span style='color:{colour}'>{s.status}</span>"
                             + (f" — {html.escape(s.error)}" if s.error else ""))
        self.figures.value = (
            f"batch {s.batch_id if s.batch_id is not None else '—'} · "
            f"input {s.input_rows_per_second or 0:,.1f} rows/s · "
            f"processed {s.processed_rows_per_second or 0:,.1f} rows/s · "
            f"total {s.total_rows:,} rows · last batch {s.last_batch_ms if s.last_batch_ms is not None else '—'} ms")
        self.chart.value = sparkline(s.rates)
        self.stop_button.disabled = s.status in TERMINAL


class PipelineView:
    """The live view of one run: title, Cancel, the step table, one panel per streaming query.

    Before the run has its metrics it says what it waits for: ``starting Spark…`` (``spark_starting``)
    and for how long; once over, the title shows the run's state and Cancel goes away.
    """

    def __init__(self, metrics: PipelineMetrics | None, on_cancel: Callable[[], None], hub: QueryStore = QUERIES,
                 name: str = "", spark_starting: bool = False) -> None:
        self.metrics = metrics
        self.hub = hub
        self.name, self.spark_starting, self.began = name, spark_starting, time.time()
        self.title = W.HTML()
        self.cancel_button = W.Button(description="Cancel", button_style="danger", icon="stop",
                                      layout=W.Layout(width="100px"))
        self.cancel_button.on_click(lambda _: self._cancel(on_cancel))
        self.table = W.HTML()
        self.stages = W.HTML()
        self.queries = W.VBox()
        self.panels: dict[str, QueryPanel] = {}
        self.stage_progress: Any = None
        self.widget = W.VBox([W.HBox([self.title, self.cancel_button]), self.table, self.stages, self.queries])
        self.refresh = Throttle(self.draw)
        self.draw()

    def _cancel(self, on_cancel: Callable[[], None]) -> None:
        self.cancel_button.disabled = True
        self.cancel_button.description = "Cancelling…"
        on_cancel()

    def bind(self, metrics: PipelineMetrics) -> None:
        """Shows ``metrics`` (the run's, once it has started)."""
        self.metrics = metrics

    def show_stages(self, progress: Any) -> None:
        """Spark's running stages for the running step (a ``spark.stages.StageProgress``; None: none)."""
        self.stage_progress = progress
        self.refresh()

    def draw(self) -> None:
        m = self.metrics
        if m is None:
            waiting = "starting Spark…" if self.spark_starting else "starting…"
            self.title.value = (f"<b>pipeline {html.escape(self.name)}</b>: <span class='pipeline-status'>{waiting}"
                                f"</span> · {time.time() - self.began:.0f}s")
            return
        colour = STATUS_COLOURS.get(m.status, "#000")
        self.title.value = (f"<b>pipeline {html.escape(m.pipeline)}</b>: "
                            f"<span style='color:{colour}' class='pipeline-status'>{m.status}</span>"
                            f" · {html.escape(fmt_took(m))}")
        self.table.value = steps_table(m)
        running = m.status not in TERMINAL and self.stage_progress is not None
        self.stages.value = (f"<span class='pipeline-stages' style='color:#555'>{html.escape(str(self.stage_progress))}"
                             "</span>" if running else "")
        if m.status in TERMINAL and not self.active_queries():  # the title says how it ended; nothing to cancel
            self.cancel_button.layout.display = "none"

    def active_queries(self) -> bool:
        return any(p.state.status == "running" for p in self.panels.values())

    def add_query(self, query: Any, on_stop: Callable[[], None]) -> QueryPanel:
        """A panel for ``query``, fed by the progress listener."""
        state = self.hub.state(str(query.id), query.name or "", _run_id(query))
        panel = QueryPanel(state, on_stop)
        self.panels[state.id] = panel
        self.queries.children = tuple(p.widget for p in self.panels.values())

        def changed(_: QueryRecord) -> None:
            panel.refresh()
            if state.status in TERMINAL:
                if self.metrics is not None:  # a query's end changes the run's status only when recomputed
                    self.metrics.refresh()
                self.refresh()

        self.hub.subscribe(state.id, changed)
        return panel

    def close(self) -> None:
        """Stops listening (the widgets keep their last state)."""
        for query_id in self.panels:
            self.hub.unsubscribe(query_id)
        self.refresh.flush()
        for panel in self.panels.values():
            panel.refresh.flush()


def _run_id(query: Any) -> str | None:
    try:
        return str(query.runId)
    except Exception:  # noqa: BLE001 - a query that no longer answers: its latest run
        return None
