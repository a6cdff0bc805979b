"""What changed: two versions of a table compared row by row, in one pass over each side.

With keys, the sides are joined on them (a full outer join, NULL equal to NULL): a key on one side
only is a row added or removed, a key on both whose values differ (NULL equal to NULL) a row
changed, and each column counts the rows whose value changed. Without keys the rows are compared
as a multiset (a union and a group by every column). Only the differing rows are kept (cached)
while the counts are taken, so the examples (at most ``EXAMPLES`` of each kind) read them, not the
sides; nothing else reaches the driver. ``Diff.added``/``removed``/``changed`` are DataFrames.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import reduce
from typing import Any

from ..methods.contracts import schema_changes
from ..render.diff import diff_html, diffs_html

EXAMPLES = 20
KIND, BEFORE, AFTER, CHANGED, N_BEFORE, N_AFTER = "__pm_kind", "__pm_before", "__pm_after", "__pm_changed", \
    "__pm_nb", "__pm_na"
KINDS = ("added", "removed", "changed")


def _q(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


@dataclass
class Diff:
    """One load's changes: counts, per column counts, schema changes, examples, and the rows as DataFrames."""

    target: str
    keys: tuple[str, ...]
    before: str
    after: str
    counts: dict[str, int] = field(default_factory=dict)
    columns: dict[str, int] = field(default_factory=dict)
    schema_changes: list[dict[str, Any]] = field(default_factory=list)
    examples: dict[str, Any] = field(default_factory=dict, repr=False)
    frames: dict[str, Any] = field(default_factory=dict, repr=False)
    step: str = ""
    note: str | None = None

    @property
    def added(self) -> Any:
        """The rows added (the after side's columns)."""
        return self.frames.get("added")

    @property
    def removed(self) -> Any:
        """The rows removed (the before side's columns)."""
        return self.frames.get("removed")

    @property
    def changed(self) -> Any:
        """The rows changed: the keys, ``before`` and ``after`` (structs) and ``changed_columns``."""
        return self.frames.get("changed")

    @property
    def summary(self) -> Any:
        """One row per kind of change and per changed column: step, target, change, column, rows."""
        import pandas as pd

        rows = [(k, None, self.counts.get(k)) for k in KINDS]
        rows += [("column changed", c, n) for c, n in self.columns.items() if n]
        rows += [(f"column {c['change']}", c["column"], None) for c in self.schema_changes]
        return pd.DataFrame([{"step": self.step, "target": self.target, "change": change, "column": column,
                              "rows": rows_} for change, column, rows_ in rows])

    def text(self) -> str:
        """The summary in a few lines (the command line's output)."""
        head = f"{self.step + ': ' if self.step else ''}{self.target} ({self.before} → {self.after})"
        if self.note:
            return f"{head}\n  {self.note}"
        lines = [head, "  " + ", ".join(f"{self.counts.get(k, 0):,} {k}" for k in KINDS)
                 + (f" (keys: {', '.join(self.keys)})" if self.keys else " (whole rows)")]
        if any(self.columns.values()):
            lines.append("  columns changed: " + ", ".join(f"{c} {n:,}" for c, n in self.columns.items() if n))
        for c in self.schema_changes:
            lines.append(f"  column {c['column']} {c['change']}" + (f": {c['from']} → {c['to']}" if c["change"] == "type"
                                                                    else ""))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        return diff_html(self)


class DiffSet(list):
    """The diffs of several loads; ``summary`` has them all, ``added``/``removed``/``changed`` when one."""

    @property
    def summary(self) -> Any:
        import pandas as pd

        return pd.concat([d.summary for d in self], ignore_index=True) if self else pd.DataFrame()

    def _one(self) -> Diff:
        if len(self) != 1:
            raise ValueError(f"{len(self)} loads compared; pick one: diffs[0], or --step")
        return self[0]

    added = property(lambda self: self._one().added)
    removed = property(lambda self: self._one().removed)
    changed = property(lambda self: self._one().changed)

    def __repr__(self) -> str:
        return "\n".join(d.text() for d in self) or "no loads to compare"

    def _repr_html_(self) -> str:
        return diffs_html(self)


