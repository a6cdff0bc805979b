"""Settings every streaming load takes, and starting its query."""
from __future__ import annotations

import os
from typing import Any, Callable, Literal

from pydantic import Field, model_validator

from .. import config
from .quality import quarantine_of
from .registry import Config, StepContext

DEFAULT_CHECKPOINT_ROOT = os.path.join(os.path.expanduser("~"), ".pipeline_magics", "checkpoints")


class Trigger(Config):
    """When micro-batches run: every interval, once over what is available, or once."""

    processingTime: str | None = Field(None, description="e.g. '5 seconds'")
    availableNow: bool | None = Field(None, description="process what is there now (in several batches), then stop")
    once: bool | None = Field(None, description="one batch, then stop")

    @model_validator(mode="after")
    def _one(self) -> "Trigger":
        chosen = [k for k in ("processingTime", "availableNow", "once") if getattr(self, k)]
        if len(chosen) != 1:
            raise ValueError("a trigger is one of {processingTime: '5 seconds'}, {availableNow: true}, {once: true}")
        return self

    @property
    def finite(self) -> bool:
        return bool(self.availableNow or self.once)


class StreamingOptions(Config):
    """Streaming-only settings of a load (refused in batch mode)."""

    checkpointLocation: str | None = Field(
        None, description="default: $PIPELINE_CHECKPOINT_ROOT/<pipeline>/<step>")
    trigger: Trigger | None = Field(None, description="default: micro-batches as fast as data arrives")
    outputMode: Literal["append", "complete", "update"] | None = Field(None, description="default: append")
    queryName: str | None = Field(None, description="default: <pipeline>.<step>")


STREAMING_KEYS = frozenset(StreamingOptions.model_fields)


def checkpoint_root(spark: Any) -> str:
    """``$PIPELINE_CHECKPOINT_ROOT``, else the session's checkpoint conf, else ``~/.pipeline_magics/checkpoints``."""
    root = config.value("checkpoint_root")
    if not root:
        try:
            root = spark.conf.get("spark.sql.streaming.checkpointLocation", None)
        except Exception:  # noqa: BLE001
            root = None
    return root or DEFAULT_CHECKPOINT_ROOT


def checkpoint_location(ctx: StepContext, cfg: StreamingOptions, durable: bool = True) -> str | None:
    """The query's checkpoint: the step's setting, else ``<root>/<pipeline>/<step>`` (None: Spark's throw-away one)."""
    return cfg.checkpointLocation or (
        os.path.join(checkpoint_root(ctx.spark), ctx.pipeline, ctx.step_name) if durable else None)


def query_name(ctx: StepContext, cfg: StreamingOptions) -> str:
    return cfg.queryName or f"{ctx.pipeline}.{ctx.step_name}"


def start(ctx: StepContext, cfg: StreamingOptions, df: Any,
          configure: Callable[[Any], Any], *, path: str | None = None, table: str | None = None,
          output_mode: str | None = None, name: str | None = None, durable: bool = True,
          splits_quarantine: bool = False) -> Any:
    """Starts ``df.writeStream`` set up by ``configure``; returns the StreamingQuery.

    ``durable=False`` (memory sinks, whose rows die with the session) keeps Spark's
    throw-away checkpoint unless one is set, so a re-run starts afresh.
    """
    if not splits_quarantine and quarantine_of(ctx.input) is not None:
        raise ValueError("rows of an expect with onFail: quarantine are split off where a stream is written: "
                         "load it with toDelta (or quarantine in batch mode)")
    checkpoint = checkpoint_location(ctx, cfg, durable)
    writer = df.writeStream.queryName(name or query_name(ctx, cfg))
    if checkpoint:
        writer = writer.option("checkpointLocation", checkpoint)
    writer = writer.outputMode(output_mode or cfg.outputMode or "append")
    if cfg.trigger is not None:
        t = cfg.trigger
        writer = writer.trigger(processingTime=t.processingTime) if t.processingTime else (
            writer.trigger(availableNow=True) if t.availableNow else writer.trigger(once=True))
    writer = configure(writer)
    ctx.record.extra["checkpoint"] = checkpoint
    ctx.record.finite = bool(cfg.trigger and cfg.trigger.finite)
    if table:
        return writer.toTable(table)
    return writer.start(path) if path else writer.start()
