"""Iterate: ``--from`` the batch bench's last step (its Delta load) on the outputs ``--until`` kept, against
that step by hand on a cached input (the same join, persisted and counted once, written the same way).

One ``--until step6`` run keeps the join; each round then runs ``Pipeline.run(from_step="out")`` (the spec
parsed and planned again, as a notebook cell does) and the by-hand write, interleaved, ``--repeats`` times.
"""
from __future__ import annotations

import argparse
import os
import shutil
import time

from .batch import SPEC
from .common import GOALS, WORK, interleaved, interval, jvm_pid, machine, paired_ratio, session, summary, undecided, write_part
from .data import ensure_data


def cached_join(spark, data: str):
    """The input of the last step, in PySpark, cached and filled."""
    from pyspark.sql import functions as F

    orders = spark.read.parquet(f"{data}/orders")
    customers = spark.read.parquet(f"{data}/customers")
    joined = (orders.filter("status = 'paid'").withColumn("gross", F.expr("amount * 1.2"))
              .groupBy("customer_id").agg(F.expr("count(*)").alias("orders"), F.expr("sum(gross)").alias("revenue"))
              .join(customers, "customer_id", "inner")).persist()
    joined.count()
    return joined


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=int(os.environ.get("PIPELINE_BENCH_REPEATS", "7")))
    args = parser.parse_args(argv)

    from pipeline_magics import Pipeline
    from pipeline_magics.run.iterate import KeptOutputs

    spark = session("bench_iterate")
    data = ensure_data(spark, os.path.join(WORK, "data"))
    out = os.path.join(WORK, "iterate_out")
    shutil.rmtree(out, ignore_errors=True)
    paths = {name: os.path.join(out, name) for name in ("pyspark", "pipeline")}
    kept = KeptOutputs()
    spec = SPEC.format(data=data["root"], out=paths["pipeline"])
    until = Pipeline.from_yaml(spec).run(spark, until="step6", kept=kept)
    joined = cached_join(spark, data["root"])
    rows: dict[str, int] = {}

    def from_last(r: int) -> None:
        result = Pipeline.from_yaml(spec).run(spark, from_step="out", kept=kept)
        rows["pipeline"] = result.metrics.step("out").rows_out

    variants = {"pyspark": lambda r: joined.write.format("delta").mode("overwrite").save(paths["pyspark"]),
                "pipeline": from_last}
    started = time.time()
    times, cpu = interleaved(variants, args.repeats, warmup=2, pid=jvm_pid(spark),
                             more=undecided({("pipeline", "pyspark"): GOALS["iterate.from_over_by_hand"]}))
    written = {n: spark.read.format("delta").load(p).count() for n, p in paths.items()}
    assert len(set(written.values())) == 1 and rows["pipeline"] == written["pipeline"], (written, rows)
    medians = {n: summary(t) for n, t in times.items()}
    result = {
        "from_over_by_hand": medians["pipeline"]["median"] / medians["pyspark"]["median"],
        "paired": {"from_over_by_hand": paired_ratio(times["pipeline"], times["pyspark"])},
        "interval": {"from_over_by_hand": interval(times["pipeline"], times["pyspark"])},
        "cpu": {n: summary(t) for n, t in cpu.items()},
        "seconds": medians, "until_seconds": until.metrics.duration,
        "rows_in": data["orders"], "rows_written": written["pipeline"], "repeats": args.repeats,
        "wall_seconds": round(time.time() - started, 1), "machine": machine(spark),
    }
    print(f"iterate: --from the last step / by hand on a cached input {result['from_over_by_hand']:.3f}")
    write_part("iterate", result)
    spark.stop()
    return result


if __name__ == "__main__":
    main()
