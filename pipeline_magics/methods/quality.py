"""Data-quality rules (``expect``): named rules, each rule's failing-row count, and the quarantine table.

Failing rows go to quarantine in the same pass over the data as the good rows:
in batch the step's input is cached, so the quarantine write and every later
step read the source once; in a stream each micro-batch is split where it is
written (``split_batch``), with idempotent Delta writes so a restart neither
loses nor repeats a batch.
"""
from __future__ import annotations

import json
import logging
from typing import Any, Callable, Literal

from pydantic import Field, model_validator

from ..errors import ExpectationError
from ..metrics.sources import ACTION, OBSERVATION, note, observed
from ..spark.cache import persist
from .registry import Config, StepContext, register

log = logging.getLogger("pipeline_magics")

#: the column holding the names of the rules a quarantined row failed
FAILED_RULES = "_failed_rules"
#: the metadata key on ``FAILED_RULES`` of a stream whose failing rows are split off where it is written
QUARANTINE_KEY = "pipeline_magics.quarantine"


class QuarantineTarget(Config):
    path: str | None = Field(None, description="the quarantine Delta table's folder")
    table: str | None = Field(None, description="a catalog table name (instead of path)")

    @model_validator(mode="after")
    def _one(self) -> "QuarantineTarget":
        if bool(self.path) == bool(self.table):
            raise ValueError("quarantine: set exactly one of 'path' or 'table'")
        return self


class Expect(Config):
    condition: str | None = Field(None, description="one rule (named after the step): what every row must satisfy "
                                                     "(NULL counts as failing)")
    rules: dict[str, str] | None = Field(None, min_length=1, description="rule name: condition, several rules")
    onFail: Literal["fail", "drop", "warn", "quarantine"] = Field(
        "fail", description="fail the run, drop failing rows, warn (keep them), or move them to 'quarantine'")
    name: str | None = Field(None, description="the rule's name for a single 'condition' (default: the step's)")
    quarantine: QuarantineTarget | None = Field(None, description="onFail: quarantine: the Delta table "
                                                                  "({path} or {table}) failing rows go to")

    @model_validator(mode="after")
    def _check(self) -> "Expect":
        if bool(self.condition) == bool(self.rules):
            raise ValueError("set 'condition' (one rule) or 'rules' ({name: condition, ...}), not both")
        if self.rules and self.name:
            raise ValueError("'name' names a single 'condition'; with 'rules' each rule has its name")
        if (self.onFail == "quarantine") != (self.quarantine is not None):
            raise ValueError("onFail: quarantine needs quarantine: {path: ...} or {table: ...} (and only it)")
        return self

    def named_rules(self, step_name: str) -> dict[str, str]:
        """Rule name -> condition."""
        return dict(self.rules) if self.rules else {self.name or step_name: self.condition or ""}


def _passes(condition: str) -> Any:
    from pyspark.sql import functions as F

    return F.coalesce(F.expr(condition), F.lit(False))


def failed_rules_column(rules: dict[str, str]) -> Any:
    """The names of the rules a row fails, as an array (empty when it passes them all)."""
    from pyspark.sql import functions as F

    return F.array_compact(F.array(*[F.when(~_passes(c), F.lit(n)) for n, c in rules.items()]))


def rule_counts(rules: dict[str, str]) -> list[Any]:
    """Aggregates: ``n`` rows, ``bad`` rows failing any rule, ``r0``, ``r1``, … rows failing each rule."""
    from pyspark.sql import functions as F

    every = [_passes(c) for c in rules.values()]
    ok = every[0]
    for more in every[1:]:
        ok = ok & more
    return [F.count(F.lit(1)).alias("n"), F.count_if(~ok).alias("bad"),
            *[F.count_if(~passes).alias(f"r{i}") for i, passes in enumerate(every)]]


def by_rule(names: list[str], figures: dict[str, Any]) -> dict[str, int]:
    """``{rule name: failing rows}`` from the ``r0``, ``r1``, … figures."""
    return {name: int(figures.get(f"r{i}") or 0) for i, name in enumerate(names)}


