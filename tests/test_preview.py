"""``--preview``: what each load would write, computed with nothing written, then checked against the real run.

The source and the targets are made from pandas frames; what a merge, an append and an
overwrite would do is computed with pandas too. The preview must equal that, leave every
target as it was (Delta version and files, PostgreSQL rows), and the real run that follows
must do exactly what the preview said (Delta's commit metrics, PostgreSQL's row counts).
"""
from __future__ import annotations

import os
import random

import pandas as pd
import pytest
import yaml

from pipeline_magics.run.pipeline import Pipeline

PASSWORD_VAR = "PIPELINE_TEST_PG_PASSWORD"


def frame(ids: range, seed: int, extra: bool = False) -> pd.DataFrame:
    rng = random.Random(seed)
    df = pd.DataFrame({"id": list(ids), "value": [round(rng.uniform(0, 100), 2) for _ in ids],
                       "note": [rng.choice(["a", "b", None]) for _ in ids]})
    if extra:
        df["discount"] = [round(rng.uniform(0, 1), 2) for _ in ids]
    return df


def write_delta(spark, pdf: pd.DataFrame, path: str) -> None:
    spark.createDataFrame(pdf.astype(object).where(pdf.notna(), None)).write.format("delta").save(path)


def files_of(path: str) -> list[tuple[str, int]]:
    return sorted((os.path.relpath(os.path.join(d, f), path), os.path.getsize(os.path.join(d, f)))
                  for d, _, fs in os.walk(path) for f in fs)


def delta_version(spark, path: str) -> int:
    return spark.sql(f"DESCRIBE HISTORY delta.`{path}` LIMIT 1").first()["version"]


def last_commit(spark, path: str) -> dict:
    row = spark.sql(f"DESCRIBE HISTORY delta.`{path}` LIMIT 1").first()
    return {k: int(v) for k, v in row["operationMetrics"].items()}


def test_delta_merge_append_overwrite_preview_then_run(spark, lake):
    target, incoming = frame(range(1, 31), seed=1), frame(range(21, 51), seed=2)
    write_delta(spark, target, f"{lake}/merged")
    write_delta(spark, target.iloc[:12], f"{lake}/appended")
    write_delta(spark, target.iloc[:7], f"{lake}/replaced")
    spark.createDataFrame(incoming.astype(object).where(incoming.notna(), None)).write.parquet(f"{lake}/source")
    spec = {"name": "preview_delta", "steps": [
        {"type": "extract", "method": "fromParquet", "name": "incoming", "config": {"path": f"{lake}/source"}},
        {"type": "load", "method": "toDelta", "name": "merge_it",
         "config": {"path": f"{lake}/merged", "mode": "merge", "mergeKeys": ["id"]}},
        {"type": "load", "method": "toDelta", "name": "append_it", "input": "incoming",
         "config": {"path": f"{lake}/appended", "mode": "append"}},
        {"type": "transform", "method": "withColumn", "name": "widened", "input": "incoming",
         "config": {"column": "discount", "expr": "value / 10"}},
        {"type": "load", "method": "toDelta", "name": "replace_it",
         "config": {"path": f"{lake}/replaced", "mode": "overwrite", "options": {"overwriteSchema": "true"}}},
    ]}
    pipeline = Pipeline.from_yaml(yaml.safe_dump(spec))
    tables = ("merged", "appended", "replaced")
    before = {t: (delta_version(spark, f"{lake}/{t}"), files_of(f"{lake}/{t}")) for t in tables}

    loads = {load["step"]: load for load in pipeline.run(spark, preview=True).loads}

    assert {t: (delta_version(spark, f"{lake}/{t}"), files_of(f"{lake}/{t}")) for t in tables} == before
    updated = int(target.id.isin(incoming.id).sum())
    inserted = int((~incoming.id.isin(target.id)).sum())
    assert loads["merge_it"] == {"step": "merge_it", "target": f"{lake}/merged", "action": "merge",
                                 "rows_before": 30, "rows_after": 30 + inserted, "inserted": inserted,
                                 "updated": updated, "deleted": 0, "schema_changes": []}
    assert loads["append_it"] == {"step": "append_it", "target": f"{lake}/appended", "action": "append",
                                  "rows_before": 12, "rows_after": 12 + len(incoming), "inserted": len(incoming),
                                  "updated": None, "deleted": None, "schema_changes": []}
    assert loads["replace_it"]["action"] == "overwrite"
    assert (loads["replace_it"]["rows_before"], loads["replace_it"]["rows_after"]) == (7, len(incoming))
    assert loads["replace_it"]["schema_changes"] == [
        {"column": "discount", "change": "added", "from": None, "to": "double"}]

    result = pipeline.run(spark)  # the real run does what the preview said
    assert result.ok
    merged = last_commit(spark, f"{lake}/merged")
    assert (merged["numTargetRowsInserted"], merged["numTargetRowsUpdated"], merged["numTargetRowsDeleted"]) == (
        loads["merge_it"]["inserted"], loads["merge_it"]["updated"], loads["merge_it"]["deleted"])
    assert last_commit(spark, f"{lake}/appended")["numOutputRows"] == loads["append_it"]["inserted"]
    for name, table in (("merge_it", "merged"), ("append_it", "appended"), ("replace_it", "replaced")):
        assert spark.read.format("delta").load(f"{lake}/{table}").count() == loads[name]["rows_after"]
    assert "discount" in spark.read.format("delta").load(f"{lake}/replaced").columns


