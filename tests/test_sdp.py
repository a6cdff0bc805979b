"""Spark Declarative Pipelines: export a spec, run it with the real spark-pipelines, compare rows."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline_magics.__main__ import main
from pipeline_magics.errors import PipelineExecutionError, SpecError
from pipeline_magics.run.pipeline import Pipeline
from pipeline_magics.sdp.export import export
from pipeline_magics.sdp.run import run_project

ROOT = Path(__file__).resolve().parent.parent
SPARK_PIPELINES = Path(sys.executable).parent / "spark-pipelines"


def spark_pipelines(project: Path, *args: str) -> subprocess.CompletedProcess:
    """``spark-pipelines run`` on an exported project, as its README says."""
    env = dict(os.environ, SPARK_CONF_DIR=str(project / "spark-conf"), PYSPARK_PYTHON=sys.executable)
    done = subprocess.run([str(SPARK_PIPELINES), *args, "--spec", str(project / "spark-pipeline.yml")],
                          env=env, capture_output=True, text=True, timeout=600, cwd=project)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def set_var(project: Path, name: str, value: str) -> None:
    """Changes one of the project's variables in spark-pipeline.yml (its configuration)."""
    spec_file = project / "spark-pipeline.yml"
    spec = yaml.safe_load(spec_file.read_text())
    spec["configuration"][f"pipeline.var.{name}"] = value
    spec_file.write_text(yaml.safe_dump(spec))


def delta(spark, path) -> object:
    return spark.read.format("delta").load(str(path))


def assert_same_rows(spark, a, b) -> int:
    """EXCEPT ALL both ways is empty; returns the row count."""
    left, right = delta(spark, a), delta(spark, b)
    assert left.exceptAll(right).count() == 0
    assert right.exceptAll(left).count() == 0
    return left.count()


@pytest.fixture(scope="module")
def quickstart(spark, ip, tmp_path_factory):
    """The quickstart run by %%pipeline, exported with %pipeline export, run by spark-pipelines."""
    base = tmp_path_factory.mktemp("sdp_quickstart")
    text = (ROOT / "examples" / "quickstart.yaml").read_text()
    data = str(ROOT / "examples" / "data")
    ip.run_cell_magic("pipeline", f"quickstart --var lake={base / 'notebook'} --var data_dir={data} --no-widgets",
                      text)
    project = ip.run_line_magic("pipeline", f"export quickstart --sdp {base / 'project'}")
    set_var(project.path, "lake", str(base / "sdp"))
    spark_pipelines(project.path, "run")
    return base, project


def test_quickstart_writes_the_same_rows(spark, quickstart, data_dir):
    base, project = quickstart
    rows = assert_same_rows(spark, base / "notebook" / "revenue_by_country", base / "sdp" / "revenue_by_country")
    orders = pd.read_csv(os.path.join(data_dir, "orders.csv"))
    big = orders[orders.amount > 10]
    expected = big.groupby("country").agg(orders=("amount", "size"), revenue=("amount", "sum")).reset_index()
    got = delta(spark, base / "sdp" / "revenue_by_country").toPandas().set_index("country").sort_index()
    assert rows == len(expected)
    assert got["orders"].to_dict() == expected.set_index("country")["orders"].to_dict()
    assert got["revenue"].round(2).to_dict() == expected.set_index("country")["revenue"].round(2).to_dict()
    # ${vars} are configuration, the step settings keep them as references
    spec = yaml.safe_load((project.path / "spark-pipeline.yml").read_text())
    assert spec["configuration"]["pipeline.var.min_amount"] == "10"
    assert "_v('amount > ${min_amount}')" in (project.path / "transformations" / "quickstart.py").read_text()


