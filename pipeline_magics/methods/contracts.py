"""Schema contracts of the loads into tables (``schemaContract`` on toDelta and toPostgres).

``freeze``: the data's columns and types must equal the target's. ``evolve``: columns the
target lacks are added to it (Delta: ``ALTER TABLE ... ADD COLUMNS``; PostgreSQL: ``ALTER
TABLE ... ADD COLUMN``), columns the data lacks are written as null, a changed type fails.
``discard_columns``: columns the target lacks are dropped from the data. Checked before
anything is written; a missing target is created by the write as usual.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ..errors import SchemaContractError
from . import delta, jdbc
from .registry import Config, StepContext

Contract = Literal["freeze", "evolve", "discard_columns"]


class ContractOption(Config):
    """The ``schemaContract`` setting of a load into a table."""

    schemaContract: Contract | None = Field(
        None, description="freeze | evolve | discard_columns (default: Spark's own behaviour)")


def differences(data: Any, target: Any) -> list[dict[str, Any]]:
    """Columns that differ between two Spark schemas: ``{column, data, target}`` (a type, or None when absent).

    Names are compared case-insensitively, as Spark resolves them.
    """
    ours = {f.name.lower(): f for f in data.fields}
    theirs = {f.name.lower(): f for f in target.fields}
    out = []
    for key in list(ours) + [k for k in theirs if k not in ours]:
        a, b = ours.get(key), theirs.get(key)
        a_type = a.dataType.simpleString() if a else None
        b_type = b.dataType.simpleString() if b else None
        if a_type != b_type:
            out.append({"column": (a or b).name, "data": a_type, "target": b_type})
    return out


def schema_changes(data: Any, target: Any) -> list[dict[str, Any]]:
    """The differences as changes to the target: ``{column, change: added|dropped|type, from, to}``."""
    kinds = {(True, False): "added", (False, True): "dropped", (True, True): "type"}
    return [{"column": d["column"], "change": kinds[(d["data"] is not None, d["target"] is not None)],
             "from": d["target"], "to": d["data"]} for d in differences(data, target)]


def _describe(d: dict[str, Any]) -> str:
    return f"{d['column']} (data: {d['data'] or 'absent'}, table: {d['target'] or 'absent'})"


def enforce(ctx: StepContext, cfg: Any, df: Any, target_schema: Any, add_columns: Any) -> Any:
    """Applies ``cfg.schemaContract`` to ``df`` for a target of ``target_schema`` (None: no target yet).

    Returns the DataFrame to write; ``add_columns(fields)`` adds columns to the target (evolve).
    """
    contract = getattr(cfg, "schemaContract", None)
    if contract is None or target_schema is None:
        return df
    diffs = differences(df.schema, target_schema)
    if contract == "freeze" and diffs:
        raise SchemaContractError(
            "schemaContract freeze: the data's columns differ from the table's: " + "; ".join(map(_describe, diffs)),
            params={"contract": contract, "differences": diffs},
            hint="change the pipeline to match the table, or use schemaContract: evolve | discard_columns")
    if contract == "discard_columns":
        keep = {f.name.lower() for f in target_schema.fields}
        return df.select(*[f"`{c}`" for c in df.columns if c.lower() in keep])
    if contract == "evolve":
        changed = [d for d in diffs if d["data"] and d["target"]]
        if changed:
            raise SchemaContractError(
                "schemaContract evolve: a column's type changed: " + "; ".join(map(_describe, changed)),
                params={"contract": contract, "differences": changed},
                hint="cast the column to the table's type in a transform step")
        added = [f for f in df.schema.fields if any(d["column"] == f.name and not d["target"] for d in diffs)]
        if added:
            add_columns(added)
        from pyspark.sql import functions as F

        for f in target_schema.fields:
            if f.name.lower() not in {c.lower() for c in df.columns}:
                df = df.withColumn(f.name, F.lit(None).cast(f.dataType))
    return df


# ------------------------------------------------------------------ the targets


def delta_schema(spark: Any, path: str | None, table: str | None) -> Any:
    """The Delta table's schema, or None when it does not exist yet."""
    if not delta.exists(spark, path, table):
        return None
    return (spark.table(table) if table else spark.read.format("delta").load(path)).schema


def enforce_delta(ctx: StepContext, cfg: Any) -> Any:
    """toDelta's input under its contract."""
    if getattr(cfg, "schemaContract", None) is None:
        return ctx.input
    ref = delta.table_ref(cfg.path, cfg.table)

    def add(fields: list[Any]) -> None:
        columns = ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in fields)
        ctx.spark.sql(f"ALTER TABLE {ref} ADD COLUMNS ({columns})")

    return enforce(ctx, cfg, ctx.input, delta_schema(ctx.spark, cfg.path, cfg.table), add)


#: Spark types as PostgreSQL column types (as Spark's JDBC writer creates them)
_PG_TYPES = {"int": "INTEGER", "bigint": "BIGINT", "smallint": "SMALLINT", "tinyint": "SMALLINT",
             "double": "DOUBLE PRECISION", "float": "REAL", "string": "TEXT", "boolean": "BOOLEAN",
             "date": "DATE", "timestamp": "TIMESTAMP", "timestamp_ntz": "TIMESTAMP", "binary": "BYTEA"}


def pg_type(data_type: Any) -> str:
    """The PostgreSQL type of a Spark type."""
    name = data_type.simpleString()
    if name.startswith("decimal"):
        return name.replace("decimal", "NUMERIC")
    if name not in _PG_TYPES:
        raise SchemaContractError(f"schemaContract evolve: no PostgreSQL type for {name}")
    return _PG_TYPES[name]


def postgres_schema(spark: Any, opts: dict[str, str], table: str) -> Any:
    """The PostgreSQL table's columns as a Spark schema, or None when it does not exist."""
    present = jdbc.run_statement(spark, opts, None,
                                 f"SELECT to_regclass({jdbc.sql_literal(table)}) IS NOT NULL AS present")
    if not present[0][0]:
        return None
    reader = spark.read.format("jdbc").options(**jdbc.connection_options(opts))
    return reader.option("query", f"SELECT * FROM {table} WHERE false").load().schema


def enforce_postgres(ctx: StepContext, cfg: Any) -> Any:
    """toPostgres' input under its contract."""
    if getattr(cfg, "schemaContract", None) is None:
        return ctx.input
    opts = cfg.jdbc_options()

    def add(fields: list[Any]) -> None:
        columns = ", ".join(f'ADD COLUMN "{f.name}" {pg_type(f.dataType)}' for f in fields)
        jdbc.run_statement(ctx.spark, opts, f"ALTER TABLE {cfg.table} {columns}")

    return enforce(ctx, cfg, ctx.input, postgres_schema(ctx.spark, opts, cfg.table), add)
