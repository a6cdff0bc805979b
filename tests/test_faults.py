"""Faults against the real services: nothing lost, nothing written twice, clear errors.

PostgreSQL stopped and restarted in the middle of a read and of a write (and a write
cancelled half-way), a Kafka broker killed during a streaming run, Vault stopped
mid-run, the driver SIGKILLed during a Delta write. Each fault is injected when
the run is seen to be at the right point (a query in ``pg_stat_activity``, rows in
Delta, a step finished, a data file on disk), never after a blind sleep.

The classifier (``pipeline_magics.run.retry``) is tested with exception texts captured
from the same services (PostgreSQL 15, Kafka 3.9 clients, Spark 4.0).
"""
from __future__ import annotations

import json
import functools
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from typing import Any, Callable

import pytest
import yaml

from pipeline_magics import Pipeline, config
from pipeline_magics.errors import (PipelineCancelledError, PipelineExecutionError, RetryableError,
                                    StreamingQueryError)
from pipeline_magics.methods import jdbc
from pipeline_magics.methods.load import LEFTOVER_STAGING
from pipeline_magics.run.retry import DEFAULT_RETRY, backoff_delay, is_transient, policy_for
from pipeline_magics.spec.model import Step
from services.base import free_port, wait_until
from services.base import stop as stop_service
from services.vault import start_bao, wait_ready

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))
PASSWORD_VAR = "PIPELINE_TEST_PG_PASSWORD"
SLOW = "pm.fault.slow"  # a JVM system property: rows are slow to compute while it is "true"
#: a per-row pause of ``ms`` while the SLOW property is set; always true. (Spark 4.0's reflect gives the
#: string 'null' for a void method; "coalesce(...) IS NOT NULL" would be folded away, this is not.)
PAUSE = ("coalesce(reflect('java.lang.Thread', 'sleep', CAST(IF(reflect('java.lang.Boolean', 'getBoolean', "
         f"'{SLOW}') = 'true', {{ms}}, 0) AS BIGINT)), 'null') = 'null'")


def spec_text(name: str, steps: list[dict[str, Any]], mode: str = "batch") -> str:
    return yaml.safe_dump({"name": name, "mode": mode, "steps": steps}, sort_keys=False)


SEED_CSV = os.path.join(ROOT, "examples", "data", "customers.csv")


def generated(query: str, name: str = "rows") -> list[dict[str, Any]]:
    """Steps that make rows with a SQL query (a pipeline starts with an extract: a small CSV, unused)."""
    return [{"type": "extract", "method": "fromCsv", "name": "seed", "config": {"path": SEED_CSV}},
            {"type": "transform", "method": "sql", "name": name, "config": {"query": query}}]


#: polls until something true comes back; a timeout fails the test (services.base.wait_until)
wait_for = functools.partial(wait_until, error=AssertionError)


@pytest.fixture
def real_backoffs(monkeypatch):
    """Back-offs as long as outside the suite: the service must come back within the retries."""
    monkeypatch.setenv("PIPELINE_RETRY_BACKOFF_SCALE", "1")


class Fault(threading.Thread):
    """Runs ``action`` beside the pipeline; its own failure is raised by ``join_checked``."""

    def __init__(self, action: Callable[[], None]) -> None:
        super().__init__(daemon=True, name="fault-injector")
        self.action, self.error = action, None

    def run(self) -> None:
        try:
            self.action()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            self.error = exc

    def join_checked(self, timeout: float = 120) -> None:
        self.join(timeout)
        assert not self.is_alive(), "the fault injector did not finish"
        if self.error is not None:
            raise self.error


# ------------------------------------------------------------------ the classifier