def _note_counts(ctx: StepContext, names: list[str], figures: dict[str, Any], on_fail: str, source: str) -> None:
    n, bad = int(figures.get("n") or 0), int(figures.get("bad") or 0)
    kept = n if on_fail in ("fail", "warn") else n - bad
    for key, value in (("rows_in", n), ("failed_rows", bad), ("rows_out", kept)):
        note(ctx.record, key, value, source)
    ctx.record.failed_rules = by_rule(names, figures)
    if bad and on_fail in ("warn", "quarantine"):
        log.warning("pipeline %s, step %s: %s rows failed %s (%s)", ctx.pipeline, ctx.step_name, bad,
                    ctx.record.failed_rules, "kept" if on_fail == "warn" else "quarantined")


@register("transform", "expect", Expect,
          example="config:\n  rules: {positive: 'amount > 0', has_customer: 'customer_id IS NOT NULL'}\n"
                  "  onFail: quarantine\n  quarantine: {path: /tmp/lake/orders_rejected}")
def expect(ctx: StepContext, cfg: Expect) -> Any:
    """Data-quality rules; each rule's failing rows are counted, and fail, drop, warn or quarantine."""

    rules = cfg.named_rules(ctx.step_name)
    names = list(rules)
    ctx.record.rule_names, ctx.record.on_fail = names, cfg.onFail
    streaming = ctx.input.isStreaming
    if cfg.onFail == "fail" and not streaming:
        return _gate(ctx, rules)
    if cfg.onFail == "quarantine":
        return (_tag_stream if streaming else _quarantine_batch)(ctx, cfg, rules)
    passing = _passes(" AND ".join(f"({c})" for c in rules.values()))
    if not ctx.metrics_enabled:
        return ctx.input.filter(passing) if cfg.onFail == "drop" else ctx.input
    counted = _observe(ctx, ctx.input, rules, cfg.onFail)
    return counted.filter(passing) if cfg.onFail == "drop" else counted


def _gate(ctx: StepContext, rules: dict[str, str]) -> Any:
    """onFail: fail in batch: checked now, before any sink runs (one aggregate over the input)."""
    figures = ctx.input.agg(*rule_counts(rules)).first().asDict()
    names = list(rules)
    _note_counts(ctx, names, figures, "fail", ACTION)
    if figures["bad"]:
        failing = {k: v for k, v in by_rule(names, figures).items() if v}
        detail = ", ".join(f"'{k}' ({rules[k]}): {v}" for k, v in failing.items())
        raise ExpectationError(
            f"expectation {', '.join(repr(k) for k in failing)} failed for {figures['bad']} of {figures['n']} rows "
            f"({detail}); nothing after this step ran",
            params={"failed": figures["bad"], "total": figures["n"], "rules": failing},
            hint="fix the data, or set onFail: drop (remove those rows), warn (keep them) or quarantine")
    return ctx.input


def _observe(ctx: StepContext, df: Any, rules: dict[str, str], on_fail: str) -> Any:
    """``df`` counting each rule's failing rows while a later action runs (no extra pass)."""
    from pyspark.sql import Observation

    if df.isStreaming:
        # An Observation takes no streams: a named observation is reported with every micro-batch
        # and the run sums it (metrics.queries.QueryStore, metrics.sources.update_streaming).
        name = f"pm_expect_{ctx.run_id}_{ctx.index}"
        ctx.record.observation = name
        return df.observe(name, *rule_counts(rules))
    obs = Observation(f"expect_{ctx.run_id}_{ctx.index}")
    names = list(rules)

    def read() -> bool:
        figures = observed(obs)
        if figures:
            _note_counts(ctx, names, figures, on_fail, OBSERVATION)
        return bool(figures)

    ctx.after.append(read)
    return df.observe(obs, *rule_counts(rules))


def _quarantine_batch(ctx: StepContext, cfg: Expect, rules: dict[str, str]) -> Any:
    """Writes the failing rows now and returns the passing ones; the source is read once (cached)."""
    from pyspark.sql import functions as F

    tagged = persist(ctx.spark, ctx.input.withColumn(FAILED_RULES, failed_rules_column(rules)))
    ctx.cached.append(tagged)
    counted = _observe(ctx, tagged, rules, "quarantine") if ctx.metrics_enabled else tagged
    assert cfg.quarantine is not None
    write_quarantine(counted.filter(F.size(FAILED_RULES) > 0), cfg.quarantine, ctx.pipeline, ctx.run_id,
                     app_id=f"pipeline_magics.{ctx.pipeline}.{ctx.step_name}.quarantine", version=ctx.run_version)
    return tagged.filter(F.size(FAILED_RULES) == 0).drop(FAILED_RULES)


