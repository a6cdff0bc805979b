"""Extract methods: each reads a source into a DataFrame."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from ..spark.session import require_delta
from .jdbc import PostgresConnection
from .registry import Config, StepContext, register

Paths = str | list[str]


class FileSource(Config):
    path: Paths = Field(description="a file, folder or glob (or a list of them)")
    schema_: str | None = Field(None, alias="schema", description="a DDL schema, e.g. 'id INT, name STRING'")
    options: dict[str, Any] = Field(default_factory=dict, description="more Spark reader options")


def _read(ctx: StepContext, fmt: str, cfg: FileSource, **options: Any) -> Any:
    streaming = ctx.mode == "streaming"
    reader = ctx.spark.readStream if streaming else ctx.spark.read
    reader = reader.format(fmt).options(**{k: v for k, v in options.items() if v is not None}, **cfg.options)
    if cfg.schema_:
        reader = reader.schema(cfg.schema_)
    if streaming:
        return reader.load(cfg.path if isinstance(cfg.path, str) else cfg.path[0])
    return reader.load(cfg.path)


class CsvSource(FileSource):
    header: bool = Field(True, description="the first line holds column names")
    inferSchema: bool = Field(False, description="guess column types (one extra pass over the data)")
    sep: str = Field(",", description="the field separator")


@register("extract", "fromCsv", CsvSource, example="config: {path: data/orders.csv, header: true, inferSchema: true}",
          plan_rows="scan", observed=True)
def from_csv(ctx: StepContext, cfg: CsvSource) -> Any:
    """Reads CSV files."""
    return _read(ctx, "csv", cfg, header=str(cfg.header).lower(),
                 inferSchema=str(cfg.inferSchema).lower(), sep=cfg.sep)


class JsonSource(FileSource):
    multiLine: bool = Field(False, description="one JSON document spans several lines")


@register("extract", "fromJson", JsonSource, example="config: {path: data/events.json}", plan_rows="scan",
          observed=True)
def from_json(ctx: StepContext, cfg: JsonSource) -> Any:
    """Reads JSON (one object per line, or multiLine)."""
    return _read(ctx, "json", cfg, multiLine=str(cfg.multiLine).lower())


@register("extract", "fromParquet", FileSource, example="config: {path: /data/sales.parquet}", plan_rows="scan")
def from_parquet(ctx: StepContext, cfg: FileSource) -> Any:
    """Reads Parquet files."""
    return _read(ctx, "parquet", cfg)


class DeltaSource(Config):
    path: str | None = Field(None, description="the table's folder")
    table: str | None = Field(None, description="a catalog table name (instead of path)")
    versionAsOf: int | None = Field(None, description="time travel: read this version")
    timestampAsOf: str | None = Field(None, description="time travel: read as of this time")
    options: dict[str, Any] = Field(default_factory=dict, description="more Delta reader options")

    @model_validator(mode="after")
    def _one_target(self) -> "DeltaSource":
        if bool(self.path) == bool(self.table):
            raise ValueError("set exactly one of 'path' or 'table'")
        return self


@register("extract", "fromDelta", DeltaSource, example="config: {path: /tmp/lake/orders}", plan_rows="scan")
def from_delta(ctx: StepContext, cfg: DeltaSource) -> Any:
    """Reads a Delta table by path or name (a stream in streaming mode)."""
    require_delta(ctx.spark)
    streaming = ctx.mode == "streaming"
    reader = (ctx.spark.readStream if streaming else ctx.spark.read).format("delta").options(**cfg.options)
    if cfg.versionAsOf is not None:
        reader = reader.option("versionAsOf", cfg.versionAsOf)
    if cfg.timestampAsOf is not None:
        reader = reader.option("timestampAsOf", cfg.timestampAsOf)
    return reader.table(cfg.table) if cfg.table else reader.load(cfg.path)


class TableSource(Config):
    table: str = Field(description="a table or view name in the catalog")


@register("extract", "fromTable", TableSource, example="config: {table: sales.orders}", plan_rows="scan")
def from_table(ctx: StepContext, cfg: TableSource) -> Any:
    """Reads a catalog table or view."""
    if ctx.mode == "streaming":
        return ctx.spark.readStream.table(cfg.table)
    return ctx.spark.read.table(cfg.table)


class PostgresSource(PostgresConnection):
    table: str | None = Field(None, description="a table name (or use query)")
    query: str | None = Field(None, description="a SELECT whose result is read (instead of table)")
    partitionColumn: str | None = Field(None, description="a numeric/date column to split the read on")
    lowerBound: int | str | None = None
    upperBound: int | str | None = None
    numPartitions: int | None = Field(None, ge=1)
    fetchSize: int | None = Field(None, ge=1, description="rows per round trip")

    @model_validator(mode="after")
    def _what(self) -> "PostgresSource":
        if bool(self.table) == bool(self.query):
            raise ValueError("set exactly one of 'table' or 'query'")
        bounds = (self.partitionColumn, self.lowerBound, self.upperBound, self.numPartitions)
        if any(b is not None for b in bounds[:3]) and not all(b is not None for b in bounds):
            raise ValueError("a partitioned read needs partitionColumn, lowerBound, upperBound and numPartitions")
        return self


@register("extract", "fromPostgres", PostgresSource, modes=("batch",), retried=True,
          example="config: {host: localhost, database: shop, table: public.orders, user: analyst,\n"
                  "         password: vault:secret/pg#password}", plan_rows="scan")
def from_postgres(ctx: StepContext, cfg: PostgresSource) -> Any:
    """Reads a PostgreSQL table or query over JDBC."""
    opts = cfg.jdbc_options()
    if cfg.table:
        opts["dbtable"] = cfg.table
    else:
        opts["query"] = cfg.query
    for key in ("partitionColumn", "lowerBound", "upperBound", "numPartitions", "fetchSize"):
        value = getattr(cfg, key)
        if value is not None:
            opts[key if key != "fetchSize" else "fetchsize"] = str(value)
    return ctx.spark.read.format("jdbc").options(**opts).load()


class KafkaSource(Config):
    bootstrapServers: str = Field(description="host:port[,host:port]")
    topic: str | None = Field(None, description="a topic, or several separated by commas")
    subscribePattern: str | None = Field(None, description="a regex of topics (instead of topic)")
    startingOffsets: str = Field("earliest", description="earliest, latest or a JSON of offsets")
    endingOffsets: str | None = Field(None, description="batch only: latest or a JSON of offsets")
    format: Literal["json", "raw"] = Field("raw", description="json: parse value with schema; raw: key/value/topic/…")
    schema_: str | None = Field(None, alias="schema", description="DDL schema of the JSON value")
    options: dict[str, Any] = Field(default_factory=dict, description="more Kafka source options (kafka.*)")

    @model_validator(mode="after")
    def _subscription(self) -> "KafkaSource":
        if bool(self.topic) == bool(self.subscribePattern):
            raise ValueError("set exactly one of 'topic' or 'subscribePattern'")
        if self.format == "json" and not self.schema_:
            raise ValueError("format: json needs 'schema' (a DDL string such as 'id INT, name STRING')")
        return self


@register("extract", "fromKafka", KafkaSource, retried=True,
          example="config: {bootstrapServers: localhost:9092, topic: orders, format: json,\n"
                  "         schema: 'id INT, amount DOUBLE'}")
def from_kafka(ctx: StepContext, cfg: KafkaSource) -> Any:
    """Reads a Kafka topic (a stream in streaming mode, the offsets range in batch)."""
    from pyspark.sql import functions as F

    streaming = ctx.mode == "streaming"
    reader = (ctx.spark.readStream if streaming else ctx.spark.read).format("kafka")
    reader = reader.option("kafka.bootstrap.servers", cfg.bootstrapServers)
    reader = reader.option("subscribe", cfg.topic) if cfg.topic else reader.option("subscribePattern", cfg.subscribePattern)
    reader = reader.option("startingOffsets", cfg.startingOffsets)
    if cfg.endingOffsets and not streaming:
        reader = reader.option("endingOffsets", cfg.endingOffsets)
    df = reader.options(**cfg.options).load()
    if cfg.format == "raw":
        return df.selectExpr("CAST(key AS STRING) AS key", "CAST(value AS STRING) AS value",
                             "topic", "partition", "offset", "timestamp")
    parsed = F.from_json(F.col("value").cast("string"), cfg.schema_)
    return df.select(parsed.alias("v"), "timestamp").select("v.*", F.col("timestamp").alias("kafka_timestamp"))


class RateSource(Config):
    rowsPerSecond: int = Field(10, ge=1)
    numPartitions: int | None = Field(None, ge=1)


@register("extract", "fromRate", RateSource, modes=("streaming",), example="config: {rowsPerSecond: 100}")
def from_rate(ctx: StepContext, cfg: RateSource) -> Any:
    """A streaming test source: rows of (timestamp, value) at a fixed rate."""
    reader = ctx.spark.readStream.format("rate").option("rowsPerSecond", cfg.rowsPerSecond)
    if cfg.numPartitions:
        reader = reader.option("numPartitions", cfg.numPartitions)
    return reader.load()
