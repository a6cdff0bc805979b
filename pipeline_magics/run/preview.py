"""Preview of the writes (``--preview``): the reads and transforms run, the loads only look.

``preview_plan`` puts a look-only function in place of each load; it counts what the
load would write and compares it with what the target holds now, and reports one dict
per load step (``LOAD_KEYS``; None where a figure does not apply). One function per load
kind, registered in ``PREVIEWS`` by method and write mode, so a new mode adds its own.
Nothing is written: no Delta commit, no row in PostgreSQL, no file, no checkpoint. With
``diff``, a table load also compares the table now with what it would leave (``run.diff``):
its preview function names both sides (``sides``), the load's dict gets the ``Diff``.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

from ..methods import cdc, contracts, jdbc
from ..methods.load import diff_keys
from ..methods.registry import StepContext
from .changes import read_version
from .diff import DiffSet, compare
from ..metrics.sources import delta_latest_version
from ..spec.plan import Plan, PlannedStep

LOAD_KEYS = ("step", "target", "action", "rows_before", "rows_after", "inserted", "updated", "deleted",
             "schema_changes")

#: (ctx, cfg, sides) -> the load's figures; a table load puts the table now and what it would leave in ``sides``
Preview = Callable[[StepContext, Any, dict[str, Any]], dict[str, Any]]
#: (method, mode) -> its preview; mode None: any mode of that method
PREVIEWS: dict[tuple[str, str | None], Preview] = {}


def previews(method: str, *modes: str | None) -> Callable[[Preview], Preview]:
    """Registers the preview of ``method`` for the write ``modes`` (none given: every mode)."""

    def decorate(func: Preview) -> Preview:
        for mode in modes or (None,):
            PREVIEWS[(method, mode)] = func
        return func

    return decorate


def figures(ctx: StepContext, target: str, action: str, **values: Any) -> dict[str, Any]:
    """One load's preview with every key of ``LOAD_KEYS``."""
    out: dict[str, Any] = dict.fromkeys(LOAD_KEYS)
    out.update(step=ctx.step_name, target=target, action=action, **values)
    return out


def preview_load(ctx: StepContext, cfg: Any, diff: bool = False) -> None:
    """The stand-in of a load step: records what it would do in ``ctx.record.extra['preview']`` (``diff``: with
    the rows it would change, under ``'diff'``)."""
    mode = getattr(cfg, "mode", None)
    func = PREVIEWS.get((ctx.step.method, mode)) or PREVIEWS.get((ctx.step.method, None))
    if func is None:
        raise ValueError(f"{ctx.step.method} with mode {mode} cannot be previewed")
    sides: dict[str, Any] = {}
    ctx.record.extra["preview"] = out = func(ctx, cfg, sides)
    if diff and sides:
        out["diff"] = compare(sides["before"], sides["after"], diff_keys(cfg), target=out["target"],
                              labels=("now", "after the load"), step=ctx.step_name)


def preview_plan(plan: Plan, diff: bool = False) -> Plan:
    """``plan`` with every load looking instead of writing (``diff``: and comparing the rows of its table);
    a streaming spec is read as a batch."""
    steps = tuple(_looking(p, diff) if p.step.type == "load" else p for p in plan.steps)
    return Plan(plan.spec.model_copy(update={"mode": "batch"}), steps)


def _looking(planned: PlannedStep, diff: bool) -> PlannedStep:
    func = functools.partial(preview_load, diff=diff)
    return dataclasses.replace(planned, method=dataclasses.replace(planned.method, func=func))


def loads_of(metrics: Any) -> list[dict[str, Any]]:
    """The previews the load steps of a preview run recorded."""
    return [s.extra["preview"] for s in metrics.steps if s.type == "load" and "preview" in s.extra]


def diffs_of(loads: list[dict[str, Any]] | None) -> DiffSet | None:
    """The diffs a preview with ``diff`` made (one per table load), else None."""
    found = [load["diff"] for load in loads or () if "diff" in load]
    return DiffSet(found) if found else None


# ------------------------------------------------------------------ shared


