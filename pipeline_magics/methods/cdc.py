"""Change data capture into Delta: ``toDelta`` with ``mode: scd1`` (latest row per key) or ``scd2`` (history).

A batch of changes is resolved against what the table already holds for the
keys it touches: the stored rows (and, for ``scd2``, their ``__START_AT`` /
``__END_AT``), the deletes applied before (so a change older than a delete
never brings a row back: an scd2 history shows most of them by itself, the
others are kept in a small side table, written only when a batch has such a
delete), and the new changes.
Within a key the ``sequenceBy`` value orders everything, so late changes land
where they belong and applying the same changes again changes nothing (the
stored row wins a tie). The result carries an ``__ACTION`` per row
(insert / update / delete); one SQL ``MERGE`` applies it, which works on classic
sessions and on Spark Connect alike. ``change_counts`` gives the same counts
without writing (for previews).
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from functools import reduce
from typing import Any

from ..metrics.sources import delta_commit
from ..spark.observation import counts_merge_source, observed
from . import delta
from ..spark.cache import persist

START, END = "__START_AT", "__END_AT"
SEQ, DEL, PRIO, OLD_END, ACTION = "__pm_seq", "__pm_delete", "__pm_stored", "__pm_old_end", "__ACTION"
RECORD = "__pm_record"
#: ``PRIO`` of an event: a stored row or kept delete, a delete the scd2 history shows, a new change
STORED, SHOWN, NEW = 0, 1, 2
#: the side table of applied deletes: ``<path>__deletes`` next to a path target, or ``<table>__deletes``
DELETES_SUFFIX = "__deletes"


@dataclass(frozen=True)
class Cdc:
    """What an scd1/scd2 load needs to know about the change log."""

    mode: str
    keys: tuple[str, ...]
    sequence: str
    delete_when: str | None = None
    except_columns: tuple[str, ...] = ()

    def columns(self, changes: Any) -> list[str]:
        """The change log's columns that are stored (all but ``exceptColumns``)."""
        return [c for c in changes.columns if c not in self.except_columns]

    def check(self, changes: Any) -> None:
        """Raises ``ValueError`` for settings that do not fit the change log."""
        missing = [c for c in (*self.keys, self.sequence) if c not in changes.columns]
        if missing:
            raise ValueError(f"no column {missing} in the changes; columns are {changes.columns}")
        if set(self.keys) & set(self.except_columns):
            raise ValueError("'exceptColumns' cannot hold a merge key")
        if self.mode == "scd1" and self.sequence in self.except_columns:
            raise ValueError("scd1 keeps the 'sequenceBy' column (it orders later changes); "
                             "take it out of 'exceptColumns'")


def deletes_target(path: str | None, table: str | None) -> tuple[str | None, str | None]:
    """Where the applied deletes of a target are kept."""
    return (f"{path.rstrip('/')}{DELETES_SUFFIX}", None) if path else (None, f"{table}{DELETES_SUFFIX}")


def _read(spark: Any, path: str | None, table: str | None, version: int | None = None) -> Any | None:
    """The Delta table (at ``version``), or None when there is none (yet)."""
    reader = spark.read.format("delta") if version is None else (
        spark.read.format("delta").option("versionAsOf", version))
    if table:
        return reader.table(table) if delta.exists(spark, None, table) else None
    try:
        df = reader.load(path)
        df.schema  # noqa: B018 - Spark Connect analyses lazily: a missing table fails here
        return df
    except Exception:  # noqa: BLE001 - not a Delta table (yet)
        return None


