"""Streaming pipelines without Kafka: file and Delta streams, lifecycle, restarts, failures."""
from __future__ import annotations

import json
import os
import time

import pandas as pd
import pytest

from pipeline_magics import Pipeline, SpecError, StreamingQueryError
from pipeline_magics.run.streaming import REGISTRY


def write_events(folder, start, count, name):
    os.makedirs(folder, exist_ok=True)
    rows = [{"id": i, "user": f"u{i % 3}", "v": i % 7, "ts": f"2026-11-01 10:{i % 60:02d}:00"}
            for i in range(start, start + count)]
    with open(os.path.join(folder, name), "w") as fh:
        fh.write("\n".join(json.dumps(r) for r in rows) + "\n")
    return rows


FILES_TO_DELTA = """
name: files_to_delta
mode: streaming
steps:
  - type: extract
    method: fromJson
    config: {{path: "{src}", schema: "id INT, user STRING, v INT, ts TIMESTAMP"}}
  - type: transform
    method: filterRows
    config: {{condition: "v >= 3"}}
  - type: load
    method: toDelta
    name: sink
    config: {{path: "{out}", trigger: {{availableNow: true}}}}
"""


def test_available_now_into_delta_and_restart_adds_only_new_rows(spark, lake, monkeypatch):
    monkeypatch.setenv("PIPELINE_CHECKPOINT_ROOT", str(lake / "checkpoints"))
    src, out = lake / "in", lake / "out"
    first = write_events(src, 0, 40, "a.json")
    spec = FILES_TO_DELTA.format(src=src, out=out)
    result = Pipeline.from_yaml(spec).run(spark)
    expected = sum(1 for r in first if r["v"] >= 3)
    assert result.status == "done"
    assert spark.read.format("delta").load(str(out)).count() == expected
    assert result.metrics.step("sink").rows_out == expected
    # default checkpoint and query name
    assert os.path.isdir(lake / "checkpoints" / "files_to_delta" / "sink")
    assert result.queries[0].name == "files_to_delta.sink"

    second = write_events(src, 40, 30, "b.json")
    Pipeline.from_yaml(spec).run(spark)
    ids = [r.id for r in spark.read.format("delta").load(str(out)).collect()]
    assert sorted(ids) == sorted(r["id"] for r in first + second if r["v"] >= 3)  # nothing twice


def test_window_aggregate_matches_pandas(spark, lake, monkeypatch):
    monkeypatch.setenv("PIPELINE_CHECKPOINT_ROOT", str(lake / "cp"))
    rows = write_events(lake / "in", 0, 120, "a.json")
    spec = f"""
name: windows
mode: streaming
steps:
  - type: extract
    method: fromJson
    config: {{path: "{lake}/in", schema: "id INT, user STRING, v INT, ts TIMESTAMP"}}
  - type: transform
    method: window
    config:
      timeColumn: ts
      duration: 10 minutes
      groupBy: [user]
      aggregations: {{events: "count(*)", total: "sum(v)"}}
  - type: load
    method: toDelta
    config: {{path: "{lake}/win", mode: overwrite, trigger: {{availableNow: true}}}}
"""
    Pipeline.from_yaml(spec).run(spark)
    got = spark.read.format("delta").load(f"{lake}/win").toPandas()
    df = pd.DataFrame(rows)
    df["window_start"] = pd.to_datetime(df.ts).dt.floor("10min")
    want = df.groupby(["window_start", "user"]).agg(events=("id", "count"), total=("v", "sum")).reset_index()
    got["window_start"] = pd.to_datetime(got.window_start)
    merged = got.merge(want, on=["window_start", "user"], suffixes=("", "_want"))
    assert len(merged) == len(want) == len(got)
    assert (merged.events == merged.events_want).all() and (merged.total == merged.total_want).all()


