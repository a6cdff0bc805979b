"""SCD2: ``toDelta`` with ``mode: scd2`` through ``Pipeline.run`` against the same MERGE written by hand.

A history table of ``--keys`` current rows takes ``--changes`` changes (late ones
and 5% deletes among them, each key deleted at most once). Each round starts from a copy of the same
history. Both variants produce the same table; rows/s = changes / wall seconds.
"""
from __future__ import annotations

import argparse
import os
import shutil
import time

from .common import GOALS, WORK, interleaved, interval, jvm_pid, machine, paired_ratio, session, summary, undecided, write_part

SPEC = """
name: bench_scd2
steps:
  - {{type: extract, method: fromParquet, name: changes, config: {{path: "{data}"}}}}
  - type: load
    method: toDelta
    name: out
    config: {{path: "{out}", mode: scd2, mergeKeys: [id], sequenceBy: seq, deleteWhen: "op = 'D'",
             exceptColumns: [op]}}
"""


def make_data(spark, root: str, changes: int, keys: int) -> None:
    """The change log (Parquet) and the starting history (Delta): every key current since sequence 0."""
    from pyspark.sql import functions as F

    if os.path.exists(os.path.join(root, f"done_v3_{changes}_{keys}")):
        return
    shutil.rmtree(root, ignore_errors=True)
    x = F.col("id")
    (spark.range(changes).select(
        ((x * 7919) % keys).cast("int").alias("id"), F.concat(F.lit("n"), (x % 97).cast("string")).alias("name"),
        (x * 1.5).alias("value"), ((x * 104729) % changes + 1).alias("seq"),  # a permutation: late changes
        # one change in 20 deletes a row, each key's at most once, as a CDC feed sends them (a delete follows a row)
        F.when(x >= changes - changes // 20, "D").otherwise("U").alias("op"))
     .write.mode("overwrite").parquet(os.path.join(root, "changes")))
    (spark.range(keys).select(x.cast("int").alias("id"), F.lit("start").alias("name"), F.lit(0.0).alias("value"),
                              F.lit(0).cast("long").alias("seq"), F.lit(0).cast("long").alias("__START_AT"),
                              F.lit(None).cast("long").alias("__END_AT"))
     .write.format("delta").mode("overwrite").save(os.path.join(root, "history")))
    open(os.path.join(root, f"done_v3_{changes}_{keys}"), "w").close()


def by_hand(spark, changes_path: str, out: str) -> None:
    """SCD2 in PySpark: each key's new and stored versions ordered by seq, then one MERGE."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    changes = spark.read.parquet(changes_path)
    target = spark.read.format("delta").load(out)
    new = changes.select("id", "name", "value", "seq", (F.col("op") == "D").alias("is_delete"),
                         F.lit(1).alias("src"), F.lit(None).cast("long").alias("old_end"))
    stored = target.join(new.select("id").distinct(), "id", "left_semi").select(
        "id", "name", "value", F.col("__START_AT").alias("seq"), F.lit(False).alias("is_delete"),
        F.lit(0).alias("src"), F.col("__END_AT").alias("old_end"))
    events = (new.unionByName(stored)
              .withColumn("rank", F.row_number().over(Window.partitionBy("id", "seq").orderBy("src", F.desc("is_delete"))))
              .filter("rank = 1")
              .withColumn("__END_AT", F.lead("seq").over(Window.partitionBy("id").orderBy("seq")))
              .filter(~F.col("is_delete"))
              .filter((F.col("src") == 1) | ~F.col("old_end").eqNullSafe(F.col("__END_AT")))
              .withColumn("__START_AT", F.col("seq")))
    events.createOrReplaceTempView("bench_scd_source")
    spark.sql(f"""MERGE INTO delta.`{out}` t USING bench_scd_source s
                  ON t.id = s.id AND t.__START_AT = s.__START_AT
                  WHEN MATCHED AND s.src = 0 THEN UPDATE SET t.__END_AT = s.__END_AT
                  WHEN NOT MATCHED AND s.src = 1 THEN
                    INSERT (id, name, value, seq, __START_AT, __END_AT)
                    VALUES (s.id, s.name, s.value, s.seq, s.__START_AT, s.__END_AT)""")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=int(os.environ.get("PIPELINE_BENCH_REPEATS", "5")))
    parser.add_argument("--changes", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=200_000)
    args = parser.parse_args(argv)

    from pipeline_magics import Pipeline

    spark = session("bench_scd2")
    root = os.path.join(WORK, "scd")
    make_data(spark, root, args.changes, args.keys)
    out = os.path.join(WORK, "scd_out")
    paths = {name: os.path.join(out, name) for name in ("pyspark", "pipeline")}

    def fresh(name: str) -> str:
        shutil.rmtree(paths[name], ignore_errors=True)
        shutil.rmtree(paths[name] + "__deletes", ignore_errors=True)
        shutil.copytree(os.path.join(root, "history"), paths[name])
        return paths[name]

    def pipeline(r: int) -> None:
        Pipeline.from_yaml(SPEC.format(data=os.path.join(root, "changes"), out=fresh("pipeline"))).run(spark)

    # the copy of the starting history is part of both variants' time alike
    variants = {"pyspark": lambda r: by_hand(spark, os.path.join(root, "changes"), fresh("pyspark")),
                "pipeline": pipeline}
    started = time.time()
    times, cpu = interleaved(variants, args.repeats, warmup=1, pid=jvm_pid(spark),
                             more=undecided({("pipeline", "pyspark"): GOALS["scd.pipeline_over_pyspark"]}))
    tables = {n: spark.read.format("delta").load(p) for n, p in paths.items()}
    assert tables["pyspark"].exceptAll(tables["pipeline"]).count() == 0 == \
        tables["pipeline"].exceptAll(tables["pyspark"]).count(), "the two SCD2 tables differ"
    medians = {n: summary(t) for n, t in times.items()}
    rates = {n: summary([args.changes / t for t in ts]) for n, ts in times.items()}
    result = {
        "pipeline_over_pyspark": medians["pipeline"]["median"] / medians["pyspark"]["median"],
        "paired": {"pipeline_over_pyspark": paired_ratio(times["pipeline"], times["pyspark"])},
        "interval": {"pipeline_over_pyspark": interval(times["pipeline"], times["pyspark"])},
        "cpu": {"pipeline_over_pyspark": summary(cpu["pipeline"])["median"] / summary(cpu["pyspark"])["median"]},
        "rows_per_second": rates, "seconds": medians, "changes": args.changes, "keys": args.keys,
        "rows_written": tables["pipeline"].count(), "repeats": len(times["pipeline"]),
        "wall_seconds": round(time.time() - started, 1), "machine": machine(spark),
    }
    print(f"scd2: pipeline/pyspark {result['pipeline_over_pyspark']:.3f} "
          f"({rates['pipeline']['median']:,.0f} vs {rates['pyspark']['median']:,.0f} changes/s)")
    write_part("scd", result)
    spark.stop()
    return result


if __name__ == "__main__":
    main()