def table_figures(ctx: StepContext, target: str, mode: str, before: int | None, n: int,
                  changes: list[dict[str, Any]] | None) -> dict[str, Any]:
    """append / overwrite / error / ignore against a target holding ``before`` rows (None: absent)."""
    exists = before is not None
    base = dict(rows_before=before or 0, schema_changes=changes)
    if mode == "append" or not exists:
        return figures(ctx, target, "append" if exists else "create", inserted=n, rows_after=(before or 0) + n,
                       **base)
    if mode == "overwrite":
        return figures(ctx, target, "overwrite", rows_after=n, **base)
    if mode == "ignore":
        return figures(ctx, target, "ignore (the target exists: nothing written)", rows_after=before, **base)
    return figures(ctx, target, f"fail (the target exists, mode: {mode})", rows_after=before, **base)


def _rows(ctx: StepContext, cfg: Any, target_schema: Any) -> tuple[Any, int]:
    """The data the load would write (under its schema contract; the target is not evolved) and its row count."""
    df = contracts.enforce(ctx, cfg, ctx.input, target_schema, lambda fields: None)
    return df, df.count()


# ------------------------------------------------------------------ Delta


def _delta_target(ctx: StepContext, cfg: Any) -> tuple[Any, str]:
    """The target as it is now (at its current version, where the driver knows it), or None; its name."""
    schema = contracts.delta_schema(ctx.spark, cfg.path, cfg.table)
    target = None
    if schema is not None:
        version = delta_latest_version(ctx.spark, cfg.path, cfg.table)
        target = read_version(ctx.spark, {"path": cfg.path, "table": cfg.table}, version) if version >= 0 else (
            ctx.spark.table(cfg.table) if cfg.table else ctx.spark.read.format("delta").load(cfg.path))
    return target, cfg.table or cfg.path


def written(mode: str, target: Any, df: Any) -> Any:
    """The table an append / overwrite / error / ignore of ``df`` would leave (``target``: the table now)."""
    if target is None:
        return df
    if mode == "append":
        return target.unionByName(df, allowMissingColumns=True)
    return df if mode == "overwrite" else target


@previews("toDelta", "append", "overwrite", "error", "errorifexists", "ignore")
def delta_write(ctx: StepContext, cfg: Any, sides: dict[str, Any]) -> dict[str, Any]:
    """Delta append / overwrite: rows now there, rows after, the schema changes."""
    target, name = _delta_target(ctx, cfg)
    df, n = _rows(ctx, cfg, target.schema if target is not None else None)
    sides.update(before=target, after=written(cfg.mode, target, df))
    before = target.count() if target is not None else None
    changes = contracts.schema_changes(df.schema, target.schema) if target is not None else None
    return table_figures(ctx, name, cfg.mode, before, n, changes)


@previews("toDelta", "merge")
def delta_merge(ctx: StepContext, cfg: Any, sides: dict[str, Any]) -> dict[str, Any]:
    """Delta merge on keys: target rows a source row matches are updated, the other source rows inserted."""
    target, name = _delta_target(ctx, cfg)
    df, n = _rows(ctx, cfg, target.schema if target is not None else None)
    sides.update(before=target, after=df)
    if target is None:
        return figures(ctx, name, "create", rows_before=0, rows_after=n, inserted=n, updated=0, deleted=0)
    keys = cfg.mergeKeys or []
    s, t = df.alias("s"), target.alias("t")
    on = [s[f"`{k}`"].eqNullSafe(t[f"`{k}`"]) for k in keys]
    sides["after"] = t.join(s, on, "left_anti").unionByName(df, allowMissingColumns=True)
    updated = t.join(s, on, "left_semi").count()
    inserted = s.join(t, on, "left_anti").count()
    before = target.count()
    return figures(ctx, name, "merge", rows_before=before, rows_after=before + inserted, inserted=inserted,
                   updated=updated, deleted=0, schema_changes=contracts.schema_changes(df.schema, target.schema))


@previews("toDelta", "scd1", "scd2")
def delta_cdc(ctx: StepContext, cfg: Any, sides: dict[str, Any]) -> dict[str, Any]:
    """Delta scd1/scd2: the inserts, updates and deletes the merge of these changes would make."""
    target, name = _delta_target(ctx, cfg)
    sides.update(before=target, after=cdc.after_changes(ctx.input, target, cfg.path, cfg.table, cfg.cdc))
    counts = cdc.change_counts(ctx.input, cfg.path, cfg.table, cfg.cdc)
    before = target.count() if target is not None else 0
    # scd1 deletes rows; scd2 closes them (an update) and adds a row per new version
    return figures(ctx, name, cfg.mode, rows_before=before,
                   rows_after=before + counts["inserted"] - counts["deleted"], **counts)


