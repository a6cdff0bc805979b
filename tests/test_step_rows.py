"""Every step's rows, from the SQL metrics of the plans Spark executed for the loads.

Each pipeline runs on the suite's session; the rows of its extracts and transforms are
compared with pandas on the same data, and the steps Spark counted nothing for carry the
reason (the step table's tooltip). The walk itself is checked on plans written by hand.
"""
from __future__ import annotations

import os

import pandas as pd
import pytest

from pipeline_magics import Pipeline
from pipeline_magics.metrics.plan_rows import CACHED, COMBINED, PUSHED, SAME, StepShape, fill_same, rows_from_plans
from pipeline_magics.run.pipeline import steps_table
from pipeline_magics.run.step_rows import NOT_READ
from pipeline_magics.spark.sql_plans import ExecutedPlan, PlanNode

N = 300


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Orders as CSV and Parquet, and a small customer table; the pandas frames to compare with."""
    root = tmp_path_factory.mktemp("step_rows")
    orders = pd.DataFrame({"id": range(N), "customer": [i % 40 for i in range(N)],
                           "country": [["DE", "FR", "IT", "ES", "NL"][i % 5] for i in range(N)],
                           "amount": [float(i % 97) for i in range(N)]})
    customers = pd.DataFrame({"customer": range(0, 40, 2), "segment": [f"s{i % 3}" for i in range(20)]})
    orders.to_csv(root / "orders.csv", index=False)
    customers.to_csv(root / "customers.csv", index=False)
    os.makedirs(root / "orders_parquet")
    orders.to_parquet(root / "orders_parquet" / "part-0.parquet", index=False)
    os.makedirs(root / "customers")
    customers.to_parquet(root / "customers" / "part-0.parquet", index=False)
    return {"root": str(root), "orders": orders, "customers": customers}


def run(spark, text: str, data: dict, out) -> object:
    result = Pipeline.from_yaml(text.format(root=data["root"], out=out)).run(spark)
    assert result.status == "done", result.metrics.error
    return result


def test_seven_steps_every_step_counted_as_pandas_counts(spark, data, tmp_path):
    """Two CSV extracts, a filter, a sql step, a join whose condition filters its right side, an aggregate,
    a Delta load: every step's rows out are what pandas computes from the same files."""
    result = run(spark, """
name: rows_seven
steps:
  - {{type: extract, method: fromCsv, name: orders, config: {{path: "{root}/orders.csv", header: true, inferSchema: true}}}}
  - {{type: extract, method: fromCsv, name: customers, config: {{path: "{root}/customers.csv", header: true, inferSchema: true}}}}
  - {{type: transform, method: filterRows, name: big, input: orders, config: {{condition: "amount > 20"}}}}
  - {{type: transform, method: sql, name: gross, config: {{query: "SELECT id, customer, country, amount * 1.2 AS gross FROM big WHERE country <> 'NL'"}}}}
  - {{type: transform, method: join, name: joined, config: {{right: customers, on: "left.customer = right.customer AND right.segment <> 's0'"}}}}
  - {{type: transform, method: aggregate, name: by_country, config: {{groupBy: [country], aggregations: {{n: "count(*)"}}}}}}
  - {{type: load, method: toDelta, config: {{path: "{out}", mode: overwrite}}}}
""", data, tmp_path / "out")
    orders, customers = data["orders"], data["customers"]
    big = orders[orders.amount > 20]
    gross = big[big.country != "NL"]
    joined = gross.merge(customers[customers.segment != "s0"], on="customer")
    expected = {"orders": N, "customers": len(customers), "big": len(big), "gross": len(gross),
                "joined": len(joined), "by_country": joined.country.nunique(), "step7": joined.country.nunique()}
    m = result.metrics
    assert {s.step: s.rows_out for s in m.steps} == expected, m.to_text(reasons=True)
    assert m.step("big").rows_in == N and m.step("by_country").rows_in == len(joined)
    assert m.step("orders").sources["rows_out"] == m.step("gross").sources["rows_out"] == "observation"
    assert m.step("joined").sources["rows_out"].endswith("Join)")
    assert m.step("orders").rows_note is None and "not counted" not in m.to_text(reasons=True)


def test_a_columnar_extract_shows_the_rows_it_read_and_what_it_skipped(spark, data, tmp_path):
    """A selective filter over a Delta table of four files, each one range of ids: three files are skipped."""
    table = str(tmp_path / "ranged")
    spark.createDataFrame(data["orders"]).repartitionByRange(4, "id").write.format("delta").save(table)
    result = run(spark, f"""
name: rows_skipped
steps:
  - {{{{type: extract, method: fromDelta, name: orders, config: {{{{path: "{table}"}}}}}}}}
  - {{{{type: transform, method: filterRows, name: first, config: {{{{condition: "id < 20"}}}}}}}}
  - {{{{type: load, method: toParquet, config: {{{{path: "{{out}}", mode: overwrite}}}}}}}}
""", data, tmp_path / "out")
    files = [f for f in os.listdir(table) if f.endswith(".parquet")]
    read = sum(len(frame) for frame in (pd.read_parquet(os.path.join(table, f)) for f in files) if frame.id.min() < 20)
    m = result.metrics.step("orders")
    assert len(files) == 4 and read < N
    assert m.rows_out == read and m.extra["files_read"] == 1 and m.extra["files_skipped"] == 3
    assert m.extra["bytes_skipped"] > 0 and "it skipped 3 of 4 files" in m.sources["rows_out"]
    assert result.metrics.step("first").rows_in == read and result.metrics.step("first").rows_out == 20


