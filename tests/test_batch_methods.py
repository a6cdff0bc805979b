"""Batch pipelines on the real (session-scoped) SparkSession, checked against pandas.

Each test runs a small pipeline with ``Pipeline.from_yaml(text).run(spark)`` and
compares what it produced with the same computation done in pandas on the same
CSV files (examples/data).
"""
from __future__ import annotations

import glob
import os

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from pipeline_magics.errors import ExpectationError, PipelineError, PipelineExecutionError
from pipeline_magics.run.pipeline import Pipeline


@pytest.fixture(autouse=True)
def _default_policy(monkeypatch):
    for var in ("PIPELINE_SECURITY_POLICY", "PIPELINE_VAULT_ONLY", "PIPELINE_ALLOW_PLAINTEXT",
                "PIPELINE_AUDIT_CREDENTIALS"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="module")
def orders_csv(data_dir):
    return os.path.abspath(os.path.join(data_dir, "orders.csv"))


@pytest.fixture(scope="module")
def customers_csv(data_dir):
    return os.path.abspath(os.path.join(data_dir, "customers.csv"))


@pytest.fixture(scope="module")
def orders(orders_csv):
    return pd.read_csv(orders_csv)


@pytest.fixture(scope="module")
def customers(customers_csv):
    return pd.read_csv(customers_csv)


def run(spark, text, **kw):
    return Pipeline.from_yaml(text, **kw).run(spark)


def pdf(df, sort=None, columns=None):
    """A Spark DataFrame as pandas: dates as ISO strings, sorted, fresh index."""
    out = df.toPandas()
    for col in out.columns:
        if out[col].dtype == object and len(out) and hasattr(out[col].iloc[0], "isoformat"):
            out[col] = out[col].map(lambda v: v.isoformat() if v is not None else None)
    if columns is not None:
        out = out[columns]
    if sort:
        out = out.sort_values(sort)
    return out.reset_index(drop=True)


def same(actual: pd.DataFrame, expected: pd.DataFrame, sort=None):
    if sort:
        actual = actual.sort_values(sort)
        expected = expected.sort_values(sort)
    assert_frame_equal(actual.reset_index(drop=True), expected.reset_index(drop=True), check_dtype=False,
                       check_exact=False, rtol=1e-9)


def read_delta(spark, path):
    return spark.read.format("delta").load(str(path))


def extract_orders(orders_csv, name="orders"):
    return (f"  - type: extract\n    method: fromCsv\n    name: {name}\n"
            f"    config: {{path: '{orders_csv}', header: true, inferSchema: true}}\n")


# ------------------------------------------------------------------- extracts


def test_from_csv_result_frames_and_status(spark, orders_csv, orders):
    result = run(spark, f"name: csv_only\nsteps:\n{extract_orders(orders_csv)}"
                        "  - {type: transform, method: filterRows, config: {condition: 'amount > 50'}}\n")
    assert result.metrics.status == "done" and result.status == "done" and result.ok
    assert set(result.frames) == {"orders", "step2"}
    same(pdf(result.frames["orders"], sort="order_id"), orders, sort="order_id")
    dtypes = dict(result.frames["orders"].dtypes)
    assert dtypes["amount"] == "double" and dtypes["order_id"] == "int"
    same(pdf(result.frames["step2"]), orders[orders.amount > 50], sort="order_id")
    assert all(s.status == "done" for s in result.metrics.steps)


def test_from_csv_with_schema_and_no_header(spark, lake, customers):
    path = lake / "noheader.csv"
    customers.to_csv(path, header=False, index=False, sep=";")
    result = run(spark, f"steps:\n  - type: extract\n    method: fromCsv\n    name: c\n"
                        f"    config: {{path: '{path}', header: false, sep: ';',"
                        f" schema: 'customer_id INT, name STRING, segment STRING'}}\n")
    same(pdf(result.frames["c"]), customers, sort="customer_id")