def _q(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _semi(df: Any, keys_df: Any, keys: tuple[str, ...], null_safe: bool = True) -> Any:
    """The rows of ``df`` whose key is in ``keys_df`` (NULL-safe unless told: then a NULL key matches nothing)."""
    from pyspark.sql import functions as F

    if not null_safe:
        return df.join(keys_df, list(keys), "left_semi")
    a, b = df.alias("pm_a"), keys_df.alias("pm_b")
    on = reduce(lambda x, y: x & y, [F.col(f"pm_a.{_q(k)}").eqNullSafe(F.col(f"pm_b.{_q(k)}")) for k in keys])
    return a.join(b, on, "left_semi")


def normalize(changes: Any, cdc: Cdc) -> Any:
    """The change log as events: stored columns, the sequence, the delete mark, not stored yet."""
    from pyspark.sql import functions as F

    cdc.check(changes)
    deleted = F.coalesce(F.expr(cdc.delete_when), F.lit(False)) if cdc.delete_when else F.lit(False)
    return changes.select(*[F.col(_q(c)) for c in cdc.columns(changes)], F.col(_q(cdc.sequence)).alias(SEQ),
                          deleted.alias(DEL), F.lit(NEW).alias(PRIO))


def resolve(events: Any, target: Any | None, deletes: Any | None, cdc: Cdc, null_safe: bool = True) -> Any:
    """The rows to write, each with its ``__ACTION`` (insert, update, delete or none), its sequence and
    ``__pm_record`` (true for a delete the side table must keep: one the target will not show by itself).

    ``events`` is ``normalize``'s frame; ``target`` the table now (or None), ``deletes`` its side table.
    An scd2 history shows the deletes that closed a row (its ``__END_AT`` starts no other row): those
    come back from the target as events, so only a delete that follows no row (a key's first change,
    or a delete after a delete, a shown one included) is kept aside. scd1 keeps a delete that is its
    key's latest change. ``null_safe=False`` resolves the changes with a NULL in a key as if the
    table had no rows for them (cheaper joins; the caller applies those changes apart).
    """
    cols = [c for c in events.columns if c not in (SEQ, DEL, PRIO)]
    timeline = _timeline(events, target, deletes, cdc, cols, null_safe)
    return (_resolve_scd1 if cdc.mode == "scd1" else _resolve_scd2)(timeline, list(cdc.keys), cols)


def _timeline(events: Any, target: Any | None, deletes: Any | None, cdc: Cdc, cols: list[str],
              null_safe: bool) -> Any:
    """Every event of the keys the changes touch: the changes, the stored rows (scd2: each row, and the
    delete its ``__END_AT`` shows when no stored row starts there) and the kept deletes."""
    from pyspark.sql import functions as F

    keys = list(cdc.keys)
    affected = events.select(*[_q(k) for k in keys]).distinct()
    parts = [events]
    if target is not None:
        stored = _semi(target, affected, cdc.keys, null_safe)
        if cdc.mode == "scd2":
            def event(values: list[Any], seq: Any, deleted: bool, prio: int, old_end: Any) -> Any:
                return F.struct(*values, seq.alias(SEQ), F.lit(deleted).alias(DEL), F.lit(prio).alias(PRIO),
                                old_end.alias(OLD_END))

            types = {f.name: f.dataType for f in stored.schema.fields}
            blank = [F.col(_q(c)) if c in keys else F.lit(None).cast(types[c]).alias(c) for c in cols]
            both = F.array(event([F.col(_q(c)) for c in cols], F.col(START), False, STORED, F.col(END)),
                           event(blank, F.col(END), True, SHOWN, F.lit(None).cast(types[END])))
            parts.append(stored.select(F.inline(both)).filter(F.col(SEQ).isNotNull()))
        else:
            parts.append(stored.select(*[F.col(_q(c)) for c in cols], F.col(cdc.sequence).alias(SEQ),
                                       F.lit(False).alias(DEL), F.lit(STORED).alias(PRIO)))
    if deletes is not None:
        parts.append(_semi(deletes, affected, cdc.keys, null_safe).select(
            *[F.col(_q(k)) for k in keys], F.col(SEQ), F.lit(True).alias(DEL), F.lit(STORED).alias(PRIO)))
    timeline = reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), parts)
    if OLD_END not in timeline.columns:
        timeline = timeline.withColumn(OLD_END, F.lit(None).cast(timeline.schema[SEQ].dataType))
    return timeline


def _tie_break() -> list[Any]:
    """A tie on the sequence: what is stored wins, then a delete."""
    from pyspark.sql import functions as F

    return [F.col(PRIO).asc(), F.col(DEL).desc()]


def _unkept_delete() -> Any:
    """A delete that is not kept aside yet."""
    from pyspark.sql import functions as F

    return (F.col(PRIO) != STORED) & F.col(DEL)


