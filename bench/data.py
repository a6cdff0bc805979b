"""The benchmark's data, generated once and reused: orders (millions of rows) and customers (a small table)."""
from __future__ import annotations

import json
import os
import shutil
from typing import Any

ORDERS = int(os.environ.get("PIPELINE_BENCH_ROWS", "20000000"))  # at least 5M: long enough that fixed costs and noise stay small
CUSTOMERS = 50_000
VERSION = 1  # bump when the generator changes


def ensure_data(spark: Any, root: str, rows: int = ORDERS) -> dict[str, Any]:
    """``root/orders`` and ``root/customers`` as Parquet; generated only when missing or different."""
    from pyspark.sql import functions as F

    marker = os.path.join(root, "generated.json")
    want = {"orders": rows, "customers": CUSTOMERS, "version": VERSION}
    try:
        with open(marker, encoding="utf-8") as fh:
            if json.load(fh) == want:
                return {**want, "root": root, "generated": False}
    except (OSError, ValueError):
        pass
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    (spark.range(rows, numPartitions=8)
     .select(F.col("id").alias("order_id"),
             F.pmod(F.xxhash64("id"), F.lit(CUSTOMERS)).cast("int").alias("customer_id"),
             F.round(F.rand(7) * 500, 2).alias("amount"),
             F.element_at(F.array(F.lit("paid"), F.lit("paid"), F.lit("paid"), F.lit("refunded"), F.lit("pending")),
                          (F.col("id") % 5 + 1).cast("int")).alias("status"),
             F.element_at(F.array(*[F.lit(c) for c in ("DE", "FR", "NL", "PL", "ES", "IT")]),
                          (F.col("id") % 6 + 1).cast("int")).alias("country"),
             (F.lit(1_700_000_000) + F.col("id") % 31_536_000).cast("timestamp").alias("ts"))
     .write.parquet(os.path.join(root, "orders")))
    (spark.range(CUSTOMERS, numPartitions=1)
     .select(F.col("id").cast("int").alias("customer_id"),
             F.concat(F.lit("customer "), F.col("id")).alias("name"),
             F.element_at(F.array(F.lit("retail"), F.lit("business"), F.lit("public")),
                          (F.col("id") % 3 + 1).cast("int")).alias("segment"))
     .write.parquet(os.path.join(root, "customers")))
    with open(marker, "w", encoding="utf-8") as fh:
        json.dump(want, fh)
    return {**want, "root": root, "generated": True}