def test_from_json(spark, lake, orders):
    path = lake / "orders.json"
    orders.to_json(path, orient="records", lines=True)
    result = run(spark, f"steps:\n  - {{type: extract, method: fromJson, name: j, config: {{path: '{path}'}}}}\n")
    same(pdf(result.frames["j"], columns=list(orders.columns)), orders, sort="order_id")


def test_from_parquet(spark, lake, orders):
    path = lake / "orders.parquet"
    orders.to_parquet(path, index=False)
    result = run(spark, f"steps:\n  - {{type: extract, method: fromParquet, name: p, config: {{path: '{path}'}}}}\n")
    same(pdf(result.frames["p"]), orders, sort="order_id")


def test_from_delta_and_time_travel(spark, lake, orders):
    path = lake / "orders_delta"
    spark.createDataFrame(orders).write.format("delta").save(str(path))                      # version 0
    spark.createDataFrame(orders.head(5)).write.format("delta").mode("overwrite").save(str(path))  # version 1
    result = run(spark, f"""steps:
  - {{type: extract, method: fromDelta, name: now, config: {{path: '{path}'}}}}
  - {{type: extract, method: fromDelta, name: before, config: {{path: '{path}', versionAsOf: 0}}}}
""")
    same(pdf(result.frames["now"]), orders.head(5), sort="order_id")
    same(pdf(result.frames["before"]), orders, sort="order_id")


def test_from_table(spark, orders_csv, orders):
    spark.read.csv(orders_csv, header=True, inferSchema=True).createOrReplaceTempView("pm_test_orders_src")
    try:
        result = run(spark, "steps:\n  - {type: extract, method: fromTable, name: t,"
                            " config: {table: pm_test_orders_src}}\n"
                            "  - {type: transform, method: filterRows, config: {condition: \"country = 'FR'\"}}\n")
    finally:
        spark.catalog.dropTempView("pm_test_orders_src")
    same(pdf(result.frames["t"]), orders, sort="order_id")
    same(pdf(result.frames["step2"]), orders[orders.country == "FR"], sort="order_id")


# ----------------------------------------------------------------- transforms


def test_sql_over_named_views(spark, orders_csv, customers_csv, orders, customers):
    result = run(spark, f"""steps:
{extract_orders(orders_csv)}  - type: extract
    method: fromCsv
    name: customers
    config: {{path: '{customers_csv}', inferSchema: true}}
  - type: transform
    method: sql
    name: by_segment
    inputs: [orders, customers]
    config:
      query: |
        SELECT c.segment, count(*) AS n, round(sum(o.amount), 2) AS revenue
        FROM orders o JOIN customers c ON o.customer_id = c.customer_id
        GROUP BY c.segment
""")
    merged = orders.merge(customers, on="customer_id")
    expected = merged.groupby("segment", as_index=False).agg(n=("order_id", "size"), revenue=("amount", "sum"))
    expected["revenue"] = expected["revenue"].round(2)
    same(pdf(result.frames["by_segment"]), expected, sort="segment")
    # the temp views belong to the run: they are gone afterwards
    assert not spark.catalog.tableExists("by_segment")


def test_filter_select_with_column_rename_drop(spark, orders_csv, orders):
    result = run(spark, f"""steps:
{extract_orders(orders_csv)}  - {{type: transform, method: filterRows, name: big, config: {{condition: "amount >= 40 AND country <> 'US'"}}}}
  - {{type: transform, method: selectColumns, name: sel,
      config: {{columns: [order_id, country, "amount * 2 AS double_amount", "upper(country) || '-' || order_id AS tag"]}}}}
  - {{type: transform, method: withColumn, name: wc, config: {{column: net, expr: "round(double_amount / 2 * 0.8, 2)"}}}}
  - {{type: transform, method: renameColumns, name: ren, config: {{mapping: {{country: land, net: net_amount}}}}}}
  - {{type: transform, method: dropColumns, name: dropped, config: {{columns: [tag, double_amount]}}}}
""")
    big = orders[(orders.amount >= 40) & (orders.country != "US")]
    same(pdf(result.frames["big"]), big, sort="order_id")
    sel = pd.DataFrame({"order_id": big.order_id, "country": big.country, "double_amount": big.amount * 2,
                        "tag": big.country.str.upper() + "-" + big.order_id.astype(str)})
    same(pdf(result.frames["sel"]), sel, sort="order_id")
    assert result.frames["wc"].columns == ["order_id", "country", "double_amount", "tag", "net"]
    final = pd.DataFrame({"order_id": big.order_id, "land": big.country, "net_amount": (big.amount * 0.8).round(2)})
    same(pdf(result.frames["dropped"]), final, sort="order_id")


