"""Load: many pipelines one after another in one kernel, several streaming pipelines at once.

Nothing may pile up: temp views, cached frames, streaming queries, listeners, Observations,
threads, the package's own registries; and after a warm-up the JVM heap (after a GC) and
Python's RSS stay flat. ``make test`` runs a short form (12 batch runs, 2 streams for 20 s);
``make soak`` the full one (``PIPELINE_LOAD=full``: 50 batch runs, 4 streams for 5 minutes),
and writes the figures to ``$PIPELINE_LOAD_REPORT`` as JSON. Both print them.
"""
from __future__ import annotations

import gc
import json
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import yaml

from pipeline_magics import Pipeline

FULL = os.environ.get("PIPELINE_LOAD", "").lower() == "full"
BATCH_RUNS = int(os.environ.get("PIPELINE_LOAD_BATCH_RUNS", 50 if FULL else 10))
WARM_UP = 3
STREAMS = int(os.environ.get("PIPELINE_LOAD_STREAMS", 4 if FULL else 2))
STREAM_SECONDS = float(os.environ.get("PIPELINE_LOAD_STREAM_SECONDS", 300 if FULL else 20))
REPORT = os.environ.get("PIPELINE_LOAD_REPORT")
DATA = os.path.join(os.path.dirname(__file__), os.pardir, "examples", "data")

#: generous bounds on growth after the warm-up (the figures themselves are printed and reported)
MAX_RSS_GROWTH_MB = 150
MAX_HEAP_GROWTH_MB = 120


# ------------------------------------------------------------------ measuring (test-only, py4j)


@dataclass
class Snapshot:
    """What the kernel holds at one moment."""

    label: str
    python_rss_mb: float
    jvm_heap_used_mb: float
    python_threads: int
    python_callback_threads: int
    jvm_threads: int
    jvm_threads_outside_pools: int
    active_queries: int
    temp_views: list[str]
    cached_relations: int
    persistent_rdds: int
    delta_state_rdds: int
    own_rdd_ids: frozenset[int]
    streaming_listeners: int
    sql_listeners: int
    spark_listeners: int
    pending_observations: int
    sql_executions_retained: int
    registry: dict[str, int] = field(default_factory=dict)
    python_thread_names: list[str] = field(default_factory=list)


def py4j_threads() -> int:
    """Threads serving calls from the JVM (listener callbacks): py4j keeps one per pooled connection."""
    return sum(1 for t in threading.enumerate()
               if type(getattr(getattr(t, "_target", None), "__self__", None)).__module__.startswith("py4j"))


def python_rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _private(obj: Any, name: str, jvm: Any) -> Any:
    """A private field of a JVM object (its class or a superclass), through Java reflection."""
    cls = obj.getClass()
    while cls is not None:
        try:
            f = cls.getDeclaredField(name)
            f.setAccessible(True)
            return f.get(obj)
        except Exception:  # noqa: BLE001 - not declared here: look in the superclass
            cls = cls.getSuperclass()
    return None


#: Spark's cached thread pools: they grow with the work at hand and their idle threads end after 60 s
POOLED_THREADS = ("broadcast-exchange-", "ResultQueryStageExecution-", "shuffle-exchange-", "QueryStageCreator-",
                  "subquery-", "Executor task launch worker", "block-manager-", "map-output-dispatcher-",
                  "task-result-getter-", "dag-scheduler-", "delta-", "spark-listener-group-")


def jvm_threads_outside_pools(jvm: Any) -> int:
    names = jvm.java.lang.Thread.getAllStackTraces().keySet().toArray()
    return sum(1 for t in names if not str(t.getName()).startswith(POOLED_THREADS))


def _size(value: Any) -> int:
    try:
        return len(value)
    except TypeError:
        return int(value.size())


