"""A run with its live view: the run works on a thread of its own while the cell shows widgets and waits.

The view is displayed under a display id; once the run is over (its streaming queries too) it is replaced
there by the result's own static output (HTML and text), so a saved notebook, its HTML export and an
editor without the widget renderer show the step table, not a widget's placeholder.
"""
from __future__ import annotations

import threading
import time
from typing import Any

from IPython.core.formatters import format_display_data
from IPython.core.getipython import get_ipython
from IPython.display import DisplayHandle, display

from ..metrics.progress import listen
from ..metrics.status import TERMINAL
from ..run.pipeline import Pipeline, PipelineResult, status_html
from ..spark.session import active_session, get_session
from ..spark.stages import StageWatch
from .cells import Background
from .widgets import PipelineView


def start_live(pipeline: Pipeline, spark: Any, options: dict[str, Any], preview_rows: int = 10) -> Background:
    """Shows the live view, gets the session (``spark`` None: the active one, or one started now, behind the
    view and counted in the run's time), and starts ``pipeline`` off the cell's thread; the cell waits with
    ``cells.wait``."""
    starting = spark is None and active_session() is None
    view = PipelineView(None, pipeline.cancel, name=pipeline.name, spark_starting=starting)
    handle = display(view.widget, display_id=True)
    over, job, watch = threading.Event(), [], []

    def tick() -> None:  # the clock goes on while Spark starts and during a long step, Spark's stages with it
        while not over.wait(1.0) and (not job or job[0].thread.is_alive()):
            view.show_stages(watch[0].now() if watch else None)
        for stages in watch:
            stages.close()
        view.show_stages(None)

    threading.Thread(target=tick, name=f"pipeline-{pipeline.name}-clock", daemon=True).start()
    began = time.time()
    try:
        spark = get_session(spark)  # on the cell's thread, whose active session it then is, as without the view
    except BaseException:
        over.set()
        handle.update({"text/plain": f"pipeline {pipeline.name}: no SparkSession"}, raw=True)
        raise
    options = {**options, "spark_start": time.time() - began if starting else None}
    watch.append(StageWatch(spark))
    if pipeline.spec.mode == "streaming":
        listen(spark)
    shown: set[int] = set()

    def update(run: Any) -> None:
        view.bind(run.metrics)
        for _, query in run.queries:
            if id(query) not in shown:
                shown.add(id(query))
                view.add_query(query, query.stop)
        view.refresh()

    def work() -> Any:
        result = pipeline.run(spark, on_update=update, **options)
        result.preview_rows = preview_rows
        return result

    def ended(result: Any) -> None:
        over.set()
        settle(view, handle, result)

    job.append(Background(pipeline.name, work, pipeline.cancel, shown=ended))
    return job[0]


def settle(view: PipelineView, handle: DisplayHandle | None, result: Any) -> None:
    """The run is over: its live view becomes the result's static output, unless streaming queries go on
    (the view then stays, with their panels and Stop, and becomes static once they have ended)."""
    view.refresh.flush()
    if not isinstance(result, PipelineResult) or handle is None:
        return
    if view.active_queries():
        result.live = "table"
        for panel in view.panels.values():
            view.hub.subscribe(panel.state.id, lambda _: _settle_later(view, handle, result))
        return
    _replace(handle, result)
    result.live = "static"
    quiet_once(result)


def _settle_later(view: PipelineView, handle: DisplayHandle, result: PipelineResult) -> None:
    """A query of a run whose view stayed has ended: once none runs, the view becomes the run's state and step
    table. (The view's own subscriber, called first, has brought the run's status up to date.)"""
    if view.active_queries() or result.live != "table" or result.metrics.status not in TERMINAL:
        return
    # the cell's value shows the graph and the frames below it already: the view becomes the state and the table
    handle.update({"text/html": f"<div class='pipeline-result'>{status_html(result.metrics)}</div>",
                   "text/plain": result.metrics.to_text()}, raw=True)


def _replace(handle: DisplayHandle, result: PipelineResult) -> None:
    """Puts ``result``'s own output (what the cell's value shows: HTML and text) where the live view was."""
    shell = get_ipython()
    if shell is not None:  # a result an earlier run of this cell left unshown would be formatted as nothing
        shell.display_formatter.ipython_display_formatter.type_printers.pop(PipelineResult, None)
    data, metadata = format_display_data(result)
    handle.update(data, metadata=metadata, raw=True)


def quiet_once(result: PipelineResult) -> None:
    """``result`` is shown already (its live view became it): as the cell's value it is kept in ``_`` and
    ``Out`` but not shown a second time; displayed again later, it shows as usual."""
    shell = get_ipython()
    if shell is None:
        return
    formatter = shell.display_formatter.ipython_display_formatter

    def printer(obj: Any) -> None:
        forget()
        if obj is not result:
            display(obj)

    def forget(*_: Any) -> None:
        if formatter.type_printers.get(PipelineResult) is printer:
            formatter.type_printers.pop(PipelineResult)
        if forget in shell.events.callbacks["post_run_cell"]:
            shell.events.unregister("post_run_cell", forget)

    formatter.for_type(PipelineResult, printer)
    shell.events.register("post_run_cell", forget)
