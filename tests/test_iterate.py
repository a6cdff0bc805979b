"""Iterating on one step (SPEC 12): ``--until`` keeps, ``--from`` reuses without touching the sources,
``--sample`` bounds every extract, ``--sandbox`` leaves every real target (Delta, PostgreSQL, Kafka, files,
streaming checkpoints) as it was; the sandbox tables are checked against pandas."""
from __future__ import annotations

import hashlib
import json
import os

import pandas as pd
import pytest

from pipeline_magics import Pipeline
from pipeline_magics.errors import IterateError
from pipeline_magics.run.iterate import KeptOutputs, parse_sample
from pipeline_magics.run.sandbox import listing

BATCH = """
name: iter_batch
vars: {{min_amount: 20}}
steps:
  - {{type: extract, method: fromCsv, name: orders, config: {{path: "{lake}/orders", inferSchema: true}}}}
  - {{type: extract, method: fromDelta, name: customers, config: {{path: "{lake}/customers"}}}}
  - type: transform
    method: filterRows
    name: big
    input: orders
    config: {{condition: "amount > ${{min_amount}}"}}
  - {{type: transform, method: join, name: joined, input: big, config: {{right: customers, on: customer_id}}}}
  - type: transform
    method: aggregate
    name: per_country
    config: {{groupBy: [country], aggregations: {{revenue: "sum(amount)", orders: "count(*)"}}}}
  - type: load
    method: toDelta
    name: save
    config: {{path: "{lake}/revenue", mode: merge, mergeKeys: [country]}}
"""

ORDERS = pd.DataFrame({"order_id": range(1, 41), "customer_id": [i % 6 for i in range(1, 41)],
                       "amount": [float(i * 7 % 50) for i in range(1, 41)]})
CUSTOMERS = pd.DataFrame({"customer_id": range(6), "country": ["NL", "DE", "NL", "FR", "BE", "DE"]})


def delta_version(spark, path) -> int:
    return spark.sql(f"DESCRIBE HISTORY delta.`{path}` LIMIT 1").first()["version"]


