"""``schemaContract`` on toDelta and toPostgres: freeze refuses before writing, evolve adds columns,
discard_columns drops them; the tables' contents are compared with pandas."""
from __future__ import annotations

import pandas as pd
import pytest
import yaml

from pipeline_magics.errors import SchemaContractError
from pipeline_magics.run.pipeline import Pipeline

PASSWORD_VAR = "PIPELINE_TEST_PG_PASSWORD"
OLD = pd.DataFrame({"id": [1, 2, 3], "value": [1.5, 2.5, 3.5]})
NEW = pd.DataFrame({"id": [4, 5], "value": [4.5, 5.5], "discount": [0.1, 0.2]})


def spec(lake, target: dict, method: str = "toDelta", select: str = "id, value, value / 30 AS discount") -> str:
    """Reads the NEW rows (from a parquet file), shapes them with ``select``, loads them into ``target``."""
    return yaml.safe_dump({"name": "contract", "steps": [
        {"type": "extract", "method": "fromParquet", "name": "incoming", "config": {"path": f"{lake}/new"}},
        {"type": "transform", "method": "selectColumns", "name": "shaped", "config": {"columns": select.split(", ")}},
        {"type": "load", "method": method, "name": "sink", "config": target, "retry": {"attempts": 1}},
    ]})


@pytest.fixture
def seeded(spark, lake):
    spark.createDataFrame(NEW[["id", "value"]]).write.parquet(f"{lake}/new")
    spark.createDataFrame(OLD).write.format("delta").save(f"{lake}/t")
    return lake


def delta_rows(spark, path: str) -> pd.DataFrame:
    return spark.read.format("delta").load(path).toPandas().sort_values("id").reset_index(drop=True)


def version(spark, path: str) -> int:
    return spark.sql(f"DESCRIBE HISTORY delta.`{path}` LIMIT 1").first()["version"]


def test_delta_freeze_names_each_column_with_both_types_and_writes_nothing(spark, seeded):
    lake = seeded
    before = version(spark, f"{lake}/t")
    target = {"path": f"{lake}/t", "mode": "append", "schemaContract": "freeze"}
    with pytest.raises(SchemaContractError) as info:
        Pipeline.from_yaml(spec(lake, target, select="id, CAST(value AS STRING) AS value, value AS discount")).run(spark)
    text = str(info.value)
    assert "value (data: string, table: double)" in text and "discount (data: double, table: absent)" in text
    assert info.value.code == "SCHEMA_CONTRACT" and "step 3 'sink'" in text
    assert version(spark, f"{lake}/t") == before
    assert Pipeline.from_yaml(spec(lake, target, select="id, value")).run(spark).ok  # same columns: written


def test_delta_evolve_adds_columns_and_fills_missing_ones_with_null(spark, seeded):
    lake = seeded
    target = {"path": f"{lake}/t", "mode": "append", "schemaContract": "evolve"}
    assert Pipeline.from_yaml(spec(lake, target)).run(spark).ok
    expected = pd.concat([OLD.assign(discount=float("nan")), NEW[["id", "value"]].assign(discount=NEW.value / 30)],
                         ignore_index=True)
    got = delta_rows(spark, f"{lake}/t")
    assert list(got.columns) == ["id", "value", "discount"]
    pd.testing.assert_frame_equal(got.astype(object).where(got.notna(), None),
                                  expected.astype(object).where(expected.notna(), None), check_dtype=False)
    assert Pipeline.from_yaml(spec(lake, target, select="id")).run(spark).ok  # missing columns: null
    got = delta_rows(spark, f"{lake}/t")
    assert len(got) == 7 and sorted(got[got.value.isna() & got.discount.isna()].id) == [4, 5]
    with pytest.raises(SchemaContractError, match=r"value \(data: string, table: double\)"):
        Pipeline.from_yaml(spec(lake, target, select="id, CAST(value AS STRING) AS value")).run(spark)


def test_delta_discard_columns_drops_what_the_table_lacks(spark, seeded):
    lake = seeded
    target = {"path": f"{lake}/t", "mode": "merge", "mergeKeys": ["id"], "schemaContract": "discard_columns"}
    assert Pipeline.from_yaml(spec(lake, target)).run(spark).ok
    got = delta_rows(spark, f"{lake}/t")
    assert list(got.columns) == ["id", "value"]
    expected = pd.concat([OLD, NEW[["id", "value"]]], ignore_index=True)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)


@pytest.mark.postgres
def test_postgres_freeze_evolve_discard(spark, postgres, lake, monkeypatch):
    monkeypatch.setenv(PASSWORD_VAR, postgres.password)
    spark.createDataFrame(NEW[["id", "value"]]).write.parquet(f"{lake}/new")
    with postgres.connect() as conn:
        conn.execute("DROP TABLE IF EXISTS public.contract_t")
        conn.execute("CREATE TABLE public.contract_t (id bigint, value double precision)")
        conn.execute("INSERT INTO public.contract_t VALUES (1, 1.5), (2, 2.5), (3, 3.5)")

    def table() -> pd.DataFrame:
        with postgres.connect() as conn:
            cur = conn.execute("SELECT * FROM public.contract_t ORDER BY id")
            return pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description])

    where = {"url": postgres.jdbc_url, "user": postgres.user, "password": {"env": PASSWORD_VAR},
             "table": "public.contract_t", "mode": "append"}
    with pytest.raises(SchemaContractError) as info:
        Pipeline.from_yaml(spec(lake, {**where, "schemaContract": "freeze"}, "toPostgres")).run(spark)
    assert "discount (data: double, table: absent)" in str(info.value)
    assert len(table()) == 3 and list(table().columns) == ["id", "value"]

    assert Pipeline.from_yaml(spec(lake, {**where, "schemaContract": "discard_columns"}, "toPostgres")).run(spark).ok
    assert list(table().columns) == ["id", "value"] and table().id.tolist() == [1, 2, 3, 4, 5]

    assert Pipeline.from_yaml(spec(lake, {**where, "schemaContract": "evolve"}, "toPostgres")).run(spark).ok
    got = table()
    assert list(got.columns) == ["id", "value", "discount"]  # ALTER TABLE ... ADD COLUMN
    assert got.discount.isna().sum() == 5
    new = got[got.discount.notna()].reset_index(drop=True)
    assert new.id.tolist() == [4, 5]
    assert new.discount.round(9).tolist() == (NEW.value / 30).round(9).tolist()