def test_parquet_projection_join_and_two_filters(spark, data, tmp_path):
    result = run(spark, """
name: rows_parquet
steps:
  - {{type: extract, method: fromParquet, name: orders, config: {{path: "{root}/orders_parquet"}}}}
  - {{type: extract, method: fromParquet, name: customers, config: {{path: "{root}/customers"}}}}
  - {{type: transform, method: withColumn, name: gross, input: orders, config: {{column: gross, expr: "amount * 1.2"}}}}
  - {{type: transform, method: join, name: joined, config: {{right: customers, on: customer, how: inner}}}}
  - {{type: transform, method: aggregate, name: per_segment, config: {{groupBy: [segment], aggregations: {{n: "count(*)"}}}}}}
  - {{type: load, method: toParquet, config: {{path: "{out}/a", mode: overwrite}}}}
  - {{type: transform, method: filterRows, name: f1, input: orders, config: {{condition: "amount > 10"}}}}
  - {{type: transform, method: filterRows, name: f2, config: {{condition: "country != 'DE'"}}}}
  - {{type: load, method: toParquet, config: {{path: "{out}/b", mode: overwrite}}}}
  - {{type: transform, method: selectColumns, name: ids, input: orders, config: {{columns: [id]}}}}
  - {{type: load, method: toParquet, config: {{path: "{out}/c", mode: overwrite}}}}
  - {{type: transform, method: selectColumns, name: unused, input: orders, config: {{columns: [id]}}}}
  - {{type: transform, method: sql, name: by_sql, config: {{query: "SELECT * FROM orders WHERE id < 5"}}}}
  - {{type: load, method: toParquet, config: {{path: "{out}/d", mode: overwrite}}}}
""", data, tmp_path / "out")
    orders, customers = data["orders"], data["customers"]
    m = result.metrics
    joined = orders.merge(customers, on="customer")
    assert m.step("orders").rows_out == N  # read with no filter pushed into it by the load of `ids`
    assert m.step("ids").rows_out == N and m.step("ids").rows_in == N
    assert m.step("customers").rows_out == len(customers)  # rows read: one row group, nothing skipped
    assert m.step("gross").rows_out == N and m.step("gross").sources["rows_out"] == SAME
    assert m.step("joined").rows_out == len(joined)
    assert m.step("per_segment").rows_out == joined.segment.nunique()
    # Spark's optimizer made the two filters one: counted once, on the second.
    assert m.step("f1").rows_out is None and m.step("f1").rows_note == COMBINED.format(other="f2")
    assert m.step("f2").rows_out == int(((orders.amount > 10) & (orders.country != "DE")).sum())
    assert "made this filter and step f2" in steps_table(m)  # the tooltip
    assert m.step("unused").rows_note == NOT_READ
    assert m.step("by_sql").rows_out == 5
    # the command line's plain-text table says why too
    assert f"rows not counted: {NOT_READ}" in m.to_text(reasons=True) and "not counted" not in m.to_text()


def test_a_source_read_to_fill_a_quarantine_s_cache_is_never_counted_as_empty(spark, data, tmp_path):
    """The quarantine write reads the source into a cache; the load's plan only reuses it (its scan shows 0)."""
    result = run(spark, """
name: rows_quarantine
steps:
  - {{type: extract, method: fromCsv, name: orders, config: {{path: "{root}/orders.csv", header: true, inferSchema: true}}}}
  - type: transform
    method: expect
    name: checks
    config: {{rules: {{big: "amount >= 20"}}, onFail: quarantine, quarantine: {{path: "{out}/rejected"}}}}
  - {{type: load, method: toDelta, config: {{path: "{out}/good", mode: overwrite}}}}
""", data, tmp_path)
    orders, m = data["orders"], result.metrics
    assert m.step("checks").rows_out == int((orders.amount >= 20).sum())  # the expect's own figure
    assert m.step("orders").rows_out in (None, N)  # never the 0 of a plan that reused the cache
    assert m.step("orders").rows_out == N or m.step("orders").rows_note == CACHED


def test_no_figures_without_metrics(spark, data, tmp_path):
    result = Pipeline.from_yaml(f"""
name: rows_off
steps:
  - {{type: extract, method: fromParquet, config: {{path: "{data['root']}/orders_parquet"}}}}
  - {{type: load, method: toParquet, config: {{path: "{tmp_path}/o", mode: overwrite}}}}
""").run(spark, collect_metrics=False)
    assert result.metrics.steps[0].rows_out is None and result.metrics.steps[0].rows_note is None


# ------------------------------------------------------------------ the walk, on plans written by hand


