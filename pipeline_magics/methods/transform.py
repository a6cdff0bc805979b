"""Transform methods: each turns its input DataFrame(s) into a new one."""
from __future__ import annotations

from functools import reduce
from typing import Any, Literal

from pydantic import Field, model_validator

from ..spark.connect_sql import run_sql
from .registry import Config, StepContext, is_default_label, register


class SqlConfig(Config):
    query: str = Field(description="Spark SQL; earlier named steps are temp views")


@register("transform", "sql", SqlConfig, arity="many", default_input=False, reads_views=True,
          plan_rows="observed", observed=True,
          example="inputs: [orders, customers]\nconfig: {query: 'SELECT * FROM orders JOIN customers USING (id)'}")
def sql(ctx: StepContext, cfg: SqlConfig) -> Any:
    """Runs a Spark SQL query over the pipeline's named DataFrames."""
    return run_sql(ctx.spark, cfg.query, {name: df for name, df in ctx.frames.items() if not is_default_label(name)})


class Condition(Config):
    condition: str = Field(description="a SQL boolean expression, e.g. amount > 10")


@register("transform", "filterRows", Condition, example="config: {condition: 'amount > 10'}", plan_rows="filter")
def filter_rows(ctx: StepContext, cfg: Condition) -> Any:
    """Keeps the rows for which the condition is true."""
    return ctx.input.filter(cfg.condition)


class Columns(Config):
    columns: list[str] = Field(min_length=1, description="column names or SQL expressions ('amount * 2 AS double')")


@register("transform", "selectColumns", Columns, example="config: {columns: [id, 'amount * 1.2 AS gross']}",
          plan_rows="same")
def select_columns(ctx: StepContext, cfg: Columns) -> Any:
    """Keeps (or computes) the listed columns."""
    return ctx.input.selectExpr(*cfg.columns)


class WithColumn(Config):
    column: str = Field(description="the new (or replaced) column")
    expr: str = Field(description="a SQL expression")


@register("transform", "withColumn", WithColumn, example="config: {column: gross, expr: 'amount * 1.2'}",
          plan_rows="same")
def with_column(ctx: StepContext, cfg: WithColumn) -> Any:
    """Adds or replaces one column from a SQL expression."""
    from pyspark.sql import functions as F

    return ctx.input.withColumn(cfg.column, F.expr(cfg.expr))


class Rename(Config):
    mapping: dict[str, str] = Field(min_length=1, description="old name: new name")


@register("transform", "renameColumns", Rename, example="config: {mapping: {amt: amount}}", plan_rows="same")
def rename_columns(ctx: StepContext, cfg: Rename) -> Any:
    """Renames columns."""
    missing = [c for c in cfg.mapping if c not in ctx.input.columns]
    if missing:
        raise ValueError(f"no column {missing} to rename; columns are {ctx.input.columns}")
    return ctx.input.withColumnsRenamed(cfg.mapping)


@register("transform", "dropColumns", Columns, example="config: {columns: [internal_id]}", plan_rows="same")
def drop_columns(ctx: StepContext, cfg: Columns) -> Any:
    """Drops columns."""
    return ctx.input.drop(*cfg.columns)


class Dedup(Config):
    columns: list[str] | None = Field(None, description="the key columns (default: all)")


@register("transform", "dropDuplicates", Dedup, example="config: {columns: [order_id]}", plan_rows="aggregate")
def drop_duplicates(ctx: StepContext, cfg: Dedup) -> Any:
    """Keeps one row per key (within the watermark on streams)."""
    return ctx.input.dropDuplicates(cfg.columns) if cfg.columns else ctx.input.dropDuplicates()


class Join(Config):
    right: str = Field(description="the name of the right-hand DataFrame")
    on: str | list[str] = Field(description="column name(s), or a condition using left.x and right.y")
    how: Literal["inner", "left", "right", "full", "left_semi", "left_anti", "cross",
                 "outer", "left_outer", "right_outer", "full_outer", "semi", "anti"] = "inner"


@register("transform", "join", Join, frame_settings=("right",),
          example="config: {right: customers, on: customer_id, how: left}", plan_rows="join")
def join(ctx: StepContext, cfg: Join) -> Any:
    """Joins the input with another named DataFrame."""
    from pyspark.sql import functions as F

    right = ctx.frame(cfg.right)
    if isinstance(cfg.on, list) or cfg.on.isidentifier():
        return ctx.input.join(right, cfg.on, cfg.how)
    return ctx.input.alias("left").join(right.alias("right"), F.expr(cfg.on), cfg.how)