def test_rename_of_a_missing_column_fails_the_step(spark, orders_csv):
    with pytest.raises(PipelineExecutionError) as info:
        run(spark, f"steps:\n{extract_orders(orders_csv)}"
                   "  - {type: transform, method: renameColumns, config: {mapping: {nope: x}}}\n")
    assert info.value.step_index == 1 and "nope" in str(info.value)


def test_drop_duplicates(spark, orders_csv, orders):
    result = run(spark, f"""steps:
{extract_orders(orders_csv)}  - {{type: transform, method: dropDuplicates, name: one_per_customer, input: orders, config: {{columns: [customer_id]}}}}
  - {{type: transform, method: selectColumns, name: pairs, input: orders, config: {{columns: [country, customer_id]}}}}
  - {{type: transform, method: dropDuplicates, name: distinct_pairs}}
""")
    got = pdf(result.frames["one_per_customer"])
    assert len(got) == orders.customer_id.nunique()
    assert sorted(got.customer_id) == sorted(orders.customer_id.unique())
    # each kept row is a real row of the input
    assert len(got.merge(orders, on=list(orders.columns))) == len(got)
    expected = orders[["country", "customer_id"]].drop_duplicates()
    same(pdf(result.frames["distinct_pairs"]), expected, sort=["country", "customer_id"])


def test_join_by_column(spark, orders_csv, customers_csv, orders, customers):
    result = run(spark, f"""steps:
{extract_orders(orders_csv)}  - {{type: extract, method: fromCsv, name: customers, config: {{path: '{customers_csv}', inferSchema: true}}}}
  - {{type: transform, method: join, name: j, input: orders, config: {{right: customers, "on": customer_id, how: left}}}}
  - {{type: transform, method: join, name: j2, input: orders, config: {{right: customers, "on": [customer_id], how: left_anti}}}}
""")
    expected = orders.merge(customers, on="customer_id", how="left")
    got = pdf(result.frames["j"])
    same(got[expected.columns.tolist()], expected, sort="order_id")
    assert len(pdf(result.frames["j2"])) == (~orders.customer_id.isin(customers.customer_id)).sum()


def test_join_by_condition(spark, orders_csv, customers_csv, orders, customers):
    result = run(spark, f"""steps:
{extract_orders(orders_csv)}  - {{type: extract, method: fromCsv, name: customers, config: {{path: '{customers_csv}', inferSchema: true}}}}
  - type: transform
    method: join
    name: retail_orders
    input: orders
    config:
      right: customers
      "on": "left.customer_id = right.customer_id AND right.segment = 'retail'"
""")
    df = result.frames["retail_orders"]
    assert df.columns.count("customer_id") == 2  # both sides are kept by a condition join
    got = pdf(df.select("left.order_id", "right.name"))
    merged = orders.merge(customers, on="customer_id")
    expected = merged[merged.segment == "retail"][["order_id", "name"]]
    same(got, expected, sort="order_id")


def test_join_with_unquoted_on_as_documented(spark, orders_csv, customers_csv, orders, customers):
    result = run(spark, f"""steps:
{extract_orders(orders_csv)}  - {{type: extract, method: fromCsv, name: customers, config: {{path: '{customers_csv}', inferSchema: true}}}}
  - {{type: transform, method: join, name: j, input: orders, config: {{right: customers, on: customer_id, how: left}}}}
""")
    assert result.frames["j"].count() == len(orders)