def test_sdp_run_in_the_notebook_shows_flows_and_writes_what_the_cli_writes(spark, ip, quickstart, tmp_path):
    base, _ = quickstart
    project = export((ROOT / "examples" / "quickstart.yaml").read_text(), tmp_path / "project",
                     {"lake": str(tmp_path / "lake"), "data_dir": str(ROOT / "examples" / "data")})
    checked = ip.run_line_magic("pipeline", f"sdp dry-run {project.path} --no-widgets")
    assert [(s.step, s.status) for s in checked.metrics.steps] == [("revenue_by_country", "checked")]
    assert not (tmp_path / "lake").exists()  # a dry run writes nothing
    result = ip.run_line_magic("pipeline", f"sdp run {project.path} --no-widgets --metrics json:{tmp_path}/m.json")
    assert result.status == "done"
    [step] = result.metrics.steps
    assert (step.step, step.type, step.method, step.status) == ("revenue_by_country", "load", "materialized_view",
                                                                 "done")
    rows = assert_same_rows(spark, tmp_path / "lake" / "revenue_by_country", base / "sdp" / "revenue_by_country")
    assert step.rows_out == rows
    exported = json.loads((tmp_path / "m.json").read_text())
    assert exported["steps"][0]["step"] == "revenue_by_country" and exported["steps"][0]["rows_out"] == rows
    # the live view draws the flows as its steps
    from pipeline_magics.notebook.widgets import PipelineView

    view = PipelineView(result.metrics, lambda: None)
    assert "revenue_by_country" in view.table.value and "materialized_view" in view.table.value


def test_segments_with_an_expectation(spark, tmp_path, data_dir):
    text = (ROOT / "examples" / "segments.yaml").read_text()
    variables = {"data_dir": str(ROOT / "examples" / "data"), "lake": str(tmp_path / "notebook")}
    Pipeline.from_yaml(text, variables).run(spark)
    assert main(["export", str(ROOT / "examples" / "segments.yaml"), "--sdp", str(tmp_path / "project"),
                 "--var", f"lake={tmp_path / 'sdp'}", "--var", f"data_dir={variables['data_dir']}"]) == 0
    spark_pipelines(tmp_path / "project", "run")
    assert_same_rows(spark, tmp_path / "notebook" / "revenue_by_segment", tmp_path / "sdp" / "revenue_by_segment")
    orders = pd.read_csv(os.path.join(data_dir, "orders.csv"))
    failing = int((~(orders.amount > 0)).sum())  # NaN counts as failing
    counters = delta(spark, tmp_path / "project" / "warehouse" / "valid_expectations").collect()
    assert [r.asDict() for r in counters] == [{"valid": failing}]


STREAM = """
name: events_stream
mode: streaming
steps:
  - type: extract
    method: fromJson
    name: events
    config: {path: "${inbox}", schema: "id INT, kind STRING, amount DOUBLE"}
  - type: transform
    method: filterRows
    config: {condition: "amount > 0"}
  - type: transform
    method: withColumn
    name: priced
    config: {column: cents, expr: "CAST(round(amount * 100) AS INT)"}
  - type: load
    method: toDelta
    name: events_table
    config: {path: "${lake}/events", checkpointLocation: "${lake}/_checkpoint", trigger: {availableNow: true}}
"""


def _write_events(inbox: Path, name: str, rows: list[dict]) -> None:
    inbox.mkdir(exist_ok=True)
    (inbox / name).write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_streaming_files_to_delta(spark, ip, tmp_path):
    inbox = tmp_path / "inbox"
    first = [{"id": i, "kind": "a" if i % 2 else "b", "amount": (i - 3) * 1.25} for i in range(12)]
    second = [{"id": 100 + i, "kind": "c", "amount": float(i)} for i in range(5)]
    _write_events(inbox, "1.json", first)
    notebook = {"inbox": str(inbox), "lake": str(tmp_path / "notebook")}
    Pipeline.from_yaml(STREAM, notebook).run(spark)
    project = export(STREAM, tmp_path / "project", {"inbox": str(inbox), "lake": str(tmp_path / "sdp")})
    spark_pipelines(project.path, "run")
    rows = assert_same_rows(spark, tmp_path / "notebook" / "events", tmp_path / "sdp" / "events")
    assert rows == sum(1 for r in first if r["amount"] > 0)
    # new files: %pipeline sdp run goes on from the checkpoint spark-pipelines left, as %%pipeline does
    _write_events(inbox, "2.json", second)
    Pipeline.from_yaml(STREAM, notebook).run(spark)
    result = ip.run_line_magic("pipeline", f"sdp run {project.path} --no-widgets")
    [step] = result.metrics.steps
    assert (step.step, step.method, step.status) == ("events_table", "streaming_table", "done")
    assert step.rows_out == sum(1 for r in second if r["amount"] > 0)
    total = assert_same_rows(spark, tmp_path / "notebook" / "events", tmp_path / "sdp" / "events")
    assert total == rows + step.rows_out
    got = delta(spark, tmp_path / "sdp" / "events").toPandas().sort_values("id")
    assert list(got.columns) == ["id", "kind", "amount", "cents"]
    assert (got.cents == (got.amount * 100).round().astype(int)).all()


