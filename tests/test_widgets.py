"""The live view: state objects fed by the listener, the widget models after a run, a failure, a cancel."""
from __future__ import annotations

import threading
import time


from pipeline_magics import Pipeline, PipelineCancelledError, PipelineError
from pipeline_magics.metrics.progress import Throttle, sparkline
from pipeline_magics.metrics.queries import QueryStore
from pipeline_magics.notebook.widgets import PipelineView, QueryPanel

SLOW = "reflect('java.lang.Thread', 'sleep', CAST(40 AS BIGINT)) IS NULL"  # 40 ms a row


def progress(query_id: str, batch: int, rows: int, rate: float) -> dict:
    return {"id": query_id, "name": "q", "batchId": batch, "numInputRows": rows, "inputRowsPerSecond": rate,
            "processedRowsPerSecond": rate * 2, "durationMs": {"triggerExecution": 120}}


def test_hub_accumulates_progress_and_terminations():
    hub = QueryStore()
    seen = []
    hub.subscribe("a", lambda s: seen.append((s.status, s.total_rows)))
    hub.started("a", "q")
    hub.progress(progress("a", 0, 10, 5.0))
    hub.progress(progress("a", 1, 30, 15.0))
    state = hub.states["a"]
    assert (state.batch_id, state.total_rows, state.processed_rows_per_second, state.last_batch_ms) == (1, 40, 30.0, 120)
    assert list(state.rates) == [10.0, 30.0]
    hub.terminated("a", "java.lang.RuntimeException: boom\n\tat x")
    assert state.status == "failed" and state.error == "java.lang.RuntimeException: boom"
    hub.cancelling("b")
    hub.terminated("b", None)
    assert hub.states["b"].status == "cancelled"
    hub.terminated("c", None)
    assert hub.states["c"].status == "done"
    assert seen[-1] == ("failed", 40)


def test_throttle_limits_refreshes_and_keeps_the_last():
    calls = []
    throttle = Throttle(lambda: calls.append(time.time()), interval=0.2)
    for _ in range(50):
        throttle()
    assert len(calls) == 1  # the first at once, the rest folded into one deferred refresh
    time.sleep(0.35)
    assert len(calls) == 2 and calls[1] - calls[0] >= 0.19


def test_sparkline_scales_to_its_maximum():
    svg = sparkline([0, 5, 10])
    points = svg.split("points='")[1].split("'")[0].split()
    assert len(points) == 3 and points[2].endswith(",2.0") and points[0].endswith(",30.0")
    assert "polyline" not in sparkline([1])


def test_query_panel_shows_the_state():
    hub = QueryStore()
    state = hub.state("a", "orders.sink")
    stopped = []
    panel = QueryPanel(state, lambda: stopped.append(True))
    hub.progress(progress("a", 3, 50, 25.0))
    panel.draw()
    assert "batch 3" in panel.figures.value and "processed 50.0 rows/s" in panel.figures.value
    assert "total 50 rows" in panel.figures.value and "polyline" not in panel.chart.value
    panel.stop_button.click()
    assert stopped == [True]
    hub.terminated("a", None)
    panel.draw()
    assert "done" in panel.header.value and panel.stop_button.disabled


def view_after(pipeline: Pipeline, spark, **kw):
    view = PipelineView(None, pipeline.cancel, name=pipeline.name, spark_starting=True)
    assert f"<b>pipeline {pipeline.name}</b>: <span class='pipeline-status'>starting Spark…</span> · 0s" in view.title.value
    try:
        pipeline.run(spark, on_update=lambda run: view.bind(run.metrics), **kw)
    except PipelineError:
        pass
    view.refresh.flush()
    return view