def test_union_of_inputs(spark, orders_csv, orders):
    result = run(spark, f"""steps:
{extract_orders(orders_csv)}  - {{type: transform, method: filterRows, name: fr, input: orders, config: {{condition: "country = 'FR'"}}}}
  - {{type: transform, method: filterRows, name: jp, input: orders, config: {{condition: "country = 'JP'"}}}}
  - {{type: transform, method: selectColumns, name: de, input: orders, config: {{columns: [order_id, country]}}}}
  - {{type: transform, method: filterRows, name: de_only, config: {{condition: "country = 'DE'"}}}}
  - {{type: transform, method: union, name: fr_jp, inputs: [fr, jp]}}
  - {{type: transform, method: union, name: with_missing, inputs: [fr, de_only], config: {{allowMissingColumns: true}}}}
""")
    expected = orders[orders.country.isin(["FR", "JP"])]
    same(pdf(result.frames["fr_jp"]), expected, sort="order_id")
    got = pdf(result.frames["with_missing"])
    assert len(got) == (orders.country == "FR").sum() + (orders.country == "DE").sum()
    assert got[got.country == "DE"].amount.isna().all()


def test_aggregate(spark, orders_csv, orders):
    result = run(spark, f"""steps:
{extract_orders(orders_csv)}  - type: transform
    method: aggregate
    name: by_country
    config:
      groupBy: [country]
      aggregations: {{orders: "count(*)", revenue: "sum(amount)", biggest: "max(amount)", customers: "count(DISTINCT customer_id)"}}
  - {{type: transform, method: aggregate, name: total, input: orders, config: {{aggregations: {{n: "count(*)", s: "sum(amount)"}}}}}}
""")
    expected = orders.groupby("country", as_index=False).agg(
        orders=("order_id", "size"), revenue=("amount", "sum"), biggest=("amount", "max"),
        customers=("customer_id", "nunique"))
    same(pdf(result.frames["by_country"]), expected, sort="country")
    total = pdf(result.frames["total"])
    assert total.n[0] == len(orders) and total.s[0] == pytest.approx(orders.amount.sum())


def test_window(spark, orders_csv, orders):
    result = run(spark, f"""steps:
{extract_orders(orders_csv)}  - {{type: transform, method: withColumn, config: {{column: ts, expr: "to_timestamp(order_date)"}}}}
  - type: transform
    method: window
    name: daily
    config: {{timeColumn: ts, duration: 1 day, groupBy: [country], aggregations: {{n: "count(*)", total: "sum(amount)"}}}}
""")
    got = result.frames["daily"].toPandas()
    assert list(got.columns) == ["window_start", "window_end", "country", "n", "total"]
    assert ((got.window_end - got.window_start) == pd.Timedelta(days=1)).all()
    got["day"] = got.window_start.dt.strftime("%Y-%m-%d")
    expected = orders.groupby(["order_date", "country"], as_index=False).agg(n=("order_id", "size"),
                                                                           total=("amount", "sum"))
    expected = expected.rename(columns={"order_date": "day"})
    same(got[["day", "country", "n", "total"]], expected[["day", "country", "n", "total"]], sort=["day", "country"])


def test_sliding_window_counts_each_row_twice(spark, orders_csv, orders):
    result = run(spark, f"""steps:
{extract_orders(orders_csv)}  - {{type: transform, method: withColumn, config: {{column: ts, expr: "to_timestamp(order_date)"}}}}
  - {{type: transform, method: window, name: w, config: {{timeColumn: ts, duration: 2 days, slide: 1 day, aggregations: {{n: "count(*)"}}}}}}
""")
    assert int(result.frames["w"].toPandas().n.sum()) == 2 * len(orders)


