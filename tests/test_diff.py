"""What changed: ``%%pipeline --preview --diff`` before a write and ``%pipeline diff`` after it.

Both must give exactly the rows added, removed and changed (and which columns) that pandas finds
comparing the same two tables; an scd2 target shows the versions closed and opened; and a diff
between runs three runs apart equals the set difference of the two Delta versions.
"""
from __future__ import annotations

import pandas as pd
import pytest
import yaml

from pipeline_magics.run import history
from pipeline_magics.run.changes import run_diffs
from pipeline_magics.run.pipeline import Pipeline


def to_spark(spark, pdf: pd.DataFrame):
    return spark.createDataFrame(pdf.astype(object).where(pdf.notna(), None))


def pandas_diff(before: pd.DataFrame, after: pd.DataFrame, keys: list[str]) -> tuple[dict, dict]:
    """Rows added, removed and changed, and values changed per column, by pandas (NULL equal to NULL)."""
    both = before.merge(after, on=keys, how="outer", suffixes=("_b", "_a"), indicator=True)
    shared = both[both["_merge"] == "both"]
    columns = {c: int((~((shared[f"{c}_b"] == shared[f"{c}_a"]) | (shared[f"{c}_b"].isna() & shared[f"{c}_a"].isna())
                         )).sum()) for c in before.columns if c not in keys}
    differs = pd.Series(False, index=shared.index)
    for c in columns:
        differs |= ~((shared[f"{c}_b"] == shared[f"{c}_a"]) | (shared[f"{c}_b"].isna() & shared[f"{c}_a"].isna()))
    counts = {"added": int((both["_merge"] == "right_only").sum()), "removed": int((both["_merge"] == "left_only").sum()),
              "changed": int(differs.sum())}
    return counts, columns


def test_overwrite_diff_before_and_after_the_run(spark, lake, ip, monkeypatch):
    monkeypatch.setenv("PIPELINE_HISTORY", f"{lake}/history")
    base = pd.DataFrame({"id": range(1, 31), "amount": [float(i) for i in range(1, 31)],
                         "name": [None if i % 4 == 0 else f"n{i}" for i in range(1, 31)]})
    new = base[~base.id.isin([3, 7, 11])].copy()
    new.loc[new.id.isin([2, 5, 8, 13, 21]), "amount"] += 0.5
    new = pd.concat([new, pd.DataFrame({"id": [31, 32, 33, 34], "amount": [1.0] * 4, "name": [None, "x", "y", "z"]})])
    to_spark(spark, base).write.parquet(f"{lake}/v1")
    to_spark(spark, new).write.parquet(f"{lake}/v2")
    spec = yaml.safe_dump({"name": "diff_overwrite", "steps": [
        {"type": "extract", "method": "fromParquet", "config": {"path": "${src}"}},
        {"type": "load", "method": "toDelta", "name": "orders",
         "config": {"path": f"{lake}/orders", "mode": "overwrite", "diffKeys": ["id"]}}]})
    Pipeline.from_yaml(spec, {"src": f"{lake}/v1"}).run(spark)
    expected, columns = pandas_diff(base, new, ["id"])
    assert expected == {"added": 4, "removed": 3, "changed": 5} and columns == {"amount": 5, "name": 0}

    preview = Pipeline.from_yaml(spec, {"src": f"{lake}/v2"}).run(spark, preview=True, diff=True).diff
    assert spark.sql(f"DESCRIBE HISTORY delta.`{lake}/orders`").count() == 1  # nothing written
    Pipeline.from_yaml(spec, {"src": f"{lake}/v2"}).run(spark)
    after = run_diffs(spark, "diff_overwrite")
    shown = ip.run_line_magic("pipeline", "diff diff_overwrite --step orders")

    for diffs in (preview, after, shown):
        (diff,) = diffs
        assert (diff.counts, diff.columns, diff.keys) == (expected, columns, ("id",))
        assert {c: n for c, n in zip(diffs.summary["column"], diffs.summary["rows"]) if c} == {"amount": 5}
        assert sorted(r.id for r in diff.changed.select("id").collect()) == [2, 5, 8, 13, 21]
        assert {tuple(r.changed_columns) for r in diff.changed.collect()} == {("amount",)}
        assert sorted(r.id for r in diff.removed.collect()) == [3, 7, 11]
        assert "amount" in diff._repr_html_() and "2.0 → <b>2.5</b>" in diff._repr_html_()
    assert (after[0].before, after[0].after) == ("version 0", "version 1")