@pytest.mark.postgres
def test_postgres_preview_then_run(spark, postgres, lake, monkeypatch):
    monkeypatch.setenv(PASSWORD_VAR, postgres.password)
    with postgres.connect() as conn:
        for table in ("preview_append", "preview_new"):
            conn.execute(f"DROP TABLE IF EXISTS public.{table}")
        conn.execute("CREATE TABLE public.preview_append (id bigint, value double precision, note text)")
        conn.execute("INSERT INTO public.preview_append SELECT g, g * 1.5, 'x' FROM generate_series(1, 9) g")
    incoming = frame(range(100, 117), seed=3)
    spark.createDataFrame(incoming.astype(object).where(incoming.notna(), None)).write.parquet(f"{lake}/source")
    where = {"url": postgres.jdbc_url, "user": postgres.user, "password": {"env": PASSWORD_VAR}}
    spec = {"name": "preview_pg", "steps": [
        {"type": "extract", "method": "fromParquet", "name": "incoming", "config": {"path": f"{lake}/source"}},
        {"type": "load", "method": "toPostgres", "name": "append_it",
         "config": {**where, "table": "public.preview_append", "mode": "append"}},
        {"type": "transform", "method": "selectColumns", "name": "narrow", "input": "incoming",
         "config": {"columns": ["id", "value"]}},
        {"type": "load", "method": "toPostgres", "name": "create_it",
         "config": {**where, "table": "public.preview_new", "mode": "overwrite"}},
    ]}
    pipeline = Pipeline.from_yaml(yaml.safe_dump(spec))

    def rows(table: str) -> list | None:
        with postgres.connect() as conn:
            if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is None:
                return None
            return conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()

    before = rows("public.preview_append")
    loads = {load["step"]: load for load in pipeline.run(spark, preview=True).loads}
    assert rows("public.preview_append") == before and rows("public.preview_new") is None  # nothing written
    assert loads["append_it"] == {"step": "append_it", "target": "public.preview_append", "action": "append",
                                  "rows_before": 9, "rows_after": 9 + len(incoming), "inserted": len(incoming),
                                  "updated": None, "deleted": None, "schema_changes": []}
    assert loads["create_it"]["action"] == "create"
    assert (loads["create_it"]["rows_before"], loads["create_it"]["rows_after"]) == (0, len(incoming))

    assert pipeline.run(spark).ok
    after = rows("public.preview_append")
    assert len(after) == loads["append_it"]["rows_after"]
    assert sorted(r[0] for r in after) == sorted(list(range(1, 10)) + incoming.id.tolist())
    assert len(rows("public.preview_new")) == loads["create_it"]["rows_after"]


def test_preview_cell_option(spark, lake):
    from IPython import get_ipython
    from IPython.testing.globalipapp import start_ipython

    ip = start_ipython() or get_ipython()
    ip.run_line_magic("load_ext", "pipeline_magics")
    write_delta(spark, frame(range(1, 6), seed=5), f"{lake}/t")
    version = delta_version(spark, f"{lake}/t")
    cell = (f"name: cell_preview\nsteps:\n  - type: extract\n    method: fromDelta\n    config: {{path: {lake}/t}}\n"
            f"  - type: load\n    method: toDelta\n    name: again\n    config: {{path: {lake}/t, mode: append}}\n")
    result = ip.run_cell_magic("pipeline", "--preview --no-widgets", cell)
    assert result.loads[0]["inserted"] == 5 and result.loads[0]["rows_after"] == 10
    assert "nothing was written" in result._repr_html_()
    assert delta_version(spark, f"{lake}/t") == version


def test_streaming_spec_previewed_as_a_batch_without_checkpoint(spark, lake):
    source, target = frame(range(1, 21), seed=6), frame(range(15, 25), seed=7)
    write_delta(spark, source, f"{lake}/source")
    write_delta(spark, target, f"{lake}/target")
    spec = {"name": "preview_stream", "mode": "streaming", "steps": [
        {"type": "extract", "method": "fromDelta", "config": {"path": f"{lake}/source"}},
        {"type": "load", "method": "toDelta", "name": "upsert",
         "config": {"path": f"{lake}/target", "mode": "merge", "mergeKeys": ["id"],
                    "checkpointLocation": f"{lake}/checkpoint", "trigger": {"availableNow": True}}},
    ]}
    before = files_of(f"{lake}/target")
    result = Pipeline.from_yaml(yaml.safe_dump(spec)).run(spark, preview=True)
    assert result.loads[0]["inserted"] == int((~source.id.isin(target.id)).sum())
    assert result.loads[0]["updated"] == int(target.id.isin(source.id).sum())
    assert result.queries == [] and not os.path.exists(f"{lake}/checkpoint")
    assert files_of(f"{lake}/target") == before