# First lines of real failures, as a Spark Connect client (no JVM objects) would see them.
TRANSIENT_TEXTS = {
    "pg refused": "org.postgresql.util.PSQLException: Connection to 127.0.0.1:40005 refused. Check that the "
                  "hostname and port are correct and that the postmaster is accepting TCP/IP connections.",
    "pg admin shutdown": "Job aborted due to stage failure: Task 0 in stage 0.0 failed 1 times, most recent failure: "
                         "Lost task 0.0 in stage 0.0 (TID 0) (localhost executor driver): org.postgresql.util."
                         "PSQLException: FATAL: terminating connection due to administrator command",
    "pg closed mid-write": "Job aborted due to stage failure: Task 0 in stage 1.0 failed 1 times, most recent failure: "
                           "Lost task 0.0 in stage 1.0 (TID 1) (localhost executor driver): org.postgresql.util."
                           "PSQLException: This connection has been closed.",
    "pg starting": "org.postgresql.util.PSQLException: FATAL: the database system is starting up",
    "pg shutting down": "org.postgresql.util.PSQLException: FATAL: the database system is shutting down",
    "kafka no node": "java.util.concurrent.ExecutionException: org.apache.kafka.common.errors.TimeoutException: "
                     "Timed out waiting for a node assignment. Call: listNodes",
    "kafka no metadata": "Job aborted due to stage failure: Task 1 in stage 3.0 failed 1 times, most recent failure: "
                         "Lost task 1.0 in stage 3.0 (TID 3) (localhost executor driver): org.apache.kafka.common."
                         "errors.TimeoutException: Topic t1 not present in metadata after 3000 ms.",
}
PERMANENT_TEXTS = {
    "pg syntax": 'org.postgresql.util.PSQLException: ERROR: syntax error at or near "1"\n  Position: 22',
    "pg no table": 'org.postgresql.util.PSQLException: ERROR: relation "public.nope" does not exist',
    "pg no column": 'org.postgresql.util.PSQLException: ERROR: column "nope" does not exist',
    "pg password": 'org.postgresql.util.PSQLException: FATAL: password authentication failed for user "postgres"',
    "pg no database": 'org.postgresql.util.PSQLException: FATAL: database "pipelinesx" does not exist',
    "spark column": "[UNRESOLVED_COLUMN.WITH_SUGGESTION] A column, variable, or function parameter with name `nope` "
                    "cannot be resolved. Did you mean one of the following? [`id`]. SQLSTATE: 42703",
    "spark parse": "[PARSE_SYNTAX_ERROR] Syntax error at or near 'SELEC'. SQLSTATE: 42601",
    "a timeout in data": "[CAST_INVALID_INPUT] The value 'Timeout' of the type \"STRING\" cannot be cast to \"INT\"",
}


@pytest.mark.parametrize("name", sorted(TRANSIENT_TEXTS))
def test_transient_texts_are_retried(name):
    assert is_transient(RuntimeError(TRANSIENT_TEXTS[name]))


@pytest.mark.parametrize("name", sorted(PERMANENT_TEXTS))
def test_permanent_texts_are_not(name):
    assert not is_transient(RuntimeError(PERMANENT_TEXTS[name]))


def test_python_errors_and_pipeline_errors():
    from pyspark.errors import AnalysisException

    from pipeline_magics.errors import CredentialError

    assert is_transient(ConnectionRefusedError(111, "Connection refused"))
    assert is_transient(CredentialError("Vault is unreachable: ConnectionError", code="VAULT_UNREACHABLE"))
    assert not is_transient(CredentialError("no secret at secret/x", code="VAULT_NOT_FOUND"))
    assert not is_transient(AnalysisException(message="Connection refused in a column name"))
    assert not is_transient(ValueError("bad value"))


def test_default_policies_and_backoff():
    def step(type_: str, method: str, **kw: Any) -> Step:
        return Step(type=type_, method=method, **kw)

    assert policy_for(step("extract", "fromPostgres"), "batch") == DEFAULT_RETRY
    assert policy_for(step("load", "toPostgres"), "batch") == DEFAULT_RETRY
    assert policy_for(step("load", "toDelta"), "batch") == DEFAULT_RETRY
    assert policy_for(step("load", "toCsv"), "batch").attempts == 1  # not safe to repeat blindly
    assert policy_for(step("transform", "sql"), "batch").attempts == 1
    assert policy_for(step("extract", "fromKafka"), "streaming").attempts == 1
    own = step("load", "toCsv", retry={"attempts": 5, "backoffSeconds": 2})
    assert policy_for(own, "batch").attempts == 5
    # exponential with +-50% jitter
    assert [backoff_delay(own.retry, a, rand=lambda: 0.5, scale=1) for a in (1, 2, 3)] == [2.0, 4.0, 8.0]
    assert backoff_delay(own.retry, 1, rand=lambda: 0.0, scale=1) == 1.0
    assert backoff_delay(own.retry, 1, rand=lambda: 0.999, scale=1) == pytest.approx(2.998)
    # the suite shortens every back-off (PIPELINE_RETRY_BACKOFF_SCALE, set by tests/services/plugin.py)
    assert backoff_delay(own.retry, 2, rand=lambda: 0.5) == pytest.approx(4.0 * config.number("retry_backoff_scale"))