def test_scd2_diff_shows_versions_closed_and_opened(spark, lake, monkeypatch):
    monkeypatch.setenv("PIPELINE_HISTORY", f"{lake}/history")
    to_spark(spark, pd.DataFrame({"id": [1, 2, 3], "name": ["a", "b", "c"], "seq": [1, 1, 1], "op": ["U"] * 3})
             ).write.parquet(f"{lake}/c1")
    to_spark(spark, pd.DataFrame({"id": [2, 3, 4], "name": ["B", None, "d"], "seq": [2, 2, 2], "op": ["U", "D", "U"]})
             ).write.parquet(f"{lake}/c2")
    spec = yaml.safe_dump({"name": "diff_scd2", "steps": [
        {"type": "extract", "method": "fromParquet", "config": {"path": "${src}"}},
        {"type": "load", "method": "toDelta", "name": "people",
         "config": {"path": f"{lake}/people", "mode": "scd2", "mergeKeys": ["id"], "sequenceBy": "seq",
                    "deleteWhen": "op = 'D'", "exceptColumns": ["op"]}}]})
    Pipeline.from_yaml(spec, {"src": f"{lake}/c1"}).run(spark)
    preview = Pipeline.from_yaml(spec, {"src": f"{lake}/c2"}).run(spark, preview=True, diff=True).diff
    Pipeline.from_yaml(spec, {"src": f"{lake}/c2"}).run(spark)
    for (diff,) in (preview, run_diffs(spark, "diff_scd2")):
        assert diff.keys == ("id", "__START_AT")
        assert diff.counts == {"added": 2, "removed": 0, "changed": 2}  # 2 and 3 closed; 2 and 4 opened
        assert diff.columns == {"name": 0, "seq": 0, "__END_AT": 2}
        closed = {r.id: (r.before["__END_AT"], r.after["__END_AT"]) for r in diff.changed.collect()}
        assert closed == {2: (None, 2), 3: (None, 2)}
        assert sorted((r.id, r.name, r["__START_AT"]) for r in diff.added.collect()) == [(2, "B", 2), (4, "d", 2)]


def test_diff_three_runs_apart_is_the_set_difference_of_the_versions(spark, lake, monkeypatch):
    monkeypatch.setenv("PIPELINE_HISTORY", f"{lake}/history")
    spec = yaml.safe_dump({"name": "diff_runs", "steps": [
        {"type": "extract", "method": "fromParquet", "config": {"path": "${src}"}},
        {"type": "load", "method": "toDelta", "config": {"path": f"{lake}/t", "mode": "overwrite"}}]})
    for run in range(4):  # whole rows, duplicates included: a multiset
        rows = pd.DataFrame({"k": [i % (5 + run) for i in range(12)], "v": [None if i % 3 == run % 3 else i % 4
                                                                           for i in range(12)]})
        to_spark(spark, rows).write.parquet(f"{lake}/s{run}")
        Pipeline.from_yaml(spec, {"src": f"{lake}/s{run}"}).run(spark)
    frame = history.read("diff_runs")
    runs = list(dict.fromkeys(frame["run_id"]))
    assert list(frame[frame.method == "load.toDelta"].delta_after) == [0, 1, 2, 3]

    (diff,) = run_diffs(spark, "diff_runs", run=runs[3], against=runs[0])
    first, last = (spark.read.format("delta").option("versionAsOf", v).load(f"{lake}/t") for v in (0, 3))

    def rows(df) -> list:
        return sorted(tuple(r) for r in df.collect())

    assert (diff.keys, diff.before, diff.after) == ((), "version 0", "version 3")
    assert rows(diff.added) == rows(last.exceptAll(first)) and rows(diff.removed) == rows(first.exceptAll(last))
    assert diff.counts == {"added": last.exceptAll(first).count(), "removed": first.exceptAll(last).count(),
                           "changed": 0}
    assert diff.counts["added"] and diff.counts["removed"]


@pytest.mark.postgres
def test_postgres_preview_diff_then_what_the_history_kept(spark, postgres, lake, monkeypatch):
    monkeypatch.setenv("PIPELINE_HISTORY", f"{lake}/history")
    monkeypatch.setenv("PIPELINE_TEST_PG_PASSWORD", postgres.password)
    with postgres.connect() as conn:
        conn.execute("DROP TABLE IF EXISTS public.diff_pg")
        conn.execute("CREATE TABLE public.diff_pg (id bigint, value double precision, note text)")
        conn.execute("INSERT INTO public.diff_pg SELECT g, g * 1.5, 'x' FROM generate_series(1, 10) g")
    new = pd.DataFrame({"id": range(3, 13), "value": [i * 1.5 + (1 if i == 5 else 0) for i in range(3, 13)],
                        "note": ["x"] * 10})
    to_spark(spark, new).write.parquet(f"{lake}/src")
    spec = yaml.safe_dump({"name": "diff_pg", "steps": [
        {"type": "extract", "method": "fromParquet", "config": {"path": f"{lake}/src"}},
        {"type": "load", "method": "toPostgres", "name": "to_pg", "config": {
            "url": postgres.jdbc_url, "user": postgres.user, "password": {"env": "PIPELINE_TEST_PG_PASSWORD"},
            "table": "public.diff_pg", "mode": "overwrite", "diffKeys": ["id"]}}]})
    (diff,) = Pipeline.from_yaml(spec).run(spark, preview=True, diff=True).diff
    assert (diff.counts, diff.columns) == ({"added": 2, "removed": 2, "changed": 1}, {"value": 1, "note": 0})
    assert sorted(r.id for r in diff.removed.collect()) == [1, 2]
    Pipeline.from_yaml(spec).run(spark)
    (after,) = run_diffs(spark, "diff_pg")
    assert after.note.startswith("a PostgreSQL table keeps no earlier versions") and "10 rows" in after.note