def _resolve_scd1(timeline: Any, keys: list[str], cols: list[str]) -> Any:
    """A key's latest event wins: inserted, updated or deleted as what is stored now requires."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    by_key = Window.partitionBy(*[F.col(_q(k)) for k in keys])
    latest = by_key.orderBy(F.col(SEQ).desc(), *_tie_break())
    current = F.max(F.when((F.col(PRIO) == STORED) & ~F.col(DEL), 1).otherwise(0)).over(by_key)
    winners = (timeline.withColumn("__pm_rank", F.row_number().over(latest)).withColumn("__pm_current", current)
               .filter("__pm_rank = 1"))
    action = (F.when(F.col(PRIO) != NEW, "none")
              .when(F.col(DEL), F.when(F.col("__pm_current") == 1, "delete").otherwise("none"))
              .when(F.col("__pm_current") == 1, "update").otherwise("insert"))
    return winners.select(*[F.col(_q(c)) for c in cols], action.alias(ACTION), F.col(SEQ),
                          _unkept_delete().alias(RECORD))


def _resolve_scd2(timeline: Any, keys: list[str], cols: list[str]) -> Any:
    """One event per key and sequence, in order: each ends where the next starts; a new one is inserted,
    a stored one whose end moved is updated; a delete after no row is kept aside."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    key_cols = [F.col(_q(k)) for k in keys]
    deduped = (timeline.withColumn("__pm_rank", F.row_number().over(
        Window.partitionBy(*key_cols, F.col(SEQ)).orderBy(*_tie_break()))).filter("__pm_rank = 1"))
    in_order = Window.partitionBy(*key_cols).orderBy(SEQ)
    ended = (deduped.withColumn(END, F.lead(SEQ).over(in_order))
             .withColumn(RECORD, _unkept_delete() & F.coalesce(F.lag(DEL).over(in_order), F.lit(True))))
    action = (F.when(F.col(DEL), "none").when(F.col(PRIO) == NEW, "insert")
              .when(F.col(OLD_END).eqNullSafe(F.col(END)), "none").otherwise("update"))
    return ended.select(*[F.col(_q(c)) for c in cols], F.col(SEQ).alias(START), F.col(END), action.alias(ACTION),
                        F.col(SEQ), F.col(RECORD))


def change_counts(changes: Any, path: str | None, table: str | None, cdc: Cdc) -> dict[str, int]:
    """Rows an scd1/scd2 load of ``changes`` would insert, update and delete; writes nothing.

    The same figures Delta's MERGE reports (``numTargetRowsInserted`` / ``Updated`` / ``Deleted``);
    scd2 never deletes a row (a delete closes it: an update of ``__END_AT``).
    """
    from pyspark.sql import functions as F

    spark = changes.sparkSession
    resolved = resolve(normalize(changes, cdc), _read(spark, path, table), _read(spark, *deletes_target(path, table)),
                       cdc)
    counts = {r[ACTION]: int(r["n"]) for r in resolved.groupBy(ACTION).agg(F.count(F.lit(1)).alias("n")).collect()}
    return {"inserted": counts.get("insert", 0), "updated": counts.get("update", 0),
            "deleted": counts.get("delete", 0)}


def after_changes(changes: Any, target: Any | None, path: str | None, table: str | None, cdc: Cdc) -> Any:
    """The table applying ``changes`` to ``target`` (the table now, or None) would leave; nothing is written.

    The rows an update or a delete touches (scd2: a key's version, by ``__START_AT``) give way to the
    updated and inserted rows, as the MERGE of ``apply`` would do it.
    """
    from pyspark.sql import functions as F

    spark = changes.sparkSession
    resolved = resolve(normalize(changes, cdc), target, _read(spark, *deletes_target(path, table)), cdc)
    cols = [c for c in resolved.columns if c not in (ACTION, SEQ, RECORD)]
    written = resolved.filter(F.col(ACTION).isin("insert", "update")).select(*[F.col(_q(c)) for c in cols])
    if target is None:
        return written
    keys = [*cdc.keys, *([START] if cdc.mode == "scd2" else [])]
    touched = resolved.filter(F.col(ACTION).isin("update", "delete")).select(*[F.col(_q(k)) for k in keys])
    a, b = target.alias("pm_a"), touched.alias("pm_b")
    on = reduce(lambda x, y: x & y, [F.col(f"pm_a.{_q(k)}").eqNullSafe(F.col(f"pm_b.{_q(k)}")) for k in keys])
    return a.join(b, on, "left_anti").unionByName(written, allowMissingColumns=True)