def test_staging_names_and_table_names():
    assert jdbc.staging_table("public.orders", "abc") == 'public."orders__pm_abc"'
    assert jdbc.staging_table('"Sales"."Daily Totals"', "abc") == '"Sales"."Daily Totals__pm_abc"'
    long = jdbc.staging_table("x" * 80, "0123456789ab0")
    assert len(long) - 2 <= jdbc.MAX_IDENT and long.endswith('__pm_0123456789ab0"')
    for bad in ("orders; DROP TABLE x", "a.b.c.d", "", "'x'", "x$y$"):
        with pytest.raises(ValueError):
            jdbc.check_table_name(bad)


# ------------------------------------------------------------------ PostgreSQL

@pytest.fixture
def pg(postgres, monkeypatch):
    """The suite's PostgreSQL, which these tests stop and start (the local backend only); always running after."""
    if postgres.backend != "local":
        pytest.skip("stopping and restarting PostgreSQL needs the local backend")
    for var in ("PIPELINE_SECURITY_POLICY", "PIPELINE_VAULT_ONLY", "PIPELINE_ALLOW_PLAINTEXT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(PASSWORD_VAR, postgres.password)
    yield postgres
    if not postgres.running:
        postgres.start()


@pytest.fixture
def slow(spark):
    """Turns the per-row pause of ``PAUSE`` on; off again after the test."""
    system = spark.sparkContext._jvm.java.lang.System
    system.setProperty(SLOW, "true")
    yield lambda on: system.setProperty(SLOW, "true" if on else "false")
    system.clearProperty(SLOW)


def conn_config(pg: Any) -> dict[str, Any]:
    return {"url": pg.jdbc_url, "user": pg.user, "password": {"env": PASSWORD_VAR}}


def rows(pg: Any, sql: str) -> list[tuple]:
    with pg.connect() as conn:
        return conn.execute(sql).fetchall()


def wait_active(pg: Any, like: str, timeout: float = 90) -> None:
    """Until another session runs (or sits in the transaction of) a statement LIKE ``like``."""
    with pg.connect() as conn:  # one connection, polled often: a batch of INSERTs is short
        wait_for(lambda: conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND query LIKE %s "
            "AND state IN ('active', 'idle in transaction') "  # not a session of an earlier test, ending
            "AND query NOT LIKE '%%WHERE 1=0'", (like,)).fetchone()[0], timeout,  # not Spark's schema probe
            f"a statement like {like!r}", interval=0.02)


def staging_tables(pg: Any) -> list[str]:
    return [r[0] for r in rows(pg, "SELECT relname FROM pg_class WHERE relname LIKE '%\\_\\_pm\\_%'")]


def restart_when(pg: Any, like: str, after: Callable[[], None] = lambda: None) -> Fault:
    """Stops PostgreSQL (fast shutdown) once a session runs a statement LIKE ``like``, then starts it again."""
    def action() -> None:
        wait_active(pg, like)
        pg.stop()
        after()
        pg.start()

    fault = Fault(action)
    fault.start()
    return fault


@pytest.mark.postgres
def test_live_failures_are_classified(spark, pg):
    """The classifier on the exceptions Spark raises itself (with their JVM cause chains)."""
    opts = {"url": pg.jdbc_url, "user": pg.user, "password": pg.password, "driver": jdbc.DRIVER}

    def failure(**options: str) -> BaseException:
        with pytest.raises(Exception) as info:
            df = spark.read.format("jdbc").options(**{**opts, **options}).load()
            df.select("b").collect() if "SELECT 1 AS a" in options.get("query", "") else df.collect()
        return info.value

    for case in ({"query": "SELEC 1"}, {"dbtable": "public.no_such"}, {"password": "wrong", "dbtable": "x"},
                 {"query": "SELECT 1 AS a"}):  # 42601, 42P01, 28P01, an AnalysisException
        exc = failure(**case)
        assert not is_transient(exc), (case, str(exc)[:300])
        assert "IllegalArgument" not in type(exc).__name__
    pg.stop()
    try:
        refused = failure(query="SELECT 2 AS a")
    finally:
        pg.start()
    assert is_transient(refused), str(refused)[:300]