def test_dedup_within_watermark(spark, lake, monkeypatch):
    monkeypatch.setenv("PIPELINE_CHECKPOINT_ROOT", str(lake / "cp"))
    rows = write_events(lake / "in", 0, 30, "a.json")
    write_events(lake / "in", 0, 30, "dupes.json")  # the same ids again
    spec = f"""
name: dedup
mode: streaming
steps:
  - {{type: extract, method: fromJson, config: {{path: "{lake}/in", schema: "id INT, user STRING, v INT, ts TIMESTAMP"}}}}
  - {{type: transform, method: withWatermark, config: {{column: ts, delay: 1 hour}}}}
  - {{type: transform, method: dropDuplicates, config: {{columns: [id, ts]}}}}
  - {{type: load, method: toDelta, config: {{path: "{lake}/dedup", trigger: {{availableNow: true}}}}}}
"""
    Pipeline.from_yaml(spec).run(spark)
    got = sorted(r.id for r in spark.read.format("delta").load(f"{lake}/dedup").collect())
    assert got == sorted(r["id"] for r in rows)


def test_rate_to_memory_lifecycle(spark, lake, monkeypatch):
    monkeypatch.setenv("PIPELINE_CHECKPOINT_ROOT", str(lake / "cp"))
    spec = """
name: ticker
mode: streaming
steps:
  - {type: extract, method: fromRate, config: {rowsPerSecond: 20}}
  - {type: transform, method: withColumn, config: {column: even, expr: "value % 2 = 0"}}
  - {type: load, method: toMemory, name: ticks, config: {trigger: {processingTime: "1 second"}}}
"""
    result = Pipeline.from_yaml(spec).run(spark)
    try:
        assert result.status == "running" and result.queries[0].isActive
        with pytest.raises(StreamingQueryError, match="already running") as info:
            Pipeline.from_yaml(spec).run(spark)
        assert info.value.code == "ALREADY_RUNNING"
        deadline = time.time() + 60
        while spark.sql("SELECT count(*) AS n FROM ticks").first().n == 0 and time.time() < deadline:
            time.sleep(0.5)
        assert spark.sql("SELECT count(*) AS n FROM ticks").first().n > 0
        described = REGISTRY.get("ticker").describe()
        assert described[0]["query"] == "ticks" and described[0]["active"]
    finally:
        REGISTRY.stop("ticker")
    assert not result.queries[0].isActive
    assert REGISTRY.get("ticker").run.metrics.status == "cancelled"
    assert all(q.name != "ticks" for q in spark.streams.active)


def test_timeout_returns_with_query_running(spark, lake, monkeypatch):
    monkeypatch.setenv("PIPELINE_CHECKPOINT_ROOT", str(lake / "cp"))
    spec = "name: timed\nmode: streaming\nsteps:\n  - {type: extract, method: fromRate}\n" \
           "  - {type: load, method: toMemory, config: {queryName: timed_rows}}\n"
    started = time.time()
    result = Pipeline.from_yaml(spec).run(spark, timeout=3)
    try:
        assert time.time() - started >= 3 and result.queries[0].isActive
    finally:
        result.stop()
    assert not result.queries[0].isActive


def test_failing_query_raises_streaming_query_error(spark, lake, monkeypatch):
    monkeypatch.setenv("PIPELINE_CHECKPOINT_ROOT", str(lake / "cp"))
    write_events(lake / "in", 0, 10, "a.json")
    spec = f"""
name: dies
mode: streaming
steps:
  - {{type: extract, method: fromJson, config: {{path: "{lake}/in", schema: "id INT, user STRING, v INT, ts TIMESTAMP"}}}}
  - {{type: transform, method: withColumn, config: {{column: checked, expr: "CASE WHEN v < 5 THEN v ELSE raise_error('v too large') END"}}}}
  - {{type: load, method: toDelta, name: out, config: {{path: "{lake}/out", trigger: {{availableNow: true}}}}}}
"""
    with pytest.raises(StreamingQueryError) as info:
        Pipeline.from_yaml(spec).run(spark)
    exc = info.value
    assert "v too large" in str(exc) and exc.step_index == 2 and exc.line == 7
    assert "\n\tat " not in str(exc) and len(str(exc).splitlines()) <= 2
    assert not any(q.name == "dies.out" for q in spark.streams.active)


def test_batch_only_method_in_streaming_is_a_spec_error():
    with pytest.raises(SpecError, match="fromPostgres works only in batch mode"):
        Pipeline.from_yaml("mode: streaming\nsteps:\n  - type: extract\n    method: fromPostgres\n"
                           "    config: {url: 'jdbc:postgresql://h/db', table: t}\n")