def write_quarantine(bad: Any, target: QuarantineTarget, pipeline: str, run_id: str, app_id: str,
                     version: int) -> None:
    """Appends ``bad`` (with its ``_failed_rules``) and where it came from to the quarantine Delta table.

    Idempotent: Delta skips a second write with the same ``app_id`` and ``version``.
    """
    from pyspark.sql import functions as F

    out = bad.select(*[F.col(c) for c in bad.columns if c != FAILED_RULES], F.col(FAILED_RULES),
                     F.lit(pipeline).alias("_pipeline"), F.lit(run_id).alias("_run_id"),
                     F.current_timestamp().alias("_quarantined_at"))
    writer = (out.write.format("delta").mode("append").option("mergeSchema", "true")
              .option("txnAppId", app_id).option("txnVersion", version))
    writer.saveAsTable(target.table) if target.table else writer.save(target.path)


# ------------------------------------------------------------------ streams


def _tag_stream(ctx: StepContext, cfg: Expect, rules: dict[str, str]) -> Any:
    """A stream keeping every row, failing ones marked in ``_failed_rules``; the load splits each batch."""

    assert cfg.quarantine is not None
    where = {"path": cfg.quarantine.path, "table": cfg.quarantine.table, "step": ctx.step_name,
             "pipeline": ctx.pipeline, "run_id": ctx.run_id}
    df = _observe(ctx, ctx.input, rules, "quarantine") if ctx.metrics_enabled else ctx.input
    return df.withColumn(FAILED_RULES, failed_rules_column(rules).alias(
        FAILED_RULES, metadata={QUARANTINE_KEY: json.dumps(where)}))


def quarantine_of(df: Any) -> dict[str, Any] | None:
    """Where a tagged stream's failing rows go (set by ``expect`` with onFail: quarantine), else None."""
    if FAILED_RULES not in df.columns:
        return None
    meta = df.schema[FAILED_RULES].metadata or {}
    return json.loads(meta[QUARANTINE_KEY]) if QUARANTINE_KEY in meta else None


def query_id(batch: Any) -> str:
    """The id of the streaming query running this micro-batch ("" where Spark does not say): a fresh
    checkpoint is a new query, whose batch ids start again without Delta taking them for repeats."""
    try:
        return batch.sparkSession.sparkContext.getLocalProperty("sql.streaming.queryId") or ""
    except Exception:  # noqa: BLE001 - Spark Connect: no SparkContext on the client
        return ""


def split_batch(where: dict[str, Any], write_good: Callable[[Any, int], None]) -> Callable[[Any, int], None]:
    """A foreachBatch function: each micro-batch read once (cached), its passing rows to ``write_good``,
    its failing rows appended to the quarantine table, exactly once per batch id."""
    from pyspark.sql import functions as F

    target = QuarantineTarget(path=where.get("path"), table=where.get("table"))

    def write(batch: Any, batch_id: int) -> None:
        batch = persist(batch.sparkSession, batch)
        try:
            write_good(batch.filter(F.size(FAILED_RULES) == 0).drop(FAILED_RULES), batch_id)
            write_quarantine(batch.filter(F.size(FAILED_RULES) > 0), target, where["pipeline"], where["run_id"],
                             app_id=f"pipeline_magics.{where['pipeline']}.{where['step']}.quarantine.{query_id(batch)}",
                             version=batch_id)
        finally:
            batch.unpersist()

    return write


def append_batch(path: str | None, table: str | None, app_id: str) -> Callable[[Any, int], None]:
    """A ``write_good`` appending a micro-batch to Delta once per batch id (``txnAppId``/``txnVersion``)."""

    def write(batch: Any, batch_id: int) -> None:
        writer = (batch.write.format("delta").mode("append").option("txnAppId", f"{app_id}.{query_id(batch)}")
                  .option("txnVersion", batch_id))
        writer.saveAsTable(table) if table else writer.save(path)

    return write