@pytest.mark.postgres
def test_postgres_down_fails_with_retryable_error_after_the_default_attempts(spark, pg):
    text = spec_text("fault_pg_down", [
        {"type": "extract", "method": "fromPostgres", "name": "orders",
         "config": {**conn_config(pg), "query": "SELECT 1 AS id"}},
        {"type": "load", "method": "display"},
    ])
    pg.stop()
    try:
        started = time.monotonic()
        with pytest.raises(RetryableError) as info:
            Pipeline.from_yaml(text).run(spark)
        took = time.monotonic() - started
    finally:
        pg.start()
    exc = info.value
    assert exc.code == "RETRIES_EXHAUSTED" and exc.params["attempts"] == DEFAULT_RETRY.attempts
    assert exc.step_index == 0 and exc.method == "fromPostgres"
    message = str(exc)
    assert "step 1 'orders' (extract.fromPostgres)" in message and f"failed after {DEFAULT_RETRY.attempts} attempts" \
        in message and "refused" in message.lower(), message
    assert "\n  hint:" in message and "\tat " not in message
    assert pg.password not in message + (exc.detail or "")
    assert exc.result.metrics.steps[0].attempts == DEFAULT_RETRY.attempts
    # it did back off: 0.5-1.5 s, then 1-3 s (times the suite's back-off scale)
    assert took >= 1.5 * DEFAULT_RETRY.backoffSeconds * 0.5 * config.number("retry_backoff_scale")


@pytest.mark.postgres
def test_bad_sql_is_never_retried(spark, pg):
    text = spec_text("fault_bad_sql", [
        {"type": "extract", "method": "fromPostgres", "config": {**conn_config(pg), "query": "SELEC 1"}},
        {"type": "load", "method": "display"},
    ])
    with pytest.raises(PipelineExecutionError) as info:
        Pipeline.from_yaml(text).run(spark)
    assert not isinstance(info.value, RetryableError) and "syntax error" in str(info.value)
    assert info.value.result.metrics.steps[0].attempts == 1


@pytest.mark.postgres
@pytest.mark.usefixtures("real_backoffs")
def test_postgres_restarted_mid_read_the_load_retries_and_writes_once(spark, pg, lake):
    """The read runs inside toDelta's write; PostgreSQL goes away under it (57P01), comes back, the step
    is tried again and Delta holds every row once, in one commit."""
    n = 800
    started = rows(pg, "SELECT pg_postmaster_start_time()")[0][0]
    # slow (10 ms a row) only until the restart, so the retry is quick
    query = (f"SELECT g AS id, pg_sleep(CASE WHEN pg_postmaster_start_time() <= '{started.isoformat()}' "
             f"THEN 0.01 ELSE 0 END) IS NULL AS slept FROM generate_series(1, {n}) g /* pm_fault_read */")
    out = str(lake / "ids")
    text = spec_text("fault_pg_read", [
        {"type": "extract", "method": "fromPostgres", "name": "ids",
         "config": {**conn_config(pg), "query": query, "fetchSize": 50}},
        {"type": "load", "method": "toDelta", "name": "sink", "config": {"path": out, "mode": "append"},
         "retry": {"attempts": 5, "backoffSeconds": 1}},
    ])
    fault = restart_when(pg, "%FROM generate_series%pm_fault_read%")
    result = Pipeline.from_yaml(text).run(spark)
    fault.join_checked()
    assert result.ok, result.metrics.error
    sink = result.metrics.step("sink")
    assert sink.attempts >= 2, "the fault should have failed the first attempt"
    ids = [r.id for r in spark.read.format("delta").load(out).select("id").collect()]
    assert sorted(ids) == list(range(1, n + 1))
    history = spark.sql(f"DESCRIBE HISTORY delta.`{out}`").select("version", "operation").collect()
    assert [(h.version, h.operation) for h in history] == [(0, "WRITE")]


