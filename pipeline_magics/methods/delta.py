"""Delta Lake operations in SQL, so they work on classic sessions and on Spark Connect alike.

The Python ``DeltaTable`` API needs Delta's Connect plugin on a Connect server;
``MERGE INTO`` and ``DESCRIBE HISTORY`` only need the Delta SQL extension.
"""
from __future__ import annotations

import uuid
from typing import Any

from ..metrics.sources import add_figures
from .registry import session_conf

USER_METADATA = "spark.databricks.delta.commitInfo.userMetadata"


def table_ref(path: str | None, table: str | None) -> str:
    """``db.table`` or ``delta.`/the/path```."""
    return table if table else "delta.`" + (path or "").replace("`", "``") + "`"


def exists(spark: Any, path: str | None, table: str | None) -> bool:
    """True when the Delta table is there."""
    if table:
        return bool(spark.catalog.tableExists(table))
    try:
        spark.sql(f"DESCRIBE HISTORY {table_ref(path, None)} LIMIT 1").collect()
        return True
    except Exception:  # noqa: BLE001 - not a Delta table (yet)
        return False


def user_metadata(spark: Any, marker: str) -> Any:
    """Tags the commits made inside the block with ``marker`` (for finding their metrics)."""
    return session_conf(spark, USER_METADATA, marker)


def merge(source: Any, path: str | None, table: str | None, keys: list[str]) -> None:
    """Upserts ``source`` into the table on ``keys`` (NULL-safe equality)."""
    spark = source.sparkSession
    view = f"pipeline_magics_merge_{uuid.uuid4().hex[:12]}"
    on = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in keys)
    source.createOrReplaceTempView(view)
    try:
        spark.sql(f"MERGE INTO {table_ref(path, table)} AS t USING {view} AS s ON {on} "
                  "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *")
    finally:
        spark.catalog.dropTempView(view)


def commit_metrics(spark: Any, path: str | None, table: str | None, marker: str,
                   latest_only: bool = False) -> dict[str, int] | None:
    """The ``operationMetrics`` and version of the recent commit tagged ``marker`` (added up over
    consecutive commits with that marker; ``first_version`` is the first of them); with ``latest_only``
    only when the latest commit is one of them."""
    history = spark.sql(f"DESCRIBE HISTORY {table_ref(path, table)} LIMIT 20")
    found = None
    for i, row in enumerate(history.select("version", "userMetadata", "operationMetrics").collect()):
        if latest_only and i == 0 and row["userMetadata"] != marker:
            return None
        if row["userMetadata"] == marker:
            figures = {k: int(v) for k, v in (row["operationMetrics"] or {}).items() if str(v).lstrip("-").isdigit()}
            found = add_figures(found, {**figures, "version": int(row["version"])})
        elif found is not None:
            break
    return found
