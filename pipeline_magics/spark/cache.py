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


def cached_bytes(spark: Any, df: Any) -> int | None:
    """The bytes a cached DataFrame holds (memory and disk), from Spark's cache manager; None where the session
    will not say (Spark Connect) or ``df`` is not cached."""
    try:
        manager = spark._jsparkSession.sharedState().cacheManager()
        try:
            found = manager.lookupCachedData(df._jdf)  # Spark 4: by Dataset
        except Exception:  # noqa: BLE001 - Spark 3.5: by its analyzed plan
            found = manager.lookupCachedData(df._jdf.logicalPlan())
        if found.isEmpty():
            return None
        return int(found.get().cachedRepresentation().cacheBuilder().sizeInBytesStats().value())
    except Exception:  # noqa: BLE001 - no JVM of ours (Spark Connect), or a Spark that names these otherwise
        return None