def snapshot(spark: Any, label: str) -> Snapshot:
    """Measures the kernel: Python and JVM memory (after a GC in each), threads, Spark's state, our registries."""
    from pipeline_magics.run import engine
    from pipeline_magics.metrics.queries import QUERIES
    from pipeline_magics.methods.load import LEFTOVER_STAGING
    from pipeline_magics.run.streaming import REGISTRY

    jvm = spark.sparkContext._jvm
    gc.collect()
    jvm.java.lang.System.gc()
    time.sleep(0.2)
    mx = jvm.java.lang.management.ManagementFactory
    # live data: each heap pool's usage right after that GC (what running queries allocate since is not counted)
    heap = 0.0
    pools = mx.getMemoryPoolMXBeans()
    for i in range(pools.size()):
        pool = pools.get(i)
        after_gc = pool.getCollectionUsage()
        if str(pool.getType().name()) == "HEAP" and after_gc is not None:
            heap += after_gc.getUsed() / 2**20
    jss = spark._jsparkSession
    observations = -1
    try:
        manager = _private(jss, "observationManager", jvm)
        observations = _size(_private(manager, "observations", jvm))
    except Exception:  # noqa: BLE001 - another Spark version: not measured
        pass
    try:
        spark_listeners = _size(spark.sparkContext._jsc.sc().listenerBus().listeners())
    except Exception:  # noqa: BLE001
        spark_listeners = -1
    views = sorted(t.name for t in spark.catalog.listTables() if t.isTemporary)
    # Delta caches each table's state as a persisted RDD and drops it by itself (a newer version, memory):
    # counted apart from the RDDs a run persisted, which the run must release
    rdds = {int(key): rdd.name() or "" for key, rdd in spark.sparkContext._jsc.getPersistentRDDs().items()}
    own = frozenset(key for key, name in rdds.items() if not name.startswith("Delta Table State"))
    cache = jss.sharedState().cacheManager()
    cached = _private(cache, "cachedData", jvm)
    return Snapshot(
        label=label, python_rss_mb=round(python_rss_mb(), 1), jvm_heap_used_mb=round(heap, 1),
        python_threads=threading.active_count(), python_callback_threads=py4j_threads(),
        jvm_threads=mx.getThreadMXBean().getThreadCount(),
        jvm_threads_outside_pools=jvm_threads_outside_pools(jvm),
        active_queries=len(spark.streams.active), temp_views=views,
        cached_relations=_size(cached) if cached is not None else (0 if cache.isEmpty() else -1),
        persistent_rdds=len(own), delta_state_rdds=len(rdds) - len(own), own_rdd_ids=own,
        streaming_listeners=_size(jss.streams().listListeners()),
        sql_listeners=_size(jss.listenerManager().listListeners()),
        spark_listeners=spark_listeners, pending_observations=observations,
        sql_executions_retained=int(jss.sharedState().statusStore().executionsCount()),
        registry={"streaming runs": len(REGISTRY._runs), "query totals": len(QUERIES._runs),
                  "query states": len(QUERIES.states), "subscribers": len(QUERIES._subscribers),
                  "interrupt flags": len(engine._INTERRUPT_BEFORE), "leftover staging": len(LEFTOVER_STAGING)},
        python_thread_names=sorted(t.name for t in threading.enumerate()))


