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

from .common import GOALS, RESULTS, ROOT, loadavg



def run_part(module: str, extra: list[str]) -> dict:
    """Runs ``python -m bench.<module>`` in a fresh process (one JVM per comparison) and reads its result."""
    subprocess.run([sys.executable, "-m", f"bench.{module}", *extra], cwd=ROOT, check=True)
    with open(os.path.join(RESULTS, f"{module}.json"), encoding="utf-8") as fh:
        return json.load(fh)


def figures(latest: dict) -> list[tuple[str, str, float, list | None, str]]:
    """Each goal's figures: (label, goal key, per-round median, its 95 % interval, medians)."""
    rows = []

    def add(label: str, part: str, key: str, goal: str, detail: str, entry: dict | None = None) -> None:
        entry = entry or latest[part]
        paired = entry["paired"][key] if isinstance(entry["paired"], dict) else entry["paired"]
        span = entry.get("interval")
        span = span.get(key) if isinstance(span, dict) else span
        rows.append((label, goal, paired, span, detail))

    b, s = latest["batch"], latest["streaming"]
    sec = b["seconds"]
    add("batch: Pipeline.run / PySpark (wall)", "batch", "pipeline_over_pyspark", "batch.pipeline_over_pyspark",
        f"{sec['pipeline']['median']:.2f}s vs {sec['pyspark']['median']:.2f}s")
    add("batch: metrics on / off - 1 (wall)", "batch", "metrics_overhead", "batch.metrics_overhead",
        f"{sec['pipeline']['median']:.2f}s vs {sec['pipeline_no_metrics']['median']:.2f}s")
    if "lineage_overhead" in b:
        add("batch: lineage on / off - 1 (wall)", "batch", "lineage_overhead", "batch.lineage_overhead",
            f"{sec['pipeline_lineage']['median']:.2f}s vs {sec['pipeline']['median']:.2f}s")
    rate = s["records_per_second"]
    add("streaming: PySpark / pipeline rec/s", "streaming", "pipeline_over_pyspark", "streaming.pipeline_over_pyspark",
        f"{rate['pyspark']['median']:,.0f} vs {rate['pipeline']['median']:,.0f} rec/s")
    if "scd" in latest:
        rate = latest["scd"]["rows_per_second"]
        add("scd2: Pipeline.run / PySpark MERGE (wall)", "scd", "pipeline_over_pyspark", "scd.pipeline_over_pyspark",
            f"{rate['pipeline']['median']:,.0f} vs {rate['pyspark']['median']:,.0f} changes/s")
    if "diff" in latest:
        rate = latest["diff"]["rows_per_second"]
        add("diff: run.diff.compare / PySpark (wall)", "diff", "pipeline_over_pyspark", "diff.pipeline_over_pyspark",
            f"{rate['pipeline']['median']:,.0f} vs {rate['pyspark']['median']:,.0f} rows/s")
    if "interactive" in latest:
        i = latest["interactive"]
        warm, cold = i["seconds"]["warm"], i["seconds"]["cold"]
        add("quickstart warm: cell / PySpark (wall)", "interactive", "warm_ratio", "interactive.warm_ratio",
            f"{warm['pipeline']['median']:.2f}s vs {warm['pyspark']['median']:.2f}s; "
            f"{i['warm_added_ms']:+.0f} ms a cell (goal < {GOALS['interactive.warm_added_ms']} ms)")
        add("quickstart cold: first cell / PySpark", "interactive", "cold_ratio", "interactive.cold_ratio",
            f"{cold['pipeline']['median']:.2f}s vs {cold['pyspark']['median']:.2f}s from process start")
    if "steps" in latest:
        t = latest["steps"]
        add("selective Parquet filter: pipeline / PySpark", "steps", "selective_over_pyspark",
            "steps.selective_over_pyspark", f"{t['seconds']['selective_pipeline']['median']:.2f}s vs "
            f"{t['seconds']['selective_pyspark']['median']:.2f}s")
        for n, m in t["many"].items():
            add(f"{n} chained steps: pipeline / PySpark", "steps", "", "steps.many_over_pyspark",
                f"{m['added_ms_per_step']:+.1f} ms a step", entry=m)
    if "iterate" in latest:
        sec = latest["iterate"]["seconds"]
        add("--from last step / by hand, cached input", "iterate", "from_over_by_hand", "iterate.from_over_by_hand",
            f"{sec['pipeline']['median']:.2f}s vs {sec['pyspark']['median']:.2f}s")
    return rows


def verdict(goal: float, value: float, span: list | None) -> str:
    """'yes' when the interval's upper end is within the goal, 'NO' when its lower end is over it,
    '?' when it straddles the goal (more rounds, ``--repeats``, can tell)."""
    low, high = span or (value, value)
    return "yes" if high <= goal else "NO" if low > goal else "?"


def met(latest: dict) -> dict[str, bool]:
    out: dict[str, bool] = {}
    for _label, key, value, span, _detail in figures(latest):
        out[key] = out.get(key, True) and verdict(GOALS[key], value, span) == "yes"
    if "interactive" in latest:
        out["interactive.warm_added_ms"] = latest["interactive"]["warm_added_ms"] < GOALS["interactive.warm_added_ms"]
    return out


def table(latest: dict) -> str:
    out = [f"{'comparison':<44} {'value':>8} {'95% interval':>17} {'goal':>7}  {'met':<3} medians"]
    for label, key, value, span, detail in figures(latest):
        overhead = "overhead" in key
        goal = GOALS[key]
        shown = (lambda x: f"{x:+.2%}") if overhead else (lambda x: f"{x:.3f}")
        ok = verdict(goal, value, span)
        limit = "≤" + (f"{goal:.0%}" if overhead else f"{goal:.2f}")
        between = f"{shown(span[0])} to {shown(span[1])}" if span else "—"
        out.append(f"{label:<44} {shown(value):>8} {between:>17} {limit:>7}  {ok:<3} {detail}")
    b, s = latest["batch"], latest["streaming"]
    out.append(f"CPU time (JVM + Python): batch {b['cpu']['pipeline_over_pyspark']:.3f}, metrics "
               f"{b['cpu']['metrics_overhead']:+.2%}, streaming {s['cpu']['pipeline_over_pyspark']:.3f}  "
               f"(load average during the runs: {latest['load_average']})")
    out.append("value: the median of the per-round ratios; met: yes when its interval is within the goal, "
               "? when the interval straddles it (raise --repeats)")
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
        **{name: {k: v for k, v in part.items() if k not in ("machine", "wall_seconds", "load_average")}
           for name, part in parts.items()},
        "goals": GOALS,
        "met": {},
        "machine": {**b["machine"], "kafka": s["machine"].get("kafka")},
        "load_average": load,
        "wall_seconds": round(time.time() - started, 1),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    latest["met"] = met(latest)
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "latest.json"), "w", encoding="utf-8") as fh:
        json.dump(latest, fh, indent=2)
    print()
    print(table(latest))
    print(f"\nwritten to {os.path.relpath(os.path.join(RESULTS, 'latest.json'), ROOT)}")


if __name__ == "__main__":
    main()
