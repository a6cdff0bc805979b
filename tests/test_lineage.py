"""OpenLineage events (SPEC section 14): START then COMPLETE/FAIL/ABORT, datasets named by OpenLineage's
naming spec, schema and column-lineage facets read from the analyzed plans, on classic and Spark Connect
sessions, batch and streaming. The events are loaded with the OpenLineage client's own models and
validated against the OpenLineage JSON schema (tests/openlineage/: the spec's files for the versions the
client writes)."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import uuid

import pytest

from pipeline_magics import Pipeline
from pipeline_magics.__main__ import main as cli
from pipeline_magics.run.engine import Run
from pipeline_magics.run.lineage import attach
from pipeline_magics.spark.versions import pyspark_version

SCHEMAS = os.path.join(os.path.dirname(__file__), "openlineage")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "examples", "data")

STOCKS = """
name: stocks
steps:
  - type: extract
    method: fromCsv
    name: stocks
    config: {{path: "{csv}", schema: "symbol STRING, price DOUBLE, qty INT"}}
  - type: transform
    method: aggregate
    config: {{groupBy: [symbol], aggregations: {{revenue: sum(price), trades: count(*)}}}}
  - type: load
    method: toDelta
    config: {{path: "{out}", mode: overwrite}}
"""

SEGMENTS = """
name: segments
steps:
  - {{type: extract, method: fromCsv, name: orders, config: {{path: "{data}/orders.csv",
      schema: "order_id INT, customer_id INT, country STRING, amount DOUBLE, order_date DATE"}}}}
  - {{type: extract, method: fromCsv, name: customers, config: {{path: "{data}/customers.csv",
      schema: "customer_id INT, name STRING, segment STRING"}}}}
  - {{type: transform, method: join, input: orders, config: {{right: customers, on: customer_id}}}}
  - {{type: transform, method: renameColumns, config: {{mapping: {{amount: amt}}}}}}
  - {{type: transform, method: aggregate, name: by_segment,
      config: {{groupBy: [segment], aggregations: {{revenue: sum(amt), buyers: count(DISTINCT name)}}}}}}
  - {{type: transform, method: sql, config: {{query: "SELECT upper(segment) AS segment, revenue * 100 AS cents,
      buyers FROM by_segment"}}}}
  - {{type: load, method: toParquet, config: {{path: "{out}", mode: overwrite}}}}
"""


def read_events(path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def columns(event: dict, output: int = 0) -> dict[str, set[tuple[str, str, str]]]:
    """{output column: {(input dataset name, input column, subtype)}} of an event's output."""
    fields = event["outputs"][output]["facets"]["columnLineage"]["fields"]
    return {col: {(os.path.basename(f["name"]), f["field"], f["transformations"][0]["subtype"])
                  for f in spec["inputFields"]} for col, spec in fields.items()}


def validate(event: dict) -> None:
    """The event against OpenLineage.json, and each facet against its own schema (its ``_schemaURL``)."""
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource

    resources = []
    for name in os.listdir(SCHEMAS):
        with open(os.path.join(SCHEMAS, name), encoding="utf-8") as fh:
            schema = json.load(fh)
        resources.append((schema["$id"], Resource.from_contents(schema)))
    registry = Registry().with_resources(resources)
    Draft202012Validator({"$ref": "https://openlineage.io/spec/2-0-2/OpenLineage.json"},
                         registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER).validate(event)
    facets = [*event["run"]["facets"].values(), *event["job"]["facets"].values(),
              *(f for d in event["inputs"] + event["outputs"] for f in d.get("facets", {}).values())]
    for facet in facets:
        Draft202012Validator({"$ref": facet["_schemaURL"]}, registry=registry).validate(facet)


def load_with_client_models(event: dict):
    """The event rebuilt with the OpenLineage client's models (attrs, with their own validators)."""
    from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run as OLRun, RunEvent, RunState
    from openlineage.client.facet_v2 import column_lineage_dataset as cl, schema_dataset

    def facets(d: dict) -> dict:
        out = {}
        if "schema" in d.get("facets", {}):
            out["schema"] = schema_dataset.SchemaDatasetFacet(fields=[
                schema_dataset.SchemaDatasetFacetFields(name=f["name"], type=f["type"])
                for f in d["facets"]["schema"]["fields"]])
        if "columnLineage" in d.get("facets", {}):
            out["columnLineage"] = cl.ColumnLineageDatasetFacet(fields={
                col: cl.Fields(inputFields=[cl.InputField(f["namespace"], f["name"], f["field"], transformations=[
                    cl.Transformation(**t) for t in f["transformations"]]) for f in spec["inputFields"]])
                for col, spec in d["facets"]["columnLineage"]["fields"].items()})
        return out

    return RunEvent(eventType=RunState[event["eventType"]], eventTime=event["eventTime"],
                    run=OLRun(event["run"]["runId"]), job=Job(event["job"]["namespace"], event["job"]["name"]),
                    inputs=[InputDataset(d["namespace"], d["name"], facets=facets(d)) for d in event["inputs"]],
                    outputs=[OutputDataset(d["namespace"], d["name"], facets=facets(d)) for d in event["outputs"]],
                    producer=event["producer"])


@pytest.fixture
def stocks_csv(tmp_path):
    path = tmp_path / "stocks.csv"
    path.write_text("symbol,price,qty\nACME,10.5,2\nACME,11.0,1\nINIT,3.25,4\n")
    return str(path)


def test_stocks_aggregate_to_delta_start_then_complete(ip, stocks_csv, lake, tmp_path):
    from openlineage.client.serde import Serde

    events_file = tmp_path / "events.jsonl"
    ip.run_cell_magic("pipeline", f"--lineage file:{events_file}", STOCKS.format(csv=stocks_csv, out=lake / "revenue"))
    events = read_events(events_file)
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    assert len({e["run"]["runId"] for e in events}) == 1
    complete = events[-1]
    assert complete["job"] == {**complete["job"], "namespace": "pipeline_magics", "name": "stocks"}
    assert [(d["namespace"], d["name"]) for d in complete["inputs"]] == [("file", stocks_csv)]
    assert [(d["namespace"], d["name"]) for d in complete["outputs"]] == [("file", str(lake / "revenue"))]
    assert columns(complete) == {"symbol": {("stocks.csv", "symbol", "IDENTITY")},
                                 "revenue": {("stocks.csv", "price", "AGGREGATION")}}
    grouped = complete["outputs"][0]["facets"]["columnLineage"]["dataset"]
    assert [(f["field"], f["transformations"][0]) for f in grouped] == [
        ("symbol", {"type": "INDIRECT", "subtype": "GROUP_BY"})]
    assert [f["name"] for f in complete["outputs"][0]["facets"]["schema"]["fields"]] == ["symbol", "revenue", "trades"]
    assert [f["type"] for f in complete["inputs"][0]["facets"]["schema"]["fields"]] == ["string", "double", "int"]
    for event in events:
        validate(event)
        model = load_with_client_models(event)
        assert model.run.runId == event["run"]["runId"]
        assert Serde.to_dict(model.outputs[0].facets.get("columnLineage") or {}).get("fields") == (
            event["outputs"][0].get("facets", {}).get("columnLineage", {}).get("fields"))

    # the last run's column lineage, drawn as the step graphs are
    graph = ip.run_line_magic("pipeline", "lineage stocks --column revenue")
    assert graph.links() == {("price", "revenue")}
    assert "price (aggregation)" in graph.to_text()


def test_failing_run_ends_with_fail_and_its_masked_error(spark, stocks_csv, lake, tmp_path):
    events_file = tmp_path / "events.jsonl"
    spec = STOCKS.format(csv=stocks_csv, out=lake / "never").replace("sum(price)", "sum(no_such_column)")
    result = Pipeline.from_yaml(spec).run(spark, lineage=f"file:{events_file}", raise_on_error=False)
    assert result.status == "failed"
    events = read_events(events_file)
    assert [e["eventType"] for e in events] == ["START", "FAIL"]
    error = events[-1]["run"]["facets"]["errorMessage"]
    assert "no_such_column" in error["message"] and error["programmingLanguage"] == "python"
    validate(events[-1])


def test_cancel_is_abort_and_nothing_is_sent_when_off(spark, stocks_csv, lake, tmp_path, monkeypatch):
    pipeline = Pipeline.from_yaml(STOCKS.format(csv=stocks_csv, out=lake / "x"))
    run = Run(pipeline.plan, spark)
    events_file = tmp_path / "events.jsonl"
    attach(run, f"file:{events_file}")
    run.state.start()
    run.state.fail("the run was cancelled", cancelled=True)
    assert [e["eventType"] for e in read_events(events_file)] == ["START", "ABORT"]

    for name in ("OPENLINEAGE_URL", "OPENLINEAGE_CONFIG", "PIPELINE_LINEAGE"):
        monkeypatch.delenv(name, raising=False)
    assert attach(Run(pipeline.plan, spark)) is None
    monkeypatch.setenv("PIPELINE_LINEAGE", f"file:{tmp_path / 'from_setting.jsonl'}")
    assert attach(Run(pipeline.plan, spark)) is not None


def test_a_failing_transport_warns_once_and_never_fails_the_run(spark, stocks_csv, lake, tmp_path, caplog):
    target = f"file:{tmp_path / 'no_such_folder' / 'events.jsonl'}"
    with caplog.at_level(logging.WARNING, logger="pipeline_magics"):
        for i in range(2):
            result = Pipeline.from_yaml(STOCKS.format(csv=stocks_csv, out=lake / f"r{i}")).run(spark, lineage=target)
            assert result.ok
    warnings = [r.getMessage() for r in caplog.records if "OpenLineage" in r.getMessage()]
    assert len(warnings) == 1 and "no_such_folder" in warnings[0]


SEGMENTS_LINEAGE = {
    "segment": {("customers.csv", "segment", "TRANSFORMATION")},
    "cents": {("orders.csv", "amount", "AGGREGATION")},
    "buyers": {("customers.csv", "name", "AGGREGATION")},
}


def test_join_rename_aggregate_and_sql_column_lineage(spark, lake, tmp_path, capsys):
    """Through the command line (``--lineage`` is a shared option), in this process and session."""
    spec = tmp_path / "segments.yaml"
    spec.write_text(SEGMENTS.format(data=DATA, out=lake / "out"))
    events_file = tmp_path / "events.jsonl"
    assert cli(["run", str(spec), "--lineage", f"file:{events_file}"]) == 0
    complete = read_events(events_file)[-1]
    assert complete["eventType"] == "COMPLETE"
    assert sorted(os.path.basename(d["name"]) for d in complete["inputs"]) == ["customers.csv", "orders.csv"]
    assert columns(complete) == SEGMENTS_LINEAGE
    indirect = {(os.path.basename(f["name"]), f["field"], f["transformations"][0]["subtype"])
                for f in complete["outputs"][0]["facets"]["columnLineage"]["dataset"]}
    assert indirect == {("orders.csv", "customer_id", "JOIN"), ("customers.csv", "customer_id", "JOIN"),
                        ("customers.csv", "segment", "GROUP_BY")}
    validate(complete)
    with pytest.raises(SystemExit) as refused:
        cli(["run", str(spec), "--lineage", "kafka:nowhere"])
    assert refused.value.code == 2
    assert "use console, file:PATH or off" in capsys.readouterr().err


CONNECT_RUN = """
import sys
from pipeline_magics.__main__ import main as cli
sys.exit(cli(["run", sys.argv[1], "--lineage", "file:" + sys.argv[2]]))
"""


def test_same_facets_on_spark_connect(spark, connect_server, lake, tmp_path):
    """The same pipeline on a Spark Connect session sends the same datasets and facets as on a classic one.

    Run by the command line, which prints the last frame, a ``sql`` step's, after the run dropped its temp
    views: on Connect that frame carries the frames it reads in its own plan (spark/connect_sql.py); a 3.5
    client cannot, and the command line then says it has no preview but still exits 0."""
    spec = tmp_path / "segments.yaml"
    spec.write_text(SEGMENTS.format(data=DATA, out=lake / "out"))
    events_file = tmp_path / "connect.jsonl"
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_REMOTE", "PIPELINE_SPARK_MASTER",
                                                            "PYSPARK_SUBMIT_ARGS", "SPARK_CONNECT_MODE_ENABLED")}
    env.update(PIPELINE_SPARK_REMOTE=connect_server.url, SPARK_LOCAL_IP="127.0.0.1")
    done = subprocess.run([sys.executable, "-c", CONNECT_RUN, str(spec), str(events_file)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    if not pyspark_version().startswith("3."):  # a 3.5 client cannot carry them: the preview is left out
        assert "RETAIL" in done.stdout.split("segment")[-1]  # the preview of upper(segment) AS segment
    else:
        assert "no preview of the last step: [TABLE_OR_VIEW_NOT_FOUND]" in done.stderr
    events = read_events(events_file)
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    assert columns(events[-1]) == SEGMENTS_LINEAGE

    classic_file = tmp_path / "classic.jsonl"
    Pipeline.from_yaml(spec.read_text()).run(spark, lineage=f"file:{classic_file}")
    classic = read_events(classic_file)[-1]
    assert events[-1]["inputs"] == classic["inputs"] and events[-1]["outputs"] == classic["outputs"]


def test_kafka_stream_to_delta_reports_running_and_its_column_lineage(spark, kafka, lake, tmp_path):
    topic = f"lineage_{uuid.uuid4().hex[:8]}"
    kafka.create_topic(topic)
    kafka.produce(topic, [json.dumps({"id": i, "price": i * 1.5}) for i in range(6)])
    events_file = tmp_path / "events.jsonl"
    spec = f"""
name: ticks
mode: streaming
steps:
  - {{type: extract, method: fromKafka, config: {{bootstrapServers: {kafka.bootstrap}, topic: {topic}, format: json,
      schema: "id INT, price DOUBLE", options: {{maxOffsetsPerTrigger: 3}}}}}}
  - {{type: transform, method: withColumn, config: {{column: cents, expr: "CAST(price * 100 AS BIGINT)"}}}}
  - {{type: load, method: toDelta, config: {{path: "{lake}/ticks", checkpointLocation: "{lake}/cp",
      trigger: {{availableNow: true}}}}}}
"""
    result = Pipeline.from_yaml(spec).run(spark, lineage=f"file:{events_file}")
    assert result.status == "done"
    deadline = time.time() + 30
    while time.time() < deadline and "RUNNING" not in [e["eventType"] for e in read_events(events_file)]:
        time.sleep(0.2)  # RUNNING events are sent off the listener's thread
    kinds = [e["eventType"] for e in read_events(events_file)]
    assert kinds[0] == "START" and "RUNNING" in kinds and "COMPLETE" in kinds
    complete = next(e for e in read_events(events_file) if e["eventType"] == "COMPLETE")
    assert complete["job"]["facets"]["jobType"]["processingType"] == "STREAMING"
    assert [(d["namespace"], d["name"]) for d in complete["inputs"]] == [(f"kafka://{kafka.bootstrap}", topic)]
    assert columns(complete) == {"id": {(topic, "value", "TRANSFORMATION")},
                                 "price": {(topic, "value", "TRANSFORMATION")},
                                 "cents": {(topic, "value", "TRANSFORMATION")},
                                 "kafka_timestamp": {(topic, "timestamp", "IDENTITY")}}
    validate(complete)


def test_cdc_and_quarantine_loads_report_their_own_columns(spark, lake, tmp_path):
    events_file = tmp_path / "events.jsonl"
    spec = f"""
name: orders_history
steps:
  - {{type: extract, method: fromCsv, config: {{path: "{DATA}/orders.csv",
      schema: "order_id INT, customer_id INT, country STRING, amount DOUBLE, order_date DATE"}}}}
  - {{type: transform, method: expect, config: {{condition: "amount > 20", onFail: quarantine,
      quarantine: {{path: "{lake}/rejected"}}}}}}
  - {{type: load, method: toDelta, config: {{path: "{lake}/history", mode: scd2, mergeKeys: [order_id],
      sequenceBy: order_date, exceptColumns: [country]}}}}
"""
    Pipeline.from_yaml(spec).run(spark, lineage=f"file:{events_file}")
    complete = read_events(events_file)[-1]
    assert [os.path.basename(d["name"]) for d in complete["outputs"]] == ["rejected", "history"]
    rejected, history = columns(complete, 0), columns(complete, 1)
    assert history == {**{c: {("orders.csv", c, "IDENTITY")} for c in ("order_id", "customer_id", "amount",
                                                                         "order_date")},
                       "__START_AT": {("orders.csv", "order_date", "TRANSFORMATION")},
                       "__END_AT": {("orders.csv", "order_date", "TRANSFORMATION")}}
    assert rejected["country"] == {("orders.csv", "country", "IDENTITY")}
    assert ("orders.csv", "amount", "TRANSFORMATION") in rejected["_failed_rules"]
    schema = {f["name"]: f["type"] for f in complete["outputs"][1]["facets"]["schema"]["fields"]}
    assert list(schema)[-2:] == ["__START_AT", "__END_AT"] and schema["__END_AT"] == "date" and "country" not in schema
    validate(complete)
