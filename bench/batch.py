"""Batch: a pipeline through ``Pipeline.run`` against the same job by hand, metrics on against off, and
OpenLineage events (``--lineage file:PATH``) on against off.

Read Parquet, filter, withColumn, aggregate, join to a small table, write Delta.
Every variant runs in this one process, interleaved, ``--repeats`` times.
"""
from __future__ import annotations

import argparse
import os
import shutil
import time

from .common import GOALS, WORK, interleaved, interval, jvm_pid, machine, paired_ratio, session, summary, undecided, write_part
from .data import ensure_data

SPEC = """
name: bench_batch
steps:
  - {{type: extract, method: fromParquet, name: orders, config: {{path: "{data}/orders"}}}}
  - {{type: extract, method: fromParquet, name: customers, config: {{path: "{data}/customers"}}}}
  - {{type: transform, method: filterRows, input: orders, config: {{condition: "status = 'paid'"}}}}
  - {{type: transform, method: withColumn, config: {{column: gross, expr: "amount * 1.2"}}}}
  - {{type: transform, method: aggregate, config: {{groupBy: [customer_id], aggregations: {{orders: "count(*)", revenue: "sum(gross)"}}}}}}
  - {{type: transform, method: join, config: {{right: customers, on: customer_id, how: inner}}}}
  - {{type: load, method: toDelta, name: out, config: {{path: "{out}", mode: overwrite}}}}
"""


def by_hand(spark, data: str, out: str) -> None:
    """The same job, written in PySpark."""
    from pyspark.sql import functions as F

    orders = spark.read.parquet(f"{data}/orders")
    customers = spark.read.parquet(f"{data}/customers")
    (orders.filter("status = 'paid'")
     .withColumn("gross", F.expr("amount * 1.2"))
     .groupBy("customer_id").agg(F.expr("count(*)").alias("orders"), F.expr("sum(gross)").alias("revenue"))
     .join(customers, "customer_id", "inner")
     .write.format("delta").mode("overwrite").save(out))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=int(os.environ.get("PIPELINE_BENCH_REPEATS", "7")))
    args = parser.parse_args(argv)

    from pipeline_magics import Pipeline

    spark = session("bench_batch")
    data = ensure_data(spark, os.path.join(WORK, "data"))
    print(f"data: {data['orders']:,} orders, {data['customers']:,} customers in {data['root']}"
          f"{' (generated)' if data['generated'] else ' (reused)'}")
    out = os.path.join(WORK, "batch_out")
    shutil.rmtree(out, ignore_errors=True)
    paths = {name: os.path.join(out, name) for name in ("pyspark", "pipeline", "pipeline_no_metrics", "pipeline_lineage")}
    events = os.path.join(out, "lineage.jsonl")
    rows: dict[str, int] = {}

    def pipeline(name: str, metrics: bool, lineage: str = "off"):
        def go(r: int) -> None:
            result = Pipeline.from_yaml(SPEC.format(data=data["root"], out=paths[name])).run(
                spark, collect_metrics=metrics, lineage=lineage)
            if metrics:
                rows["pipeline"] = result.metrics.step("out").rows_out
        return go

    variants = {"pyspark": lambda r: by_hand(spark, data["root"], paths["pyspark"]),
                "pipeline": pipeline("pipeline", True),
                "pipeline_no_metrics": pipeline("pipeline_no_metrics", False),
                "pipeline_lineage": pipeline("pipeline_lineage", True, f"file:{events}")}
    started = time.time()
    # three warm-up rounds: the JVM goes on compiling the hot code for the first few runs
    overhead = 1 + GOALS["batch.metrics_overhead"]
    times, cpu = interleaved(variants, args.repeats, warmup=3, pid=jvm_pid(spark), more=undecided({
        ("pipeline", "pyspark"): GOALS["batch.pipeline_over_pyspark"], ("pipeline", "pipeline_no_metrics"): overhead,
        ("pipeline_lineage", "pipeline"): 1 + GOALS["batch.lineage_overhead"]}))
    written = {n: spark.read.format("delta").load(p).count() for n, p in paths.items()}
    assert len(set(written.values())) == 1 and rows["pipeline"] == written["pipeline"], (written, rows)
    medians = {n: summary(t) for n, t in times.items()}
    cpu_medians = {n: summary(t) for n, t in cpu.items()}
    result = {
        "pipeline_over_pyspark": medians["pipeline"]["median"] / medians["pyspark"]["median"],
        "metrics_overhead": medians["pipeline"]["median"] / medians["pipeline_no_metrics"]["median"] - 1,
        "lineage_overhead": medians["pipeline_lineage"]["median"] / medians["pipeline"]["median"] - 1,
        "paired": {"pipeline_over_pyspark": paired_ratio(times["pipeline"], times["pyspark"]),
                   "metrics_overhead": paired_ratio(times["pipeline"], times["pipeline_no_metrics"]) - 1,
                   "lineage_overhead": paired_ratio(times["pipeline_lineage"], times["pipeline"]) - 1},
        "interval": {"pipeline_over_pyspark": interval(times["pipeline"], times["pyspark"]),
                     "metrics_overhead": [x - 1 for x in interval(times["pipeline"], times["pipeline_no_metrics"])],
                     "lineage_overhead": [x - 1 for x in interval(times["pipeline_lineage"], times["pipeline"])]},
        "cpu": {"pipeline_over_pyspark": cpu_medians["pipeline"]["median"] / cpu_medians["pyspark"]["median"],
                "metrics_overhead": cpu_medians["pipeline"]["median"] / cpu_medians["pipeline_no_metrics"]["median"] - 1,
                "seconds": cpu_medians},
        "seconds": medians,
        "rows_in": data["orders"], "rows_written": written["pipeline"], "repeats": len(times["pipeline"]),
        "wall_seconds": round(time.time() - started, 1),
        "machine": machine(spark),
    }
    print(f"batch: pipeline/pyspark {result['pipeline_over_pyspark']:.3f}, "
          f"metrics overhead {result['metrics_overhead']:+.2%}, lineage overhead {result['lineage_overhead']:+.2%}")
    write_part("batch", result)
    spark.stop()
    return result


if __name__ == "__main__":
    main()
