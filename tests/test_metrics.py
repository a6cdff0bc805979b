"""Metrics: every reported row count against the true count of the same data, the exporters, and their cost.

For each source and sink kind, batch and streaming, a small pipeline runs on
the session's SparkSession; what it wrote is read back independently (pandas,
psycopg, a Kafka client, the files on disk) and compared with the figures in
``result.metrics``. The Prometheus text is checked with ``prometheus_client``'s
own parser, and with ``promtool check metrics`` where promtool is installed
(``$PROMTOOL`` or on PATH).
"""
from __future__ import annotations

import glob
import http.server
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid

import pandas as pd
import pytest

from pipeline_magics import Pipeline
from pipeline_magics.metrics.sources import (ACTION, DELTA_COMMIT, DELTA_STREAM_COMMITS, OBSERVATION, PROGRESS,
                                             SINK_PROGRESS, STREAM_OBSERVATION, TASK_OUTPUT)
from pipeline_magics.metrics.model import PipelineMetrics, StepMetrics, StepRecord
from pipeline_magics.metrics.queries import QueryRecord, QueryStore
from pipeline_magics.metrics import export, to_prometheus

N = 60  # rows of the test data
SCHEMA = "id INT, grp STRING, amount DOUBLE"


@pytest.fixture(autouse=True)
def _default_policy(monkeypatch):
    for var in ("PIPELINE_SECURITY_POLICY", "PIPELINE_VAULT_ONLY", "PIPELINE_ALLOW_PLAINTEXT",
                "PIPELINE_AUDIT_CREDENTIALS"):
        monkeypatch.delenv(var, raising=False)


def frame(start: int = 0, n: int = N) -> pd.DataFrame:
    """The test rows: ids, three groups, amounts 0..; every 7th amount is NULL."""
    return pd.DataFrame({"id": range(start, start + n), "grp": [f"g{i % 3}" for i in range(start, start + n)],
                         "amount": [None if i % 7 == 0 else float(i) for i in range(start, start + n)]})


def spark_frame(spark, df: pd.DataFrame):
    """``df`` as a Spark DataFrame with NULLs where pandas has NaN (Spark would keep NaN)."""
    return spark.createDataFrame([(int(r.id), r.grp, None if pd.isna(r.amount) else float(r.amount))
                                  for r in df.itertuples()], SCHEMA)


def big(df: pd.DataFrame) -> pd.DataFrame:
    """What ``amount >= 20`` keeps (NULL is dropped, as in Spark)."""
    return df[df.amount >= 20]


def data_files(folder, pattern: str = "*") -> list[str]:
    """The data files Spark wrote under ``folder`` (no checksums, markers or logs)."""
    return [f for f in glob.glob(os.path.join(str(folder), "**", pattern), recursive=True)
            if os.path.isfile(f) and not os.path.basename(f).startswith((".", "_")) and "_delta_log" not in f
            and "_spark_metadata" not in f]


def disk_bytes(folder, pattern: str = "*") -> int:
    return sum(os.path.getsize(f) for f in data_files(folder, pattern))


def run(spark, text: str, **kw):
    return Pipeline.from_yaml(text).run(spark, **kw)


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


FILTER = "  - {type: transform, method: filterRows, config: {condition: 'amount >= 20'}}\n"


# ------------------------------------------------------------------ batch: every source kind


@pytest.fixture(scope="module")
def sources(spark, tmp_path_factory):
    """The same rows as CSV, JSON, Parquet, a Delta path and a Delta catalog table."""
    root = tmp_path_factory.mktemp("metric_sources")
    df = frame()
    df.to_csv(root / "rows.csv", index=False)
    df.to_json(root / "rows.json", orient="records", lines=True)
    df.to_parquet(root / "rows.parquet", index=False)
    sdf = spark_frame(spark, df)
    sdf.write.format("delta").save(str(root / "delta"))
    table = unique("pm_metric_rows")
    sdf.write.format("delta").saveAsTable(table)
    yield {"root": root, "table": table}
    spark.sql(f"DROP TABLE IF EXISTS {table}")


def source_step(kind: str, sources) -> str:
    root = sources["root"]
    config = {
        "csv": ("fromCsv", f"{{path: '{root}/rows.csv', schema: '{SCHEMA}'}}"),
        "json": ("fromJson", f"{{path: '{root}/rows.json', schema: '{SCHEMA}'}}"),
        "parquet": ("fromParquet", f"{{path: '{root}/rows.parquet'}}"),
        "delta": ("fromDelta", f"{{path: '{root}/delta'}}"),
        "table": ("fromTable", f"{{table: {sources['table']}}}"),
    }[kind]
    return f"  - {{type: extract, method: {config[0]}, name: src, config: {config[1]}}}\n"


def delta_sink(path) -> str:
    return f"  - {{type: load, method: toDelta, name: out, config: {{path: '{path}', mode: overwrite}}}}\n"


