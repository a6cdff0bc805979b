"""A run with its live view: the run works on a thread of its own while the cell shows widgets and waits."""
from __future__ import annotations

import threading
from typing import Any

from IPython.display import display

from ..metrics.progress import listen
from ..run.pipeline import Pipeline
from ..spark.stages import StageWatch
from .cells import Background
from .widgets import PipelineView


def start_live(pipeline: Pipeline, spark: Any, options: dict[str, Any]) -> Background:
    """Shows the live view and starts ``pipeline`` off the cell's thread; the cell waits with ``cells.wait``."""
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

    def work() -> Any:
        result = pipeline.run(spark, on_update=update, **options)
        result.live = True
        return result

    job = Background(pipeline.name, work, pipeline.cancel, shown=view.refresh.flush)
    stages = StageWatch(spark)

    def tick() -> None:  # durations go on counting during a long step, Spark's stages with them
        while job.thread.is_alive():
            view.show_stages(stages.now())
            job.thread.join(1.0)
        stages.close()
        view.show_stages(None)

    threading.Thread(target=tick, name=f"pipeline-{pipeline.name}-clock", daemon=True).start()
    return job
