"""``make bench``: the batch, the streaming, the SCD2, the interactive, the step-rows and the iterate comparison,
each in its own process, then one summary.

Writes ``bench/results/latest.json`` and prints a short table. Goals: batch
pipeline/PySpark at most 1.03, metrics overhead at most 2 %, streaming
PySpark/pipeline throughput at most 1.05, SCD2 pipeline/hand-written MERGE at most 1.05,
the quickstart as a ``%%pipeline`` cell on a warm session at most 1.10 and under 100 ms more
than by hand, and as the first cell of a fresh process at most 1.05; a selective filter over Parquet at most
1.03, and 50 and 200 chained steps at most 1.05 (with the time added per step); a diff of two versions of a
1-million-row table (5% changed) at most 1.05 of the same diff by hand; ``--from`` the batch pipeline's last step
on the outputs ``--until`` kept at most 1.05 of that step by hand on a cached input.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from .common import RESULTS, ROOT, loadavg

GOALS = {"batch.pipeline_over_pyspark": 1.03, "batch.metrics_overhead": 0.02, "batch.lineage_overhead": 0.02, "streaming.pipeline_over_pyspark": 1.05,
         "scd.pipeline_over_pyspark": 1.05, "interactive.warm_ratio": 1.10, "interactive.warm_added_ms": 100,
         "interactive.cold_ratio": 1.05, "diff.pipeline_over_pyspark": 1.05,
         "steps.selective_over_pyspark": 1.03, "steps.many_over_pyspark": 1.05, "iterate.from_over_by_hand": 1.05}


def run_part(module: str, extra: list[str]) -> dict:
    """Runs ``python -m bench.<module>`` in a fresh process (one JVM per comparison) and reads its result."""
    subprocess.run([sys.executable, "-m", f"bench.{module}", *extra], cwd=ROOT, check=True)
    with open(os.path.join(RESULTS, f"{module}.json"), encoding="utf-8") as fh:
        return json.load(fh)


def table(latest: dict) -> str:
    b, s = latest["batch"], latest["streaming"]
    rows = [
        ("batch: Pipeline.run / PySpark (wall)", b["pipeline_over_pyspark"], GOALS["batch.pipeline_over_pyspark"],
         f"{b['seconds']['pipeline']['median']:.2f}s vs {b['seconds']['pyspark']['median']:.2f}s"),
        ("batch: metrics on / off - 1 (wall)", b["metrics_overhead"], GOALS["batch.metrics_overhead"],
         f"{b['seconds']['pipeline']['median']:.2f}s vs {b['seconds']['pipeline_no_metrics']['median']:.2f}s"),
        ("streaming: PySpark / pipeline rec/s", s["pipeline_over_pyspark"], GOALS["streaming.pipeline_over_pyspark"],
         f"{s['records_per_second']['pyspark']['median']:,.0f} vs {s['records_per_second']['pipeline']['median']:,.0f} rec/s"),
    ]
    if "lineage_overhead" in b:
        rows.insert(2, ("batch: lineage on / off - 1 (wall)", b["lineage_overhead"], GOALS["batch.lineage_overhead"],
                        f"{b['seconds']['pipeline_lineage']['median']:.2f}s vs {b['seconds']['pipeline']['median']:.2f}s"))
    if "scd" in latest:
        c = latest["scd"]
        rows.append(("scd2: Pipeline.run / PySpark MERGE (wall)", c["pipeline_over_pyspark"],
                     GOALS["scd.pipeline_over_pyspark"], f"{c['rows_per_second']['pipeline']['median']:,.0f} vs "
                     f"{c['rows_per_second']['pyspark']['median']:,.0f} changes/s"))
    if "diff" in latest:
        d = latest["diff"]
        rows.append(("diff: run.diff.compare / PySpark (wall)", d["pipeline_over_pyspark"],
                     GOALS["diff.pipeline_over_pyspark"], f"{d['rows_per_second']['pipeline']['median']:,.0f} vs "
                     f"{d['rows_per_second']['pyspark']['median']:,.0f} rows/s"))
    if "interactive" in latest:
        i = latest["interactive"]
        warm, cold = i["seconds"]["warm"], i["seconds"]["cold"]
        rows += [("quickstart warm: cell / PySpark (wall)", i["warm_ratio"], GOALS["interactive.warm_ratio"],
                  f"{warm['pipeline']['median']:.2f}s vs {warm['pyspark']['median']:.2f}s"),
                 ("quickstart warm: cell - PySpark (ms)", i["warm_added_ms"], GOALS["interactive.warm_added_ms"],
                  f"per round {i['added_ms']['min']:+.0f} to {i['added_ms']['max']:+.0f} ms"),
                 ("quickstart cold: first cell / PySpark", i["cold_ratio"], GOALS["interactive.cold_ratio"],
                  f"{cold['pipeline']['median']:.2f}s vs {cold['pyspark']['median']:.2f}s from process start")]
    if "steps" in latest:
        t = latest["steps"]
        rows.append(("selective Parquet filter: pipeline / PySpark", t["selective_over_pyspark"],
                     GOALS["steps.selective_over_pyspark"], f"{t['seconds']['selective_pipeline']['median']:.2f}s vs "
                     f"{t['seconds']['selective_pyspark']['median']:.2f}s"))
        rows += [(f"{n} chained steps: pipeline / PySpark", m["pipeline_over_pyspark"], GOALS["steps.many_over_pyspark"],
                  f"{m['added_ms_per_step']:+.1f} ms a step") for n, m in t["many"].items()]
    if "iterate" in latest:
        it = latest["iterate"]
        rows.append(("--from last step / by hand, cached input", it["from_over_by_hand"],
                     GOALS["iterate.from_over_by_hand"], f"{it['seconds']['pipeline']['median']:.2f}s vs "
                     f"{it['seconds']['pyspark']['median']:.2f}s"))
    out = [f"{'comparison':<40} {'value':>8} {'goal':>7}  {'ok':<3} medians"]
    for name, value, goal, detail in rows:
        if "(ms)" in name:
            shown, limit, ok = f"{value:+.0f}", f"<{goal:.0f}", value < goal
        else:
            percent = "metrics" in name or "lineage" in name
            shown = f"{value:+.2%}" if percent else f"{value:.3f}"
            limit, ok = "≤" + (f"{goal:.0%}" if percent else f"{goal:.2f}"), value <= goal
        out.append(f"{name:<40} {shown:>8} {limit:>7}  {'yes' if ok else 'NO':<3} {detail}")
    out.append(f"CPU time (JVM + Python): batch {b['cpu']['pipeline_over_pyspark']:.3f}, metrics "
               f"{b['cpu']['metrics_overhead']:+.2%}, streaming {s['cpu']['pipeline_over_pyspark']:.3f}  "
               f"(load average during the runs: {latest['load_average']})")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", choices=["batch", "streaming", "scd", "interactive", "diff", "steps",
                                                       "iterate"], help="run one comparison (the "
                        "others are read from their last result)")
    args, extra = parser.parse_known_args(argv)
    started, load = time.time(), {"start": loadavg()}
    parts = {}
    for module in ("batch", "streaming", "scd", "interactive", "diff", "steps", "iterate"):
        if args.only in (None, module):
            parts[module] = run_part(module, extra)
        elif os.path.exists(os.path.join(RESULTS, f"{module}.json")):
            with open(os.path.join(RESULTS, f"{module}.json"), encoding="utf-8") as fh:
                parts[module] = json.load(fh)
    load["end"] = loadavg()
    b, s = parts["batch"], parts["streaming"]
    latest = {
        "batch": {k: b[k] for k in ("pipeline_over_pyspark", "metrics_overhead", "lineage_overhead", "paired", "cpu",
                                    "seconds", "rows_in", "rows_written", "repeats") if k in b},
        "streaming": {k: s[k] for k in ("pipeline_over_pyspark", "paired", "cpu", "records_per_second", "seconds",
                                        "records", "records_per_batch", "partitions", "repeats")},
        **({"scd": {k: parts["scd"][k] for k in ("pipeline_over_pyspark", "paired", "cpu", "rows_per_second",
                                                  "seconds", "changes", "keys", "repeats")}} if "scd" in parts else {}),
        **({"interactive": {k: parts["interactive"][k] for k in (
            "warm_ratio", "warm_added_ms", "cold_ratio", "paired", "cpu", "seconds", "added_ms", "rows_in",
            "rows_written", "repeats", "cold_repeats")}} if "interactive" in parts else {}),
        **({"diff": {k: parts["diff"][k] for k in ("pipeline_over_pyspark", "paired", "cpu", "rows_per_second",
                                                    "seconds", "rows", "counts", "repeats")}} if "diff" in parts else {}),
        **({"steps": {k: parts["steps"][k] for k in ("selective_over_pyspark", "selective_skipped", "paired", "many",
                                                      "seconds", "rows_in", "repeats")}} if "steps" in parts else {}),
        **({"iterate": {k: parts["iterate"][k] for k in ("from_over_by_hand", "paired", "cpu", "seconds",
                                                          "until_seconds", "rows_written", "repeats")}}
           if "iterate" in parts else {}),
        "goals": GOALS,
        "met": {"batch.pipeline_over_pyspark": b["pipeline_over_pyspark"] <= GOALS["batch.pipeline_over_pyspark"],
                "batch.metrics_overhead": b["metrics_overhead"] <= GOALS["batch.metrics_overhead"],
                **({"batch.lineage_overhead": b["lineage_overhead"] <= GOALS["batch.lineage_overhead"]}
                   if "lineage_overhead" in b else {}),
                "streaming.pipeline_over_pyspark": s["pipeline_over_pyspark"] <= GOALS["streaming.pipeline_over_pyspark"],
                **({"scd.pipeline_over_pyspark": parts["scd"]["pipeline_over_pyspark"] <= GOALS["scd.pipeline_over_pyspark"]}
                   if "scd" in parts else {}),
                **({"interactive.warm_ratio": parts["interactive"]["warm_ratio"] <= GOALS["interactive.warm_ratio"],
                    "interactive.warm_added_ms": parts["interactive"]["warm_added_ms"] < GOALS["interactive.warm_added_ms"],
                    "interactive.cold_ratio": parts["interactive"]["cold_ratio"] <= GOALS["interactive.cold_ratio"]}
                   if "interactive" in parts else {}),
                **({"diff.pipeline_over_pyspark": parts["diff"]["pipeline_over_pyspark"]
                    <= GOALS["diff.pipeline_over_pyspark"]} if "diff" in parts else {}),
                **({"steps.selective_over_pyspark": parts["steps"]["selective_over_pyspark"]
                    <= GOALS["steps.selective_over_pyspark"],
                    "steps.many_over_pyspark": all(m["pipeline_over_pyspark"] <= GOALS["steps.many_over_pyspark"]
                                                   for m in parts["steps"]["many"].values())}
                   if "steps" in parts else {}),
                **({"iterate.from_over_by_hand": parts["iterate"]["from_over_by_hand"]
                    <= GOALS["iterate.from_over_by_hand"]} if "iterate" in parts else {})},
        "machine": {**b["machine"], "kafka": s["machine"].get("kafka")},
        "load_average": load,
        "wall_seconds": round(time.time() - started, 1),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "latest.json"), "w", encoding="utf-8") as fh:
        json.dump(latest, fh, indent=2)
    print()
    print(table(latest))
    print(f"\nwritten to {os.path.relpath(os.path.join(RESULTS, 'latest.json'), ROOT)}")


if __name__ == "__main__":
    main()
