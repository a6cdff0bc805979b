"""Classic or Spark Connect: decided here, once, for every module that needs to know."""
from __future__ import annotations

from typing import Any


def is_connect(spark: Any) -> bool:
    """True for a Spark Connect session."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def is_classic(spark: Any) -> bool:
    """True for a classic (py4j) session, whose JVM can be asked for figures directly."""
    return not is_connect(spark) and hasattr(spark, "_jsparkSession")
