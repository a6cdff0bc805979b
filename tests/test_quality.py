"""expect rules: each rule's failing rows against pandas, in every exporter, and the quarantine table
(batch and streaming), written in the same pass as the good rows."""
from __future__ import annotations

import json
import logging
import os

import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline_magics import ExpectationError, Pipeline
from pipeline_magics.metrics import export, to_prometheus
from pipeline_magics.run.pipeline import steps_table

SCHEMA = "id INT, customer STRING, amount DOUBLE"
RULES = {"positive": "amount > 0", "has_customer": "customer IS NOT NULL"}


def orders(start: int = 0, n: int = 50) -> pd.DataFrame:
    """Orders where every 4th amount is negative, every 6th NULL, every 5th customer missing."""
    ids = range(start, start + n)
    return pd.DataFrame({
        "id": list(ids),
        "customer": [None if i % 5 == 0 else f"c{i % 7}" for i in ids],
        "amount": [None if i % 6 == 0 else (-1.0 * i if i % 4 == 0 else float(i)) for i in ids],
    })


def failing(df: pd.DataFrame) -> dict[int, list[str]]:
    """Per id, the rules the row fails (NULL fails), in rule order: the reference."""
    out = {}
    for r in df.itertuples():
        names = [n for n, ok in (("positive", pd.notna(r.amount) and r.amount > 0),
                                 ("has_customer", r.customer is not None)) if not ok]
        if names:
            out[int(r.id)] = names
    return out


def write_json(folder, df: pd.DataFrame, name: str) -> None:
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "w") as fh:
        for r in df.to_dict("records"):
            fh.write(json.dumps({k: (None if isinstance(v, float) and pd.isna(v) else v) for k, v in r.items()}) + "\n")


def spec(src, load: str, on_fail: str, extra: str = "", mode: str = "batch", name: str = "quality") -> str:
    return f"""
name: {name}
mode: {mode}
steps:
  - {{type: extract, method: fromJson, name: raw, config: {{path: "{src}", schema: "{SCHEMA}"}}}}
  - type: transform
    method: expect
    name: checks
    config:
      rules: {json.dumps(RULES)}
      onFail: {on_fail}
{extra}
{load}
"""


def delta_rows(spark, path) -> pd.DataFrame:
    return spark.read.format("delta").load(str(path)).toPandas()


@pytest.mark.parametrize("on_fail", ["drop", "warn"])
def test_rule_counts_in_every_exporter(spark, lake, on_fail, tmp_path, caplog):
    df = orders()
    write_json(lake / "in", df, "a.json")
    ref = failing(df)
    per_rule = {n: sum(n in v for v in ref.values()) for n in RULES}
    load = f"  - {{type: load, method: toParquet, name: out, config: {{path: '{lake}/out', mode: overwrite}}}}"
    with caplog.at_level(logging.WARNING, logger="pipeline_magics"):
        result = Pipeline.from_yaml(spec(lake / "in", load, on_fail)).run(spark)
    m = result.metrics.step("checks")
    assert (m.rows_in, m.failed_rows) == (len(df), len(ref))
    assert m.rows_out == (len(df) - len(ref) if on_fail == "drop" else len(df))
    assert m.failed_rules == per_rule
    assert len(spark.read.parquet(f"{lake}/out").collect()) == m.rows_out
    # Prometheus: one sample per rule, with the rule label
    fams = {f.name: f for f in text_string_to_metric_families(to_prometheus(result.metrics))}
    samples = {s.labels["rule"]: s.value for s in fams["pipeline_expectation_failed_rows"].samples}
    assert samples == per_rule
    # JSON and the log
    export(result.metrics, f"json:{tmp_path}/m.json")
    steps = {s["step"]: s for s in json.loads((tmp_path / "m.json").read_text())["steps"]}
    assert steps["checks"]["extra"]["failed_rules"] == per_rule
    with caplog.at_level(logging.INFO, logger="pipeline_magics.metrics"):
        export(result.metrics, "log")
    line = [r.getMessage() for r in caplog.records if "step checks" in r.getMessage()][-1]
    assert f"positive: {per_rule['positive']}" in line and f"has_customer: {per_rule['has_customer']}" in line
    # the step table (the widget draws the same)
    table = steps_table(result.metrics)
    assert f"positive: {per_rule['positive']}" in table and "<th>failed</th>" in table
    if on_fail == "warn":
        assert any("failed" in r.getMessage() and "kept" in r.getMessage() for r in caplog.records)


def test_fail_names_each_failing_rule_and_single_condition_is_named_after_the_step(spark, lake):
    df = orders()
    write_json(lake / "in", df, "a.json")
    load = f"  - {{type: load, method: toParquet, name: out, config: {{path: '{lake}/out'}}}}"
    with pytest.raises(ExpectationError) as err:
        Pipeline.from_yaml(spec(lake / "in", load, "fail")).run(spark)
    assert err.value.code == "EXPECTATION_FAILED"
    ref = failing(df)
    assert err.value.params["rules"] == {n: sum(n in v for v in ref.values()) for n in RULES}
    assert not os.path.exists(lake / "out")
    one = f"""
steps:
  - {{type: extract, method: fromJson, config: {{path: "{lake}/in", schema: "{SCHEMA}"}}}}
  - {{type: transform, method: expect, name: positive_amount, config: {{condition: "amount > 0", onFail: drop}}}}
{load}
"""
    result = Pipeline.from_yaml(one).run(spark)
    bad = int((~(df.amount > 0)).sum())
    assert result.metrics.step("positive_amount").failed_rules == {"positive_amount": bad}