def test_repartition_and_coalesce(spark, orders_csv, orders):
    result = run(spark, f"""steps:
{extract_orders(orders_csv)}  - {{type: transform, method: repartition, name: r3, config: {{numPartitions: 3}}}}
  - {{type: transform, method: repartition, name: r5c, input: orders, config: {{numPartitions: 5, columns: [country]}}}}
  - {{type: transform, method: coalesce, name: c1, input: r3, config: {{numPartitions: 1}}}}
""")
    assert result.frames["r3"].rdd.getNumPartitions() == 3
    assert result.frames["r5c"].rdd.getNumPartitions() == 5
    assert result.frames["c1"].rdd.getNumPartitions() == 1
    # all rows of one country end up in the same partition
    per_partition = result.frames["r5c"].rdd.glom().map(lambda rows: {r["country"] for r in rows}).collect()
    countries = [c for part in per_partition for c in part]
    assert len(countries) == len(set(countries)) == orders.country.nunique()
    same(pdf(result.frames["c1"]), orders, sort="order_id")


def test_cache_with_storage_level(spark, orders_csv, orders):
    levels = {}

    def on_update(run_state):
        for name in ("orders", "big"):
            if name in run_state.frames and name not in levels:
                level = run_state.frames[name].storageLevel
                levels[name] = (level.useDisk, level.useMemory, level.deserialized)

    result = Pipeline.from_yaml(f"""steps:
  - type: extract
    method: fromCsv
    name: orders
    cache: true
    cacheStorageLevel: DISK_ONLY
    config: {{path: '{orders_csv}', inferSchema: true}}
  - {{type: transform, method: filterRows, name: big, cache: true, config: {{condition: "amount > 30"}}}}
  - {{type: transform, method: filterRows, name: small, input: orders, config: {{condition: "amount <= 30"}}}}
""").run(spark, on_update=on_update)
    assert levels["orders"] == (True, False, False)  # DISK_ONLY
    assert levels["big"] == (True, True, False)      # the default, MEMORY_AND_DISK
    assert "cache DISK_ONLY" in Pipeline.from_yaml(f"steps:\n  - type: extract\n    method: fromCsv\n"
                                                   f"    cache: true\n    cacheStorageLevel: DISK_ONLY\n"
                                                   f"    config: {{path: '{orders_csv}'}}\n").explain()
    same(pdf(result.frames["big"]), orders[orders.amount > 30], sort="order_id")
    assert result.frames["small"].count() == (orders.amount <= 30).sum()


# --------------------------------------------------------------------- expect


def test_expect_drop(spark, orders_csv, orders, lake):
    result = run(spark, f"""steps:
{extract_orders(orders_csv)}  - {{type: transform, method: expect, name: chk, config: {{condition: "amount >= 20", onFail: drop}}}}
  - {{type: load, method: toDelta, name: out, config: {{path: '{lake / "good"}', mode: overwrite}}}}
""")
    good = orders[orders.amount >= 20]
    same(pdf(result.frames["chk"]), good, sort="order_id")
    same(pdf(read_delta(spark, lake / "good")), good, sort="order_id")
    assert result.metrics.step("out").rows_out == len(good)
    assert result.metrics.step("chk").status == "done"
    bad = len(orders) - len(good)  # the figures of the drop (one run checks rows and figures)
    chk = result.metrics.step("chk")
    assert chk.failed_rows == bad and result.metrics.failed_rows == bad
    assert chk.rows_in == len(orders) and chk.rows_out == len(good)


def test_expect_warn_keeps_rows(spark, orders_csv, orders, lake):
    out = lake / "all.parquet"
    result = run(spark, f"""steps:
{extract_orders(orders_csv)}  - {{type: transform, method: expect, name: chk, config: {{condition: "amount >= 20", onFail: warn, name: min_amount}}}}
  - {{type: load, method: toParquet, name: out, config: {{path: '{out}'}}}}
""")
    assert result.metrics.status == "done"
    same(pd.read_parquet(out), orders.assign(order_date=pd.to_datetime(orders.order_date).dt.date)
         .astype({"order_date": object}), sort="order_id")
    assert result.metrics.step("chk").expectation == "min_amount"
    chk = result.metrics.step("chk")
    assert chk.failed_rows == int((orders.amount < 20).sum()) and chk.rows_out == len(orders)