class Union(Config):
    byName: bool = Field(True, description="match columns by name (not position)")
    allowMissingColumns: bool = Field(False, description="fill columns missing on one side with nulls")


@register("transform", "union", Union, arity="many", default_input=False, min_inputs=2,
          example="inputs: [orders_2024, orders_2025]")
def union(ctx: StepContext, cfg: Union) -> Any:
    """Stacks the rows of all inputs."""
    if cfg.byName:
        return reduce(lambda a, b: a.unionByName(b, allowMissingColumns=cfg.allowMissingColumns), ctx.inputs)
    return reduce(lambda a, b: a.union(b), ctx.inputs)


class Aggregate(Config):
    groupBy: list[str] = Field(default_factory=list, description="grouping columns (none: one total row)")
    aggregations: dict[str, str] = Field(min_length=1, description="alias: SQL aggregate, e.g. total: sum(amount)")


def _agg_columns(aggregations: dict[str, str]) -> list[Any]:
    from pyspark.sql import functions as F

    return [F.expr(expr).alias(alias) for alias, expr in aggregations.items()]


@register("transform", "aggregate", Aggregate,
          example="config: {groupBy: [country], aggregations: {orders: count(*), revenue: sum(amount)}}",
          plan_rows="aggregate")
def aggregate(ctx: StepContext, cfg: Aggregate) -> Any:
    """Groups rows and computes aggregates."""
    return ctx.input.groupBy(*cfg.groupBy).agg(*_agg_columns(cfg.aggregations))


class Watermark(Config):
    column: str = Field(description="the event-time column")
    delay: str = Field(description="how late data may arrive, e.g. '10 minutes'")


@register("transform", "withWatermark", Watermark, example="config: {column: event_time, delay: 10 minutes}",
          plan_rows="same")
def with_watermark(ctx: StepContext, cfg: Watermark) -> Any:
    """Declares how late events may arrive (bounds streaming state)."""
    return ctx.input.withWatermark(cfg.column, cfg.delay)


class Window(Config):
    timeColumn: str = Field(description="the event-time column")
    duration: str = Field(description="window length, e.g. '5 minutes'")
    slide: str | None = Field(None, description="slide interval (default: tumbling windows)")
    groupBy: list[str] = Field(default_factory=list, description="more grouping columns")
    aggregations: dict[str, str] = Field(min_length=1, description="alias: SQL aggregate")


@register("transform", "window", Window,
          example="config: {timeColumn: event_time, duration: 5 minutes, aggregations: {events: count(*)}}")
def window(ctx: StepContext, cfg: Window) -> Any:
    """Aggregates over time windows; the result has window_start and window_end."""
    from pyspark.sql import functions as F

    w = F.window(cfg.timeColumn, cfg.duration, cfg.slide) if cfg.slide else F.window(cfg.timeColumn, cfg.duration)
    grouped = ctx.input.groupBy(w.alias("window"), *cfg.groupBy).agg(*_agg_columns(cfg.aggregations))
    rest = [c for c in grouped.columns if c != "window"]
    return grouped.select(F.col("window.start").alias("window_start"), F.col("window.end").alias("window_end"), *rest)


class Repartition(Config):
    numPartitions: int | None = Field(None, ge=1)
    columns: list[str] | None = Field(None, description="hash-partition by these columns")

    @model_validator(mode="after")
    def _something(self) -> "Repartition":
        if self.numPartitions is None and not self.columns:
            raise ValueError("set 'numPartitions', 'columns' or both")
        return self


@register("transform", "repartition", Repartition, example="config: {numPartitions: 8, columns: [country]}",
          plan_rows="same")
def repartition(ctx: StepContext, cfg: Repartition) -> Any:
    """Redistributes rows into partitions (a shuffle)."""
    if cfg.numPartitions is not None:
        return ctx.input.repartition(cfg.numPartitions, *(cfg.columns or []))
    return ctx.input.repartition(*(cfg.columns or []))


class Coalesce(Config):
    numPartitions: int = Field(ge=1)


@register("transform", "coalesce", Coalesce, example="config: {numPartitions: 1}", plan_rows="same")
def coalesce(ctx: StepContext, cfg: Coalesce) -> Any:
    """Reduces the number of partitions without a shuffle."""
    return ctx.input.coalesce(cfg.numPartitions)