def plan(*nodes: tuple[int, str, int | None], edges: list[tuple[int, int]], scan: PlanNode | None = None
         ) -> ExecutedPlan:
    by_id = {i: PlanNode(i, name, rows) for i, name, rows in nodes}
    if scan is not None:
        by_id[scan.id] = scan
    return ExecutedPlan(1, by_id, dict(edges))


SCAN = PlanNode(9, "Scan parquet", 10, location="file:/data/orders")


def test_walk_stops_at_an_operator_it_cannot_place():
    steps = [StepShape(0, "orders", "scan", source="/data/orders"), StepShape(1, "cols", "same", (0,)),
             StepShape(2, "agg", "aggregate", (1,)), StepShape(3, "out", None, (2,))]
    # A Generate (an explode in the projection) changes the rows: nothing after it is placed.
    p = plan((0, "Execute InsertIntoHadoopFsRelationCommand", None), (1, "HashAggregate", 7), (2, "Generate", 50),
             edges=[(9, 2), (2, 1), (1, 0)], scan=SCAN)
    found, reasons = rows_from_plans(steps, {3: [p]})
    assert found == {0: (10, "SQL metrics of the executed plan (Scan parquet)")} and reasons == {}


def test_walk_places_the_final_aggregate_and_the_projection_before_it():
    steps = [StepShape(0, "orders", "scan", source="/data/orders"), StepShape(1, "cols", "same", (0,)),
             StepShape(2, "agg", "aggregate", (1,)), StepShape(3, "out", None, (2,))]
    p = plan((0, "AdaptiveSparkPlan", None), (1, "HashAggregate", 3), (2, "Exchange", None),
             (3, "HashAggregate", 6), (4, "Project", None), edges=[(9, 4), (4, 3), (3, 2), (2, 1), (1, 0)], scan=SCAN)
    found, _ = rows_from_plans(steps, {3: [p]})
    assert found[2] == (3, "SQL metrics of the executed plan (HashAggregate)") and found[1] == (-1, SAME)
    rows = {i: found.get(i, (None,))[0] for i in range(4)}
    assert fill_same(steps, rows) == {1: 10}


def test_a_filtered_read_is_not_the_extract_s_count():
    steps = [StepShape(0, "orders", "scan", source="/data/orders"), StepShape(1, "big", "filter", (0,)),
             StepShape(2, "out", None, (1,))]
    pushed = PlanNode(9, "Scan csv", 6, location="file:/data/orders", filtered=True)
    p = plan((0, "AdaptiveSparkPlan", None), (1, "Filter", 6), edges=[(9, 1), (1, 0)], scan=pushed)
    found, reasons = rows_from_plans(steps, {2: [p]})
    assert found == {1: (6, "SQL metrics of the executed plan (Filter)")} and reasons == {0: PUSHED}


def test_a_scan_of_a_long_path_is_matched_by_its_shown_start():
    long_path = "/tmp/" + "x" * 120 + "/orders"
    scan = PlanNode(1, "Scan parquet", 4, location=f"file:{long_path[:80]}...")
    steps = [StepShape(0, "orders", "scan", source=long_path), StepShape(1, "out", None, (0,))]
    p = plan((0, "Execute X", None), edges=[(1, 0)], scan=scan)
    assert rows_from_plans(steps, {1: [p]})[0] == {0: (4, "SQL metrics of the executed plan (Scan parquet)")}
    other = [StepShape(0, "orders", "scan", source="/tmp/elsewhere"), StepShape(1, "out", None, (0,))]
    assert rows_from_plans(other, {1: [p]}) == ({}, {})


def test_a_table_scan_is_matched_by_the_names_the_jvm_found():
    scan = PlanNode(1, "Scan JDBCRelation(public.orders) [numPartitions=1]", 12, names=frozenset({"public.orders"}))
    steps = [StepShape(0, "orders", "scan", source="public.orders"), StepShape(1, "out", None, (0,))]
    p = plan((0, "Execute X", None), edges=[(1, 0)], scan=scan)
    assert rows_from_plans(steps, {1: [p]})[0][0][0] == 12



def test_the_walk_passes_a_sql_step_s_own_operators_up_to_its_observation():
    steps = [StepShape(0, "orders", "scan", source="/data/orders"), StepShape(1, "big", "filter", (0,)),
             StepShape(2, "q", "observed", (1,), marker="rows_q"), StepShape(3, "agg", "aggregate", (2,)),
             StepShape(4, "out", None, (3,))]
    mine, others = PlanNode(5, "CollectMetrics", None, names=frozenset({"rows_q"})), frozenset({"rows_x"})
    p = plan((0, "Execute X", None), (1, "HashAggregate", 3), (2, "Filter", 4), (3, "Project", None),
             (4, "Filter", 8), (6, "CollectMetrics", None), edges=[(9, 6), (6, 4), (4, 3), (3, 2), (2, 5), (5, 1),
                                                                 (1, 0)], scan=SCAN)
    p.nodes[6].names = others  # another step's Observation (the extract's) passes
    p.nodes[5] = mine
    found, reasons = rows_from_plans(steps, {4: [p]})
    assert found[1][0] == 8 and found[3][0] == 3 and 2 not in found and reasons == {}