def apply(changes: Any, path: str | None, table: str | None, cdc: Cdc, marker: str | None = None) -> None:
    """Applies ``changes`` to the Delta target (created when missing); the target's commits are tagged ``marker``.

    Classic Spark 4.1+: the joins use plain key equality (a NULL-safe one is planned on two keys per
    key, ``coalesce`` and ``isnull``: measurably slower), and the MERGE counts as it reads
    its source (an Observation) the deletes the side table must keep and the changes with a NULL key.
    Only when there are some are the changes resolved once more, NULL-safely, against the table as it
    was before the MERGE: a second MERGE applies those with a NULL key, and the kept deletes are
    appended. A CDC feed whose keys are set and whose deletes follow rows never pays for that.
    Where that count cannot be had (Spark Connect and Spark 4.0) the MERGE is NULL-safe, and when the
    changes can delete, they are always resolved once more after it for the kept deletes.

    A ``marker`` names the changes (a run's step, a stream's micro-batch): when the target's latest
    commits carry it already, the changes came again after a failure between the MERGE and what
    follows it (a retry; a micro-batch replayed after the driver died), and they are resolved against
    the table as it was before that MERGE, so no kept delete it hid is lost; when the side table's
    latest commit carries it, everything is in and nothing is done.
    """
    from pyspark.sql import Observation

    spark = changes.sparkSession
    events = normalize(changes, cdc)
    where = deletes_target(path, table)
    before = _state_before(spark, path, table, where, events, cdc, marker)
    if before is None:
        return  # all of it is in: the MERGE, and the kept deletes written after it
    target, kept_before = before
    counted = Observation(f"pipeline_magics_cdc_{uuid.uuid4().hex[:12]}") if counts_merge_source(spark) else None
    with delta.user_metadata(spark, marker := marker or f"pipeline_magics_cdc_{uuid.uuid4().hex}"):
        seen = _merge_counting(resolve(events, target, kept_before, cdc, null_safe=counted is None),
                               path, table, cdc, counted)
        if (seen.get("kept") == 0 and seen.get("null_keys") == 0) or (counted is None and not cdc.delete_when):
            return
        # left out of a counted MERGE, a change with a NULL key may apply ({}: not known, so maybe)
        null_keys = counted is not None and seen.get("null_keys") != 0
        _after_merge(spark, path, table, where, events, kept_before, cdc, marker, null_keys)


def _state_before(spark: Any, path: str | None, table: str | None, where: tuple[str | None, str | None],
                  events: Any, cdc: Cdc, marker: str | None) -> tuple[Any, Any | None] | None:
    """The target to resolve against (created when missing) and the deletes kept so far; None when the
    changes tagged ``marker`` are in already, kept deletes included."""
    target = _read(spark, path, table)
    if target is None:
        _create(events, path, table, cdc)
        target = _read(spark, path, table)
    kept_before = _read(spark, *where)
    if marker is not None:  # the same changes again: a retry, or a micro-batch replayed after a restart?
        if kept_before is not None and _last_commits(spark, *where, marker):
            return None
        merged = _last_commits(spark, path, table, marker)
        if merged:  # the MERGE is in, what followed it may not be: resolve as then, against the table before it
            target = _read(spark, path, table, merged["first_version"] - 1)
    return target, kept_before


def _null_key(cdc: Cdc) -> Any:
    from pyspark.sql import functions as F

    return reduce(lambda a, b: a | b, [F.col(_q(k)).isNull() for k in cdc.keys])


def _merge_counting(resolved: Any, path: str | None, table: str | None, cdc: Cdc, counted: Any | None) -> dict:
    """The MERGE of the resolved changes; with ``counted``, it counts as it reads them the deletes to keep
    aside and the changes with a NULL key (left out: they were resolved as if their key were new)."""
    from pyspark.sql import functions as F

    source = resolved
    if counted is not None:
        null_key = _null_key(cdc)
        figures = [F.coalesce(F.sum(F.when(cond, 1).otherwise(0)), F.lit(0)).alias(name) for name, cond in
                   (("kept", F.col(RECORD) & ~null_key), ("null_keys", null_key))]
        source = resolved.observe(counted, *figures).filter(~null_key)
    _merge(source.filter(F.col(ACTION) != "none").drop(SEQ, RECORD), path, table, cdc, null_safe=counted is None)
    return observed(counted) if counted is not None else {}