# ------------------------------------------------------------------ PostgreSQL


@previews("toPostgres")
def postgres_write(ctx: StepContext, cfg: Any, sides: dict[str, Any]) -> dict[str, Any]:
    """PostgreSQL append / overwrite / error / ignore: rows now there (counted in the database), rows after."""
    opts = cfg.jdbc_options()
    schema = contracts.postgres_schema(ctx.spark, opts, cfg.table)
    df, n = _rows(ctx, cfg, schema)
    table = ctx.spark.read.format("jdbc").options(**opts, dbtable=cfg.table).load() if schema is not None else None
    sides.update(before=table, after=written(cfg.mode, table, df))
    before = None
    if schema is not None:
        before = int(jdbc.run_statement(ctx.spark, opts, None, f"SELECT count(*) AS n FROM {cfg.table}")[0][0])
    changes = contracts.schema_changes(df.schema, schema) if schema is not None else None
    return table_figures(ctx, cfg.table, cfg.mode, before, n, changes)


# ------------------------------------------------------------------ files and the rest


@previews("toParquet")
@previews("toCsv")
@previews("toJson")
def files_write(ctx: StepContext, cfg: Any, sides: dict[str, Any]) -> dict[str, Any]:
    """Files: the rows the folder holds now (read in the same format), rows after."""
    fmt = {"toParquet": "parquet", "toCsv": "csv", "toJson": "json"}[ctx.step.method]
    df, n = _rows(ctx, cfg, None)
    try:
        reader = ctx.spark.read.format(fmt)
        current = (reader.option("header", str(getattr(cfg, "header", True)).lower()) if fmt == "csv" else reader
                   ).load(cfg.path)
        before: int | None = current.count()
        changes = contracts.schema_changes(df.schema, current.schema) if fmt == "parquet" else None
    except Exception:  # noqa: BLE001 - no files there yet
        before, changes = None, None
    return table_figures(ctx, cfg.path, cfg.mode, before, n, changes)


@previews("toKafka")
def kafka_write(ctx: StepContext, cfg: Any, sides: dict[str, Any]) -> dict[str, Any]:
    """Kafka: every row becomes one message appended to the topic."""
    return figures(ctx, f"kafka topic {cfg.topic}", "append", inserted=ctx.input.count())


@previews("toMemory")
@previews("display")
def shown(ctx: StepContext, cfg: Any, sides: dict[str, Any]) -> dict[str, Any]:
    """toMemory and display keep or show the rows; nothing outside the session changes."""
    target = "notebook" if ctx.step.method == "display" else (cfg.queryName or ctx.step.name or ctx.step_name)
    return figures(ctx, target, "show" if ctx.step.method == "display" else "memory table",
                   inserted=ctx.input.count())


def render_html(loads: list[dict[str, Any]]) -> str:
    """The previews as an HTML table."""
    import html

    def cell(value: Any) -> str:
        if value is None:
            return "<td>—</td>"
        if isinstance(value, list):
            text = ", ".join(f"{c['column']}: {c['change']}" + (f" {c['from'] or ''}→{c['to'] or ''}"
                                                              if c["change"] == "type" else f" ({c['to'] or c['from']})")
                             for c in value) or "none"
            return f"<td>{html.escape(text)}</td>"
        return f"<td style='text-align:right'>{html.escape(format(value, ',') if isinstance(value, int) else str(value))}</td>"

    head = "".join(f"<th>{k.replace('_', ' ')}</th>" for k in LOAD_KEYS)
    body = "".join("<tr>" + "".join(cell(load[k]) if k not in ("step", "target", "action") else
                                    f"<td>{html.escape(str(load[k]))}</td>" for k in LOAD_KEYS) + "</tr>"
                   for load in loads)
    diffs = diffs_of(loads)
    return (f"<p><b>preview</b>: nothing was written</p><table><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table>" + (diffs._repr_html_() if diffs else ""))