@pytest.mark.parametrize("kind", ["csv", "json", "parquet", "delta", "table"])
def test_batch_source_kinds_into_delta(spark, sources, lake, kind):
    out = lake / "out"
    result = run(spark, "steps:\n" + source_step(kind, sources) + FILTER + delta_sink(out))
    want = len(big(frame()))
    landed = spark.read.format("delta").load(str(out)).count()
    sm = result.metrics.step("out")
    assert landed == want
    assert sm.rows_out == want and sm.rows_in == want
    assert sm.bytes_written == disk_bytes(out, "*.parquet")  # a fresh table: every data file is this commit's
    assert sm.sources == {"rows_out": DELTA_COMMIT, "rows_in": DELTA_COMMIT, "bytes_written": DELTA_COMMIT}
    # every row the source delivered, though the filter is pushed into the read (nothing read twice)
    assert result.metrics.step("src").rows_out == len(frame())
    assert result.metrics.rows_written == want


def test_batch_postgres_source_and_sink(spark, postgres, lake, monkeypatch):
    table = unique("pm_metric_rows")
    with postgres.connect() as conn:
        conn.execute(f"CREATE TABLE {table} (id INT, grp TEXT, amount DOUBLE PRECISION)")
        with conn.cursor() as cur:
            cur.executemany(f"INSERT INTO {table} VALUES (%s, %s, %s)",
                            [(int(r.id), r.grp, None if pd.isna(r.amount) else r.amount)
                             for r in frame().itertuples()])
    monkeypatch.setenv("PM_TEST_PG_PASSWORD", postgres.password)
    conn_cfg = f"url: '{postgres.jdbc_url}', user: {postgres.user}, password: {{env: PM_TEST_PG_PASSWORD}}"
    result = run(spark, "steps:\n"
                 f"  - {{type: extract, method: fromPostgres, name: src, config: {{{conn_cfg}, table: {table}}}}}\n"
                 + FILTER +
                 f"  - {{type: load, method: toPostgres, name: pg, config: {{{conn_cfg}, table: {table}_out}}}}\n"
                 + delta_sink(lake / "out").replace("name: out", "name: out, input: step2"))
    with postgres.connect() as conn:
        landed = conn.execute(f"SELECT count(*) FROM {table}_out").fetchone()[0]
    want = len(big(frame()))
    assert landed == want
    assert result.metrics.step("pg").rows_out == want and result.metrics.step("pg").sources["rows_out"] == OBSERVATION
    assert result.metrics.step("out").rows_out == want


def test_batch_kafka_source_and_sink(spark, kafka, lake):
    src, dst = unique("pm_src"), unique("pm_dst")
    kafka.create_topic(src, partitions=2)
    kafka.create_topic(dst)
    kafka.produce(src, [frame().iloc[[i]].to_json(orient="records", lines=True).strip() for i in range(N)])
    result = run(spark, "steps:\n"
                 f"  - {{type: extract, method: fromKafka, name: src, config: {{bootstrapServers: {kafka.bootstrap}, "
                 f"topic: {src}, format: json, schema: '{SCHEMA}'}}}}\n"
                 + FILTER +
                 f"  - {{type: load, method: toKafka, name: out, config: {{bootstrapServers: {kafka.bootstrap}, "
                 f"topic: {dst}, key: id}}}}\n")
    want = len(big(frame()))
    assert len(kafka.consume(dst, expect=want)) == want
    out = result.metrics.step("out")
    assert out.rows_out == want and out.rows_in == want and out.sources["rows_out"] == OBSERVATION
    assert out.bytes_written is None  # Kafka reports no bytes


# ------------------------------------------------------------------ batch: every sink kind


@pytest.fixture(scope="module")
def csv_path(sources):
    return sources["root"] / "rows.csv"


def csv_source(path) -> str:
    return f"  - {{type: extract, method: fromCsv, name: src, config: {{path: '{path}', schema: '{SCHEMA}'}}}}\n"


@pytest.mark.parametrize("fmt,method", [("parquet", "toParquet"), ("csv", "toCsv"), ("json", "toJson")])
def test_batch_file_sinks_rows_and_bytes(spark, csv_path, lake, fmt, method):
    out = lake / fmt
    result = run(spark, "steps:\n" + csv_source(csv_path) + FILTER +
                 f"  - {{type: load, method: {method}, name: out, config: {{path: '{out}', partitionBy: [grp]}}}}\n")
    want = len(big(frame()))
    landed = getattr(spark.read, fmt)(str(out), **({"header": True} if fmt == "csv" else {})).count()
    sm = result.metrics.step("out")
    assert landed == want and sm.rows_out == want and sm.rows_in == want
    assert sm.extra["task_rows_written"] == want
    assert sm.bytes_written == disk_bytes(out)  # the files the write's tasks reported, byte for byte
    assert sm.sources == {"rows_out": OBSERVATION, "rows_in": OBSERVATION, "bytes_written": TASK_OUTPUT}


