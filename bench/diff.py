"""Diff: two versions of a ``--rows`` Delta table (5% of the rows changed in one column, a few added and
removed) compared by ``run.diff.compare`` against the same diff written by hand in PySpark.

Both join the versions on the key (NULL-safe, full outer), count rows added, removed and changed and the
values changed per column in one aggregation over the differing rows (kept in memory meanwhile), and take
20 examples of each kind from them. rows/s = rows of a version / wall seconds.
"""
from __future__ import annotations

import argparse
import os
import shutil
import time
from functools import reduce

from .common import GOALS, WORK, interleaved, interval, jvm_pid, machine, paired_ratio, session, summary, undecided, write_part

COLUMNS = ("name", "value", "qty")


def make_data(spark, root: str, rows: int) -> None:
    """Version 0: ``rows`` rows; version 1: every 20th row's value changed, 0.1% removed, as many added."""
    from pyspark.sql import functions as F

    if os.path.exists(os.path.join(root, f"done_v1_{rows}")):
        return
    shutil.rmtree(root, ignore_errors=True)
    x = F.col("id")
    base = spark.range(rows).select(x, F.concat(F.lit("n"), (x % 97).cast("string")).alias("name"),
                                    (x * 1.5).alias("value"), (x % 13).alias("qty"))
    base.write.format("delta").save(os.path.join(root, "t"))
    gone = max(rows // 1000, 1)
    (base.filter(x >= gone).withColumn("value", F.when(x % 20 == 0, F.col("value") + 1).otherwise(F.col("value")))
     .unionByName(spark.range(rows, rows + gone).select(x, F.lit("new").alias("name"), F.lit(0.0).alias("value"),
                                                        F.lit(0).cast("long").alias("qty")))
     .write.format("delta").mode("overwrite").save(os.path.join(root, "t")))
    open(os.path.join(root, f"done_v1_{rows}"), "w").close()


def versions(spark, path: str) -> tuple:
    reader = spark.read.format("delta")
    return reader.option("versionAsOf", 0).load(path), reader.option("versionAsOf", 1).load(path)


def by_hand(spark, path: str) -> dict:
    """The diff in PySpark: full outer join on id, what differs, counted; 20 examples of each kind."""
    from pyspark.sql import functions as F

    before, after = versions(spark, path)
    b, a = before.withColumn("in_b", F.lit(True)).alias("b"), after.withColumn("in_a", F.lit(True)).alias("a")
    joined = b.join(a, F.col("b.id").eqNullSafe(F.col("a.id")), "full_outer")
    differs = {c: ~F.col(f"b.{c}").eqNullSafe(F.col(f"a.{c}")) for c in COLUMNS}
    kind = (F.when(F.col("in_b").isNull(), "added").when(F.col("in_a").isNull(), "removed")
            .when(reduce(lambda x, y: x | y, differs.values()), "changed"))
    rows = joined.select(F.coalesce("b.id", "a.id").alias("id"), *[F.col(f"b.{c}").alias(f"b_{c}") for c in COLUMNS],
                         *[F.col(f"a.{c}").alias(f"a_{c}") for c in COLUMNS],
                         *[d.alias(f"d_{c}") for c, d in differs.items()],
                         kind.alias("kind")).filter(F.col("kind").isNotNull()).persist()
    try:
        row = rows.agg(*[F.count_if(F.col("kind") == k).alias(k) for k in ("added", "removed", "changed")],
                       *[F.count_if((F.col("kind") == "changed") & F.col(f"d_{c}")).alias(c) for c in COLUMNS]).first()
        for k in ("added", "removed", "changed"):
            rows.filter(F.col("kind") == k).limit(20).toPandas()
    finally:
        rows.unpersist()
    return row.asDict()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=int(os.environ.get("PIPELINE_BENCH_REPEATS", "5")))
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args(argv)

    from pipeline_magics.run.diff import compare

    spark = session("bench_diff")
    root = os.path.join(WORK, "diff")
    make_data(spark, root, args.rows)
    path = os.path.join(root, "t")
    found: dict = {}

    def pipeline(r: int) -> None:
        found["pipeline"] = compare(*versions(spark, path), ["id"])

    def pyspark(r: int) -> None:
        found["pyspark"] = by_hand(spark, path)

    started = time.time()
    times, cpu = interleaved({"pyspark": pyspark, "pipeline": pipeline}, args.repeats, warmup=1, pid=jvm_pid(spark),
                             more=undecided({("pipeline", "pyspark"): GOALS["diff.pipeline_over_pyspark"]}))
    diff, hand = found["pipeline"], found["pyspark"]
    assert diff.counts == {k: hand[k] for k in ("added", "removed", "changed")}, (diff.counts, hand)
    assert diff.columns == {c: hand[c] for c in COLUMNS}, (diff.columns, hand)
    medians = {n: summary(t) for n, t in times.items()}
    rates = {n: summary([args.rows / t for t in ts]) for n, ts in times.items()}
    result = {
        "pipeline_over_pyspark": medians["pipeline"]["median"] / medians["pyspark"]["median"],
        "paired": {"pipeline_over_pyspark": paired_ratio(times["pipeline"], times["pyspark"])},
        "interval": {"pipeline_over_pyspark": interval(times["pipeline"], times["pyspark"])},
        "cpu": {"pipeline_over_pyspark": summary(cpu["pipeline"])["median"] / summary(cpu["pyspark"])["median"]},
        "rows_per_second": rates, "seconds": medians, "rows": args.rows, "counts": diff.counts,
        "repeats": len(times["pipeline"]), "wall_seconds": round(time.time() - started, 1), "machine": machine(spark),
    }
    print(f"diff: pipeline/pyspark {result['pipeline_over_pyspark']:.3f} "
          f"({rates['pipeline']['median']:,.0f} vs {rates['pyspark']['median']:,.0f} rows/s)")
    write_part("diff", result)
    spark.stop()
    return result


if __name__ == "__main__":
    main()