def test_expect_fail_stops_before_the_load(spark, orders_csv, orders, lake):
    target = lake / "never"
    with pytest.raises(ExpectationError) as info:
        run(spark, f"""name: gate
steps:
{extract_orders(orders_csv)}  - {{type: transform, method: expect, name: chk, config: {{condition: "amount >= 20", onFail: fail}}}}
  - {{type: load, method: toDelta, name: out, config: {{path: '{target}', mode: overwrite}}}}
""")
    exc = info.value
    bad = int((orders.amount < 20).sum())
    assert exc.code == "EXPECTATION_FAILED"
    assert exc.step_index == 1 and exc.step_name == "chk" and exc.pipeline == "gate"
    assert exc.params == {"failed": bad, "total": len(orders), "rules": {"chk": bad}}
    assert f"failed for {bad} of {len(orders)} rows" in str(exc) and "step 2 'chk'" in str(exc)
    assert not os.path.exists(target)
    assert not spark._jvm.io.delta.tables.DeltaTable.isDeltaTable(spark._jsparkSession, str(target))
    metrics = exc.result.metrics
    assert metrics.status == "failed"
    assert metrics.step("chk").status == "failed" and metrics.step("out").status == "pending"
    assert metrics.step("chk").failed_rows == bad


def test_expect_fail_passes_clean_data(spark, orders_csv, orders):
    result = run(spark, f"steps:\n{extract_orders(orders_csv)}"
                        "  - {type: transform, method: expect, name: chk, config: {condition: 'amount > 0'}}\n")
    chk = result.metrics.step("chk")
    assert chk.failed_rows == 0 and chk.rows_in == len(orders)
    assert result.frames["chk"].count() == len(orders)


# ---------------------------------------------------------------------- loads


def test_to_delta_append_and_overwrite(spark, orders_csv, orders, lake):
    path = lake / "orders"

    def write(mode, condition):
        return run(spark, f"""steps:
{extract_orders(orders_csv)}  - {{type: transform, method: filterRows, config: {{condition: "{condition}"}}}}
  - {{type: load, method: toDelta, name: out, config: {{path: '{path}', mode: {mode}}}}}
""")

    first = write("append", "country = 'FR'")
    second = write("append", "country = 'JP'")
    fr, jp = orders[orders.country == "FR"], orders[orders.country == "JP"]
    same(pdf(read_delta(spark, path)), pd.concat([fr, jp]), sort="order_id")
    assert first.metrics.step("out").rows_out == len(fr)
    assert second.metrics.step("out").rows_out == len(jp)
    assert second.metrics.step("out").delta_version == 1
    assert second.metrics.rows_written == len(jp)

    third = write("overwrite", "amount > 70")
    big = orders[orders.amount > 70]
    same(pdf(read_delta(spark, path)), big, sort="order_id")
    assert third.metrics.step("out").rows_out == len(big)
    assert third.metrics.step("out").bytes_written > 0


def test_to_delta_partitioned(spark, orders_csv, orders, lake):
    path = lake / "by_country"
    run(spark, f"steps:\n{extract_orders(orders_csv)}"
               f"  - {{type: load, method: toDelta, config: {{path: '{path}', mode: overwrite, partitionBy: [country]}}}}\n")
    assert sorted(p.name for p in path.glob("country=*")) == sorted(f"country={c}" for c in orders.country.unique())
    same(pdf(read_delta(spark, path), columns=list(orders.columns)), orders, sort="order_id")


MERGE = """steps:
{extract}  - {{type: transform, method: filterRows, config: {{condition: "{condition}"}}}}
  - {{type: transform, method: withColumn, config: {{column: amount, expr: "{amount}"}}}}
  - {{type: load, method: toDelta, name: out, config: {{path: '{path}', mode: merge, mergeKeys: [order_id]}}}}
"""


def test_to_delta_merge_updates_and_inserts(spark, orders_csv, orders, lake):
    path = lake / "merged"
    extract = extract_orders(orders_csv)
    # the first merge creates the table
    run(spark, MERGE.format(extract=extract, condition="order_id <= 5", amount="amount", path=path))
    result = run(spark, MERGE.format(extract=extract, condition="order_id BETWEEN 4 AND 8",
                                     amount="amount * 100", path=path))
    expected = orders[orders.order_id <= 8].copy()
    expected.loc[expected.order_id >= 4, "amount"] *= 100
    same(pdf(read_delta(spark, path)), expected, sort="order_id")
    out = result.metrics.step("out")
    assert out.extra["numTargetRowsUpdated"] == 2 and out.extra["numTargetRowsInserted"] == 3
    assert out.status == "done"