def test_quarantine_settings_are_checked():
    from pipeline_magics import SpecError

    bad = """
steps:
  - {type: extract, method: fromJson, config: {path: /x, schema: "id INT"}}
  - {type: transform, method: expect, config: {condition: "id > 0", onFail: quarantine}}
  - {type: load, method: toParquet, config: {path: /y}}
"""
    with pytest.raises(SpecError, match="quarantine"):
        Pipeline.from_yaml(bad)
    with pytest.raises(SpecError, match="not both"):
        Pipeline.from_yaml(bad.replace("onFail: quarantine", "rules: {a: 'id > 1'}"))


def check_quarantine(q: pd.DataFrame, ref: dict[int, list[str]], source: pd.DataFrame, pipeline: str) -> None:
    assert sorted(q.id) == sorted(ref)  # every failing row once, no passing row
    assert {int(r["id"]): list(r["_failed_rules"]) for r in q.to_dict("records")} == ref
    assert set(q._pipeline) == {pipeline} and q._run_id.notna().all() and q._quarantined_at.notna().all()
    merged = q.merge(source, on="id", suffixes=("", "_src"))
    assert (merged.customer.fillna("-") == merged.customer_src.fillna("-")).all()


def source_reads(spark, on_fail: str, lake, extra: str) -> tuple[int, object]:
    """Runs a pipeline reading a view whose every row bumps an accumulator: how often the source was read."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import IntegerType

    acc = spark.sparkContext.accumulator(0)

    def seen(i):
        acc.add(1)
        return i

    raw = spark.read.schema(SCHEMA).json(str(lake / "in"))
    raw.withColumn("id", F.udf(seen, IntegerType())("id")).createOrReplaceTempView("counted_orders")
    text = f"""
name: reads
steps:
  - {{type: extract, method: fromTable, config: {{table: counted_orders}}}}
  - type: transform
    method: expect
    name: checks
    config:
      rules: {json.dumps(RULES)}
      onFail: {on_fail}
{extra}
  - {{type: transform, method: withColumn, config: {{column: gross, expr: "amount * 1.2"}}}}
  - {{type: load, method: toDelta, name: out, config: {{path: "{lake}/out_{on_fail}", mode: overwrite}}}}
"""
    result = Pipeline.from_yaml(text).run(spark)
    return acc.value, result


def test_batch_quarantine_same_pass_and_contents(spark, lake):
    df = orders(n=80)
    write_json(lake / "in", df, "a.json")
    ref = failing(df)
    quarantine = f"      quarantine: {{path: '{lake}/rejected'}}"
    reads_drop, _ = source_reads(spark, "drop", lake, "")
    reads_q, result = source_reads(spark, "quarantine", lake, quarantine)
    assert reads_drop == reads_q == len(df)  # the source was read once, with or without quarantine
    check_quarantine(delta_rows(spark, lake / "rejected"), ref, df, "reads")
    good = delta_rows(spark, lake / "out_quarantine")
    assert sorted(good.id) == sorted(set(df.id) - set(ref)) and "_failed_rules" not in good.columns
    m = result.metrics.step("checks")
    assert (m.rows_in, m.failed_rows, m.rows_out) == (len(df), len(ref), len(df) - len(ref))
    assert m.failed_rules == {n: sum(n in v for v in ref.values()) for n in RULES}
    assert set(delta_rows(spark, lake / "rejected")._run_id) == {result.metrics.run_id}


def test_streaming_quarantine_each_batch_once_across_restarts(spark, lake, monkeypatch):
    monkeypatch.setenv("PIPELINE_CHECKPOINT_ROOT", str(lake / "cp"))
    first, second = orders(0, 40), orders(40, 30)
    write_json(lake / "in", first, "a.json")
    load = (f"  - {{type: load, method: toDelta, name: out, config: {{path: '{lake}/good', "
            "trigger: {availableNow: true}}}")
    text = spec(lake / "in", load, "quarantine", f"      quarantine: {{path: '{lake}/rejected'}}",
                mode="streaming", name="stream_quality")
    result = Pipeline.from_yaml(text).run(spark)
    ref1 = failing(first)
    m = result.metrics.step("checks")
    assert (m.rows_in, m.failed_rows) == (len(first), len(ref1))
    assert m.failed_rules == {n: sum(n in v for v in ref1.values()) for n in RULES}
    assert result.metrics.step("out").rows_out == len(first) - len(ref1)
    write_json(lake / "in", second, "b.json")
    Pipeline.from_yaml(text).run(spark)
    Pipeline.from_yaml(text).run(spark)  # nothing new: nothing written twice
    both = pd.concat([first, second])
    check_quarantine(delta_rows(spark, lake / "rejected"), failing(both), both, "stream_quality")
    good = delta_rows(spark, lake / "good")
    assert sorted(good.id) == sorted(set(both.id) - set(failing(both)))


def test_streaming_quarantine_needs_a_delta_load(spark, lake, monkeypatch):
    monkeypatch.setenv("PIPELINE_CHECKPOINT_ROOT", str(lake / "cp"))
    write_json(lake / "in", orders(), "a.json")
    load = f"  - {{type: load, method: toParquet, config: {{path: '{lake}/p', trigger: {{availableNow: true}}}}}}"
    text = spec(lake / "in", load, "quarantine", f"      quarantine: {{path: '{lake}/rejected'}}", mode="streaming")
    with pytest.raises(Exception, match="toDelta"):
        Pipeline.from_yaml(text).run(spark)