def compare(before: Any | None, after: Any | None, keys: list[str] | tuple[str, ...] = (), *, target: str = "",
            labels: tuple[str, str] = ("before", "after"), step: str = "") -> Diff:
    """The changes from ``before`` to ``after`` (DataFrames; None: no table), matched on ``keys`` or as whole rows."""
    if before is None and after is None:
        return Diff(target, tuple(keys), *labels, step=step, note="no table on either side")
    before = after.limit(0) if before is None else before
    after = before.limit(0) if after is None else after
    keys = tuple(keys)
    missing = [k for k in keys if k not in before.columns or k not in after.columns]
    if missing:
        raise ValueError(f"diff keys {missing} are not columns of both sides; before: {before.columns}, "
                         f"after: {after.columns}")
    diff = Diff(target, keys, *labels, step=step, schema_changes=schema_changes(after.schema, before.schema))
    rows = _keyed(before, after, keys, diff) if keys else _multiset(before, after, diff)
    rows = rows.persist()
    try:
        _count(rows, diff)
        diff.examples = {k: _examples(rows, k, keys, diff) for k in KINDS}
    finally:
        rows.unpersist()
    return diff


def _keyed(before: Any, after: Any, keys: tuple[str, ...], diff: Diff) -> Any:
    """The differing rows of a full outer join on ``keys``: the keys, the kind, both sides as structs, what changed."""
    from pyspark.sql import functions as F

    b = before.select(*[F.col(_q(k)).alias(f"__pm_b{i}") for i, k in enumerate(keys)],
                      F.struct(*[F.col(_q(c)) for c in before.columns]).alias(BEFORE))
    a = after.select(*[F.col(_q(k)).alias(f"__pm_a{i}") for i, k in enumerate(keys)],
                     F.struct(*[F.col(_q(c)) for c in after.columns]).alias(AFTER))
    on = reduce(lambda x, y: x & y, [b[f"__pm_b{i}"].eqNullSafe(a[f"__pm_a{i}"]) for i in range(len(keys))])
    joined = b.join(a, on, "full_outer")
    types = {f.name: f.dataType for f in before.schema.fields}
    compared = [f.name for f in after.schema.fields if f.name in types and f.name not in keys]

    def value(side: str, c: str) -> Any:  # a retyped column is compared as text
        col = F.col(side)[c]
        return col if types[c] == after.schema[c].dataType else col.cast("string")

    differs = {c: ~value(BEFORE, c).eqNullSafe(value(AFTER, c)) for c in compared}
    changed = F.filter(F.array(*[F.when(d, F.lit(c)) for c, d in differs.items()]), lambda x: x.isNotNull()) \
        if differs else F.array().cast("array<string>")
    kind = (F.when(F.col(BEFORE).isNull(), "added").when(F.col(AFTER).isNull(), "removed")
            .when(F.size(CHANGED) > 0, "changed"))
    rows = (joined.select(*[F.coalesce(f"__pm_b{i}", f"__pm_a{i}").alias(k) for i, k in enumerate(keys)],
                          BEFORE, AFTER, changed.alias(CHANGED))
            .withColumn(KIND, kind).filter(F.col(KIND).isNotNull()))
    diff.columns = dict.fromkeys(compared, 0)
    diff.frames = {"added": rows.filter(F.col(KIND) == "added").select(f"{AFTER}.*"),
                   "removed": rows.filter(F.col(KIND) == "removed").select(f"{BEFORE}.*"),
                   "changed": rows.filter(F.col(KIND) == "changed").select(
                       *[_q(k) for k in keys], F.col(BEFORE).alias("before"), F.col(AFTER).alias("after"),
                       F.col(CHANGED).alias("changed_columns"))}
    return rows


