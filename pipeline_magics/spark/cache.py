"""Caching a DataFrame without the session clone Spark's cache makes for it."""
from __future__ import annotations

from typing import Any

#: the confs Spark's CacheManager turns off in a clone of the session to plan a cached query
CACHE_CONFS_OFF = ("spark.sql.sources.bucketing.autoBucketedScan.enabled",
                   "spark.sql.adaptive.applyFinalStageShuffleOptimizations")


def persist(spark: Any, df: Any, level: str = "MEMORY_AND_DISK") -> Any:
    """``df.persist(level)`` without the session clone Spark makes for it.

    Spark's CacheManager plans a cached query in a clone of the session with ``CACHE_CONFS_OFF``
    off, unless they are off already. Each clone leaves an ``ExecutionListenerBus`` on the
    SparkContext's listener bus for good (about 240 KB of heap and one more listener every event
    goes to, per cached step and run). They are set off on the session for the call instead.
    """
    from pyspark import StorageLevel

    previous = {key: conf_get(spark, key) for key in CACHE_CONFS_OFF}
    try:
        for key in CACHE_CONFS_OFF:
            spark.conf.set(key, "false")
        return df.persist(getattr(StorageLevel, level))
    finally:
        for key, value in previous.items():
            spark.conf.unset(key) if value is None else spark.conf.set(key, value)


def conf_get(spark: Any, key: str) -> str | None:
    """A runtime conf's value, None when unset (or when the session will not say)."""
    try:
        return spark.conf.get(key, None)
    except Exception:  # noqa: BLE001
        return None



def hold(spark: Any, frames: list[Any]) -> list[Any]:
    """Each of ``frames`` computed now and held by the executors as a local checkpoint, whose plan no longer
    reads the sources (a Delta source moved away since, or changed, is never looked at again). They are cached
    for the while, so that the sources are read once for all of them, each later frame reading the earlier
    ones' caches. Where a session has no local checkpoints (Spark Connect 3.5) the caches are what is held."""
    cached = [persist(spark, df) for df in frames]
    try:
        held = [df.localCheckpoint(eager=True) for df in cached]
    except Exception:  # noqa: BLE001 - no localCheckpoint here: the caches stay
        return cached
    for df in cached:
        df.unpersist()
    return held


def _held_rdd(df: Any) -> Any:
    """The RDD a local checkpoint's plan reads (classic sessions), else None."""
    try:
        plan = df._jdf.queryExecution().analyzed()
        return plan.rdd() if plan.getClass().getSimpleName() == "LogicalRDD" else None
    except Exception:  # noqa: BLE001 - no JVM of ours (Spark Connect)
        return None


def held_bytes(spark: Any, df: Any) -> int | None:
    """The bytes a frame ``hold`` made occupies in the executors (memory and disk); None where Spark will not say."""
    rdd = _held_rdd(df)
    try:
        if rdd is None:  # a cached frame
            found = spark._jsparkSession.sharedState().cacheManager().lookupCachedData(df._jdf)
            return None if found.isEmpty() else int(
                found.get().cachedRepresentation().cacheBuilder().sizeInBytesStats().value())
        infos = spark.sparkContext._jsc.sc().getRDDStorageInfo()
        return next((int(i.memSize() + i.diskSize()) for i in infos if i.id() == rdd.id()), None)
    except Exception:  # noqa: BLE001 - Spark Connect, or a Spark that names these otherwise
        return None


def release(df: Any) -> None:
    """Frees what ``hold`` made of ``df`` (on Spark Connect the server frees a checkpoint with its DataFrame)."""
    rdd = _held_rdd(df)
    try:
        rdd.unpersist(False) if rdd is not None else df.unpersist()
    except Exception:  # noqa: BLE001 - a session stopped since: nothing left to free
        pass