def test_to_delta_merge_rows_out_is_rows_written(spark, orders_csv, lake):
    path = lake / "merged"
    extract = extract_orders(orders_csv)
    first = run(spark, MERGE.format(extract=extract, condition="order_id <= 5", amount="amount", path=path))
    assert first.metrics.step("out").rows_out == 5
    result = run(spark, MERGE.format(extract=extract, condition="order_id BETWEEN 4 AND 8",
                                     amount="amount * 100", path=path))
    assert result.metrics.step("out").rows_out == 5  # 2 updated + 3 inserted


def test_to_parquet_csv_json_read_back(spark, orders_csv, orders, lake):
    result = run(spark, f"""steps:
{extract_orders(orders_csv)}  - {{type: transform, method: filterRows, name: big, config: {{condition: "amount > 25"}}}}
  - {{type: transform, method: withColumn, config: {{column: order_date, expr: "cast(order_date AS STRING)"}}}}
  - {{type: load, method: toParquet, config: {{path: '{lake / "pq"}'}}}}
  - {{type: load, method: toCsv, config: {{path: '{lake / "csv"}', partitionBy: [country]}}}}
  - {{type: load, method: toJson, config: {{path: '{lake / "json"}', mode: overwrite}}}}
""")
    assert result.metrics.status == "done"
    expected = orders[orders.amount > 25]
    same(pd.read_parquet(lake / "pq"), expected, sort="order_id")
    parts = []
    for folder in glob.glob(str(lake / "csv" / "country=*")):
        for f in glob.glob(os.path.join(folder, "part-*.csv")):
            parts.append(pd.read_csv(f).assign(country=folder.rsplit("=", 1)[1]))
    same(pd.concat(parts)[list(orders.columns)], expected, sort="order_id")
    json_parts = [pd.read_json(f, lines=True, dtype=False) for f in glob.glob(str(lake / "json" / "part-*.json"))]
    same(pd.concat(json_parts)[list(orders.columns)], expected, sort="order_id")


def test_file_sink_rows_out(spark, orders_csv, orders, lake):
    result = run(spark, f"steps:\n{extract_orders(orders_csv)}"
                        f"  - {{type: load, method: toParquet, name: out, config: {{path: '{lake / 'pq'}'}}}}\n")
    assert result.metrics.step("out").rows_out == len(orders)


def test_file_sink_default_mode_refuses_existing_path(spark, orders_csv, orders, lake):
    target = lake / "once"
    text = f"steps:\n{extract_orders(orders_csv)}  - {{type: load, method: toCsv, name: out, config: {{path: '{target}'}}}}\n"
    run(spark, text)
    before = sorted(os.listdir(target))
    with pytest.raises(PipelineExecutionError) as info:
        run(spark, text)
    exc = info.value
    assert exc.code == "STEP_FAILED" and exc.step_index == 1 and exc.method == "toCsv"
    msg = str(exc)
    assert "already exists" in msg and "step 2 'out'" in msg
    assert len(msg.splitlines()) == 1 and "at org.apache" not in msg
    assert sorted(os.listdir(target)) == before
    # mode: overwrite replaces it
    run(spark, text.replace(f"path: '{target}'", f"path: '{target}', mode: overwrite"))


