"""Step rows at stake: a selective filter over Parquet, and many chained steps, through ``Pipeline.run``
against the same job by hand.

- ``selective``: the orders (written in ``order_id`` order, so their files and row groups hold ranges of
  ids) filtered to one id in a hundred's range, written as Parquet: Spark skips most files and row groups,
  and counting the extract's rows must not stop it (the run's extract reports what it skipped).
- ``many``: ``--steps`` chained ``withColumn`` steps (50 and 200 by default) over the first ``--many-rows``
  orders, aggregated into one row: the time the pipeline adds per step.

Every variant runs in this one process, interleaved, ``--repeats`` times.
"""
from __future__ import annotations

import argparse
import os
import shutil
import time

from .common import GOALS, WORK, interleaved, interval, jvm_pid, machine, paired_ratio, session, summary, undecided, write_part
from .data import ensure_data

SELECTIVE = """
name: bench_selective
steps:
  - {{type: extract, method: fromParquet, name: orders, config: {{path: "{data}/orders"}}}}
  - {{type: transform, method: filterRows, config: {{condition: "order_id < {cut}"}}}}
  - {{type: load, method: toParquet, name: out, config: {{path: "{out}", mode: overwrite}}}}
"""


def many_spec(data: str, out: str, steps: int, rows: int) -> str:
    """An extract, ``steps`` chained withColumn steps, an aggregate and a Parquet load."""
    lines = ["name: bench_many", "steps:",
             f'  - {{type: extract, method: fromParquet, config: {{path: "{data}/orders"}}}}',
             f'  - {{type: transform, method: filterRows, config: {{condition: "order_id < {rows}"}}}}']
    lines += [f'  - {{type: transform, method: withColumn, config: {{column: c{i}, expr: "amount + {i}"}}}}'
              for i in range(steps)]
    lines += [f'  - {{type: transform, method: aggregate, config: {{aggregations: {{s: "sum(c{steps - 1})"}}}}}}',
              f'  - {{type: load, method: toParquet, config: {{path: "{out}", mode: overwrite}}}}']
    return "\n".join(lines) + "\n"


def many_by_hand(spark, data: str, out: str, steps: int, rows: int) -> None:
    from pyspark.sql import functions as F

    df = spark.read.parquet(f"{data}/orders").filter(f"order_id < {rows}")
    for i in range(steps):
        df = df.withColumn(f"c{i}", F.expr(f"amount + {i}"))
    df.agg(F.expr(f"sum(c{steps - 1})").alias("s")).write.mode("overwrite").parquet(out)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=int(os.environ.get("PIPELINE_BENCH_REPEATS", "7")))
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--many-rows", type=int, default=1_000_000)
    args = parser.parse_args(argv)

    from pipeline_magics import Pipeline

    spark = session("bench_steps")
    data = ensure_data(spark, os.path.join(WORK, "data"))
    root, cut = data["root"], data["orders"] // 100
    out = os.path.join(WORK, "steps_out")
    shutil.rmtree(out, ignore_errors=True)
    skipped: dict[str, int] = {}

    def selective(r: int) -> None:
        result = Pipeline.from_yaml(SELECTIVE.format(data=root, cut=cut, out=f"{out}/selective_pipeline")).run(spark)
        skipped["files"] = result.metrics.step("orders").extra.get("files_skipped", 0)
        skipped["rows_read"] = result.metrics.step("orders").rows_out

    def many(steps: int):
        spec = Pipeline.from_yaml(many_spec(root, f"{out}/many{steps}_pipeline", steps, args.many_rows))
        return lambda r: spec.run(spark)

    def many_hand(steps: int):
        return lambda r: many_by_hand(spark, root, f"{out}/many{steps}_pyspark", steps, args.many_rows)

    variants = {
        "selective_pyspark": lambda r: spark.read.parquet(f"{root}/orders").filter(f"order_id < {cut}")
        .write.mode("overwrite").parquet(f"{out}/selective_pyspark"),
        "selective_pipeline": selective,
        **{f"many{n}_pyspark": many_hand(n) for n in args.steps},
        **{f"many{n}_pipeline": many(n) for n in args.steps},
    }
    started = time.time()
    goals = {("selective_pipeline", "selective_pyspark"): GOALS["steps.selective_over_pyspark"],
             **{(f"many{n}_pipeline", f"many{n}_pyspark"): GOALS["steps.many_over_pyspark"] for n in args.steps}}
    times, cpu = interleaved(variants, args.repeats, warmup=args.warmup, pid=jvm_pid(spark), more=undecided(goals))
    assert spark.read.parquet(f"{out}/selective_pipeline").count() == cut
    medians = {n: summary(t) for n, t in times.items()}
    result: dict = {
        "selective_over_pyspark": medians["selective_pipeline"]["median"] / medians["selective_pyspark"]["median"],
        "selective_skipped": skipped,
        "paired": {"selective_over_pyspark": paired_ratio(times["selective_pipeline"], times["selective_pyspark"])},
        "interval": {"selective_over_pyspark": interval(times["selective_pipeline"], times["selective_pyspark"])},
        "many": {},
        "seconds": medians, "rows_in": data["orders"], "repeats": len(times["selective_pipeline"]),
        "wall_seconds": round(time.time() - started, 1), "machine": machine(spark),
    }
    for n in args.steps:
        pipe, hand = times[f"many{n}_pipeline"], times[f"many{n}_pyspark"]
        added = sorted((p - h) / (n + 4) for p, h in zip(pipe, hand))  # per step of the spec
        result["many"][str(n)] = {
            "pipeline_over_pyspark": medians[f"many{n}_pipeline"]["median"] / medians[f"many{n}_pyspark"]["median"],
            "paired": paired_ratio(pipe, hand), "interval": interval(pipe, hand), "added_ms_per_step": 1000 * added[len(added) // 2]}
    print(f"selective: pipeline/pyspark {result['selective_over_pyspark']:.3f} "
          f"(the extract skipped {skipped.get('files')} files, read {skipped.get('rows_read')} rows)")
    for n, m in result["many"].items():
        print(f"{n} steps: pipeline/pyspark {m['pipeline_over_pyspark']:.3f}, "
              f"{m['added_ms_per_step']:+.1f} ms a step")
    write_part("steps", result)
    spark.stop()
    return result


if __name__ == "__main__":
    main()
