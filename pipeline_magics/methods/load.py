"""Load methods: each writes its input DataFrame to a sink (or shows it)."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from ..metrics.sources import (ACTION, delta_commit, delta_latest_version, delta_write_figures, note, observe_rows,
                               tagged_write)
from ..spark.cache import persist
from ..spark.session import require_delta
from . import cdc, contracts, delta, jdbc
from .jdbc import PostgresConnection
from .quality import FAILED_RULES, append_batch, quarantine_of, split_batch
from .registry import StepContext, register, session_conf
from .streaming_sink import StreamingOptions, checkpoint_location, start

WriteMode = Literal["append", "overwrite", "error", "errorifexists", "ignore"]


def count_rows_written(ctx: StepContext, df: Any) -> Any:
    """Wraps ``df`` so the write itself counts its rows (an Observation: no second pass)."""
    if not ctx.metrics_enabled:
        return df
    return observe_rows(df, f"load_{ctx.run_id}_{ctx.index}", ctx.record, ctx.after, ("rows_out", "rows_in"))


def count_stream_rows(ctx: StepContext, df: Any) -> Any:
    """Wraps a stream so each micro-batch counts the rows it hands the sink (a named observation,
    reported in the query's progress)."""
    if not ctx.metrics_enabled:
        return df
    from pyspark.sql import functions as F

    name = f"pm_rows_{ctx.run_id}_{ctx.index}"
    ctx.record.observation = name
    return df.observe(name, F.count(F.lit(1)).alias("rows"))


def count_passing_rows(ctx: StepContext, df: Any) -> Any:
    """``count_stream_rows`` for a stream whose failing rows go to quarantine: only the rows kept."""
    if not ctx.metrics_enabled:
        return df
    from pyspark.sql import functions as F

    name = f"pm_rows_{ctx.run_id}_{ctx.index}"
    ctx.record.observation = name
    return df.observe(name, F.count_if(F.size(FAILED_RULES) == 0).alias("rows"))


class DeltaSink(StreamingOptions, contracts.ContractOption):
    path: str | None = Field(None, description="the table's folder")
    table: str | None = Field(None, description="a catalog table name (instead of path)")
    mode: Literal["append", "overwrite", "merge", "scd1", "scd2", "error", "errorifexists", "ignore"] = Field(
        "append", description="append, overwrite, merge (upsert on mergeKeys), or change data capture: "
                              "scd1 (latest row per key) / scd2 (history in __START_AT, __END_AT)")
    mergeKeys: list[str] | None = Field(None, description="merge, scd1, scd2: the columns that identify a row")
    sequenceBy: str | None = Field(None, description="scd1/scd2: the column ordering a key's changes "
                                                     "(the highest wins; a late older change never overwrites)")
    deleteWhen: str | None = Field(None, description="scd1/scd2: a SQL condition marking a delete record")
    exceptColumns: list[str] = Field(default_factory=list, description="scd1/scd2: change columns not stored")
    diffKeys: list[str] | None = Field(None, description="the columns that identify a row when its changes are "
                                                         "compared (%pipeline diff; default: mergeKeys)")
    partitionBy: list[str] | None = None
    options: dict[str, Any] = Field(default_factory=dict, description="more Delta writer options, e.g. mergeSchema")

    @model_validator(mode="after")
    def _check(self) -> "DeltaSink":
        if bool(self.path) == bool(self.table):
            raise ValueError("set exactly one of 'path' or 'table'")
        keyed = self.mode in ("merge", "scd1", "scd2")
        if keyed and not self.mergeKeys:
            raise ValueError(f"mode: {self.mode} needs 'mergeKeys' (the columns that identify a row)")
        if self.mergeKeys and not keyed:
            raise ValueError("'mergeKeys' is only used with mode: merge, scd1 or scd2")
        if self.mode in ("scd1", "scd2") and not self.sequenceBy:
            raise ValueError(f"mode: {self.mode} needs 'sequenceBy' (the column ordering each key's changes)")
        if self.mode not in ("scd1", "scd2") and (self.sequenceBy or self.deleteWhen or self.exceptColumns):
            raise ValueError("'sequenceBy', 'deleteWhen' and 'exceptColumns' are only used with mode: scd1 or scd2")
        return self

    @property
    def cdc(self) -> cdc.Cdc | None:
        """The change-capture settings (scd1/scd2), else None."""
        if self.mode not in ("scd1", "scd2"):
            return None
        return cdc.Cdc(self.mode, tuple(self.mergeKeys or ()), self.sequenceBy or "", self.deleteWhen,
                       tuple(self.exceptColumns))


def diff_keys(cfg: Any) -> list[str]:
    """The columns that identify a row of the load's target when changes are compared (scd2: a key's version)."""
    if getattr(cfg, "diffKeys", None):
        return list(cfg.diffKeys)
    keys = list(getattr(cfg, "mergeKeys", None) or [])
    return keys + [cdc.START] if getattr(cfg, "mode", None) == "scd2" else keys


def _delta_commit_metrics(ctx: StepContext, cfg: DeltaSink, marker: str) -> None:
    """Rows and bytes from the Delta commit this step made: the commit's own operationMetrics."""
    if not ctx.metrics_enabled:
        return
    # Read from the commit file itself on classic sessions (DESCRIBE HISTORY would run a Spark job).
    m = delta_commit(ctx.spark, marker, cfg.path, cfg.table, history=delta.commit_metrics)
    if m is not None:
        delta_write_figures(ctx.record, m)


@register("load", "toDelta", DeltaSink, retried=True, sink="delta",
          example="config: {path: /tmp/lake/orders, mode: merge, mergeKeys: [order_id]}")
def to_delta(ctx: StepContext, cfg: DeltaSink) -> None:
    """Writes a Delta table: append, overwrite, or merge (upsert) on keys."""
    require_delta(ctx.spark)
    ctx.inputs[0] = contracts.enforce_delta(ctx, cfg)  # before anything is written
    if ctx.input.isStreaming:
        return _stream_to_delta(ctx, cfg)
    marker = f"pipeline_magics:{ctx.pipeline}:{ctx.run_id}:{ctx.index}"
    ctx.record.target = {"kind": "delta", "path": cfg.path, "table": cfg.table, "keys": diff_keys(cfg)}
    df = ctx.input
    if cfg.cdc is not None:
        cdc.apply(df, cfg.path, cfg.table, cfg.cdc, marker)
    elif cfg.mode == "merge" and delta.exists(ctx.spark, cfg.path, cfg.table):
        with delta.user_metadata(ctx.spark, marker):
            delta.merge(df, cfg.path, cfg.table, cfg.mergeKeys or [])
    else:
        mode = "append" if cfg.mode == "merge" else cfg.mode
        writer = df.write.format("delta").mode(mode).option("userMetadata", marker)
        # Idempotent across retries: Delta skips a second write with the same app id and version.
        writer = writer.option("txnAppId", f"pipeline_magics.{ctx.pipeline}.{ctx.step_name}")
        writer = writer.option("txnVersion", ctx.run_version).options(**cfg.options)
        if cfg.partitionBy:
            writer = writer.partitionBy(*cfg.partitionBy)
        if cfg.table:  # CREATE TABLE AS SELECT ignores the writer's userMetadata; the session conf is seen
            with delta.user_metadata(ctx.spark, marker):
                writer.saveAsTable(cfg.table)
        else:
            writer.save(cfg.path)
    _delta_commit_metrics(ctx, cfg, marker)


def _merge_batch(cfg: DeltaSink, query: str) -> Any:
    """A foreachBatch function that upserts each micro-batch on the merge keys (or applies its changes).

    Changes are applied under a marker that names the micro-batch (``query``: the step and its checkpoint;
    the query's id, which the checkpoint keeps; the batch id), so one replayed after a restart is known.
    """

    def upsert(batch: Any, batch_id: int) -> None:
        if cfg.cdc is not None:
            try:  # the streaming thread's own property (classic sessions)
                query_id = batch.sparkSession.sparkContext.getLocalProperty("sql.streaming.queryId") or ""
            except Exception:  # noqa: BLE001 - Spark Connect: the checkpoint names the query
                query_id = ""
            cdc.apply(batch, cfg.path, cfg.table, cfg.cdc, f"{query}:{query_id}:{batch_id}")
        elif delta.exists(batch.sparkSession, cfg.path, cfg.table):
            delta.merge(batch, cfg.path, cfg.table, cfg.mergeKeys or [])
        else:
            writer = batch.write.format("delta").mode("append")
            writer.saveAsTable(cfg.table) if cfg.table else writer.save(cfg.path)

    return upsert


def _query(ctx: StepContext, cfg: DeltaSink) -> str:
    return f"pipeline_magics:{ctx.pipeline}:{ctx.step_name}:{checkpoint_location(ctx, cfg)}"


def _stream_to_delta(ctx: StepContext, cfg: DeltaSink) -> Any:
    where = quarantine_of(ctx.input)
    if where is not None:  # each micro-batch split: passing rows here, failing rows to quarantine
        keyed = cfg.mode in ("merge", "scd1", "scd2")
        good = _merge_batch(cfg, _query(ctx, cfg)) if keyed else append_batch(
            cfg.path, cfg.table, f"pipeline_magics.{ctx.pipeline}.{ctx.step_name}")
        return start(ctx, cfg, count_passing_rows(ctx, ctx.input), lambda w: w.foreachBatch(split_batch(where, good)),
                     output_mode=cfg.outputMode or ("update" if keyed else "append"),
                     splits_quarantine=True)
    if cfg.mode in ("merge", "scd1", "scd2"):
        upsert = _merge_batch(cfg, _query(ctx, cfg))
        return start(ctx, cfg, count_stream_rows(ctx, ctx.input), lambda w: w.foreachBatch(upsert),
                     output_mode=cfg.outputMode or "update")
    if cfg.mode not in ("append", "overwrite"):
        raise ValueError(f"mode: {cfg.mode} is not available for streams; use append, overwrite "
                         "(complete output), merge, scd1 or scd2")
    mode = cfg.outputMode or ("complete" if cfg.mode == "overwrite" else "append")

    def configure(w: Any) -> Any:
        w = w.format("delta").options(**cfg.options)
        return w.partitionBy(*cfg.partitionBy) if cfg.partitionBy else w

    if ctx.metrics_enabled:  # the query's own commits after this version give its rows and bytes
        ctx.record.delta_target = {"path": cfg.path, "table": cfg.table,
                                   "start_version": delta_latest_version(ctx.spark, cfg.path, cfg.table)}
    return start(ctx, cfg, count_stream_rows(ctx, ctx.input), configure, path=cfg.path, table=cfg.table,
                 output_mode=mode)


class FileSink(StreamingOptions):
    path: str = Field(description="the output folder")
    mode: WriteMode = Field("error", description="error (default: never overwrite by accident), append, overwrite, ignore")
    partitionBy: list[str] | None = None
    options: dict[str, Any] = Field(default_factory=dict, description="more Spark writer options")


def _write_files(ctx: StepContext, fmt: str, cfg: FileSink, **options: Any) -> Any:
    if ctx.input.isStreaming:
        def configure(w: Any) -> Any:
            w = w.format(fmt).options(**options, **cfg.options)
            return w.partitionBy(*cfg.partitionBy) if cfg.partitionBy else w

        return start(ctx, cfg, count_stream_rows(ctx, ctx.input), configure, path=cfg.path)
    writer = count_rows_written(ctx, ctx.input).write.format(fmt).mode(cfg.mode).options(**options, **cfg.options)
    if cfg.partitionBy:
        writer = writer.partitionBy(*cfg.partitionBy)
    with tagged_write(ctx.spark, f"pipeline_magics-{ctx.run_id}-{ctx.index}", ctx.record, ctx.metrics_enabled):
        writer.save(cfg.path)  # its tasks' output metrics give the bytes written


@register("load", "toParquet", FileSink, sink="files", example="config: {path: /tmp/out/orders.parquet, mode: overwrite}")
def to_parquet(ctx: StepContext, cfg: FileSink) -> Any:
    """Writes Parquet files."""
    return _write_files(ctx, "parquet", cfg)


class CsvSink(FileSink):
    header: bool = True


@register("load", "toCsv", CsvSink, sink="files", example="config: {path: /tmp/out/orders_csv, mode: overwrite}")
def to_csv(ctx: StepContext, cfg: CsvSink) -> Any:
    """Writes CSV files (with a header line by default)."""
    return _write_files(ctx, "csv", cfg, header=str(cfg.header).lower())


@register("load", "toJson", FileSink, sink="files", example="config: {path: /tmp/out/orders_json, mode: overwrite}")
def to_json(ctx: StepContext, cfg: FileSink) -> Any:
    """Writes JSON lines files."""
    return _write_files(ctx, "json", cfg)


class PostgresSink(PostgresConnection, StreamingOptions, contracts.ContractOption):
    table: str = Field(description="the target table, [schema.]name (created if missing)")
    mode: WriteMode = "error"
    batchSize: int | None = Field(None, ge=1, description="rows per INSERT batch")
    truncate: bool = Field(False, description="overwrite by TRUNCATE + INSERT (keeps the table's definition, "
                                              "indexes and grants); default: the table is replaced")
    atomic: bool = Field(True, description="write to a staging table, then swap it in with one transaction "
                                           "(needs CREATE on the schema); false: Spark writes the target directly")
    diffKeys: list[str] | None = Field(None, description="the columns that identify a row when a preview compares "
                                                         "the table with what the load would leave")

    @model_validator(mode="after")
    def _table_name(self) -> "PostgresSink":
        jdbc.check_table_name(self.table)
        return self


#: staging tables a failed clean-up left behind (the database was unreachable), by JDBC URL;
#: the next toPostgres to the same database drops them first
LEFTOVER_STAGING: dict[str, set[str]] = {}


@register("load", "toPostgres", PostgresSink, retried=True, sink="jdbc",
          example="config: {url: 'jdbc:postgresql://localhost:5432/shop', table: public.daily,\n"
                  "         user: analyst, password: {env: PGPASSWORD}, mode: overwrite}")
def to_postgres(ctx: StepContext, cfg: PostgresSink) -> Any:
    """Writes a PostgreSQL table over JDBC, all or nothing (each micro-batch appended, for streams)."""
    opts = cfg.jdbc_options()
    ctx.record.target = {"kind": "postgres", "table": cfg.table, "mode": cfg.mode}
    ctx.inputs[0] = contracts.enforce_postgres(ctx, cfg)  # before anything is written
    if cfg.batchSize:
        opts["batchsize"] = str(cfg.batchSize)
    if ctx.input.isStreaming:
        def write(batch: Any, batch_id: int) -> None:
            if cfg.atomic:
                write_postgres(batch, opts, cfg.table, "append", tag=f"{ctx.run_id}_{batch_id}")
            else:
                batch.write.format("jdbc").mode("append").options(**opts, dbtable=cfg.table).save()

        return start(ctx, cfg, count_stream_rows(ctx, ctx.input), lambda w: w.foreachBatch(write))
    df = count_rows_written(ctx, ctx.input)
    if not cfg.atomic:
        extra = {"truncate": "true"} if cfg.truncate else {}
        df.write.format("jdbc").mode(cfg.mode).options(**opts, **extra, dbtable=cfg.table).save()
        return
    write_postgres(df, opts, cfg.table, cfg.mode, tag=f"{ctx.run_id}_{ctx.index}", truncate=cfg.truncate)


def write_postgres(df: Any, opts: dict[str, str], table: str, mode: str, tag: str, truncate: bool = False) -> None:
    """Writes ``df`` to ``table`` through a staging table swapped in by one transaction (``jdbc.swap_statement``).

    A failure or a cancel at any point leaves ``table`` as it was; the staging table is dropped
    (or, when the database cannot be reached, dropped by the next write to it).
    """
    spark = df.sparkSession
    url = opts["url"]
    staging = jdbc.staging_table(table, tag)
    leftovers = sorted(LEFTOVER_STAGING.pop(url, ()))
    if leftovers:
        try:
            jdbc.run_statement(spark, opts, jdbc.drop_statement(*leftovers))
        except Exception:  # noqa: BLE001 - still away, or not ours to drop: try again next time
            LEFTOVER_STAGING.setdefault(url, set()).update(leftovers)
    if mode in ("error", "errorifexists", "ignore"):  # refuse or skip before anything is written
        present = jdbc.run_statement(spark, opts, None, f"SELECT to_regclass({jdbc.sql_literal(table)}) IS NOT NULL AS present")
        if present[0][0] and mode == "ignore":
            return
        if present[0][0]:
            raise ValueError(f"table {table} already exists (mode: {mode}); use mode: append or overwrite")
    try:
        df.write.format("jdbc").mode("overwrite").options(**opts, dbtable=staging).save()
        jdbc.run_statement(spark, opts, jdbc.swap_statement(table, staging, mode, truncate))
    except BaseException:
        try:
            jdbc.run_statement(spark, opts, jdbc.drop_statement(staging))
        except Exception:  # noqa: BLE001 - the database is away: the next write to it drops the table
            LEFTOVER_STAGING.setdefault(url, set()).add(staging)
        raise


class KafkaSink(StreamingOptions):
    bootstrapServers: str = Field(description="host:port[,host:port]")
    topic: str
    key: str | None = Field(None, description="the column used as message key")
    value: str | None = Field(None, description="the column used as value (default: the whole row as JSON)")
    options: dict[str, Any] = Field(default_factory=dict, description="more Kafka sink options (kafka.*)")


def kafka_frame(df: Any, cfg: KafkaSink) -> Any:
    """The input shaped as Kafka's key/value columns."""
    from pyspark.sql import functions as F

    value = F.col(cfg.value).cast("string") if cfg.value else F.to_json(F.struct(*[F.col(c) for c in df.columns]))
    cols = [value.alias("value")]
    if cfg.key:
        cols.insert(0, F.col(cfg.key).cast("string").alias("key"))
    return df.select(*cols)


@register("load", "toKafka", KafkaSink, sink="kafka", example="config: {bootstrapServers: localhost:9092, topic: alerts, key: id}")
def to_kafka(ctx: StepContext, cfg: KafkaSink) -> Any:
    """Writes rows to a Kafka topic (each row as JSON unless 'value' names a column)."""
    if ctx.input.isStreaming:
        return start(ctx, cfg, count_stream_rows(ctx, kafka_frame(ctx.input, cfg)), lambda w: w.format("kafka").option(
            "kafka.bootstrap.servers", cfg.bootstrapServers).option("topic", cfg.topic).options(**cfg.options))
    # Kafka's V1 write path runs the query out of sight of Observations; its V2 path (Kafka
    # taken off the V1 list for this write) reports them, so rows are counted by the write itself.
    v1 = "spark.sql.sources.useV1SourceList"
    current = ctx.spark.conf.get(v1, "avro,csv,json,kafka,orc,parquet,text") or ""
    with session_conf(ctx.spark, v1, ",".join(s for s in current.split(",") if s.strip() != "kafka")):
        (count_rows_written(ctx, kafka_frame(ctx.input, cfg)).write.format("kafka").mode("append")
         .option("kafka.bootstrap.servers", cfg.bootstrapServers).option("topic", cfg.topic)
         .options(**cfg.options).save())


class MemorySink(StreamingOptions):
    """``queryName`` names the in-memory table (default: the step's name)."""


def memory_table_name(ctx: StepContext, cfg: StreamingOptions) -> str:
    return cfg.queryName or ctx.step.name or f"{ctx.pipeline}_{ctx.step_name}".replace("-", "_")


@register("load", "toMemory", MemorySink, sink="memory", example="config: {queryName: preview}")
def to_memory(ctx: StepContext, cfg: MemorySink) -> Any:
    """Keeps the rows in memory as a table you can query with spark.sql."""
    name = memory_table_name(ctx, cfg)
    ctx.record.extra["table"] = name
    if ctx.input.isStreaming:
        return start(ctx, cfg, count_stream_rows(ctx, ctx.input), lambda w: w.format("memory"), name=name, durable=False)
    df = persist(ctx.spark, ctx.input, "MEMORY_AND_DISK_DESER")  # DataFrame.persist()'s level
    note(ctx.record, "rows_out", df.count(), ACTION)  # the one action: it also fills the cache
    df.createOrReplaceTempView(name)


class Display(StreamingOptions):
    n: int = Field(20, ge=1, le=10_000, description="how many rows to show")


@register("load", "display", Display, sink="display", example="config: {n: 10}")
def display(ctx: StepContext, cfg: Display) -> Any:
    """Shows the first rows in the notebook (a stream fills an in-memory table of that name)."""
    if ctx.input.isStreaming:
        name = memory_table_name(ctx, cfg)
        ctx.record.extra["table"] = name
        return start(ctx, cfg, count_stream_rows(ctx, ctx.input), lambda w: w.format("memory"), name=name, durable=False)
    preview = ctx.input.limit(cfg.n).toPandas()
    note(ctx.record, "rows_out", len(preview), ACTION)
    ctx.emit("display", preview)