@pytest.fixture
def target(pg):
    """``public.fault_target`` with 50 known rows; returns them."""
    with pg.connect() as conn:
        conn.execute("DROP TABLE IF EXISTS public.fault_target")
        conn.execute("CREATE TABLE public.fault_target (id bigint, note text)")
        conn.execute("INSERT INTO public.fault_target SELECT g, 'before' FROM generate_series(1, 50) g")
    return rows(pg, "SELECT id, note FROM public.fault_target ORDER BY id")


def write_spec(pg: Any, name: str, mode: str, retry: dict[str, Any] | None, n: int = 600) -> str:
    load: dict[str, Any] = {"type": "load", "method": "toPostgres", "name": "write",
                            "config": {**conn_config(pg), "table": "public.fault_target", "mode": mode,
                                       "batchSize": 20}}
    if retry:
        load["retry"] = retry
    return spec_text(name, generated(f"SELECT id + 1000 AS id, 'after' AS note FROM range(0, {n}, 1, 2) "
                                     f"WHERE {PAUSE.format(ms=10)}", "fresh") + [load])


@pytest.mark.postgres
def test_postgres_restarted_mid_write_leaves_the_target_as_it_was(spark, pg, target, slow):
    """overwrite, no retry: the write fails half-way; the table still holds exactly what it held."""
    fault = restart_when(pg, 'INSERT INTO public."fault_target__pm_%')
    with pytest.raises(PipelineExecutionError) as info:
        Pipeline.from_yaml(write_spec(pg, "fault_pg_write", "overwrite", {"attempts": 1})).run(spark)
    fault.join_checked()
    assert info.value.step_index == 2 and info.value.method == "toPostgres"
    assert rows(pg, "SELECT id, note FROM public.fault_target ORDER BY id") == target

    # the next run (slow no more) succeeds, and no staging table is left behind by either run
    slow(False)
    result = Pipeline.from_yaml(write_spec(pg, "fault_pg_write", "overwrite", None)).run(spark)
    assert result.ok, result.metrics.error
    assert rows(pg, "SELECT count(*), min(id), max(id), min(note) FROM public.fault_target")[0] == \
        (600, 1000, 1599, "after")
    assert staging_tables(pg) == [] and not LEFTOVER_STAGING


@pytest.mark.postgres
@pytest.mark.usefixtures("real_backoffs")
def test_postgres_restarted_mid_write_the_retry_appends_once(spark, pg, target, slow):
    fault = restart_when(pg, 'INSERT INTO public."fault_target__pm_%', after=lambda: slow(False))
    result = Pipeline.from_yaml(write_spec(pg, "fault_pg_append", "append",
                                           {"attempts": 5, "backoffSeconds": 1})).run(spark)
    fault.join_checked()
    assert result.ok, result.metrics.error
    assert result.metrics.step("write").attempts >= 2
    landed = rows(pg, "SELECT id, note FROM public.fault_target ORDER BY id")
    assert landed == target + [(1000 + i, "after") for i in range(600)]
    assert staging_tables(pg) == []


@pytest.mark.postgres
def test_cancelled_write_leaves_the_target_as_it_was(spark, pg, target, slow):
    pipeline = Pipeline.from_yaml(write_spec(pg, "fault_pg_cancel", "overwrite", None))

    def cancel() -> None:
        wait_active(pg, 'INSERT INTO public."fault_target__pm_%')
        pipeline.cancel()

    fault = Fault(cancel)
    fault.start()
    with pytest.raises(PipelineCancelledError):
        pipeline.run(spark)
    fault.join_checked()
    assert rows(pg, "SELECT id, note FROM public.fault_target ORDER BY id") == target
    wait_for(lambda: staging_tables(pg) == [], 30, "the staging table to be dropped")