def test_view_after_a_run_and_after_a_failure(spark, data_dir, lake):
    ok = Pipeline.from_yaml(f"""
name: view_ok
steps:
  - {{type: extract, method: fromCsv, name: customers, config: {{path: "{data_dir}/customers.csv"}}}}
  - {{type: load, method: toDelta, config: {{path: "{lake}/c", mode: overwrite}}}}
""")
    view = view_after(ok, spark)
    assert "done" in view.title.value and "view_ok" in view.title.value
    assert view.table.value.count("<tr>") == 3 and ">40<" in view.table.value  # header + 2 steps; rows written
    assert view.cancel_button.layout.display == "none"  # over: the title says how it ended, no Cancel

    bad = Pipeline.from_yaml("name: view_bad\nsteps:\n  - {type: extract, method: fromParquet, "
                             "config: {path: /no/such/folder}}\n")
    view = view_after(bad, spark)
    assert "failed" in view.title.value and "#c62828" in view.title.value
    assert "failed" in view.table.value and view.cancel_button.layout.display == "none"
    view.draw()  # nothing turns a failure back
    assert "failed" in view.title.value


def test_cancel_stops_a_running_batch_and_leaves_delta_as_it_was(spark, lake):
    table = lake / "slow"
    spark.range(5).write.format("delta").save(str(table))
    version = spark.sql(f"DESCRIBE HISTORY delta.`{table}`").agg({"version": "max"}).first()[0]
    pipeline = Pipeline.from_yaml(f"""
name: slow_batch
steps:
  - {{type: extract, method: fromDelta, config: {{path: "{table}"}}}}
  - {{type: transform, method: sql, config: {{query: "SELECT id FROM range(0, 8000, 1, 2) WHERE {SLOW}"}}}}
  - {{type: load, method: toDelta, config: {{path: "{table}", mode: append}}}}
""")
    view = PipelineView(None, pipeline.cancel)
    outcome = {}

    def work():
        try:
            pipeline.run(spark, on_update=lambda run: view.bind(run.metrics))
        except PipelineError as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=work)
    started = time.time()
    worker.start()
    deadline = time.time() + 60
    while (view.metrics is None or view.metrics.steps[2].status != "running") and time.time() < deadline:
        time.sleep(0.1)
    while not spark.sparkContext.statusTracker().getActiveJobsIds() and time.time() < deadline:
        time.sleep(0.1)  # until the write's Spark job runs
    view.cancel_button.click()
    worker.join(60)
    view.refresh.flush()
    assert isinstance(outcome.get("error"), PipelineCancelledError)
    assert time.time() - started < 100  # far less than the 160 s the job needs
    assert "cancelled" in view.title.value and view.metrics.steps[2].status == "cancelled"
    after = spark.sql(f"DESCRIBE HISTORY delta.`{table}`").agg({"version": "max"}).first()[0]
    assert after == version and spark.read.format("delta").load(str(table)).count() == 5


def test_streaming_panels_fed_by_the_listener(spark, lake, monkeypatch):
    from pipeline_magics.metrics.progress import listen
    from pipeline_magics.metrics.queries import QUERIES

    monkeypatch.setenv("PIPELINE_CHECKPOINT_ROOT", str(lake / "cp"))
    listen(spark)
    pipeline = Pipeline.from_yaml("""
name: view_stream
mode: streaming
steps:
  - {type: extract, method: fromRate, config: {rowsPerSecond: 50}}
  - {type: load, method: toMemory, config: {queryName: view_stream_rows, trigger: {processingTime: "500 milliseconds"}}}
""")
    view = PipelineView(None, pipeline.cancel)

    def update(run):
        view.bind(run.metrics)
        for _, q in run.queries:
            if str(q.id) not in view.panels:
                view.add_query(q, q.stop)

    result = pipeline.run(spark, on_update=update)
    try:
        panel = next(iter(view.panels.values()))
        deadline = time.time() + 60
        while panel.state.processed_rows_per_second <= 0 and time.time() < deadline:
            time.sleep(0.2)
        assert panel.state.processed_rows_per_second > 0 and panel.state.total_rows > 0
        while "rows/s" not in panel.figures.value and time.time() < deadline:
            time.sleep(0.1)  # the throttled refresh
        assert "rows/s" in panel.figures.value and "running" in panel.header.value
    finally:
        view.cancel_button.click()
    deadline = time.time() + 30
    while panel.state.status == "running" and time.time() < deadline:
        time.sleep(0.2)
    panel.refresh.flush()
    assert panel.state.status == "cancelled" and "cancelled" in panel.header.value
    assert not result.queries[0].isActive
    assert QUERIES.states[str(result.queries[0].id)] is panel.state


