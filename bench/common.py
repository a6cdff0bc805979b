"""What the benchmarks share: the session, the machine's description, timing and the results folder."""
from __future__ import annotations

import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from typing import Any, Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results")
#: what each comparison must stay within (ratios; the overheads as fractions)
GOALS = {"batch.pipeline_over_pyspark": 1.03, "batch.metrics_overhead": 0.02, "batch.lineage_overhead": 0.02, "streaming.pipeline_over_pyspark": 1.05,
         "scd.pipeline_over_pyspark": 1.05, "interactive.warm_ratio": 1.10, "interactive.warm_added_ms": 100,
         "interactive.cold_ratio": 1.05, "diff.pipeline_over_pyspark": 1.05,
         "steps.selective_over_pyspark": 1.03, "steps.many_over_pyspark": 1.05, "iterate.from_over_by_hand": 1.05}
#: generated data and scratch output (outside the repository; reused between runs)
WORK = os.environ.get("PIPELINE_BENCH_DIR", os.path.join(os.path.expanduser("~"), ".cache", "pipeline_magics_bench"))


def session(app: str) -> Any:
    """A local SparkSession on every core, with Delta and the Kafka connector (the package's own set-up)."""
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    from pipeline_magics.spark.session import builder_confs

    builder = SparkSession.builder.appName(app).master(os.environ.get("PIPELINE_BENCH_MASTER", "local[*]"))
    for key, value in {**builder_confs(), "spark.driver.memory": os.environ.get("PIPELINE_BENCH_MEMORY", "3g"),
                       "spark.ui.enabled": "false"}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def machine(spark: Any = None) -> dict[str, Any]:
    """The machine and software the figures were taken on."""
    cpu = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), "")
    except OSError:
        pass
    memory_gb = None
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh:
            kb = int(next(line.split()[1] for line in fh if line.startswith("MemTotal")))
            memory_gb = round(kb / 1024 / 1024, 1)
    except (OSError, StopIteration, ValueError):
        pass
    try:
        java = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=30).stderr.splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        java = ""
    import pyspark

    out = {"platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count(), "memory_gb": memory_gb,
           "python": sys.version.split()[0], "java": java, "pyspark": pyspark.__version__,
           "load_average": loadavg()}
    try:
        from importlib.metadata import version

        out["delta_spark"] = version("delta-spark")
    except Exception:  # noqa: BLE001
        pass
    if spark is not None:
        out["spark_master"] = spark.sparkContext.master
        out["shuffle_partitions"] = spark.conf.get("spark.sql.shuffle.partitions")
    return out


def jvm_pid(spark: Any) -> int | None:
    """The driver JVM's process id (pyspark starts it with spark-submit, which execs java)."""
    try:
        return int(spark.sparkContext._gateway.proc.pid)
    except Exception:  # noqa: BLE001
        return None


def cpu_seconds(pid: int | None) -> float:
    """CPU time (user + system) of this Python process and of process ``pid`` (the JVM, all its threads)."""
    total = time.process_time()
    if pid is not None:
        try:
            with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            pass
    return total


def wait_quiet(max_wait: float = float(os.environ.get("PIPELINE_BENCH_QUIET_WAIT", "20"))) -> None:
    """Waits (at most ``max_wait`` s) until the 1-minute load falls below the number of cores + 1:
    other work on the machine inflates wall times more than anything measured here."""
    deadline = time.time() + max_wait
    while time.time() < deadline and loadavg() and loadavg()[0] > (os.cpu_count() or 1) + 1:
        time.sleep(2)


def interleaved(variants: dict[str, Callable[[int], Any]], repeats: int, warmup: int = 1, pid: int | None = None,
                log: Callable[[str], None] = print, more: Callable[[dict[str, list[float]]], bool] | None = None,
                ) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Runs every variant ``repeats`` times, interleaved: round r starts at variant r (mod n), so that
    no variant is always first or last; ``warmup`` rounds first are not counted. While ``more`` says
    the rounds so far cannot tell (see :func:`undecided`), adds rounds, up to three times ``repeats``.

    Returns wall seconds and CPU seconds (this process + the JVM ``pid``) per variant.
    """
    names = list(variants)
    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    r = -warmup
    while r < repeats or (more is not None and r < 3 * repeats and more(wall)):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            wait_quiet()
            load = loadavg()
            cpu0, start = cpu_seconds(pid), time.perf_counter()
            variants[name](r)
            seconds, used = time.perf_counter() - start, cpu_seconds(pid) - cpu0
            log(f"  {'warm-up' if r < 0 else f'round {r + 1}'}: {name:<22} {seconds:7.2f}s wall "
                f"{used:7.2f}s cpu   load before {load}")
            if r >= 0:
                wall[name].append(seconds)
                cpu[name].append(used)
        r += 1
    return wall, cpu


def summary(times: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(times), "min": min(times), "max": max(times),
            "runs": [round(t, 4) for t in times]}


def paired_ratio(a: list[float], b: list[float]) -> float:
    """The median of the per-round ratios a/b (pairs taken in the same round)."""
    return statistics.median(x / y for x, y in zip(a, b))


def interval(a: list[float], b: list[float], draws: int = 2000) -> list[float]:
    """A 95 % bootstrap interval of the median per-round ratio a/b: the rounds resampled with
    replacement (a fixed seed, so the same rounds give the same interval)."""
    ratios = [x / y for x, y in zip(a, b)]
    rng = random.Random(0)
    medians = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(draws))
    return [round(medians[int(0.025 * draws)], 4), round(medians[int(0.975 * draws) - 1], 4)]


def undecided(goals: dict[tuple[str, str], float]) -> Callable[[dict[str, list[float]]], bool]:
    """For :func:`interleaved`: whether the interval of some ratio ``a/b`` still straddles its goal, so
    that more rounds are needed to call it met or missed."""
    def check(times: dict[str, list[float]]) -> bool:
        spans = [(interval(times[a], times[b]), goal) for (a, b), goal in goals.items() if len(times[a]) > 2]
        return any(low <= goal < high for (low, high), goal in spans)
    return check


def write_part(name: str, data: dict[str, Any]) -> str:
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, f"{name}.json")
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2)
    return path