def table(snaps: list[Snapshot]) -> str:
    cols = ["label", "python_rss_mb", "jvm_heap_used_mb", "python_threads", "python_callback_threads", "jvm_threads",
            "jvm_threads_outside_pools",
            "active_queries",
            "cached_relations", "persistent_rdds", "delta_state_rdds", "streaming_listeners", "sql_listeners", "spark_listeners",
            "pending_observations", "sql_executions_retained"]
    rows = [["label", "py RSS MB", "JVM heap MB", "py thr", "py4j thr", "JVM thr", "JVM thr*", "queries", "cached", "RDDs", "Delta RDDs",
             "stream lsn", "sql lsn", "bus lsn", "obs", "UI execs"]]
    rows += [[str(getattr(s, c)) for c in cols] for s in snaps]
    widths = [max(len(r[i]) for r in rows) for i in range(len(cols))]
    return "\n".join("  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in rows)


def report(name: str, snaps: list[Snapshot], extra: dict[str, Any], capsys: Any) -> None:
    with capsys.disabled():
        print(f"\n--- load: {name} ---\n{table(snaps)}")
        for key, value in extra.items():
            print(f"{key}: {value}")
    if REPORT:
        data = json.load(open(REPORT)) if os.path.exists(REPORT) else {}
        data[name] = {"snapshots": [asdict(s) for s in snaps], **extra}
        with open(REPORT, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1)


# ------------------------------------------------------------------ batch


def batch_spec(i: int, lake: Any) -> str:
    """A pipeline with two reads, a cached frame, a join, an expectation, SQL over views and two sinks."""
    steps = [
        {"type": "extract", "method": "fromCsv", "name": "orders", "cache": True,
         "config": {"path": f"{DATA}/orders.csv", "header": True, "inferSchema": True}},
        {"type": "extract", "method": "fromCsv", "name": "customers",
         "config": {"path": f"{DATA}/customers.csv", "header": True, "inferSchema": True}},
        {"type": "transform", "method": "join", "name": "enriched", "input": "orders",
         "config": {"right": "customers", "on": ["customer_id"], "how": "left"}},
        {"type": "transform", "method": "expect", "name": "checked",
         "config": {"condition": "amount > 20", "onFail": "drop"}},
        {"type": "transform", "method": "sql", "name": "totals",
         "config": {"query": f"SELECT segment, country, count(*) AS n, round(sum(amount), 2) AS total, {i} AS run "
                             "FROM checked GROUP BY segment, country"}},
        {"type": "load", "method": "toDelta", "input": "totals",
         "config": {"path": str(lake / f"totals_{i % 4}"), "mode": "overwrite"}},
        {"type": "load", "method": "toParquet", "input": "checked",
         "config": {"path": str(lake / f"checked_{i % 4}"), "mode": "overwrite"}},
    ]
    return yaml.safe_dump({"name": f"load_batch_{i % 5}", "steps": steps}, sort_keys=False)


def test_many_batch_pipelines_one_after_another(spark, tmp_path, capsys):
    """BATCH_RUNS runs in one kernel: each run's views and caches go when it ends, and nothing grows."""
    lake = tmp_path / "lake"
    base = snapshot(spark, "before")
    snaps = [base]
    durations = []
    for i in range(BATCH_RUNS):
        started = time.monotonic()
        result = Pipeline.from_yaml(batch_spec(i, lake)).run(spark)
        durations.append(time.monotonic() - started)
        assert result.ok, result.metrics.error
        assert result.metrics.step("checked").failed_rows is not None
        if i == WARM_UP - 1:
            snaps.append(snapshot(spark, f"after {WARM_UP} (warm)"))
        elif (i + 1) % 10 == 0 or i == BATCH_RUNS - 1:
            snaps.append(snapshot(spark, f"after {i + 1}"))
        del result
    warm, last = snaps[1], snaps[-1]
    report("batch", snaps, {"runs": BATCH_RUNS, "seconds per run (median)": round(sorted(durations)[len(durations) // 2], 2),
                            "python RSS growth after warm-up (MB)": round(last.python_rss_mb - warm.python_rss_mb, 1),
                            "JVM heap growth after warm-up (MB)": round(last.jvm_heap_used_mb - warm.jvm_heap_used_mb, 1)},
           capsys)

    for s in snaps[1:]:  # released at the end of every run
        assert s.temp_views == base.temp_views, s
        # nothing a run persisted is left (what earlier tests left may be freed meanwhile by Spark's cleaner)
        assert s.cached_relations == base.cached_relations and s.own_rdd_ids <= base.own_rdd_ids, s
        assert s.active_queries == base.active_queries, s
    for key in ("streaming_listeners", "sql_listeners", "spark_listeners", "python_threads"):
        assert getattr(last, key) <= getattr(warm, key), (key, warm, last)
    assert last.pending_observations <= warm.pending_observations, (warm, last)
    assert last.jvm_threads_outside_pools <= warm.jvm_threads_outside_pools + 4, (warm, last)
    assert last.registry == warm.registry, (warm.registry, last.registry)
    assert last.python_rss_mb - warm.python_rss_mb < MAX_RSS_GROWTH_MB
    assert last.jvm_heap_used_mb - warm.jvm_heap_used_mb < MAX_HEAP_GROWTH_MB


# ------------------------------------------------------------------ streaming


def stream_spec(i: int, lake: Any) -> str:
    steps = [
        {"type": "extract", "method": "fromRate", "config": {"rowsPerSecond": 50, "numPartitions": 1}},
        {"type": "transform", "method": "withColumn", "config": {"column": "bucket", "expr": "value % 10"}},
        {"type": "transform", "method": "expect", "config": {"condition": "value >= 0", "onFail": "warn"}},
        {"type": "load", "method": "toDelta", "name": "sink",
         "config": {"path": str(lake / f"stream_{i}"), "checkpointLocation": str(lake / f"cp_{i}"),
                    "trigger": {"processingTime": "2 seconds"}}},
    ]
    return yaml.safe_dump({"name": f"load_stream_{i}", "mode": "streaming", "steps": steps}, sort_keys=False)


def run_streams(spark: Any, lake: Any, seconds: float, label: str, snaps: list[Snapshot]) -> list[Any]:
    """Starts STREAMS pipelines, measures every ``interval`` seconds while they run, stops them."""
    results = [Pipeline.from_yaml(stream_spec(i, lake)).run(spark) for i in range(STREAMS)]
    try:
        assert all(r.status == "running" for r in results), [r.metrics.error for r in results]
        started = time.monotonic()
        points = [min(10.0, seconds / 2)] + [seconds * k / 5 for k in range(1, 6) if seconds * k / 5 > 10.0]
        for at in points:
            time.sleep(max(0.0, at - (time.monotonic() - started)))
            snaps.append(snapshot(spark, f"{label} {time.monotonic() - started:.0f}s"))
            for r in results:
                assert r.queries[0].isActive, r.queries[0].exception()
    finally:
        for r in results:
            r.stop()
    time.sleep(1)
    snaps.append(snapshot(spark, f"{label} stopped"))
    return results


def test_streaming_pipelines_side_by_side(spark, tmp_path, capsys):
    """STREAMS pipelines at once for STREAM_SECONDS, then again (restarted from their checkpoints) for a
    third of that: they keep up, stop cleanly, and the second round leaves no more behind than the first."""
    from pipeline_magics.run.streaming import REGISTRY

    lake = tmp_path / "lake"
    base = snapshot(spark, "before")
    snaps = [base]
    first = run_streams(spark, lake, STREAM_SECONDS, "round 1", snaps)
    after_first = snaps[-1]
    rows_first = [spark.read.format("delta").load(str(lake / f"stream_{i}")).count() for i in range(STREAMS)]
    second = run_streams(spark, lake, max(10.0, STREAM_SECONDS / 3), "round 2", snaps)
    end = snaps[-1]
    rows = [spark.read.format("delta").load(str(lake / f"stream_{i}")).count() for i in range(STREAMS)]
    running = [s for s in snaps if s.label.startswith("round 1") and not s.label.endswith("stopped")]
    warm, last_running = running[0], running[-1]
    report("streaming", snaps, {
        "streams": STREAMS, "seconds": STREAM_SECONDS,
        "rows written per stream (after round 1, after round 2)": list(zip(rows_first, rows)),
        "batches per stream (round 1)": [(r.metrics.step("sink").progress or {}).get("batch_id")
                                         for r in first],
        "JVM heap growth while running (MB)": round(last_running.jvm_heap_used_mb - warm.jvm_heap_used_mb, 1),
        "python RSS growth while running (MB)": round(last_running.python_rss_mb - warm.python_rss_mb, 1),
        "persistent RDDs left (Delta's cached table states)": end.delta_state_rdds - base.delta_state_rdds}, capsys)

    assert all(0 < a < b for a, b in zip(rows_first, rows)), (rows_first, rows)
    assert end.active_queries == after_first.active_queries == base.active_queries == 0
    assert all(not REGISTRY.get(f"load_stream_{i}").active for i in range(STREAMS))
    assert all(r.status in ("cancelled", "done") for r in first + second), [r.status for r in first + second]
    assert end.temp_views == base.temp_views and end.cached_relations == base.cached_relations
    for key in ("streaming_listeners", "sql_listeners", "pending_observations"):
        assert getattr(end, key) <= getattr(after_first, key), (key, after_first, end)
    # Spark 4.0 itself: each query start clones the session, and once the session has a query execution
    # listener (the first Observation adds one) the clone's ExecutionListenerBus stays on the listener bus
    assert end.spark_listeners - after_first.spark_listeners <= STREAMS, (after_first, end)
    assert end.registry["streaming runs"] == after_first.registry["streaming runs"]  # one per pipeline name
    # py4j keeps a thread per pooled callback connection (as many as callbacks ran at once); others end
    # (the JVM closes a pooled connection after 30 s unused, and its thread ends)
    assert end.python_threads - end.python_callback_threads <= base.python_threads - base.python_callback_threads, \
        (base.python_thread_names, end.python_thread_names)
    assert end.python_callback_threads <= base.python_callback_threads + 2 * STREAMS + 2, end.python_thread_names
    assert end.jvm_threads_outside_pools <= after_first.jvm_threads_outside_pools + 2
    assert last_running.jvm_heap_used_mb - warm.jvm_heap_used_mb < MAX_HEAP_GROWTH_MB
    assert last_running.python_rss_mb - warm.python_rss_mb < MAX_RSS_GROWTH_MB
    assert end.jvm_heap_used_mb - after_first.jvm_heap_used_mb < MAX_HEAP_GROWTH_MB / 2