UNSUPPORTED = """name: mixed
steps:
  - type: extract
    method: fromCsv
    name: orders
    config: {path: examples/data/orders.csv}
  - type: load
    method: toPostgres
    config: {host: localhost, database: shop, table: orders, user: u, password: {env: PGPASS}}
  - type: load
    method: toDelta
    input: orders
    config: {path: /tmp/x/orders, mode: append}
  - type: load
    method: display
    input: orders
"""


def test_what_sdp_cannot_express_is_one_error_before_anything_is_written(tmp_path):
    with pytest.raises(SpecError) as info:
        export(UNSUPPORTED, tmp_path / "project")
    err = info.value
    assert err.code == "SDP_UNSUPPORTED"
    assert [(s["line"], s["method"]) for s in err.params["steps"]] == [
        (7, "load.toPostgres"), (10, "load.toDelta"), (14, "load.display")]
    assert "line 7, step 'step2' (load.toPostgres)" in str(err)
    assert not (tmp_path / "project").exists()


def test_credentials_stay_references(tmp_path, monkeypatch):
    monkeypatch.setenv("PG_SECRET_FOR_TEST", "s3cr3t-value")
    text = """
name: pg_to_lake
steps:
  - type: extract
    method: fromPostgres
    config: {host: localhost, database: shop, table: orders, user: analyst, password: {env: PG_SECRET_FOR_TEST}}
  - type: load
    method: toDelta
    config: {path: /tmp/unused/orders, mode: overwrite}
"""
    project = export(text, tmp_path / "project")
    written = "".join(p.read_text() for p in project.files)
    assert "_secret({'env': 'PG_SECRET_FOR_TEST'})" in written
    assert "s3cr3t-value" not in written
    literal = text.replace("{env: PG_SECRET_FOR_TEST}", "plain-text-pw")
    with pytest.raises(SpecError) as info:
        export(literal, tmp_path / "other")
    assert info.value.code == "SDP_UNSUPPORTED" and "literal secret" in str(info.value)
    assert "plain-text-pw" not in str(info.value) and not (tmp_path / "other").exists()


@pytest.mark.parametrize("version", ["4.0.1", "3.5.7"])
def test_sdp_needs_spark_4_1(monkeypatch, tmp_path, version):
    import pyspark

    from pipeline_magics.sdp.connect import require_sdp

    monkeypatch.setattr(pyspark, "__version__", version)
    with pytest.raises(PipelineExecutionError) as info:
        require_sdp()
    assert info.value.code == "SDP_UNAVAILABLE" and "Spark >= 4.1" in str(info.value) and version in str(info.value)


def test_a_failing_sdp_project_is_one_readable_line(spark, ip, tmp_path):
    project = tmp_path / "handwritten"
    (project / "transformations").mkdir(parents=True)
    (project / "spark-pipeline.yml").write_text(yaml.safe_dump({
        "name": "handwritten", "storage": (tmp_path / "storage").as_uri(),
        "configuration": {"spark.sql.sources.default": "delta"},
        "libraries": [{"glob": {"include": "transformations/**"}}]}))
    (project / "transformations" / "numbers.sql").write_text(
        "CREATE MATERIALIZED VIEW numbers AS SELECT id FROM range(5)\n")
    (project / "transformations" / "broken.py").write_text(
        "from pyspark import pipelines as dp\n\n\n@dp.materialized_view\n"
        "def broken():\n    return spark.read.table('numbers').selectExpr('no_such_column + 1 AS x')\n")
    with pytest.raises(PipelineExecutionError) as info:
        ip.run_line_magic("pipeline", f"sdp run {project} --no-widgets")
    err = info.value
    assert err.code == "SDP_RUN_FAILED" and "no_such_column" in str(err)
    assert "\n" not in err.message and "JVM stacktrace" not in str(err)
    assert "no_such_column" in (err.detail or "")