@pytest.mark.postgres
def test_atomic_write_semantics(spark, pg, target):
    """append matches columns by name (any order, any case); truncate keeps the table's indexes; a column
    the table lacks fails the write with the table untouched; mode error refuses before writing."""
    with pg.connect() as conn:
        conn.execute("CREATE INDEX fault_target_id ON public.fault_target (id)")

    def run(query: str, mode: str, **extra: Any) -> Any:
        return Pipeline.from_yaml(spec_text("fault_pg_modes", generated(query) + [
            {"type": "load", "method": "toPostgres",
             "config": {**conn_config(pg), "table": "public.fault_target", "mode": mode, **extra}},
        ])).run(spark, raise_on_error=False)

    assert run("SELECT 'swapped' AS NOTE, 9001L AS Id", "append").ok
    assert rows(pg, "SELECT id, note FROM public.fault_target WHERE id > 9000") == [(9001, "swapped")]

    failed = run("SELECT 9002L AS id, 'x' AS note, 1 AS extra", "append")
    assert failed.status == "failed" and "extra" in str(failed.error)
    assert rows(pg, "SELECT count(*) FROM public.fault_target")[0][0] == 51

    failed = run("SELECT 1L AS id, 'x' AS note", "error")
    assert failed.status == "failed" and "already exists" in str(failed.error)
    assert run("SELECT 1L AS id, 'x' AS note", "ignore").ok
    assert rows(pg, "SELECT count(*) FROM public.fault_target")[0][0] == 51

    assert run("SELECT 7L AS id, 'only' AS note", "overwrite", truncate=True).ok
    assert rows(pg, "SELECT id, note FROM public.fault_target") == [(7, "only")]
    assert rows(pg, "SELECT indexname FROM pg_indexes WHERE tablename = 'fault_target'") == [("fault_target_id",)]
    assert run("SELECT 8L AS id, 'replaced' AS note, 2.5D AS score", "overwrite").ok  # recreated: new schema
    assert rows(pg, "SELECT id, note, score FROM public.fault_target") == [(8, "replaced", 2.5)]
    assert staging_tables(pg) == []


# ------------------------------------------------------------------ Kafka


def events(start: int, count: int) -> list[str]:
    return [json.dumps({"id": i, "amount": i * 0.5}) for i in range(start, start + count)]


#: Kafka source options that give up on a missing broker within seconds (the defaults wait a minute or more)
IMPATIENT = {"kafka.default.api.timeout.ms": 3000, "kafka.request.timeout.ms": 2000, "fetchOffset.numRetries": 1,
             "fetchOffset.retryIntervalMs": 200}


def kafka_spec(kafka: Any, topic: str, lake: Any, trigger: str, options: dict[str, Any]) -> str:
    source = {"bootstrapServers": kafka.bootstrap, "topic": topic, "format": "json", "schema": "id INT, amount DOUBLE",
              "options": {"maxOffsetsPerTrigger": 40, **options}}
    return spec_text("fault_kafka", [
        {"type": "extract", "method": "fromKafka", "config": source},
        {"type": "load", "method": "toDelta", "name": "sink",
         "config": {"path": str(lake / "out"), "checkpointLocation": str(lake / "cp"), "trigger": trigger}},
    ], mode="streaming")


@pytest.mark.parametrize("patience", ["default", "impatient"])
def test_kafka_broker_killed_mid_stream_nothing_lost_nothing_doubled(spark, kafka, lake, patience):
    """SIGKILL the broker while the query runs, start it again: with Kafka's default timeouts the query
    rides it out; with short ones it stops with a clear StreamingQueryError. Either way a restart from
    the checkpoint then holds every message exactly once."""
    n = 240
    topic = f"fault_{uuid.uuid4().hex[:8]}"
    kafka.create_topic(topic, partitions=2)
    kafka.produce(topic, events(0, n))
    out = str(lake / "out")
    options = IMPATIENT if patience == "impatient" else {}

    def landed() -> int:
        try:
            return spark.read.format("delta").load(out).count()
        except Exception:  # noqa: BLE001 - no table yet
            return 0

    result = Pipeline.from_yaml(kafka_spec(kafka, topic, lake, {"processingTime": "1 second"}, options)).run(spark)
    query = result.queries[0]
    try:
        wait_for(landed, 120, "the first rows in Delta", interval=0.5)
        kafka.kill()
        if patience == "impatient":  # away until the query gives up
            wait_for(lambda: not query.isActive, 120, "the query to stop", interval=0.5)
        else:
            time.sleep(3)  # away for a few triggers
        kafka.restart()
        outcome = wait_for(lambda: ("failed" if not query.isActive else "done" if landed() >= n else None),
                           180, "the query to finish the topic or to stop", interval=1)
        if outcome == "failed":
            with pytest.raises(StreamingQueryError) as info:
                result.stream.raise_if_failed()
            message = str(info.value)
            assert "'fault_kafka.sink' stopped" in message and "step 2 'sink' (load.toDelta)" in message
            assert "\n" not in info.value.message and "\tat " not in message, message
            assert info.value.params["transient"] and "resumes from its checkpoint" in message
            print(f"\n{message}")
    finally:
        result.stop()
        if not kafka.running:
            kafka.restart()
    assert outcome == ("failed" if patience == "impatient" else "done")

    again = Pipeline.from_yaml(kafka_spec(kafka, topic, lake, {"availableNow": True}, options)).run(spark)
    assert again.status == "done", again.metrics.error
    ids = [r.id for r in spark.read.format("delta").load(out).select("id").collect()]
    assert len(ids) == n and set(ids) == set(range(n))


