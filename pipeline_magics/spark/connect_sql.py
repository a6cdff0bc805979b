"""A ``sql`` step's query on Spark Connect, with the frames it names carried in its own plan.

A Connect DataFrame is a plan the server analyses again at each use, so a query over temp views
reads them by name every time: once the run drops its views, the frame (the last one the command
line prints, ``result.to_pandas()``, ``%pipeline lineage``) fails with TABLE_OR_VIEW_NOT_FOUND.
Spark Connect 4 sends a query's DataFrame arguments as relations inside its plan (what
``spark.sql("... {df} ...", df=df)`` does); here they go under the views' own names, so the query
text stays the user's. Classic sessions analyse the query once, and Connect 3.5 has no such
relations: both use ``spark.sql`` as it is.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

from .kind import is_connect


def run_sql(spark: Any, query: str, views: Mapping[str, Any]) -> Any:
    """``spark.sql(query)``; on Connect 4, with each batch frame of ``views`` the query names embedded under its name."""
    if not is_connect(spark):
        return spark.sql(query)
    try:
        from pyspark.sql.connect.dataframe import DataFrame
        from pyspark.sql.connect.plan import SQL, CachedRelation, SubqueryAlias
    except ImportError:  # a client without these plans
        return spark.sql(query)
    named = [SubqueryAlias(df._plan, name) for name, df in views.items()
             if re.search(rf"(?<![\w$]){re.escape(name)}(?![\w$])", query, re.IGNORECASE) and not df.isStreaming]
    if not named or "views" not in SQL.__init__.__code__.co_varnames:  # Connect 3.5
        return spark.sql(query)
    command = SQL(query, [], {}, named)
    _, properties, info = spark.client.execute_command(command.command(spark.client))
    if "sql_command_result" not in properties:
        return DataFrame(command, spark)
    df = DataFrame(CachedRelation(properties["sql_command_result"]), spark)
    df._execution_info = info  # as spark.sql keeps it: the command's execution, already run
    return df