def _after_merge(spark: Any, path: str | None, table: str | None, where: tuple[str | None, str | None],
                 events: Any, kept_before: Any | None, cdc: Cdc, marker: str, null_keys: bool) -> None:
    """The changes resolved once more, NULL-safely, against the table as it was before the MERGE: a
    second MERGE for those with a NULL key (when ``null_keys``), then the deletes to keep aside appended
    to the side table."""
    from pyspark.sql import functions as F

    commit = delta_commit(spark, marker, path, table, history=delta.commit_metrics)  # None: the MERGE
    before = _read(spark, path, table, commit["first_version"] - 1 if commit else None)  # changed nothing
    again = persist(spark, resolve(events, before, kept_before, cdc))
    try:
        if null_keys:
            _merge(again.filter(_null_key(cdc) & (F.col(ACTION) != "none")).drop(SEQ, RECORD), path, table, cdc)
        if not cdc.delete_when:
            return
        deletes = again.filter(F.col(RECORD)).select(*[F.col(_q(k)) for k in cdc.keys], F.col(SEQ))
        if not deletes.isEmpty():
            writer = deletes.write.format("delta").mode("append")  # none is there already: a kept delete
            writer.saveAsTable(where[1]) if where[1] else writer.save(where[0])  # wins a tie, is not gathered
    finally:
        again.unpersist()


def _last_commits(spark: Any, path: str | None, table: str | None, marker: str) -> dict[str, int] | None:
    """The figures of the table's latest commits if they are tagged ``marker``, else None (no job on classic)."""
    return delta_commit(spark, marker, path, table, lookback=1,
                        history=lambda *args: delta.commit_metrics(*args, latest_only=True))


def _create(events: Any, path: str | None, table: str | None, cdc: Cdc) -> None:
    """An empty target with the stored columns (and the history columns for scd2)."""
    from pyspark.sql import functions as F

    cols = [F.col(_q(c)) for c in events.columns if c not in (SEQ, DEL, PRIO)]
    if cdc.mode == "scd2":
        cols += [F.col(SEQ).alias(START), F.col(SEQ).alias(END)]
    writer = events.select(*cols).filter(F.lit(False)).write.format("delta").mode("append")
    writer.saveAsTable(table) if table else writer.save(path)


def _merge(resolved: Any, path: str | None, table: str | None, cdc: Cdc, null_safe: bool = True) -> None:
    spark = resolved.sparkSession
    view = f"pipeline_magics_cdc_{uuid.uuid4().hex[:12]}"
    cols = [c for c in resolved.columns if c != ACTION]
    equals = "<=>" if null_safe else "="
    on = " AND ".join([f"t.{_q(k)} {equals} s.{_q(k)}" for k in cdc.keys]
                      + ([f"t.{START} = s.{START}"] if cdc.mode == "scd2" else []))  # never NULL
    insert = f"INSERT ({', '.join(_q(c) for c in cols)}) VALUES ({', '.join('s.' + _q(c) for c in cols)})"
    if cdc.mode == "scd1":
        update = ", ".join(f"t.{_q(c)} = s.{_q(c)}" for c in cols if c not in cdc.keys)
        clauses = (f"WHEN MATCHED AND s.{ACTION} = 'delete' THEN DELETE "
                   + (f"WHEN MATCHED AND s.{ACTION} = 'update' THEN UPDATE SET {update} " if update else ""))
    else:
        clauses = f"WHEN MATCHED AND s.{ACTION} = 'update' THEN UPDATE SET t.{END} = s.{END} "
    resolved.createOrReplaceTempView(view)
    try:
        spark.sql(f"MERGE INTO {delta.table_ref(path, table)} AS t USING {view} AS s ON {on} {clauses}"
                  f"WHEN NOT MATCHED AND s.{ACTION} = 'insert' THEN {insert}")
    finally:
        spark.catalog.dropTempView(view)
