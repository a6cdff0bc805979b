"""The magics in an IPython shell: options, subcommands, error rendering, export."""
from __future__ import annotations

import json
import os

import pytest
from IPython.core.error import UsageError

from pipeline_magics import PipelineResult, SpecError
from pipeline_magics.errors import PipelineExecutionError

SPEC = """
name: magic_orders
steps:
  - type: extract
    method: fromCsv
    name: orders
    config: {{path: "{data}/orders.csv", inferSchema: true}}
  - type: transform
    method: filterRows
    name: big
    config: {{condition: "amount > ${{min_amount}}"}}
  - type: load
    method: toDelta
    config: {{path: "${{lake}}/big", mode: overwrite}}
"""


#: the magic runs on the suite's session (the ``ip`` shell comes from tests/services/plugin.py)
pytestmark = pytest.mark.usefixtures("spark")


@pytest.fixture
def spec(data_dir):
    return SPEC.format(data=os.path.abspath(data_dir))


def test_cell_runs_with_vars_notebook_variables_and_export(ip, spec, lake, data_dir, spark):
    import pandas as pd

    ip.user_ns["lake"] = str(lake)
    ip.user_ns["min_amount"] = 1000  # overridden by --var below
    result = ip.run_cell_magic("pipeline", "renamed --var min_amount=50 --export", spec)
    assert isinstance(result, PipelineResult) and result.ok
    assert result.name == "renamed"
    orders = pd.read_csv(os.path.join(data_dir, "orders.csv"))
    expected = int((orders.amount > 50).sum())
    assert spark.read.format("delta").load(f"{lake}/big").count() == expected
    assert result.metrics.step("step3").rows_out == expected
    assert ip.user_ns["big"].count() == expected  # --export bound the named frame
    assert "renamed" in result._repr_html_()


def test_dry_run_runs_nothing(ip, spec, lake):
    ip.user_ns["lake"] = str(lake)
    view = ip.run_cell_magic("pipeline", "--dry-run --var min_amount=1", spec)
    assert "3 steps" in repr(view) and "load.toDelta" in repr(view)
    assert not (lake / "big").exists()


def test_explain_applies_to_next_cell(ip, spec, lake, capsys):
    ip.user_ns["lake"] = str(lake)
    ip.run_line_magic("pipeline", "explain")
    view = ip.run_cell_magic("pipeline", "--var min_amount=1", spec)
    assert "filterRows" in repr(view)
    assert not (lake / "big").exists()


def test_spec_error_is_short_and_kept_for_last_error(ip, capsys):
    with pytest.raises(SpecError) as info:
        ip.run_cell_magic("pipeline", "", "steps:\n  - type: extract\n    method: fromCvs\n    config: {path: x}\n")
    lines = info.value._render_traceback_()
    assert lines[0].startswith("SpecError") and "did you mean 'fromCsv'" in lines[0]
    ip.run_line_magic("pipeline", "last-error")
    out = capsys.readouterr().out
    assert "SPEC_INVALID" in out or "UNKNOWN_METHOD" in out


def test_step_failure_has_one_line_and_full_detail(ip, capsys):
    with pytest.raises(PipelineExecutionError) as info:
        ip.run_cell_magic("pipeline", "", "steps:\n  - type: extract\n    method: fromParquet\n"
                                          "    config: {path: /no/such/place}\n")
    rendered = "\n".join(info.value._render_traceback_())
    assert "PATH_NOT_FOUND" in rendered and "at org.apache" not in rendered
    ip.run_line_magic("pipeline", "last-error")
    assert "Traceback" in capsys.readouterr().out


def test_run_file_and_status_metrics_schema(ip, tmp_path, data_dir, capsys):
    spec_file = tmp_path / "p.yaml"
    spec_file.write_text(f"name: from_file\nsteps:\n  - {{type: extract, method: fromCsv, "
                         f"config: {{path: '{os.path.abspath(data_dir)}/customers.csv'}}}}\n"
                         f"  - {{type: load, method: toMemory, config: {{queryName: customers_mem}}}}\n")
    result = ip.run_line_magic("pipeline", f"run {spec_file}")
    assert result.metrics.step("step2").rows_out == 40
    capsys.readouterr()
    ip.run_line_magic("pipeline", "metrics from_file --format json")
    assert json.loads(capsys.readouterr().out)["steps"][1]["rows_out"] == 40
    ip.run_line_magic("pipeline", "metrics from_file --format prometheus")
    assert 'pipeline_step_output_rows_total{method="toMemory",pipeline="from_file",step="step2"} 40.0' in capsys.readouterr().out
    ip.run_line_magic("pipeline", "status from_file")
    assert "done" in capsys.readouterr().out
    ip.run_line_magic("pipeline", "schema")
    assert "fromPostgres" in capsys.readouterr().out