SLOW_JOB = r"""
def watch_slow_job(spark):
    # four tasks of 3 s in one stage, watched: what the watch saw while they ran, and after
    import threading, time
    watch = StageWatch(spark)
    job = threading.Thread(target=lambda: spark.range(0, 4, 1, 4).selectExpr(
        "reflect('java.lang.Thread', 'sleep', CAST(3000 AS BIGINT)) AS slept").collect())
    job.start()
    seen = []
    while job.is_alive():
        now = watch.now()
        if now is not None:
            seen.append([now.stages, now.tasks_done, now.tasks_total, str(now)])
        time.sleep(0.2)
    after = watch.now()
    watch.close()
    return {"seen": seen, "after": None if after is None else str(after)}
"""

CONNECT_PANEL = r"""
import json, os, sys, time, traceback
from pipeline_magics import Pipeline
from pipeline_magics.metrics.progress import listen
from pipeline_magics.spark.session import get_session, is_connect
from pipeline_magics.notebook.widgets import PipelineView

from pipeline_magics.spark.stages import StageWatch


{SLOW_JOB}


spark = get_session()
assert is_connect(spark), type(spark)
try:
    listen(spark)
    pipeline = Pipeline.from_yaml(
        "name: connect_panel\nmode: streaming\nsteps:\n  - {type: extract, method: fromRate, config: {rowsPerSecond: 50}}\n"
        "  - {type: load, method: toMemory, config: {queryName: connect_panel_rows, trigger: {processingTime: '500 milliseconds'}}}\n")
    view = PipelineView(None, pipeline.cancel)

    def update(run):
        view.bind(run.metrics)
        for _, q in run.queries:
            if str(q.id) not in view.panels:
                view.add_query(q, q.stop)

    result = pipeline.run(spark, on_update=update)
    panel = next(iter(view.panels.values()))
    deadline = time.time() + 90
    while (panel.state.processed_rows_per_second or 0) <= 0 and time.time() < deadline:
        time.sleep(0.2)
    panel.draw()
    state = panel.state
    print("PANEL " + json.dumps({"rate": state.processed_rows_per_second, "input_rate": state.input_rows_per_second,
                                 "total": state.total_rows, "batch": state.batch_id, "figures": panel.figures.value}))
    result.stop()
    print("STAGES " + json.dumps(watch_slow_job(spark)))
    code = 0
except BaseException:
    traceback.print_exc()
    code = 1
sys.stdout.flush()
sys.stderr.flush()
os._exit(code)  # the Connect client's listener thread would keep the process waiting
""".replace("{SLOW_JOB}", SLOW_JOB)


def test_connect_live_panel_shows_real_rows_per_second(tmp_path, connect_server):
    """On Spark Connect the listener's reports leave out the query-wide rates (they are per source):
    the panel still shows them (in a child process: one kind of session per process)."""
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "PIPELINE_SPARK_REMOTE": connect_server.url, "SPARK_LOCAL_IP": "127.0.0.1",
           "PIPELINE_CHECKPOINT_ROOT": str(tmp_path / "cp"),
           "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}
    done = subprocess.run([sys.executable, "-c", CONNECT_PANEL], env=env, capture_output=True, text=True,
                          timeout=300)
    lines = [line for line in done.stdout.splitlines() if line.startswith("PANEL ")]
    assert done.returncode == 0 and lines, done.stdout[-3000:] + done.stderr[-3000:]
    got = json.loads(lines[-1][len("PANEL "):])
    assert got["rate"] > 0 and got["input_rate"] > 0 and got["total"] > 0 and got["batch"] is not None
    assert f"processed {got['rate']:,.1f} rows/s" in got["figures"] and "processed 0.0 rows/s" not in got["figures"]
    [stages] = [json.loads(line[len("STAGES "):]) for line in done.stdout.splitlines() if line.startswith("STAGES ")]
    assert_watched_one_stage_of_four_tasks(stages)