def test_batch_delta_append_overwrite_table_and_merge(spark, csv_path, lake):
    out = lake / "delta"
    spec = "steps:\n" + csv_source(csv_path) + FILTER
    first = run(spark, spec + f"  - {{type: load, method: toDelta, name: out, config: {{path: '{out}'}}}}\n")
    second = run(spark, spec + f"  - {{type: load, method: toDelta, name: out, config: {{path: '{out}'}}}}\n")
    want = len(big(frame()))
    assert first.metrics.step("out").rows_out == second.metrics.step("out").rows_out == want
    assert spark.read.format("delta").load(str(out)).count() == 2 * want
    assert second.metrics.step("out").delta_version == 1
    assert first.metrics.step("out").bytes_written + second.metrics.step("out").bytes_written == \
        disk_bytes(out, "*.parquet")

    table = unique("pm_metric_out")
    try:
        result = run(spark, spec + f"  - {{type: load, method: toDelta, name: out, config: {{table: {table}}}}}\n")
        assert result.metrics.step("out").rows_out == spark.table(table).count() == want
    finally:
        spark.sql(f"DROP TABLE IF EXISTS {table}")

    # merge: ids 0..59 are in; 40..99 come in, of which 40..59 match (updated) and 60..99 are new
    merged = lake / "merged"
    spark_frame(spark, frame()).write.format("delta").save(str(merged))
    incoming = frame(40, 60)
    incoming.to_csv(lake / "incoming.csv", index=False)
    result = run(spark, "steps:\n" + csv_source(lake / "incoming.csv") +
                 f"  - {{type: load, method: toDelta, name: out, config: {{path: '{merged}', mode: merge, "
                 "mergeKeys: [id]}}\n")
    sm = result.metrics.step("out")
    assert spark.read.format("delta").load(str(merged)).count() == 100
    assert (sm.extra["numTargetRowsUpdated"], sm.extra["numTargetRowsInserted"]) == (20, 40)
    assert sm.rows_out == 60 and sm.rows_in == len(incoming)


def test_batch_memory_and_display_sinks(spark, csv_path):
    name = unique("pm_metric_mem")
    result = run(spark, "steps:\n" + csv_source(csv_path) + FILTER +
                 f"  - {{type: load, method: toMemory, name: mem, input: step2, config: {{queryName: {name}}}}}\n"
                 "  - {type: load, method: display, name: show, input: step2, config: {n: 5}}\n")
    want = len(big(frame()))
    assert result.metrics.step("mem").rows_out == spark.table(name).count() == want
    assert result.metrics.step("mem").sources["rows_out"] == ACTION
    assert result.metrics.step("show").rows_out == 5


def test_expect_drop_and_warn_counts(spark, csv_path, lake):
    df = frame()
    result = run(spark, "steps:\n" + csv_source(csv_path) +
                 "  - {type: transform, method: expect, name: drop, config: {condition: 'amount >= 20', onFail: drop}}\n"
                 "  - {type: transform, method: expect, name: warn, config: {condition: 'id % 2 = 0', onFail: warn}}\n"
                 f"  - {{type: load, method: toParquet, name: out, config: {{path: '{lake}/out'}}}}\n")
    kept = big(df)
    drop, warn = result.metrics.step("drop"), result.metrics.step("warn")
    assert (drop.rows_in, drop.failed_rows, drop.rows_out) == (N, N - len(kept), len(kept))
    assert (warn.rows_in, warn.failed_rows, warn.rows_out) == (len(kept), int((kept.id % 2 != 0).sum()), len(kept))
    assert drop.sources["failed_rows"] == OBSERVATION
    assert result.metrics.failed_rows == drop.failed_rows + warn.failed_rows


# ------------------------------------------------------------------ no second pass


def job_ids(spark) -> set[int]:
    """Every Spark job the status store still holds (after the listeners caught up)."""
    jsc = spark.sparkContext._jsc.sc()
    jsc.listenerBus().waitUntilEmpty(10_000)
    jobs = jsc.statusStore().jobsList(None)
    return {int(jobs.apply(i).jobId()) for i in range(jobs.size())}


def jobs_of(spark, pipeline: Pipeline, **kw) -> tuple[int, object]:
    before = max(job_ids(spark), default=-1)
    result = pipeline.run(spark, **kw)
    return len([j for j in job_ids(spark) if j > before]), result


