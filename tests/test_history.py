"""The run history: a line per step of every run, written off the cell's path, concurrent writers
lose nothing, no secret is stored; ``%pipeline history`` returns it as pandas."""
from __future__ import annotations

import os
import subprocess
import sys
import threading

import pandas as pd
import pytest

from pipeline_magics.run import history
from pipeline_magics.errors import PipelineError
from pipeline_magics.run.pipeline import Pipeline

ROOT = os.path.join(os.path.dirname(__file__), os.pardir)
SPEC = """
name: {name}
steps:
  - type: extract
    method: fromCsv
    name: orders
    config: {{path: "{data}/orders.csv", inferSchema: true}}
  - type: transform
    method: expect
    name: positive
    config: {{condition: "amount > 20", onFail: drop}}
  - type: load
    method: toParquet
    name: sink
    config: {{path: "{lake}/{name}", mode: overwrite}}
"""


@pytest.fixture
def folder(tmp_path, monkeypatch):
    path = tmp_path / "history"
    monkeypatch.setenv("PIPELINE_HISTORY", str(path))
    return path


def test_every_step_of_every_run_with_rows_and_failing_rows(spark, folder, lake, data_dir):
    orders = pd.read_csv(os.path.join(data_dir, "orders.csv"))
    pipeline = Pipeline.from_yaml(SPEC.format(name="hist", data=os.path.abspath(data_dir), lake=lake))
    results = [pipeline.run(spark) for _ in range(3)]
    frame = history.read("hist")
    assert frame.run_id.unique().tolist() == [r.metrics.run_id for r in results]  # oldest first
    assert len(frame) == 9 and set(frame.status) == {"done"}
    sink = frame[frame.step == "sink"]
    good = int((orders.amount > 20).sum())
    assert sink.rows_out.tolist() == [good] * 3
    rules = frame[frame.step == "positive"].failed_rules.tolist()
    assert rules == [{"positive": len(orders) - good}] * 3  # one condition: a rule named after its step
    assert frame.spec_hash.nunique() == 1 and frame.method.tolist()[:3] == ["extract.fromCsv", "transform.expect",
                                                                           "load.toParquet"]
    assert (frame.end >= frame.start).all()
    assert history.read("hist", last=2).run_id.unique().tolist() == [r.metrics.run_id for r in results[1:]]


def test_concurrent_runs_in_one_kernel(spark, folder, lake, data_dir):
    pipelines = [Pipeline.from_yaml(SPEC.format(name=f"c{i}", data=os.path.abspath(data_dir), lake=lake))
                 for i in range(3)]
    threads = [threading.Thread(target=p.run, args=(spark,)) for p in pipelines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    frame = history.read()
    assert sorted(frame.pipeline.unique()) == ["c0", "c1", "c2"] and len(frame) == 9


WRITER = """
import sys
from pipeline_magics.run import history
from pipeline_magics.run.engine import Run
from pipeline_magics.run.pipeline import Pipeline
plan = Pipeline.from_yaml("name: proc\\nsteps:\\n  - {type: extract, method: fromCsv, config: {path: x.csv}}\\n"
                          "  - {type: load, method: toMemory}").plan
for i in range(int(sys.argv[2])):
    run = Run(plan, None, run_id=f"{sys.argv[1]}-{i}")
    run.metrics.status = "done"
    history.record(run)
    history.append(sys.argv[3], (f"{sys.argv[1]} {i} " + "x" * 5000 + "\\n").encode())  # one shared file
history.flush()
"""


def test_two_processes_appending_at_once_lose_nothing(folder, tmp_path):
    shared = tmp_path / "shared.log"
    env = {**os.environ, "PYTHONPATH": os.path.abspath(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, name, "150", str(shared)], env=env)
             for name in ("a", "b")]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    frame = history.read("proc")
    assert frame.run_id.nunique() == 300 and len(frame) == 600
    lines = shared.read_text().splitlines()
    assert len(lines) == 300 and all(line.endswith("x" * 5000) for line in lines)  # none interleaved


def test_failed_run_keeps_a_masked_error_and_no_secret(spark, folder, monkeypatch):
    secret = "pw-" + os.urandom(8).hex()
    monkeypatch.setenv("HISTORY_TEST_PASSWORD", secret)
    spec = ("name: leaky\nsteps:\n  - type: extract\n    method: fromPostgres\n    retry: {attempts: 1}\n"
            "    config: {url: 'jdbc:postgresql://127.0.0.1:1/db', table: t, user: u,\n"
            "             password: {env: HISTORY_TEST_PASSWORD}, options: {loginTimeout: '2'}}\n")
    with pytest.raises(PipelineError):
        Pipeline.from_yaml(spec).run(spark)
    frame = history.read("leaky")
    assert frame.status.tolist() == ["failed"] and frame.run_status.tolist() == ["failed"]
    assert frame.error.iloc[0]
    history.flush()
    for path in folder.rglob("*"):
        if path.is_file():
            assert secret not in path.read_text()


def test_history_off_and_the_line_magic(spark, folder, lake, data_dir, monkeypatch):
    from IPython import get_ipython
    from IPython.testing.globalipapp import start_ipython

    ip = start_ipython() or get_ipython()
    ip.run_line_magic("load_ext", "pipeline_magics")
    spec = SPEC.format(name="shown", data=os.path.abspath(data_dir), lake=lake)
    for _ in range(3):
        ip.run_cell_magic("pipeline", "--no-widgets", spec)
    frame = ip.run_line_magic("pipeline", "history shown --last 2")
    assert isinstance(frame, pd.DataFrame) and frame.run_id.nunique() == 2 and len(frame) == 6
    html = history.chart_html(frame)
    assert html.count("<tr><td title='run id") == 2 and "rows written" in html
    monkeypatch.setenv("PIPELINE_HISTORY", "none")
    Pipeline.from_yaml(SPEC.format(name="off", data=os.path.abspath(data_dir), lake=lake)).run(spark)
    history.flush()
    assert not (folder / "off").exists()
