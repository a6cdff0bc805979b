"""Interactive: the quickstart as a ``%%pipeline`` cell against the same job by hand, warm and cold.

The quickstart (``examples/quickstart.yaml``): the 200-row orders CSV, filterRows, aggregate,
toDelta overwrite. Warm: one session, the cell (an IPython shell, widgets off) and the job in
PySpark interleaved after warm-up rounds, each overwriting its own table; the ratio and the
milliseconds the cell adds (median of the per-round differences). Cold: each round two fresh
processes, the first cell (``%load_ext``, then ``%%pipeline``, which creates the session) and
a session built by hand with the same confs running the same job; seconds from the process
start (and from the interpreter's start) until the job is done.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

from .common import (GOALS, ROOT, WORK, cpu_seconds, interleaved, interval, jvm_pid, loadavg, machine, paired_ratio,
                     session, summary, undecided, write_part)

SPEC = os.path.join(ROOT, "examples", "quickstart.yaml")
DATA = os.path.join(ROOT, "examples", "data")
TABLE = "revenue_by_country"


def read_lines(path: str) -> list[str]:
    with open(path, encoding="utf-8") as fh:
        return fh.readlines()


def by_hand(spark, data: str, out: str) -> None:
    """The quickstart, written in PySpark."""
    from pyspark.sql import functions as F

    (spark.read.options(header="true", inferSchema="true").csv(f"{data}/orders.csv")
     .filter("amount > 10")
     .groupBy("country").agg(F.expr("count(*)").alias("orders"), F.expr("round(sum(amount), 2)").alias("revenue"))
     .write.format("delta").mode("overwrite").save(out))


def shell():
    """An IPython shell with the extension loaded (as ``%load_ext pipeline_magics`` does)."""
    from IPython.core.interactiveshell import InteractiveShell

    ipython = InteractiveShell.instance()
    ipython.run_line_magic("load_ext", "pipeline_magics")
    return ipython


def cell(ipython, spec: str, lake: str):
    """The quickstart as a ``%%pipeline`` cell, its vars pointed at ``lake``."""
    return ipython.run_cell_magic("pipeline", f"--no-widgets --var data_dir={DATA} --var lake={lake}", spec)


def cold_child(kind: str, lake: str, confs: str) -> None:
    """One cold round in this fresh process; prints when it started and when the job was done."""
    started = time.time()
    spec = "".join(read_lines(SPEC))
    if kind == "pipeline":
        cell(shell(), spec, lake)
        from pyspark.sql import SparkSession

        spark = SparkSession.getActiveSession()
    else:
        from IPython.core.interactiveshell import InteractiveShell
        from pyspark.sql import SparkSession

        InteractiveShell.instance()  # the kernel's, there before any cell
        builder = SparkSession.builder.appName("pipeline_magics").master("local[*]")
        for key, value in json.loads(confs).items():
            builder = builder.config(key, value)
        spark = builder.getOrCreate()
        spark.sparkContext.setLogLevel("ERROR")
        by_hand(spark, DATA, os.path.join(lake, TABLE))
    done = time.time()
    print(json.dumps({"started": started, "done": done, "cpu": cpu_seconds(jvm_pid(spark))}))


def cold(repeats: int) -> dict:
    """Each round: a fresh process per variant, into a fresh table (Delta's first commit)."""
    from pipeline_magics.spark.session import builder_confs

    confs = json.dumps(builder_confs())  # what the magic's own session is built with
    out = os.path.join(WORK, "interactive_cold")
    figures: dict[str, dict[str, list[float]]] = {n: {"total": [], "after_interpreter": [], "cpu": []}
                                                  for n in ("pyspark", "pipeline")}

    def child(kind: str):
        def go(r: int) -> None:
            lake = os.path.join(out, kind)
            shutil.rmtree(lake, ignore_errors=True)
            started = time.time()
            proc = subprocess.run([sys.executable, "-m", "bench.interactive", "--cold-child", kind, "--lake", lake,
                                   "--confs", confs], cwd=ROOT, capture_output=True, text=True)
            if proc.returncode:
                raise RuntimeError(f"cold {kind} round failed:\n{proc.stderr[-3000:]}")
            times = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"    {kind}: {times['done'] - started:.2f}s from process start to done, "
                  f"{times['done'] - times['started']:.2f}s from interpreter start")
            if r >= 0:
                figures[kind]["total"].append(times["done"] - started)
                figures[kind]["after_interpreter"].append(times["done"] - times["started"])
                figures[kind]["cpu"].append(times["cpu"])
        return go

    interleaved({"pyspark": child("pyspark"), "pipeline": child("pipeline")}, repeats, warmup=1,
                more=undecided({("pipeline", "pyspark"): GOALS["interactive.cold_ratio"]}))
    return figures


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=int(os.environ.get("PIPELINE_BENCH_REPEATS", "7")))
    parser.add_argument("--cold-repeats", type=int, default=int(os.environ.get("PIPELINE_BENCH_COLD_REPEATS", "4")))
    parser.add_argument("--cold-child", choices=["pyspark", "pipeline"], help=argparse.SUPPRESS)
    parser.add_argument("--lake", help=argparse.SUPPRESS)
    parser.add_argument("--confs", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cold_child:
        cold_child(args.cold_child, args.lake, args.confs)
        return None

    started, load = time.time(), {"start": loadavg()}
    print("cold: the first cell in a fresh process")
    c = cold(args.cold_repeats)

    print("warm: one session")
    spark = session("bench_interactive")
    ipython = shell()
    spec = "".join(read_lines(SPEC))
    out = os.path.join(WORK, "interactive_warm")
    shutil.rmtree(out, ignore_errors=True)
    lakes = {name: os.path.join(out, name) for name in ("pyspark", "pipeline")}
    rows: dict[str, int] = {}

    def pipeline(r: int) -> None:
        rows["pipeline"] = cell(ipython, spec, lakes["pipeline"]).metrics.rows_written

    variants = {"pyspark": lambda r: by_hand(spark, DATA, os.path.join(lakes["pyspark"], TABLE)),
                "pipeline": pipeline}
    # three warm-up rounds: the JVM goes on compiling the hot code for the first few runs
    times, cpu = interleaved(variants, args.repeats, warmup=3, pid=jvm_pid(spark),
                             more=undecided({("pipeline", "pyspark"): GOALS["interactive.warm_ratio"]}))
    tables = {n: sorted(spark.read.format("delta").load(os.path.join(p, TABLE)).collect()) for n, p in lakes.items()}
    assert tables["pyspark"] == tables["pipeline"] and rows["pipeline"] == len(tables["pipeline"]), (tables, rows)
    load["end"] = loadavg()
    medians = {n: summary(t) for n, t in times.items()}
    cpu_medians = {n: summary(t) for n, t in cpu.items()}
    added = summary([(p - h) * 1000 for p, h in zip(times["pipeline"], times["pyspark"])])
    cold_seconds = {n: summary(f["total"]) for n, f in c.items()}
    after_interpreter = {n: summary(f["after_interpreter"]) for n, f in c.items()}
    cold_cpu = {n: summary(f["cpu"]) for n, f in c.items()}
    result = {
        "warm_ratio": medians["pipeline"]["median"] / medians["pyspark"]["median"],
        "warm_added_ms": added["median"],
        "cold_ratio": cold_seconds["pipeline"]["median"] / cold_seconds["pyspark"]["median"],
        "paired": {"warm_ratio": paired_ratio(times["pipeline"], times["pyspark"]),
                   "cold_ratio": paired_ratio(c["pipeline"]["total"], c["pyspark"]["total"]),
                   "cold_after_interpreter_ratio": paired_ratio(c["pipeline"]["after_interpreter"],
                                                                c["pyspark"]["after_interpreter"])},
        "interval": {"warm_ratio": interval(times["pipeline"], times["pyspark"]),
                     "cold_ratio": interval(c["pipeline"]["total"], c["pyspark"]["total"])},
        "cpu": {"warm_ratio": cpu_medians["pipeline"]["median"] / cpu_medians["pyspark"]["median"],
                "cold_ratio": cold_cpu["pipeline"]["median"] / cold_cpu["pyspark"]["median"],
                "seconds": {"warm": cpu_medians, "cold": cold_cpu}},
        "seconds": {"warm": medians, "cold": cold_seconds, "cold_after_interpreter": after_interpreter},
        "added_ms": added,
        "rows_in": len(read_lines(os.path.join(DATA, "orders.csv"))) - 1,
        "rows_written": rows["pipeline"], "repeats": len(times["pipeline"]), "cold_repeats": len(c["pipeline"]["total"]),
        "load_average": load,
        "wall_seconds": round(time.time() - started, 1),
        "machine": machine(spark),
    }
    print(f"interactive: warm pipeline/pyspark {result['warm_ratio']:.3f} ({result['warm_added_ms']:+.0f} ms), "
          f"cold {result['cold_ratio']:.3f} ({cold_seconds['pipeline']['median']:.2f}s vs "
          f"{cold_seconds['pyspark']['median']:.2f}s)")
    write_part("interactive", result)
    spark.stop()
    return result


if __name__ == "__main__":
    main()