def test_metrics_on_runs_the_same_spark_jobs_as_metrics_off(spark, csv_path, lake):
    spec = ("name: jobs_count\nsteps:\n" + csv_source(csv_path) +
            "  - {type: transform, method: expect, name: chk, config: {condition: 'id >= 0', onFail: drop}}\n"
            "  - {type: transform, method: withColumn, name: wide, config: {column: gross, expr: 'amount * 1.2'}}\n"
            f"  - {{type: load, method: toParquet, name: files, config: {{path: '{lake}/p', mode: overwrite}}}}\n"
            f"  - {{type: load, method: toDelta, name: lake, input: wide, config: {{path: '{lake}/d', mode: overwrite}}}}\n"
            f"  - {{type: load, method: toJson, name: lines, input: chk, config: {{path: '{lake}/j', mode: overwrite}}}}\n")
    pipeline = Pipeline.from_yaml(spec)
    pipeline.run(spark)  # creates the tables: later runs overwrite alike
    off, quiet = jobs_of(spark, pipeline, collect_metrics=False)
    on, counted = jobs_of(spark, pipeline)
    off_again, _ = jobs_of(spark, pipeline, collect_metrics=False)
    assert on == off == off_again, (on, off, off_again)
    assert counted.metrics.step("files").rows_out == counted.metrics.step("lake").rows_out == N
    assert counted.metrics.step("chk").failed_rows == 0
    # with metrics off nothing is counted, and the Observations are not even there
    assert all(quiet.metrics.step(s).rows_out is None for s in ("files", "lake", "lines", "chk"))
    assert quiet.metrics.step("files").sources == {} and quiet.status == "done"
    assert len(spark.read.parquet(f"{lake}/p").columns) == 4


# ------------------------------------------------------------------ streaming: every source and sink kind


def write_json_files(folder, parts: int = 3) -> pd.DataFrame:
    os.makedirs(folder, exist_ok=True)
    frames = [frame(i * N, N) for i in range(parts)]
    for i, df in enumerate(frames):
        df.to_json(os.path.join(folder, f"part{i}.json"), orient="records", lines=True)
    return pd.concat(frames)


def stream_spec(source: str, load: str, name: str = "stream_metrics", middle: str = FILTER) -> str:
    return f"name: {name}\nmode: streaming\nsteps:\n{source}{middle}{load}"


def test_stream_kafka_into_delta_counts_every_batch(spark, kafka, lake):
    """Five or more micro-batches while Spark keeps only two progress reports: the totals still cover all."""
    topic = unique("pm_stream")
    kafka.create_topic(topic, partitions=2)
    rows = frame(0, 200)
    kafka.produce(topic, [rows.iloc[[i]].to_json(orient="records", lines=True).strip() for i in range(len(rows))])
    spec = stream_spec(
        f"  - {{type: extract, method: fromKafka, config: {{bootstrapServers: {kafka.bootstrap}, topic: {topic}, "
        f"format: json, schema: '{SCHEMA}', options: {{maxOffsetsPerTrigger: 40}}}}}}\n",
        f"  - {{type: load, method: toDelta, name: out, config: {{path: '{lake}/out', "
        f"checkpointLocation: '{lake}/cp', trigger: {{availableNow: true}}}}}}\n",
        middle="  - {type: transform, method: expect, name: chk, config: {condition: 'amount >= 20', onFail: drop}}\n")
    # Read by the query at every batch, so set on the session for as long as it runs (not in the spec).
    spark.conf.set("spark.sql.streaming.numRecentProgressUpdates", "2")
    try:
        result = run(spark, spec)
    finally:
        spark.conf.unset("spark.sql.streaming.numRecentProgressUpdates")
    landed = spark.read.format("delta").load(f"{lake}/out").count()
    want = len(big(rows))
    out, chk = result.metrics.step("out"), result.metrics.step("chk")
    assert result.status == "done" and landed == want
    commits = spark.sql(f"DESCRIBE HISTORY delta.`{lake}/out`").filter("operation = 'STREAMING UPDATE'").count()
    assert out.query is not None and out.query.batches == commits >= 5  # 40 offsets a batch, over 2 partitions
    assert out.query.last_batch_id == commits - 1 and len(result.queries[0].recentProgress) <= 2
    assert out.rows_in == out.query.input_rows == len(rows)
    assert out.rows_out == out.query.output_rows == want
    assert out.bytes_written == disk_bytes(f"{lake}/out", "*.parquet")
    assert out.sources == {"rows_in": PROGRESS, "rows_out": DELTA_STREAM_COMMITS, "bytes_written": DELTA_STREAM_COMMITS}
    assert (chk.rows_in, chk.failed_rows, chk.rows_out) == (len(rows), len(rows) - want, want)
    assert chk.sources["failed_rows"] == STREAM_OBSERVATION
    assert out.progress["batch_id"] == commits - 1 and "figures_incomplete" not in out.extra