def test_to_memory_is_queryable(spark, orders_csv, orders):
    result = run(spark, f"""steps:
{extract_orders(orders_csv)}  - {{type: transform, method: filterRows, config: {{condition: "country = 'US'"}}}}
  - {{type: load, method: toMemory, name: pm_us_orders}}
  - {{type: load, method: toMemory, input: orders, config: {{queryName: pm_all_orders}}}}
""")
    try:
        n = spark.sql("SELECT count(*) AS n, round(sum(amount), 2) AS s FROM pm_us_orders").first()
        us = orders[orders.country == "US"]
        assert n["n"] == len(us) and n["s"] == pytest.approx(round(us.amount.sum(), 2))
        assert spark.sql("SELECT count(*) FROM pm_all_orders").first()[0] == len(orders)
        assert result.metrics.step("pm_us_orders").rows_out == len(us)
        assert result.metrics.step("step4").extra["table"] == "pm_all_orders"
    finally:
        spark.catalog.dropTempView("pm_us_orders")
        spark.catalog.dropTempView("pm_all_orders")


def test_display_holds_a_pandas_preview(spark, orders_csv, orders):
    result = run(spark, f"""steps:
{extract_orders(orders_csv)}  - {{type: transform, method: selectColumns, config: {{columns: [order_id, amount]}}}}
  - {{type: load, method: display, name: show, config: {{n: 7}}}}
""")
    assert len(result.displays) == 1
    label, preview = result.displays[0]
    assert label == "show"
    assert isinstance(preview, pd.DataFrame)
    assert list(preview.columns) == ["order_id", "amount"] and len(preview) == 7
    assert set(preview.order_id) <= set(orders.order_id)
    merged = preview.merge(orders, on=["order_id", "amount"])
    assert len(merged) == 7
    assert result.metrics.step("show").rows_out == 7


# -------------------------------------------------------------------- failures


def test_failing_step_gives_a_one_line_error(spark, lake):
    missing = lake / "does_not_exist.csv"
    with pytest.raises(PipelineExecutionError) as info:
        run(spark, f"""name: broken
steps:
  - {{type: extract, method: fromCsv, name: orders, config: {{path: '{missing}'}}}}
  - {{type: load, method: toParquet, config: {{path: '{lake / "out"}'}}}}
""")
    exc = info.value
    assert isinstance(exc, PipelineError)
    assert exc.code == "STEP_FAILED"
    assert exc.step_index == 0 and exc.step_name == "orders" and exc.method == "fromCsv"
    assert exc.pipeline == "broken" and exc.line == 3
    msg = str(exc)
    assert len(msg.splitlines()) == 1, msg
    assert "at org.apache" not in msg and "Traceback" not in msg
    assert "PATH_NOT_FOUND" in msg or "does not exist" in msg.lower()
    assert "does_not_exist.csv" in msg and "step 1 'orders'" in msg
    assert exc.detail and "Traceback" in exc.detail and "does_not_exist.csv" in exc.detail
    assert len(exc.detail) > len(msg)
    m = exc.result.metrics
    assert m.status == "failed" and m.steps[0].status == "failed" and m.steps[1].status == "pending"
    assert m.error == msg
    assert not os.path.exists(lake / "out")
    rendered = exc._render_traceback_()
    assert rendered[0].startswith("PipelineExecutionError in pipeline 'broken'")


def test_failing_step_detail_has_the_jvm_trace(spark, lake):
    with pytest.raises(PipelineExecutionError) as info:
        run(spark, f"steps:\n  - {{type: extract, method: fromCsv, config: {{path: '{lake / 'nope.csv'}'}}}}\n")
    assert "at org.apache.spark" in info.value.detail


def test_run_without_raising_returns_the_error(spark, lake):
    pipeline = Pipeline.from_yaml(f"steps:\n  - {{type: extract, method: fromJson, config: {{path: '{lake / 'x'}'}}}}\n")
    result = pipeline.run(spark, raise_on_error=False)
    assert result.status == "failed" and not result.ok
    assert isinstance(result.error, PipelineExecutionError) and result.error.step_index == 0


def test_bad_sql_fails_with_the_step(spark, orders_csv):
    with pytest.raises(PipelineExecutionError) as info:
        run(spark, f"steps:\n{extract_orders(orders_csv)}"
                   "  - {type: transform, method: filterRows, config: {condition: 'no_such_column > 1'}}\n")
    exc = info.value
    assert exc.step_index == 1 and "no_such_column" in str(exc)
    assert "at org.apache" not in str(exc)