def _multiset(before: Any, after: Any, diff: Diff) -> Any:
    """Whole rows (the columns both sides have) whose number differs between the sides, with both numbers."""
    from pyspark.sql import functions as F

    cols = [_q(c) for c in after.columns if c in before.columns]
    both = before.select(*cols, F.lit(1).alias(N_BEFORE), F.lit(0).alias(N_AFTER)).unionByName(
        after.select(*cols, F.lit(0).alias(N_BEFORE), F.lit(1).alias(N_AFTER)))
    rows = (both.groupBy(*cols).agg(F.sum(N_BEFORE).alias(N_BEFORE), F.sum(N_AFTER).alias(N_AFTER))
            .filter(F.col(N_BEFORE) != F.col(N_AFTER))
            .withColumn(KIND, F.when(F.col(N_AFTER) > F.col(N_BEFORE), "added").otherwise("removed")))

    def repeated(kind: str, more: str, less: str) -> Any:  # a row as many times as one side has it more
        return rows.filter(F.col(KIND) == kind).select(
            *cols, F.explode(F.sequence(F.lit(1), F.col(more) - F.col(less))).alias("__pm_i")).drop("__pm_i")

    diff.frames = {"added": repeated("added", N_AFTER, N_BEFORE), "removed": repeated("removed", N_BEFORE, N_AFTER),
                   "changed": None}
    return rows


def _count(rows: Any, diff: Diff) -> None:
    """Rows added, removed and changed, and per column, in one aggregation over the differing rows."""
    from pyspark.sql import functions as F

    if diff.keys:
        figures = [F.count_if(F.col(KIND) == k).alias(k) for k in KINDS]
        figures += [F.count_if((F.col(KIND) == "changed") & F.array_contains(CHANGED, c)).alias(f"c{i}") for i, c in enumerate(diff.columns)]
    else:
        gap = F.abs(F.col(N_AFTER) - F.col(N_BEFORE))
        figures = [F.sum(F.when(F.col(KIND) == k, gap).otherwise(0)).alias(k) for k in ("added", "removed")]
    row = rows.agg(*figures).first()
    diff.counts = {k: int(row[k] or 0) if k in row else 0 for k in KINDS}
    diff.columns = {c: int(row[f"c{i}"] or 0) for i, c in enumerate(diff.columns)}


def _examples(rows: Any, kind: str, keys: tuple[str, ...], diff: Diff) -> Any:
    """The first ``EXAMPLES`` rows of one kind, as pandas (changed rows: the keys, then each changed column's
    values before and after)."""
    import pandas as pd
    from pyspark.sql import functions as F

    if not diff.counts.get(kind):
        return None
    # the first rows by key (by every column without keys): the same examples each time
    order = [_q(k) for k in keys] or [_q(c) for c in rows.columns if c not in (KIND, N_BEFORE, N_AFTER)]
    some = rows.filter(F.col(KIND) == kind).orderBy(*order).limit(EXAMPLES)
    if not keys:
        return some.drop(KIND, N_BEFORE, N_AFTER).toPandas()
    if kind != "changed":
        return some.select(f"{AFTER if kind == 'added' else BEFORE}.*").toPandas()
    shown = [c for c, n in diff.columns.items() if n]
    frame = some.select(*[_q(k) for k in keys], CHANGED, *[F.col(BEFORE)[c].alias(f"__pm_b{i}") for i, c in
                                                            enumerate(shown)],
                        *[F.col(AFTER)[c].alias(f"__pm_a{i}") for i, c in enumerate(shown)]).toPandas()
    frame.columns = pd.MultiIndex.from_tuples([*[(k, "") for k in keys], ("changed_columns", ""),
                                               *[(c, "before") for c in shown], *[(c, "after") for c in shown]])
    return frame