def test_stream_json_files_into_parquet(spark, lake):
    rows = write_json_files(lake / "src")
    result = run(spark, stream_spec(
        f"  - {{type: extract, method: fromJson, config: {{path: '{lake}/src', schema: '{SCHEMA}', "
        "options: {maxFilesPerTrigger: 1}}}\n",
        f"  - {{type: load, method: toParquet, name: out, config: {{path: '{lake}/out', "
        f"checkpointLocation: '{lake}/cp', trigger: {{availableNow: true}}}}}}\n"))
    landed = spark.read.parquet(f"{lake}/out").count()
    out = result.metrics.step("out")
    assert landed == len(big(rows)) == out.rows_out and out.query.batches == 3
    assert out.sources["rows_out"] == STREAM_OBSERVATION  # a file sink reports no numOutputRows
    assert out.rows_in == out.query.input_rows == len(rows)
    # every step's rows: in total, and in the latest micro-batch (one file of the three)
    source, kept = result.metrics.steps[0], result.metrics.steps[1]
    assert (source.rows_out, kept.rows_in, kept.rows_out) == (len(rows), len(rows), len(big(rows)))
    assert source.extra["last_batch"] == {"batch_id": 2, "rows_out": len(rows) // 3}
    assert kept.sources["rows_out"] == STREAM_OBSERVATION


def test_stream_delta_into_memory_and_merge(spark, lake):
    src = lake / "src"
    spark_frame(spark, frame()).write.format("delta").save(str(src))
    spark_frame(spark, frame(N, N)).write.format("delta").mode("append").save(str(src))
    name = unique("pm_stream_mem")
    result = run(spark, stream_spec(
        f"  - {{type: extract, method: fromDelta, name: src, config: {{path: '{src}'}}}}\n",
        f"  - {{type: load, method: toMemory, name: mem, config: {{queryName: {name}, "
        f"checkpointLocation: '{lake}/cp1', trigger: {{availableNow: true}}}}}}\n"
        f"  - {{type: load, method: toDelta, name: merged, input: src, config: {{path: '{lake}/merged', mode: merge, "
        f"mergeKeys: [id], checkpointLocation: '{lake}/cp2', trigger: {{availableNow: true}}}}}}\n"))
    want = len(big(frame(0, 2 * N)))
    mem, merged = result.metrics.step("mem"), result.metrics.step("merged")
    assert spark.table(name).count() == want == mem.rows_out and mem.sources["rows_out"] == SINK_PROGRESS
    assert spark.read.format("delta").load(f"{lake}/merged").count() == 2 * N == merged.rows_out
    assert merged.sources["rows_out"] == STREAM_OBSERVATION  # foreachBatch reports nothing itself


def test_stream_csv_into_kafka_and_parquet_into_postgres(spark, kafka, postgres, lake, monkeypatch):
    topic = unique("pm_stream_out")
    kafka.create_topic(topic)
    os.makedirs(lake / "csv")
    frame().to_csv(lake / "csv" / "a.csv", index=False)
    spark_frame(spark, frame(N, N)).write.parquet(str(lake / "pq"))
    table = unique("pm_stream_rows")
    monkeypatch.setenv("PM_TEST_PG_PASSWORD", postgres.password)
    conn_cfg = f"url: '{postgres.jdbc_url}', user: {postgres.user}, password: {{env: PM_TEST_PG_PASSWORD}}"
    result = run(spark, stream_spec(
        f"  - {{type: extract, method: fromCsv, name: c, config: {{path: '{lake}/csv', schema: '{SCHEMA}'}}}}\n"
        f"  - {{type: extract, method: fromParquet, name: p, config: {{path: '{lake}/pq', schema: '{SCHEMA}'}}}}\n",
        f"  - {{type: load, method: toKafka, name: kafka_out, input: c, config: {{bootstrapServers: {kafka.bootstrap}, "
        f"topic: {topic}, checkpointLocation: '{lake}/cp1', trigger: {{availableNow: true}}}}}}\n"
        f"  - {{type: load, method: toPostgres, name: pg_out, input: p, config: {{{conn_cfg}, table: {table}, "
        f"checkpointLocation: '{lake}/cp2', trigger: {{availableNow: true}}}}}}\n", middle=""))
    with postgres.connect() as conn:
        in_pg = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    assert len(kafka.consume(topic, expect=N)) == N == result.metrics.step("kafka_out").rows_out
    assert in_pg == N == result.metrics.step("pg_out").rows_out
    assert result.metrics.step("kafka_out").sources["rows_out"] == SINK_PROGRESS
    assert result.metrics.step("pg_out").sources["rows_out"] == STREAM_OBSERVATION


def test_stream_rate_into_memory_until_stopped(spark, lake):
    name = unique("pm_rate")
    result = run(spark, stream_spec(
        "  - {type: extract, method: fromRate, config: {rowsPerSecond: 50}}\n",
        f"  - {{type: load, method: display, name: out, config: {{queryName: {name}, "
        f"checkpointLocation: '{lake}/cp', trigger: {{processingTime: '500 milliseconds'}}}}}}\n", middle=""))
    try:
        deadline = time.time() + 60
        while time.time() < deadline and spark.table(name).count() < 60:
            time.sleep(0.5)
    finally:
        result.stop()
    out = result.metrics.refresh().step("out")
    landed = spark.table(name).count()
    assert landed >= 60 and out.rows_out == out.rows_in == landed
    assert out.query.batches >= 2 and not out.query.active


# ------------------------------------------------------------------ the tracker, without Spark


def report(run_id: str, batch: int, rows: int, sink: int = -1, observed: int | None = None) -> dict:
    return {"id": "q", "runId": run_id, "name": "n", "batchId": batch, "numInputRows": rows,
            "sink": {"numOutputRows": sink}, "durationMs": {"triggerExecution": 10},
            "observedMetrics": {} if observed is None else {"obs": {"rows": observed}}}


def test_tracker_counts_each_batch_once_and_flags_gaps():
    t = QueryStore()
    for b in (0, 1, 1, 0, 2):  # repeats from the listener and from polling
        t.add(report("r1", b, 10, sink=5, observed=4))
    got = t.get("r1")
    assert (got.batches, got.input_rows, got.sink_rows, got.observed["obs"]["rows"]) == (3, 30, 15, 12)
    assert not got.gap
    t.add(report("r1", 5, 10))  # 3 and 4 were missed, and this sink does not count
    got = t.get("r1")
    assert got.gap and got.sink_rows is None and got.last["batch_id"] == 5
    t.add(report("r2", 7, 1))  # a restart: a new run, its own totals
    assert t.get("r2").input_rows == 1 and t.get("r2").first_batch == 7


# ------------------------------------------------------------------ exporters


def sample_metrics() -> PipelineMetrics:
    m = PipelineMetrics("orders_daily", "abc123", status="done", start=1000.0, end=1012.5)
    m.steps = [
        StepMetrics(0, "orders", "extract", "fromCsv", "done", 1000.0, 1001.0, attempts=1),
        StepMetrics(1, "chk", "transform", "expect", "done", 1001.0, 1001.5, rows_in=100, rows_out=90,
                    failed_rows=10, attempts=1),
        StepMetrics(2, "out", "load", "toDelta", "done", 1001.5, 1012.0, rows_in=90, rows_out=90,
                    bytes_written=4096, attempts=1),
    ]
    return m


def sample_stream() -> PipelineMetrics:
    m = PipelineMetrics("events", "def456", mode="streaming", status="running", start=1000.0)
    sink = StepMetrics(1, "sink", "load", "toDelta", "running", 1000.5, None, rows_in=500, rows_out=450,
                       bytes_written=8192, attempts=1)
    sink.query = QueryRecord("events.sink", "q-id", "run-id", batches=5, input_rows=500, output_rows=450,
                              last_batch_id=4, input_rows_per_second=12.5, processed_rows_per_second=40.0,
                              batch_duration_ms=250, active=True)
    m.steps = [StepMetrics(0, "src", "extract", "fromKafka", "done", 1000.0, 1000.5, attempts=1), sink]
    return m


def parse(text: str) -> dict[str, object]:
    from prometheus_client.parser import text_string_to_metric_families

    return {f.name: f for f in text_string_to_metric_families(text)}


def value(families, sample_name: str, **labels) -> float:
    for fam in families.values():
        for s in fam.samples:
            if s.name == sample_name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    raise KeyError(sample_name, labels)


def promtool() -> str | None:
    return os.environ.get("PROMTOOL") or shutil.which("promtool")


def check_with_promtool(text: str) -> None:
    tool = promtool()
    if tool is None:
        return  # parsed with prometheus_client above; promtool is optional (Debian: prometheus)
    done = subprocess.run([tool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (done.stdout + done.stderr).strip(), done.stdout + done.stderr  # no lint warnings either


def test_prometheus_text_parses_with_units_total_and_labels():
    text = to_prometheus(sample_metrics())
    fams = parse(text)
    assert fams["pipeline_step_output_rows"].type == "counter"
    assert fams["pipeline_step_duration_seconds"].type == "gauge"
    step = {"pipeline": "orders_daily", "step": "out", "method": "toDelta"}
    assert value(fams, "pipeline_step_output_rows_total", **step) == 90
    assert value(fams, "pipeline_step_written_bytes_total", **step) == 4096
    assert value(fams, "pipeline_step_duration_seconds", **step) == pytest.approx(10.5)
    assert value(fams, "pipeline_step_failed_expectation_rows_total", step="chk") == 10
    assert value(fams, "pipeline_step_status", step="out", status="done") == 1
    assert value(fams, "pipeline_step_status", step="out", status="failed") == 0
    assert value(fams, "pipeline_run_duration_seconds", pipeline="orders_daily") == 12.5
    assert value(fams, "pipeline_output_rows_total", pipeline="orders_daily") == 90
    # counters end in _total, and nothing else does; no _created series
    for fam in fams.values():
        for s in fam.samples:
            assert s.name.endswith("_total") == (fam.type == "counter"), s.name
            assert not s.name.endswith("_created")
    with pytest.raises(KeyError):  # no figure, no sample: an extract's rows are unknown, not zero
        value(fams, "pipeline_step_output_rows_total", step="orders")
    check_with_promtool(text)


def test_prometheus_streaming_query_figures_and_several_runs():
    text = to_prometheus(sample_metrics(), sample_stream())
    fams = parse(text)
    q = {"pipeline": "events", "step": "sink", "method": "toDelta", "query": "events.sink"}
    assert value(fams, "pipeline_query_batches_total", **q) == 5
    assert value(fams, "pipeline_query_input_rows_total", **q) == 500
    assert value(fams, "pipeline_query_output_rows_total", **q) == 450
    assert value(fams, "pipeline_query_batch_duration_seconds", **q) == 0.25
    assert value(fams, "pipeline_query_processed_rows_per_second", **q) == 40
    assert value(fams, "pipeline_query_active", **q) == 1
    assert value(fams, "pipeline_run_status", pipeline="events", status="running") == 1
    assert value(fams, "pipeline_output_rows_total", pipeline="orders_daily") == 90  # both runs, one family each
    check_with_promtool(text)


@pytest.mark.skipif(promtool() is None, reason="promtool is not installed (Debian package: prometheus)")
def test_promtool_accepts_a_real_run(spark, csv_path, lake):
    result = run(spark, "steps:\n" + csv_source(csv_path) + FILTER +
                 f"  - {{type: load, method: toParquet, name: out, config: {{path: '{lake}/out'}}}}\n")
    check_with_promtool(to_prometheus(result.metrics))


def test_json_and_log_exporters(tmp_path, caplog):
    m = sample_metrics()
    export(m, f"json:{tmp_path}/m.json")
    data = json.loads((tmp_path / "m.json").read_text())
    assert data["totals"]["rows_written"] == 90 and data["totals"]["failed_rows"] == 10
    assert [s["rows_out"] for s in data["steps"]] == [None, 90, 90]
    assert data == json.loads(m.to_json())
    # the facts other layers read are fields; the export keeps them under "extra", with the free-form figures
    chk, out = m.steps[1], m.steps[2]
    chk.rule_names, chk.on_fail, chk.failed_rules = ["positive"], "drop", {"positive": 10}
    out.take(StepRecord(delta_version=3, delta_first_version=3, extra={"task_rows_written": 90}))
    export(m, f"json:{tmp_path}/m.json")
    steps = json.loads((tmp_path / "m.json").read_text())["steps"]
    assert list(steps[1]) == ["index", "step", "type", "method", "status", "start", "end", "rows_in", "rows_out",
                              "bytes_written", "failed_rows", "attempts", "error", "sources", "query", "extra",
                              "duration"]
    assert steps[0]["extra"] == {} and steps[1]["extra"] == {
        "rule_names": ["positive"], "on_fail": "drop", "failed_rules": {"positive": 10}, "expectation": "positive"}
    assert steps[2]["extra"] == {"delta_version": 3, "delta_first_version": 3, "task_rows_written": 90}
    export(m, f"prometheus:{tmp_path}/sub/m.prom")
    assert parse((tmp_path / "sub" / "m.prom").read_text())["pipeline_step_output_rows"].type == "counter"
    assert not [f for f in os.listdir(tmp_path / "sub") if f.startswith(".")]  # written atomically

    with caplog.at_level(logging.INFO, logger="pipeline_magics.metrics"):
        export(m, "log")
    steps = [r for r in caplog.records if r.pipeline_metrics["event"] == "pipeline_step"]
    assert [r.pipeline_metrics["step"] for r in steps] == ["orders", "chk", "out"]
    assert steps[2].pipeline_metrics["rows_out"] == 90 and steps[2].pipeline_metrics["bytes_written"] == 4096
    assert [r.pipeline_metrics["event"] for r in caplog.records][-1] == "pipeline_run"
    with pytest.raises(ValueError, match="unknown metrics exporter"):
        export(m, "statsd:localhost")
    with pytest.raises(ValueError, match="needs a path"):
        export(m, "json")


class _Gateway(http.server.BaseHTTPRequestHandler):
    received: list[tuple[str, str, bytes]] = []

    def do_PUT(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.received.append(("PUT", self.path, body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_push_to_a_pushgateway(tmp_path):
    server = http.server.HTTPServer(("127.0.0.1", 0), _Gateway)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        export(sample_metrics(), f"pushgateway:127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
    method, path, body = _Gateway.received[-1]
    assert (method, path) == ("PUT", "/metrics/job/pipeline_magics/pipeline/orders_daily")
    assert value(parse(body.decode()), "pipeline_step_output_rows_total", step="out") == 90


def pushgateway_bin() -> str | None:
    return os.environ.get("PUSHGATEWAY") or shutil.which("prometheus-pushgateway") or shutil.which("pushgateway")


@pytest.mark.skipif(pushgateway_bin() is None, reason="no Pushgateway binary (Debian package: prometheus-pushgateway)")
def test_push_to_a_real_pushgateway(tmp_path):
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([pushgateway_bin(), f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=1)
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        export(sample_metrics(), f"pushgateway:http://127.0.0.1:{port}")
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert value(parse(text), "pipeline_step_output_rows_total", step="out", job="pipeline_magics") == 90
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# ------------------------------------------------------------------ the magic and the API


@pytest.mark.usefixtures("spark")  # the magic runs on the suite's session
def test_magic_metrics_option_and_subcommand(ip, csv_path, lake, capsys):
    spec = ("steps:\n" + csv_source(csv_path) + FILTER +
            f"  - {{type: load, method: toDelta, name: out, config: {{path: '{lake}/out', mode: overwrite}}}}\n")
    result = ip.run_cell_magic("pipeline", f"metrics_magic --metrics json:{lake}/m.json --metrics "
                                           f"prometheus:{lake}/m.prom", spec)
    want = len(big(frame()))
    assert result.metrics.step("out").rows_out == want
    assert json.loads((lake / "m.json").read_text())["totals"]["rows_written"] == want
    assert value(parse((lake / "m.prom").read_text()), "pipeline_step_output_rows_total", step="out") == want
    capsys.readouterr()
    ip.run_line_magic("pipeline", "metrics metrics_magic --format prometheus")
    assert value(parse(capsys.readouterr().out), "pipeline_output_rows_total") == want
    ip.run_line_magic("pipeline", "metrics metrics_magic --format json")
    assert json.loads(capsys.readouterr().out)["steps"][2]["sources"]["rows_out"] == DELTA_COMMIT


# ------------------------------------------------------------------ Spark Connect


CONNECT_CHILD = r"""
import json, os, sys
from pipeline_magics import Pipeline
from pipeline_magics.spark.session import get_session, is_connect

work = sys.argv[1]
spark = get_session()
assert is_connect(spark), type(spark)
out = {}
expect = "  - {type: transform, method: expect, name: chk, config: {condition: 'amount >= 20', onFail: drop}}\n"
for method in ("toParquet", "toDelta"):
    r = Pipeline.from_yaml("steps:\n"
        f"  - {{type: extract, method: fromCsv, config: {{path: '{work}/rows.csv', schema: 'id INT, grp STRING, amount DOUBLE'}}}}\n"
        + expect + f"  - {{type: load, method: {method}, name: out, config: {{path: '{work}/{method}'}}}}\n").run(spark)
    out[method] = {"out": r.metrics.step("out").to_dict(), "chk": r.metrics.step("chk").to_dict()}
r = Pipeline.from_yaml("name: connect_stream\nmode: streaming\nsteps:\n"
    f"  - {{type: extract, method: fromJson, config: {{path: '{work}/src', schema: 'id INT, grp STRING, amount DOUBLE'}}}}\n"
    + expect + f"  - {{type: load, method: toDelta, name: out, config: {{path: '{work}/stream', "
    f"checkpointLocation: '{work}/cp', trigger: {{availableNow: true}}}}}}\n").run(spark)
out["stream"] = {"out": r.metrics.step("out").to_dict(), "chk": r.metrics.step("chk").to_dict()}
print("FIGURES " + json.dumps(out, default=str))
spark.stop()
"""


def test_counts_on_spark_connect(tmp_path, connect_server):
    """The same figures through a Spark Connect client (in a child process: one kind of session per process)."""
    df = frame()
    df.to_csv(tmp_path / "rows.csv", index=False)
    os.makedirs(tmp_path / "src")
    df.to_json(tmp_path / "src" / "a.json", orient="records", lines=True)
    env = {**os.environ, "PIPELINE_SPARK_REMOTE": connect_server.url, "SPARK_LOCAL_IP": "127.0.0.1",
           "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}
    done = subprocess.run([sys.executable, "-c", CONNECT_CHILD, str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("FIGURES ")]
    assert done.returncode == 0 and lines, done.stdout[-3000:] + done.stderr[-3000:]
    got = json.loads(lines[-1][len("FIGURES "):])
    want = len(big(df))
    assert got["toParquet"]["out"]["rows_out"] == want and got["toParquet"]["out"]["sources"]["rows_out"] == OBSERVATION
    assert got["toParquet"]["out"]["bytes_written"] is None  # the task metrics are on the server
    assert got["toDelta"]["out"]["rows_out"] == want and got["toDelta"]["out"]["sources"]["rows_out"] == DELTA_COMMIT
    assert got["toDelta"]["out"]["bytes_written"] == disk_bytes(tmp_path / "toDelta", "*.parquet")
    # Known gap: a Connect server reports only the Observation nearest the write, so an expect's
    # batch counts stay unknown (never wrong).
    assert got["toDelta"]["chk"]["failed_rows"] in (None, N - want)
    stream = got["stream"]
    assert (stream["out"]["rows_in"], stream["out"]["rows_out"]) == (N, want)
    assert stream["out"]["sources"]["rows_out"] == STREAM_OBSERVATION  # the Delta log is on the server
    assert (stream["chk"]["rows_in"], stream["chk"]["failed_rows"], stream["chk"]["rows_out"]) == (N, N - want, want)
    assert spark_rows(tmp_path / "stream") == want


def spark_rows(delta_path) -> int:
    """Rows in a Delta table, from its log (no Spark: the parent's session stays out of it)."""
    total = 0
    for name in sorted(glob.glob(os.path.join(str(delta_path), "_delta_log", "*.json"))):
        with open(name, encoding="utf-8") as fh:
            for line in fh:
                add = json.loads(line).get("add")
                if add and add.get("stats"):
                    total += json.loads(add["stats"])["numRecords"]
    return total