def assert_watched_one_stage_of_four_tasks(stages: dict) -> None:
    assert stages["seen"] and stages["after"] is None, stages
    assert {(n, total) for n, _, total, _ in stages["seen"]} == {(1, 4)}, stages
    assert all(0 <= done <= 4 for _, done, _, _ in stages["seen"])
    assert "Spark: 1 stage running · " in stages["seen"][-1][3] and "/4 tasks" in stages["seen"][-1][3]


def test_stage_watch_on_a_classic_session_and_in_the_view(spark, data_dir):
    """The status tracker's running stages while a slow job runs, none after; the view shows them
    only while the run runs."""
    from pipeline_magics.spark.stages import StageProgress, StageWatch

    namespace = {"StageWatch": StageWatch}
    exec(SLOW_JOB, namespace)
    assert_watched_one_stage_of_four_tasks(namespace["watch_slow_job"](spark))
    result = Pipeline.from_yaml(f"""
steps:
  - {{type: extract, method: fromCsv, config: {{path: "{data_dir}/orders.csv", header: true}}}}
  - {{type: load, method: toMemory, config: {{queryName: stage_view}}}}
""").run(spark)
    view = PipelineView(result.metrics, lambda: None)
    result.metrics.status = "running"
    view.show_stages(StageProgress(2, 3, 8))
    view.refresh.flush()
    assert "Spark: 2 stages running · 3/8 tasks" in view.stages.value
    result.metrics.status = "done"
    view.show_stages(StageProgress(1, 0, 1))
    view.refresh.flush()
    assert view.stages.value == ""


def test_a_finished_cell_keeps_its_result_not_the_widget(tmp_path, data_dir, monkeypatch):
    """In a real kernel (nbclient): the live view says it starts Spark, then becomes the result's own HTML
    and text, a failed run's too; the saved notebook has no widget placeholder; the cell's value is still
    the result (``_``); the run's time includes the Spark start the cell waited for, shown apart."""
    import json
    import os

    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("PIPELINE_SPARK_MASTER", "local[1]")
    monkeypatch.setenv("SPARK_LOCAL_IP", "127.0.0.1")
    csv = os.path.abspath(os.path.join(data_dir, "customers.csv"))
    cells = ["%load_ext pipeline_magics",
             f"%%pipeline first\nsteps:\n  - {{type: extract, method: fromCsv, config: {{path: '{csv}', header: true}}}}\n"
             "  - {type: load, method: toMemory, config: {queryName: static_first}}",
             "result = _\nprint(type(result).__name__, result.status, result.live, result.metrics.spark_start > 0)",
             "%%pipeline broken\nsteps:\n  - {type: extract, method: fromParquet, config: {path: /no/such/folder}}"]
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nb.cells[3].metadata["tags"] = ["raises-exception"]
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    saved = json.dumps(nb)
    assert "VBox(children=" not in saved and "widget-view+json" not in saved
    [first] = nb.cells[1].outputs  # one output: the live view, become the result
    assert first.output_type == "display_data"
    assert "<table>" in first.data["text/html"] and "static_first" in first.data["text/html"]
    assert first.data["text/plain"].startswith("pipeline first: done in ") and "(Spark start " in first.data["text/plain"]
    assert nb.cells[2].outputs[0].text.strip() == "PipelineResult done static True"
    shown, error = nb.cells[3].outputs
    assert "failed" in shown.data["text/html"] and "<table>" in shown.data["text/html"]
    assert error.output_type == "error" and "(Spark start" not in shown.data["text/plain"]