@pytest.mark.parametrize("name, text, line", [
    ("broken.sql", "CREATE MATERIALIZED VIEW broken AS SELECT id FROM range(5) WHERE id >", 1),
    ("broken.py", "from pyspark import pipelines as dp\n\nundefined_name.call()\n", 3),
])
def test_a_broken_definition_names_its_file_and_line(spark, ip, tmp_path, name, text, line):
    project = tmp_path / "broken"
    (project / "transformations").mkdir(parents=True)
    (project / "spark-pipeline.yml").write_text(yaml.safe_dump({
        "name": "broken", "storage": (tmp_path / "storage").as_uri(),
        "libraries": [{"glob": {"include": "transformations/**"}}]}))
    (project / "transformations" / name).write_text(text)
    with pytest.raises(PipelineExecutionError) as info:
        ip.run_line_magic("pipeline", f"sdp run {project} --no-widgets")
    err = info.value
    assert err.code == "SDP_DEFINITION_INVALID"
    assert err.message.startswith(f"transformations/{name}, line {line}: ") and "\n" not in err.message
    assert err.params["file"] == f"transformations/{name}"


def test_sdp_subcommands_complete():
    from pipeline_magics.notebook.commands import complete

    assert {"export", "sdp"} <= set(complete("%pipeline "))
    assert complete("%pipeline sdp ")[-2:] == ["dry-run", "run"]
    assert complete("%pipeline export seg", pipelines=["segments"]) == ["segments"]


def test_headless_sdp_dry_run(spark, tmp_path, capsys):
    """``python -m pipeline_magics sdp``, in this process: on the suite's session and its Connect server."""
    project = export((ROOT / "examples" / "quickstart.yaml").read_text(), tmp_path / "project",
                     {"lake": str(tmp_path / "lake"), "data_dir": str(ROOT / "examples" / "data")})
    assert main(["sdp", "dry-run", str(project.path)]) == 0
    out = capsys.readouterr().out
    assert "revenue_by_country" in out and "checked" in out
    assert not (tmp_path / "lake").exists()
    assert main(["sdp", "run", str(project.path), "--full-refresh-all", "--refresh", "x"]) == 2
    assert "--full-refresh-all cannot be combined" in capsys.readouterr().err



def test_a_parquet_materialized_view_s_flow_counts_the_rows_it_wrote(spark, tmp_path, data_dir):
    """A hand-written project: its flow's rows are the table's, with no Delta history to read them from."""
    table = f"big_orders_{uuid.uuid4().hex[:8]}"
    (tmp_path / "transformations").mkdir()
    (tmp_path / "spark-pipeline.yml").write_text(
        f"name: parquet_mv\nstorage: file://{tmp_path}/storage\nlibraries:\n  - glob:\n      include: transformations/**\n")
    (tmp_path / "transformations" / "mv.py").write_text(f"""
from pyspark import pipelines as dp
from pyspark.sql import SparkSession

spark = SparkSession.active()


@dp.materialized_view(name="{table}", format="parquet")
def big():
    return spark.read.csv("{data_dir}/orders.csv", header=True, inferSchema=True).where("amount > 10")
""")
    try:
        result = run_project(tmp_path, spark)
        flow = result.metrics.step(table)
        assert flow.rows_out == spark.read.table(table).count() == int((pd.read_csv(
            os.path.join(data_dir, "orders.csv")).amount > 10).sum())
        assert flow.sources["rows_out"] == "SQL metrics of the flow's write"
    finally:
        spark.sql(f"DROP TABLE IF EXISTS {table}")