def test_bad_usage(ip):
    with pytest.raises(UsageError, match="did you mean 'status'"):
        ip.run_line_magic("pipeline", "statsu")
    with pytest.raises(UsageError, match="KEY=VALUE"):
        ip.run_cell_magic("pipeline", "--var nokey", "steps: []")
    with pytest.raises(UsageError, match="no notebook variable"):
        ip.run_cell_magic("pipeline", "--spark nosuch",
                          "steps:\n  - {type: extract, method: fromCsv, config: {path: x}}\n")


def test_help_lists_every_method(ip, capsys):
    from pipeline_magics.methods import METHODS

    ip.run_line_magic("pipeline", "help")
    out = capsys.readouterr().out
    assert all(name in out for _, name in METHODS)
    ip.run_line_magic("pipeline", "help fromPostgres")
    out = capsys.readouterr().out
    assert "password" in out and "partitionColumn" in out


def test_cells_await_their_run_where_the_kernel_handles_messages_meanwhile(ip, spec, lake, monkeypatch):
    """ipykernel 7 (no ``do_one_iteration``) handles a Cancel click while a cell awaits, not while it blocks."""
    from pipeline_magics.notebook.cells import await_pipeline_cells, forget_pipeline_cells

    class Kernel7:  # what the transformer looks at: a kernel without do_one_iteration
        pass

    monkeypatch.setattr(ip, "kernel", Kernel7(), raising=False)
    await_pipeline_cells(ip)
    try:
        ip.user_ns.update(threshold=100, line="not this one")  # a notebook variable named like a local
        cell = f"%%pipeline awaited --no-widgets --var min_amount=$threshold --var lake={lake}\n{spec}"
        assert ip.transform_cell(cell).startswith("await get_ipython().magics_manager.registry")
        assert ip.transform_cell("x = 1\n") == "x = 1\n"
        outcome = ip.run_cell(cell)
        assert outcome.success, outcome.error_in_exec
        assert outcome.result.name == "awaited" and outcome.result.metrics.status == "done"
        assert outcome.result.metrics.step("step3").rows_out == 29
    finally:
        forget_pipeline_cells(ip)
    assert not ip.transform_cell(cell).startswith("await")


def test_async_driver_leaves_the_event_loop_free_while_the_run_goes_on():
    import asyncio
    import time

    from pipeline_magics.notebook.cells import Background, wait_async

    def work():
        time.sleep(0.5)
        return "finished"

    async def main():
        ticks = 0

        async def other_messages():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        task = asyncio.create_task(other_messages())
        out = await wait_async(Background("sleeper", work, cancel=lambda: None))
        task.cancel()
        return out, ticks

    out, ticks = asyncio.run(main())
    assert out == "finished"
    assert ticks >= 10  # the loop ran other work while the cell waited


def test_export_binds_every_named_step_even_one_named_like_step(ip, data_dir):
    spec = (f"name: export_names\nsteps:\n"
            f"  - {{type: extract, method: fromCsv, name: stepwise_x, "
            f"config: {{path: '{os.path.abspath(data_dir)}/customers.csv', header: true}}}}\n"
            f"  - {{type: transform, method: filterRows, config: {{condition: 'customer_id > 10'}}}}\n"
            f"  - {{type: transform, method: filterRows, name: step9, config: {{condition: 'customer_id > 20'}}}}\n")
    for name in ("stepwise_x", "step9", "step2"):
        ip.user_ns.pop(name, None)
    result = ip.run_cell_magic("pipeline", "--export --no-widgets", spec)
    assert result.ok
    assert ip.user_ns["stepwise_x"].count() == 40  # a named step whose name starts with "step"
    assert ip.user_ns["step9"].count() == 20  # named so by the spec: bound too
    assert "step2" not in ip.user_ns  # an unnamed step's frame (its key "step2") is not bound


