"""A run with its live view: the run works on a thread of its own while the cell shows widgets and waits."""
from __future__ import annotations

import threading
from typing import Any, Generator

from IPython.display import display

from ..errors import PipelineCancelledError
from ..run.pipeline import Pipeline
from ..metrics.progress import listen
from ..spark.stages import StageWatch
from .widgets import PipelineView


def run_live(pipeline: Pipeline, spark: Any, options: dict[str, Any]) -> Generator[threading.Thread, None, Any]:
    """Runs ``pipeline`` off the cell's thread with a live view; yields that thread for the cell to wait on.

    The cell's driver (``cells.drive``) waits for it while widget messages (Cancel) go on
    being handled, then resumes this generator, which returns the ``PipelineResult``.
    """
    if pipeline.spec.mode == "streaming":
        listen(spark)
    view = PipelineView(None, pipeline.cancel)
    display(view.widget)
    shown: set[int] = set()

    def update(run: Any) -> None:
        view.bind(run.metrics)
        for _, query in run.queries:
            if id(query) not in shown:
                shown.add(id(query))
                view.add_query(query, query.stop)
        view.refresh()

    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["result"] = pipeline.run(spark, on_update=update, **options)
        except BaseException as exc:  # noqa: BLE001 - handed to the cell's thread
            outcome["error"] = exc

    stages = StageWatch(spark)

    def tick() -> None:  # durations go on counting during a long step, Spark's stages with them
        while worker.is_alive():
            view.show_stages(stages.now())
            worker.join(1.0)
        stages.close()
        view.show_stages(None)

    worker = threading.Thread(target=work, name=f"pipeline-{pipeline.name}", daemon=True)
    worker.start()
    threading.Thread(target=tick, name=f"pipeline-{pipeline.name}-clock", daemon=True).start()
    try:
        yield worker  # the cell keeps handling widget messages (Cancel) until it has ended
    except KeyboardInterrupt:
        pipeline.cancel()
        worker.join(60)
        view.refresh.flush()
        raise PipelineCancelledError("interrupted", pipeline=pipeline.name) from None
    view.refresh.flush()
    if "error" in outcome:
        raise outcome["error"]
    result = outcome["result"]
    result.live = True
    return result