def folder_digest(path) -> dict[str, str]:
    """Every file under ``path`` with a hash of its bytes."""
    out = {}
    for folder, _, files in os.walk(path):
        for name in files:
            full = os.path.join(folder, name)
            with open(full, "rb") as fh:
                out[os.path.relpath(full, path)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def expected_revenue(min_amount: float, real: pd.DataFrame) -> pd.DataFrame:
    """What the merge leaves, in pandas: the real rows no country of the new aggregate matches, then the new rows."""
    joined = ORDERS[ORDERS.amount > min_amount].merge(CUSTOMERS, on="customer_id")
    new = joined.groupby("country").agg(revenue=("amount", "sum"), orders=("amount", "size")).reset_index()
    kept = real[~real.country.isin(new.country)]
    return pd.concat([kept, new]).sort_values("country").reset_index(drop=True)


def table(spark, path) -> pd.DataFrame:
    df = spark.read.format("delta").load(str(path)).toPandas()
    return df[["country", "revenue", "orders"]].sort_values("country").reset_index(drop=True)


def table_of(pdf: pd.DataFrame) -> pd.DataFrame:
    return pdf[["country", "revenue", "orders"]].sort_values("country").reset_index(drop=True)


def test_sample_values():
    assert parse_sample("1000") == ("rows", 1000) and parse_sample("5%") == ("fraction", 0.05)
    for bad in ("0", "-3", "120%", "many"):
        with pytest.raises(IterateError) as info:
            parse_sample(bad)
        assert info.value.code == "ITERATE_BAD_SAMPLE"


def test_until_then_from_in_the_sandbox_with_the_sources_gone(spark, lake, tmp_path):
    ORDERS.to_csv(lake / "orders.csv", index=False)
    os.makedirs(lake / "orders")
    os.rename(lake / "orders.csv", lake / "orders" / "part.csv")
    spark.createDataFrame(CUSTOMERS).write.format("delta").save(str(lake / "customers"))
    real = pd.DataFrame({"country": ["NL", "US"], "revenue": [1.0, 2.0], "orders": [1, 1]})
    spark.createDataFrame(real).write.format("delta").save(str(lake / "revenue"))
    spec, kept, sandbox = BATCH.format(lake=lake), KeptOutputs(), tmp_path / "sandbox"

    result = Pipeline.from_yaml(spec).run(spark, until="joined", kept=kept)
    status = {s.step: s.status for s in result.metrics.steps}
    assert status == {"orders": "done", "customers": "done", "big": "done", "joined": "done",
                      "per_country": "skipped", "save": "skipped"}
    joined = ORDERS[ORDERS.amount > 20].merge(CUSTOMERS, on="customer_id")
    assert result.metrics.step("joined").rows_out == len(joined) and len(kept) == 4
    assert kept.table("iter_batch").set_index("step").loc["joined", "rows"] == len(joined)
    assert result.metrics.step("save").note == "not run (--until joined)"
    assert delta_version(spark, lake / "revenue") == 0

    # --from starts no job over the sources above it: they are gone
    os.rename(lake / "orders", lake / "orders_gone")
    os.rename(lake / "customers", lake / "customers_gone")
    result = Pipeline.from_yaml(spec).run(spark, from_step="per_country", sandbox=str(sandbox), kept=kept)
    assert result.ok, result.error
    steps = {s.step: s for s in result.metrics.steps}
    assert steps["joined"].status == "skipped" and steps["joined"].note.startswith("reused: kept at")
    assert steps["joined"].rows_out == len(joined) and steps["orders"].note == "not needed (--from per_country)"
    assert steps["per_country"].status == "done" and steps["save"].status == "done"
    target = str(sandbox / "iter_batch" / "save")
    assert steps["save"].extra["wrote_to"] == target and steps["save"].extra["cloned_from"] == str(lake / "revenue")
    assert f"sandbox: wrote {target} on a shallow clone of delta {lake}/revenue (untouched)" in result.metrics.to_text()
    pd.testing.assert_frame_equal(table(spark, target), expected_revenue(20, real), check_dtype=False)
    assert delta_version(spark, lake / "revenue") == 0  # the real target: as it was
    pd.testing.assert_frame_equal(table(spark, lake / "revenue"), table_of(real))
    listed = listing(spark, str(sandbox), "iter_batch")
    assert listed.to_dict("records")[0] | {"written": None} == {
        "pipeline": "iter_batch", "step": "save", "rows": len(expected_revenue(20, real)),
        "real target": f"delta {lake}/revenue", "sandbox": target, "written": None}

    # a change above the resumed step (a variable here) is named, with its line
    with pytest.raises(IterateError) as info:
        Pipeline.from_yaml(spec, {"min_amount": "30"}).run(spark, from_step="per_country", sandbox=True, kept=kept)
    assert info.value.code == "ITERATE_STEP_CHANGED" and info.value.params["step"] == "big"
    assert "step 'big' changed since the output of 'joined' was kept" in str(info.value)
    assert info.value.line == spec.splitlines().index("  - type: transform") + 1  # the line of step 'big
    with pytest.raises(IterateError) as info:
        Pipeline.from_yaml(spec).run(spark, from_step="per_country", kept=KeptOutputs())
    assert info.value.code == "ITERATE_NOT_KEPT" and "--until joined" in info.value.hint

    # --sample: every extract reads at most N rows
    os.rename(lake / "orders_gone", lake / "orders")
    os.rename(lake / "customers_gone", lake / "customers")
    result = Pipeline.from_yaml(spec).run(spark, until="joined", sample=4, kept=kept)
    assert result.ok, result.error
    for extract in ("orders", "customers"):
        assert 0 < result.metrics.step(extract).rows_out <= 4
        assert result.metrics.step(extract).note.startswith("sample: at most 4 rows; kept")
    assert delta_version(spark, lake / "revenue") == 0

    # forgetting frees what was held in the executors
    held = persisted(spark)
    assert len(kept.drop("iter_batch")) == 4 and len(kept) == 0
    assert len(held - persisted(spark)) == 4


def persisted(spark):
    """The ids of the RDDs the executors hold, other than Delta's own table states."""
    rdds = spark.sparkContext._jsc.getPersistentRDDs()
    return {int(k) for k, v in rdds.items() if not (v.name() or "").startswith("Delta Table State")}


KINDS = """
name: iter_kinds
steps:
  - {{type: extract, method: fromCsv, name: src, config: {{path: "{lake}/src.csv", inferSchema: true}}}}
  - {{type: transform, method: withColumn, name: shaped, config: {{column: doubled, expr: "amount * 2"}}}}
  - {{type: load, method: toDelta, name: to_delta, config: {{path: "{lake}/real_delta", mode: append}}}}
  - type: load
    method: toPostgres
    name: to_pg
    input: shaped
    config: {{url: "{pg_url}", user: {pg_user}, password: {{env: PIPELINE_TEST_PG_PASSWORD}},
              table: public.iter_real, mode: append}}
  - type: load
    method: toKafka
    name: to_kafka
    input: shaped
    config: {{bootstrapServers: "{bootstrap}", topic: {topic}, key: id}}
  - {{type: load, method: toCsv, name: to_files, input: shaped, config: {{path: "{lake}/real_csv", mode: overwrite}}}}
"""


@pytest.mark.postgres
def test_every_load_kind_goes_to_the_sandbox_and_no_real_target_changes(ip, spark, postgres, kafka, lake,
                                                                          tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINE_TEST_PG_PASSWORD", postgres.password)
    pd.DataFrame({"id": range(5), "amount": [1.5, 2.5, 3.5, 4.5, 5.5]}).to_csv(lake / "src.csv", index=False)
    with postgres.connect() as conn:
        conn.execute("DROP TABLE IF EXISTS public.iter_real")
        conn.execute("CREATE TABLE public.iter_real (id int, amount double precision, doubled double precision)")
        conn.execute("INSERT INTO public.iter_real VALUES (100, 1, 2), (101, 2, 4)")
    topic = f"iter_real_{os.getpid()}"
    kafka.create_topic(topic)
    kafka.produce(topic, ["old"])
    spark.range(3).write.format("delta").save(str(lake / "real_delta"))
    spark.range(2).write.csv(str(lake / "real_csv"))
    files_before = folder_digest(lake / "real_csv")
    spec = KINDS.format(lake=lake, pg_url=postgres.jdbc_url, pg_user=postgres.user, bootstrap=kafka.bootstrap,
                        topic=topic)
    sandbox = tmp_path / "sandbox"

    until = ip.run_cell_magic("pipeline", "--until shaped --no-widgets", spec)
    assert until.metrics.step("shaped").note.startswith("kept")
    result = ip.run_cell_magic("pipeline", f"--from to_delta --sandbox {sandbox} --no-widgets", spec)
    assert result.ok and result.metrics.step("shaped").status == "skipped"
    listed = ip.run_line_magic("pipeline", f"sandbox iter_kinds --dir {sandbox}").set_index("step")
    assert listed["rows"].to_dict() == {"to_delta": 5, "to_pg": 5, "to_kafka": 5, "to_files": 5}
    assert listed["real target"].to_dict() == {
        "to_delta": f"delta {lake}/real_delta", "to_pg": "postgres public.iter_real",
        "to_kafka": f"kafka topic {topic}", "to_files": f"csv files {lake}/real_csv"}
    doubled = spark.read.format("delta").load(listed.loc["to_pg", "sandbox"]).toPandas().sort_values("id")
    assert list(doubled.doubled) == [3.0, 5.0, 7.0, 9.0, 11.0]

    assert delta_version(spark, lake / "real_delta") == 0
    with postgres.connect() as conn:
        assert conn.execute("SELECT count(*) FROM public.iter_real").fetchone()[0] == 2
    assert kafka.consume(topic, decode=True) == [(None, "old")]
    assert folder_digest(lake / "real_csv") == files_before

    freed = ip.run_line_magic("pipeline", "uncache iter_kinds")
    assert sorted(freed.step) == ["shaped", "src"] and (freed["bytes"] > 0).all()
    with pytest.raises(IterateError) as info:
        ip.run_cell_magic("pipeline", f"--from to_delta --sandbox {sandbox} --no-widgets", spec)
    assert info.value.code == "ITERATE_NOT_KEPT"
    ip.run_line_magic("pipeline", f"sandbox clear iter_kinds --dir {sandbox}")
    assert not os.path.exists(sandbox / "iter_kinds")


STREAM = """
name: iter_stream
mode: streaming
steps:
  - type: extract
    method: fromKafka
    config: {{bootstrapServers: "{bootstrap}", topic: {topic}, format: json, schema: "id INT, amount DOUBLE"}}
  - {{type: transform, method: withColumn, name: cents, config: {{column: cents, expr: "CAST(amount * 100 AS INT)"}}}}
  - type: load
    method: toDelta
    name: sink
    config: {{path: "{lake}/stream_out", checkpointLocation: "{lake}/checkpoint", trigger: {{availableNow: true}}}}
"""


def test_streaming_sandbox_and_until_leave_the_checkpoint_and_target_alone(spark, kafka, lake, tmp_path):
    topic = f"iter_stream_{os.getpid()}"
    kafka.create_topic(topic)
    kafka.produce(topic, [json.dumps({"id": i, "amount": i / 4}) for i in range(20)])
    spec = STREAM.format(bootstrap=kafka.bootstrap, topic=topic, lake=lake)
    assert Pipeline.from_yaml(spec).run(spark).ok  # the production run: its checkpoint and its table
    kafka.produce(topic, [json.dumps({"id": i, "amount": i / 4}) for i in range(20, 30)])
    checkpoint, version = folder_digest(lake / "checkpoint"), delta_version(spark, lake / "stream_out")

    sandbox = tmp_path / "sandbox"
    result = Pipeline.from_yaml(spec).run(spark, sandbox=str(sandbox))
    assert result.ok and result.queries  # a stream, into the sandbox, from a checkpoint of its own
    sink = result.metrics.step("sink")
    assert sink.extra["checkpoint"] == str(sandbox / "iter_stream" / "_checkpoints" / "sink")
    got = spark.read.format("delta").load(sink.extra["wrote_to"]).toPandas().sort_values("id")
    assert list(got.id) == list(range(30)) and list(got.cents) == [int(i * 25) for i in range(30)]

    result = Pipeline.from_yaml(spec).run(spark, until="cents")  # a bounded batch: no query, no checkpoint
    assert result.ok and not result.queries and result.metrics.step("cents").rows_out == 30
    assert result.metrics.step("sink").status == "skipped"

    assert folder_digest(lake / "checkpoint") == checkpoint
    assert delta_version(spark, lake / "stream_out") == version