def test_streaming_run_whose_later_load_fails_at_start_is_failed_everywhere(ip, spark, lake, monkeypatch, capsys):
    """The first load's query starts, the second load fails as it starts: the run is failed in its
    result, in list/status and in every exporter, stays failed when refreshed, and the query stops."""
    import logging

    from pipeline_magics.errors import PipelineError
    from pipeline_magics.metrics import export, to_prometheus
    from pipeline_magics.run.streaming import REGISTRY

    monkeypatch.setenv("PIPELINE_CHECKPOINT_ROOT", str(lake / "cp"))
    spec = f"""
name: half_started
mode: streaming
steps:
  - {{type: extract, method: fromRate, name: ticks, config: {{rowsPerSecond: 5}}}}
  - {{type: load, method: toMemory, name: first, config: {{queryName: half_started_first, trigger: {{processingTime: "1 second"}}}}}}
  - {{type: load, method: toParquet, name: second, input: ticks, config: {{path: "{lake}/second", outputMode: complete}}}}
"""
    json_path, prom_path = lake / "m.json", lake / "m.prom"
    with pytest.raises(PipelineError) as info:
        ip.run_cell_magic("pipeline", f"--no-widgets --metrics json:{json_path} "
                                      f"--metrics prometheus:{prom_path}", spec)
    result = info.value.result
    capsys.readouterr()
    assert info.value.step_index == 2
    assert result.status == "failed" and result.metrics.status == "failed"
    first = result.queries[0]
    assert first.name == "half_started_first" and not first.isActive  # the started query was stopped
    assert all(q.name != "half_started_first" for q in spark.streams.active)
    assert json.loads(json_path.read_text())["status"] == "failed"
    assert 'pipeline_run_status{pipeline="half_started",status="failed"} 1.0' in prom_path.read_text()
    # A later refresh (each exporter makes one) re-reads the stopped query: the run stays failed.
    REGISTRY.get("half_started").refresh()
    assert REGISTRY.get("half_started").run.metrics.status == "failed"
    assert 'pipeline_run_status{pipeline="half_started",status="failed"} 1.0' in to_prometheus(result.metrics)
    assert json.loads(result.metrics.to_json())["status"] == "failed"
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    logger = logging.getLogger("half_started_test")
    logger.addHandler(Keep())
    export(result.metrics, "log:half_started_test")
    assert records[-1].pipeline_metrics["status"] == "failed"
    assert result.status == "failed"
    ip.run_line_magic("pipeline", "list")
    assert "half_started: failed" in capsys.readouterr().out
    ip.run_line_magic("pipeline", "status half_started")
    out = capsys.readouterr().out
    assert "pipeline half_started: failed" in out


def test_streaming_query_failing_at_run_time_fails_the_run_at_once(ip, spark, lake, monkeypatch, capsys):
    """The second of two queries dies on its first rows, on the notebook's own session: the cell raises
    the query's error in one line long before ``--timeout``, the other query is stopped, and the result,
    list/status and the JSON export say failed."""
    import time

    from pipeline_magics.errors import StreamingQueryError

    monkeypatch.setenv("PIPELINE_CHECKPOINT_ROOT", str(lake / "cp"))
    ip.user_ns["own_spark"] = spark  # a session made before the run, passed in as a notebook's would be
    spec = """
name: dies_later
mode: streaming
steps:
  - {type: extract, method: fromRate, name: ticks, config: {rowsPerSecond: 5}}
  - {type: load, method: toMemory, name: first, config: {queryName: dies_later_first, trigger: {processingTime: "1 second"}}}
  - {type: transform, method: withColumn, name: refused, input: ticks, config: {column: bad, expr: "raise_error('tick refused')"}}
  - {type: load, method: toMemory, name: second, config: {queryName: dies_later_second, trigger: {processingTime: "1 second"}}}
"""
    json_path = lake / "m.json"
    started = time.time()
    with pytest.raises(StreamingQueryError) as info:
        ip.run_cell_magic("pipeline", f"--no-widgets --spark own_spark --timeout 30 --metrics json:{json_path}", spec)
    assert time.time() - started < 20  # not the 30 s of --timeout
    capsys.readouterr()
    error = info.value
    assert "tick refused" in str(error) and error.step_index == 3 and len(str(error).splitlines()) <= 2
    result = error.result
    assert result.status == "failed" and result.metrics.steps[3].status == "failed"
    assert all(not q.isActive for q in result.queries)  # the healthy query was stopped too
    assert not {q.name for q in spark.streams.active} & {"dies_later_first", "dies_later_second"}
    assert json.loads(json_path.read_text())["status"] == "failed"
    ip.run_line_magic("pipeline", "list")
    assert "dies_later: failed" in capsys.readouterr().out
    ip.run_line_magic("pipeline", "status dies_later")
    assert "pipeline dies_later: failed" in capsys.readouterr().out
