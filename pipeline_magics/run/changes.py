"""What a run changed: its Delta loads' tables before and after, from the versions the run history recorded.

``run_diffs`` compares, for each table load of a run, the table at the version before its commits
with the version after them; ``against`` another run compares the versions the two runs left. A
PostgreSQL table keeps no earlier versions: its diff says what the history kept (rows written).
"""
from __future__ import annotations

from typing import Any, Sequence

from . import history
from .diff import Diff, DiffSet, compare
from ..errors import DiffError


def read_version(spark: Any, target: dict[str, Any], version: int) -> Any | None:
    """The Delta table of ``target`` (``path`` or ``table``) at ``version``; None before its first one."""
    if version < 0:
        return None
    reader = spark.read.format("delta").option("versionAsOf", int(version))
    return reader.table(target["table"]) if target.get("table") else reader.load(target["path"])


def _pick(runs: list[str], wanted: str | None, pipeline: str) -> str:
    """A run id, or the one a unique prefix names (None: the latest)."""
    if wanted is None:
        return runs[-1]
    found = [r for r in runs if r == wanted] or [r for r in runs if r.startswith(wanted)]
    if len(found) != 1:
        raise DiffError(f"{'no' if not found else 'more than one'} run '{wanted}' of pipeline '{pipeline}'",
                        code="DIFF_NO_RUN", params={"run": wanted, "runs": runs[-5:]},
                        hint="%pipeline history " + pipeline + " lists its runs (column run_id)")
    return found[0]


def _version(value: Any) -> int | None:
    return None if value is None or value != value else int(value)


def run_diffs(spark: Any, pipeline: str, run: str | None = None, against: str | None = None,
              step: str | None = None, keys: Sequence[str] | None = None, folder: str | None = None) -> DiffSet:
    """The changes each table load of a run made (``against``: between the tables two runs left)."""
    frame = history.read(pipeline, folder=folder)
    if frame.empty:
        raise DiffError(f"no runs of pipeline '{pipeline}' in the run history", code="DIFF_NO_RUN",
                        params={"pipeline": pipeline}, hint="run it first (with PIPELINE_HISTORY not set to none)")
    runs = list(dict.fromkeys(frame["run_id"]))
    run_id = _pick(runs, run, pipeline)
    loads = frame[(frame["run_id"] == run_id) & frame["method"].isin(["load.toDelta", "load.toPostgres"])]
    if step is not None:
        loads = loads[loads["step"] == step]
        if loads.empty:
            raise DiffError(f"run {run_id} has no table load '{step}'", code="DIFF_NO_STEP",
                            params={"step": step}, hint="--step takes the name of a toDelta or toPostgres step")
    baseline = frame[frame["run_id"] == _pick(runs, against, pipeline)] if against else None
    return DiffSet(_load_diff(spark, row, baseline, keys) for row in loads.to_dict("records"))


def _load_diff(spark: Any, row: dict[str, Any], baseline: Any, keys: Sequence[str] | None) -> Diff:
    target = row.get("target") if isinstance(row.get("target"), dict) else {}
    name = target.get("table") or target.get("path") or row["step"]
    if row["method"] == "load.toPostgres":
        rows = _version(row.get("rows_out"))
        return Diff(name, (), "before the run", "after it", step=row["step"], note=(
            f"a PostgreSQL table keeps no earlier versions, so its rows cannot be compared after the run; the run "
            f"history kept: {'?' if rows is None else f'{rows:,}'} rows written (mode {target.get('mode', '?')}, "
            f"step {row['status']}). Preview the next run with %%pipeline --preview --diff."))
    after = _version(row.get("delta_after"))
    before = _version(row.get("delta_before"))
    if baseline is not None:
        same = baseline[baseline["step"] == row["step"]]
        before = _version(same["delta_after"].iloc[0]) if not same.empty else None
    if after is None or before is None:
        return Diff(name, (), "?", "?", step=row["step"], note=(
            "no Delta version recorded for this load (it committed nothing, it failed, or the run's metrics were off)"))
    return compare(read_version(spark, target, before), read_version(spark, target, after),
                   list(keys or target.get("keys") or ()), target=name, step=row["step"],
                   labels=(f"version {before}" if before >= 0 else "no table", f"version {after}"))