# ------------------------------------------------------------------ Vault


class BaoServer:
    """A dev OpenBao server that can be stopped and started again on the same port and root token."""

    def __init__(self, folder: Any) -> None:
        self.folder = str(folder)
        self.port = free_port()
        self.addr = f"http://127.0.0.1:{self.port}"
        self.token = "root-" + uuid.uuid4().hex
        self.log = os.path.join(self.folder, "bao.log")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, secrets: dict[str, dict[str, str]]) -> None:
        self.proc = start_bao(self.port, self.token, self.folder, self.log)
        wait_ready(self.addr, self.token, proc=self.proc, log=self.log)
        import hvac

        client = hvac.Client(url=self.addr, token=self.token)
        for path, data in secrets.items():  # a dev server keeps nothing: seed it on every start
            client.secrets.kv.v2.create_or_update_secret(path=path, secret=data, mount_point="secret")

    def stop(self) -> None:
        if self.proc is not None:
            stop_service(self.proc, timeout=10)
            self.proc = None


@pytest.fixture
def bao(tmp_path, monkeypatch, postgres):
    """Its own Vault (the suite's stays up), holding the PostgreSQL password; the kernel's login cleared."""
    from pipeline_magics.secrets import vault as kv, vault_renewal as renewal

    server = BaoServer(tmp_path)
    secrets = {"fault/pg": {"password": postgres.password}}
    server.start(secrets)
    for var in ("PIPELINE_SECURITY_POLICY", "PIPELINE_VAULT_ONLY", "PIPELINE_ALLOW_PLAINTEXT", "VAULT_NAMESPACE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("VAULT_ADDR", server.addr)
    monkeypatch.setenv("VAULT_TOKEN", server.token)
    renewal.RENEWAL.stop()
    kv.SESSION.clear()
    kv.SESSION.addr, kv.SESSION.use_env = None, True
    server.restart = lambda: server.start(secrets)  # type: ignore[attr-defined]
    yield server
    server.stop()
    kv.SESSION.clear()


def vault_spec(postgres: Any, table: str, retry: dict[str, Any] | None) -> str:
    load: dict[str, Any] = {"type": "load", "method": "toPostgres", "name": "save",
                            "config": {"url": postgres.jdbc_url, "user": postgres.user, "table": table,
                                       "mode": "overwrite", "password": "vault:secret/fault/pg#password"}}
    if retry:
        load["retry"] = retry
    return spec_text("fault_vault", [
        {"type": "extract", "method": "fromCsv", "name": "customers", "config": {"path": SEED_CSV, "header": True}},
        {"type": "transform", "method": "sql", "name": "numbers", "config": {"query": "SELECT id FROM range(5)"}},
        load,
    ])


def stop_after_first_step(server: BaoServer) -> Callable[[Any], None]:
    """An ``on_update`` hook that stops Vault the moment step 2 is done (before step 3 reads its secret)."""
    def hook(run: Any) -> None:
        if run.metrics.steps[1].status == "done" and server.proc is not None:
            server.stop()

    return hook


@pytest.mark.postgres
def test_vault_stopped_mid_run_fails_clearly_and_writes_nothing(spark, postgres, bao):
    with postgres.connect() as conn:
        conn.execute("DROP TABLE IF EXISTS public.fault_vault")
    with pytest.raises(RetryableError) as info:
        Pipeline.from_yaml(vault_spec(postgres, "public.fault_vault", None)).run(
            spark, on_update=stop_after_first_step(bao))
    exc = info.value
    assert exc.step_index == 2 and exc.method == "toPostgres"
    assert exc.params["attempts"] == DEFAULT_RETRY.attempts and exc.params["cause_code"] == "VAULT_UNREACHABLE"
    assert "Vault is unreachable" in str(exc) and "step 3 'save'" in str(exc)
    shown = "\n".join([str(exc), exc.detail or "", json.dumps(exc.config), exc.result.metrics.to_json()])
    assert postgres.password not in shown
    with postgres.connect() as conn:
        assert conn.execute("SELECT to_regclass('public.fault_vault')").fetchone()[0] is None


@pytest.mark.postgres
@pytest.mark.usefixtures("real_backoffs")
def test_vault_back_within_the_retries_the_run_succeeds(spark, postgres, bao):
    restart = threading.Timer(1.0, bao.restart)  # back while the step backs off
    stopped = threading.Event()

    def hook(run: Any) -> None:
        if run.metrics.steps[1].status == "done" and not stopped.is_set():
            stopped.set()  # once: the restarted server is not stopped, nor restarted after the test, again
            bao.stop()
            restart.start()

    result = Pipeline.from_yaml(vault_spec(postgres, "public.fault_vault", {"attempts": 6, "backoffSeconds": 1})).run(
        spark, on_update=hook)
    assert stopped.is_set(), "the hook never stopped Vault"
    restart.join()
    assert result.ok, result.metrics.error
    assert result.metrics.step("save").attempts >= 2
    with postgres.connect() as conn:
        assert conn.execute("SELECT count(*) FROM public.fault_vault").fetchone()[0] == 5


# ------------------------------------------------------------------ the driver, killed


def test_driver_killed_during_a_delta_write_leaves_the_table_at_its_last_version(spark, lake, tmp_path):
    """SIGKILL the headless driver (its process group: Python and JVM) while its Delta append writes
    data files: the table still reads at its last version, and the next run appends exactly once."""
    path = str(lake / "table")
    spark.range(100).selectExpr("id", "'seed' AS tag").write.format("delta").save(path)  # version 0
    spec_file = tmp_path / "slow.yaml"
    spec_file.write_text(spec_text("fault_driver", generated(
        "SELECT id + 1000 AS id, 'run' AS tag FROM range(0, 400, 1, 2) "
        "WHERE coalesce(reflect('java.lang.Thread', 'sleep', CAST(${sleep_ms} AS BIGINT)), 'null') = 'null'") + [
        {"type": "load", "method": "toDelta", "config": {"path": path, "mode": "append"}},
    ]))
    data_files = lambda: {f for f in os.listdir(path) if f.endswith(".parquet")}  # noqa: E731
    before = data_files()
    env = {**os.environ, "PYTHONPATH": ROOT, "SPARK_LOCAL_IP": "127.0.0.1", "PIPELINE_SPARK_MASTER": "local[2]"}
    driver = subprocess.Popen([sys.executable, "-m", "pipeline_magics", "run", str(spec_file), "--var", "sleep_ms=20"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: data_files() - before or driver.poll() is not None, 240, "the write's first data file",
                 interval=0.2)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
    assert data_files() - before, f"the driver ended ({driver.returncode}) before it wrote a data file"

    history = spark.sql(f"DESCRIBE HISTORY delta.`{path}`").collect()
    assert [h.version for h in history] == [0], "no commit may come from the killed write"
    table = spark.read.format("delta").load(path)
    assert table.count() == 100 and {r.tag for r in table.select("tag").distinct().collect()} == {"seed"}
    assert data_files() - before  # its files are there, unreferenced: Delta ignores them (VACUUM removes them)

    result = Pipeline.from_file(str(spec_file), {"sleep_ms": "0"}).run(spark)
    assert result.ok, result.metrics.error
    assert spark.read.format("delta").load(path).count() == 500
