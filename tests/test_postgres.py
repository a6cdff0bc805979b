"""fromPostgres and toPostgres against a real PostgreSQL, through ``Pipeline.from_yaml(...).run(spark)``.

The input is seeded with psycopg and read back with psycopg; what every
pipeline should produce is computed from that with pandas, and compared with
what landed in PostgreSQL (read with psycopg) or Delta (read with Spark).
"""
from __future__ import annotations

import datetime as dt
import json
import random
from decimal import Decimal
from typing import Any

import pandas as pd
import pytest
import yaml

from pipeline_magics.errors import PipelineError, PipelineExecutionError
from pipeline_magics.run.pipeline import Pipeline

pytestmark = pytest.mark.postgres

N_ORDERS = 500
PASSWORD_VAR = "PIPELINE_TEST_PG_PASSWORD"
CATEGORIES = ["books", "games", "garden", "toys"]


# ------------------------------------------------------------------ helpers


def query_frame(pg: Any, sql: str, params: Any = None) -> pd.DataFrame:
    """The result of ``sql`` as pandas, read with psycopg."""
    with pg.connect() as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        return pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description])


def execute(pg: Any, *statements: str) -> None:
    with pg.connect() as conn:
        for statement in statements:
            conn.execute(statement)


def _plain(value: Any) -> Any:
    """One comparable Python value: NaN/NaT/None -> None, pandas/numpy scalars -> Python ones."""
    if value is None or (not isinstance(value, (str, bytes, Decimal)) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.date() if value == value.normalize() else value.to_pydatetime()
    if hasattr(value, "item") and not isinstance(value, Decimal):
        return value.item()
    return value


def records(df: pd.DataFrame, columns: list[str], key: list[str]) -> list[tuple[Any, ...]]:
    """The rows of ``df`` as sorted tuples of plain values (the exact content, order-independent)."""
    rows = [tuple(_plain(v) for v in row) for row in df[columns].itertuples(index=False, name=None)]
    idx = [columns.index(k) for k in key]
    return sorted(rows, key=lambda r: tuple((r[i] is None, r[i] if r[i] is not None else 0) for i in idx))


def spec_text(name: str, steps: list[dict[str, Any]]) -> str:
    return yaml.safe_dump({"name": name, "mode": "batch", "steps": steps}, sort_keys=False)


def step_metrics(result: Any, method: str) -> Any:
    matches = [s for s in result.metrics.steps if s.method == method]
    assert len(matches) == 1, [s.method for s in result.metrics.steps]
    return matches[0]


def check_rows_written(result: Any, method: str, rows: int) -> None:
    """The load step is done and its metrics count exactly the rows it wrote (SPEC 5)."""
    load = step_metrics(result, method)
    assert load.status == "done"
    assert load.rows_out == rows, load
    assert load.rows_in == rows, load


# ----------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def _password_env(monkeypatch, postgres):
    """The password reaches the specs only as ``{env: PIPELINE_TEST_PG_PASSWORD}``."""
    for var in ("PIPELINE_SECURITY_POLICY", "PIPELINE_VAULT_ONLY", "PIPELINE_ALLOW_PLAINTEXT",
                "PIPELINE_AUDIT_CREDENTIALS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(PASSWORD_VAR, postgres.password)


@pytest.fixture(scope="module")
def orders(postgres) -> pd.DataFrame:
    """Seeds ``public.orders`` (a few NULL notes, exact decimals, dates) and returns it as psycopg reads it."""
    rnd = random.Random(20240601)
    start = dt.date(2024, 1, 1)
    rows = []
    for i in range(1, N_ORDERS + 1):
        rows.append((
            i,
            f"c{rnd.randint(1, 40):03d}",
            rnd.choice(CATEGORIES),
            Decimal(rnd.randint(100, 20000)) / 100,  # 1.00 .. 200.00, two exact decimals
            rnd.randint(1, 9),
            start + dt.timedelta(days=rnd.randint(0, 180)),
            None if i % 7 == 0 else f"note é{i}",  # NULLs and non-ASCII survive the round trip
        ))
    with postgres.connect() as conn:
        conn.execute("DROP TABLE IF EXISTS public.orders")
        conn.execute("""
            CREATE TABLE public.orders (
                id integer PRIMARY KEY,
                customer text NOT NULL,
                category text NOT NULL,
                amount numeric(10, 2) NOT NULL,
                qty integer NOT NULL,
                ordered_on date NOT NULL,
                note text
            )""")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO public.orders VALUES (%s, %s, %s, %s, %s, %s, %s)", rows)
    df = query_frame(postgres, "SELECT * FROM public.orders ORDER BY id")
    assert len(df) == N_ORDERS
    return df


def connection(pg: Any, form: str = "url") -> dict[str, Any]:
    """The connection settings of a spec, never with the password in plain text."""
    where = ({"url": pg.jdbc_url} if form == "url"
             else {"host": pg.host, "port": pg.port, "database": pg.database})
    return {**where, "user": pg.user, "password": {"env": PASSWORD_VAR}}


# -------------------------------------------------------------------- tests


def test_table_read_transform_and_overwrite(spark, postgres, orders):
    """url form, ``table``; filter + new column; toPostgres overwrite twice leaves exactly one copy."""
    execute(postgres, "DROP TABLE IF EXISTS public.big_orders")
    text = spec_text("pg_big_orders", [
        {"type": "extract", "method": "fromPostgres", "name": "orders",
         "config": {**connection(postgres, "url"), "table": "public.orders"}},
        {"type": "transform", "method": "filterRows", "config": {"condition": "amount > 50 AND qty >= 2"}},
        {"type": "transform", "method": "withColumn", "config": {"column": "total", "expr": "amount * qty"}},
        {"type": "transform", "method": "selectColumns",
         "config": {"columns": ["id", "customer", "category", "amount", "qty", "total", "ordered_on", "note"]}},
        {"type": "load", "method": "toPostgres",
         "config": {**connection(postgres, "url"), "table": "public.big_orders", "mode": "overwrite"}},
    ])
    assert postgres.password not in text

    expected = orders[(orders.amount > Decimal(50)) & (orders.qty >= 2)].copy()
    expected["total"] = expected.amount * expected.qty
    columns = ["id", "customer", "category", "amount", "qty", "total", "ordered_on", "note"]
    assert 0 < len(expected) < N_ORDERS

    for _ in range(2):  # the second overwrite replaces, never duplicates
        result = Pipeline.from_yaml(text).run(spark)
        assert result.ok, result.metrics.error
        landed = query_frame(postgres, "SELECT * FROM public.big_orders")
        assert records(landed, columns, ["id"]) == records(expected, columns, ["id"])
        assert len(landed) == len(expected)
        check_rows_written(result, "toPostgres", len(expected))
        assert step_metrics(result, "fromPostgres").status == "done"

    # the decimals arrived exact, and the NULLs as NULLs
    types = query_frame(postgres, """
        SELECT column_name, data_type FROM information_schema.columns
        WHERE table_schema = 'public' AND table_name = 'big_orders'""")
    assert dict(zip(types.column_name, types.data_type))["total"] == "numeric"
    assert landed.note.isna().sum() == expected.note.isna().sum() > 0


def test_query_read_aggregate_and_append(spark, postgres, orders):
    """host/port/database form, ``query``; aggregate; toPostgres append keeps the rows already there."""
    execute(postgres,
            "DROP TABLE IF EXISTS public.category_totals",
            """CREATE TABLE public.category_totals (
                   category text NOT NULL, n_orders bigint NOT NULL, revenue numeric(20, 2) NOT NULL,
                   max_qty integer NOT NULL, first_day date)""",
            "INSERT INTO public.category_totals VALUES ('legacy', 1, 9.99, 1, '2023-12-31')")
    text = spec_text("pg_category_totals", [
        {"type": "extract", "method": "fromPostgres", "name": "big_qty",
         "config": {**connection(postgres, "host"),
                    "query": "SELECT category, amount, qty, ordered_on FROM public.orders WHERE qty >= 3",
                    "fetchSize": 50}},
        {"type": "transform", "method": "aggregate", "name": "totals",
         "config": {"groupBy": ["category"],
                    "aggregations": {"n_orders": "count(*)", "revenue": "sum(amount * qty)",
                                     "max_qty": "max(qty)", "first_day": "min(ordered_on)"}}},
        {"type": "load", "method": "toPostgres",
         "config": {**connection(postgres, "host"), "table": "public.category_totals", "mode": "append"}},
    ])
    assert postgres.password not in text

    source = orders[orders.qty >= 3].copy()
    source["line"] = source.amount * source.qty
    expected = (source.groupby("category")
                .agg(n_orders=("id", "size"), revenue=("line", "sum"), max_qty=("qty", "max"),
                     first_day=("ordered_on", "min"))
                .reset_index())
    columns = ["category", "n_orders", "revenue", "max_qty", "first_day"]
    legacy = pd.DataFrame([("legacy", 1, Decimal("9.99"), 1, dt.date(2023, 12, 31))], columns=columns)

    for run in (1, 2):
        result = Pipeline.from_yaml(text).run(spark)
        assert result.ok, result.metrics.error
        landed = query_frame(postgres, "SELECT * FROM public.category_totals")
        want = pd.concat([legacy] + [expected] * run, ignore_index=True)
        assert records(landed, columns, columns) == records(want, columns, columns)
        assert len(expected) == len(CATEGORIES)
        check_rows_written(result, "toPostgres", len(expected))
    # the pipeline's own frame agrees too
    frame = result.to_pandas("totals")
    assert records(frame, columns, ["category"]) == records(expected, columns, ["category"])


def test_partitioned_read_to_delta(spark, postgres, orders, lake):
    """A partitioned read (partitionColumn/lowerBound/upperBound/numPartitions) lands exactly once in Delta."""
    path = str(lake / "orders")
    text = spec_text("pg_to_delta", [
        {"type": "extract", "method": "fromPostgres", "name": "orders_split",
         "config": {**connection(postgres, "url"), "table": "public.orders", "partitionColumn": "id",
                    "lowerBound": 1, "upperBound": N_ORDERS, "numPartitions": 4, "fetchSize": 100}},
        {"type": "transform", "method": "withColumn", "config": {"column": "month",
                                                                 "expr": "date_format(ordered_on, 'yyyy-MM')"}},
        {"type": "load", "method": "toDelta", "config": {"path": path, "mode": "overwrite",
                                                         "partitionBy": ["month"]}},
    ])
    result = Pipeline.from_yaml(text).run(spark)
    assert result.ok, result.metrics.error
    assert result.frames["orders_split"].rdd.getNumPartitions() == 4

    expected = orders.copy()
    expected["month"] = [d.strftime("%Y-%m") for d in expected.ordered_on]
    columns = list(orders.columns) + ["month"]
    landed = spark.read.format("delta").load(path).toPandas()
    assert sorted(landed.columns) == sorted(columns)
    assert records(landed, columns, ["id"]) == records(expected, columns, ["id"])
    load = step_metrics(result, "toDelta")
    assert load.rows_out == N_ORDERS == len(landed)


def test_postgres_to_postgres_and_delta_in_one_run(spark, postgres, orders, lake):
    """One read feeding two sinks: PostgreSQL (overwrite) and Delta (append, twice)."""
    execute(postgres, "DROP TABLE IF EXISTS public.garden_orders")
    path = str(lake / "garden")
    text = spec_text("pg_two_sinks", [
        {"type": "extract", "method": "fromPostgres", "name": "garden",
         "config": {**connection(postgres, "host"), "table": "public.orders", "partitionColumn": "id",
                    "lowerBound": 100, "upperBound": 400, "numPartitions": 3}},
        {"type": "transform", "method": "filterRows", "name": "garden_only",
         "config": {"condition": "category = 'garden'"}},
        {"type": "load", "method": "toPostgres",
         "config": {**connection(postgres, "host"), "table": "public.garden_orders", "mode": "overwrite"}},
        {"type": "load", "method": "toDelta", "input": "garden_only", "config": {"path": path, "mode": "append"}},
    ])
    expected = orders[orders.category == "garden"]
    columns = list(orders.columns)
    for run in (1, 2):
        result = Pipeline.from_yaml(text).run(spark)
        assert result.ok, result.metrics.error
        landed = query_frame(postgres, "SELECT * FROM public.garden_orders")
        # bounds only split the read: rows outside [100, 400] are read too
        assert records(landed, columns, ["id"]) == records(expected, columns, ["id"])
        check_rows_written(result, "toPostgres", len(expected))
        assert step_metrics(result, "toDelta").rows_out == len(expected)  # from the Delta commit
        in_delta = spark.read.format("delta").load(path).toPandas()
        assert records(in_delta, columns, ["id"]) == records(pd.concat([expected] * run), columns, ["id"])


def _failure(spark: Any, text: str) -> PipelineExecutionError:
    with pytest.raises(PipelineExecutionError) as info:
        Pipeline.from_yaml(text).run(spark)
    return info.value


def _assert_secret_free(exc: PipelineError, *secrets: str) -> None:
    result = exc.result  # type: ignore[attr-defined]
    texts = [str(exc), repr(exc), exc.message, exc.detail or "", json.dumps(exc.config, default=str),
             "\n".join(exc._render_traceback_()), result.metrics.error or "",
             result.metrics.to_json(), result.metrics.to_text(), result._repr_html_()]
    for secret in secrets:
        for text in texts:
            assert secret not in text


@pytest.mark.parametrize("case", ["missing_table", "existing_target"])
def test_failure_messages_never_show_the_password(spark, postgres, orders, case):
    """A failing read or write names what is wrong and where, without the resolved password."""
    if case == "missing_table":
        steps = [{"type": "extract", "method": "fromPostgres",
                  "config": {**connection(postgres, "url"), "table": "public.no_such_table"}},
                 {"type": "load", "method": "display"}]
        index, method, needle = 0, "fromPostgres", "no_such_table"
    else:  # mode error (the default) into a table that exists
        steps = [{"type": "extract", "method": "fromPostgres",
                  "config": {**connection(postgres, "url"), "query": "SELECT id FROM public.orders"}},
                 {"type": "load", "method": "toPostgres",
                  "config": {**connection(postgres, "url"), "table": "public.orders"}}]
        index, method, needle = 1, "toPostgres", "orders"
    text = spec_text(f"pg_fail_{case}", steps)
    assert postgres.password not in text
    exc = _failure(spark, text)
    assert exc.step_index == index and exc.method == method
    assert needle in str(exc)
    assert exc.config["password"] == {"env": PASSWORD_VAR}
    _assert_secret_free(exc, postgres.password)
    assert exc.result.metrics.status == "failed"  # type: ignore[attr-defined]
    # nothing was written
    assert len(query_frame(postgres, "SELECT id FROM public.orders")) == N_ORDERS


def test_wrong_password_is_a_short_one_line_error(spark, postgres, orders, monkeypatch):
    """Authentication failure: a PipelineExecutionError with one readable line, no JVM stack trace."""
    wrong = "Wr0ng-" + postgres.password[::-1]
    monkeypatch.setenv(PASSWORD_VAR, wrong)
    text = spec_text("pg_wrong_password", [
        {"type": "extract", "method": "fromPostgres",
         "config": {**connection(postgres, "host"), "table": "public.orders"}},
        {"type": "load", "method": "display"},
    ])
    exc = _failure(spark, text)
    message = str(exc)
    assert "\n" not in message, message
    assert len(message) < 500, message
    assert "password authentication failed" in message
    assert "step 1" in message and "fromPostgres" in message
    for trace_marker in ("\tat ", "at org.", "at java.", "Traceback", "Py4J", "py4j"):
        assert trace_marker not in message
    assert exc.detail  # the full trace is kept for %pipeline last-error
    _assert_secret_free(exc, wrong, postgres.password)


def test_to_postgres_metrics_count_the_rows_written(spark, postgres, orders):
    """rows_out of a toPostgres step is the number of rows that landed (SPEC 5)."""
    execute(postgres, "DROP TABLE IF EXISTS public.toys")
    text = spec_text("pg_rows_written", [
        {"type": "extract", "method": "fromPostgres",
         "config": {**connection(postgres, "url"), "query": "SELECT id, amount FROM public.orders "
                                                            "WHERE category = 'toys'"}},
        {"type": "load", "method": "toPostgres",
         "config": {**connection(postgres, "url"), "table": "public.toys", "mode": "overwrite"}},
    ])
    result = Pipeline.from_yaml(text).run(spark)
    landed = query_frame(postgres, "SELECT count(*) AS n FROM public.toys").n[0]
    assert landed == (orders.category == "toys").sum() > 0
    load = step_metrics(result, "toPostgres")
    assert load.rows_out == landed
    assert load.rows_in == landed
    assert result.metrics.to_dict()["totals"]["rows_written"] == landed


# ------------------------------------------------------------------ error text


def test_missing_table_error_is_one_line(spark, postgres, orders):
    """SPEC 4: the root cause in one line (the rest is for %pipeline last-error)."""
    exc = _failure(spark, spec_text("pg_missing_table", [
        {"type": "extract", "method": "fromPostgres",
         "config": {**connection(postgres, "url"), "table": "public.no_such_table"}},
        {"type": "load", "method": "display"},
    ]))
    assert "no_such_table" in str(exc)
    assert "\n" not in str(exc), str(exc)
