"""A representative subset of the suite, run unchanged on three Spark targets (SPEC section 7).

- ``local``: the suite's own local session (the ``spark`` fixture), in this process;
- ``standalone``: a standalone cluster on 127.0.0.1 (a master and two workers, one core each);
- ``connect``: a Spark Connect server with Delta Lake configured on the server.

The same test functions and assertions run on each. PySpark allows one kind of session
per Python process (a Connect client next to a classic session is refused, and
``pyspark.sql.functions`` follow a process-wide mode), and one SparkContext: so the two
cluster targets run this file again in a child process, with ``PIPELINE_TEST_SPARK_TARGET``
naming the target. There the session comes from ``get_session()``, exactly as in a
notebook pointed at the cluster by ``PIPELINE_SPARK_MASTER=spark://...`` or
``PIPELINE_SPARK_REMOTE=sc://...``. The local run starts the clusters (``services.spark_cluster``)
and the two children as the module starts, runs its own subset beside them, and
``test_subset_on`` fails with a child's output when that child failed.

Every path is on this machine, so the server and the executors read and write the same
files the tests check.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import datetime as dt
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import pandas as pd
import pytest

from pipeline_magics import ExpectationError, Pipeline, PipelineCancelledError
from pipeline_magics.run.step_rows import OLD_CONNECT, VIEW
from pipeline_magics.spark.observation import observes_any_frame
from pipeline_magics.spark.session import is_connect
from services import spark_cluster
from services.postgres import Postgres

TARGET = os.environ.get("PIPELINE_TEST_SPARK_TARGET", "local")
TARGETS = ("local", "standalone", "connect")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "examples", "data")
ORDERS = "order_id INT, customer_id INT, country STRING, amount DOUBLE, order_date DATE"
CUSTOMERS = "customer_id INT, name STRING, segment STRING"
#: the tests that run on every target (``test_subset_on`` checks that all of them passed)
SUBSET: list[str] = []


def everywhere(func: Any) -> Any:
    """Marks a test of the subset."""
    SUBSET.append(func.__name__)
    return func


# ------------------------------------------------------------------ fixtures


@pytest.fixture(autouse=True)
def _default_policy(monkeypatch):
    for var in ("PIPELINE_SECURITY_POLICY", "PIPELINE_VAULT_ONLY", "PIPELINE_ALLOW_PLAINTEXT",
                "PIPELINE_AUDIT_CREDENTIALS"):
        monkeypatch.delenv(var, raising=False)


#: Delta rebuilds a table's state in this many tasks (default 50): tiny tables need two
SNAPSHOT_PARTITIONS = "spark.databricks.delta.snapshotPartitions"


@pytest.fixture(scope="module", autouse=True)
def _children_first(request):
    """In the local run, the cluster targets start before the local subset runs, and run beside it."""
    if TARGET == "local" and any(item.name.startswith("test_subset_on") for item in request.session.items):
        request.getfixturevalue("child_runs")


@pytest.fixture(scope="module")
def target_spark(request):
    """The session of this run's target: the suite's local one, or the one ``get_session()`` makes."""
    assert TARGET in TARGETS, f"PIPELINE_TEST_SPARK_TARGET={TARGET!r}: use one of {TARGETS}"
    if TARGET == "local":
        session = request.getfixturevalue("spark")
        before = session.conf.get(SNAPSHOT_PARTITIONS, None)
        session.conf.set(SNAPSHOT_PARTITIONS, "2")
        yield session
        if before is None:
            session.conf.unset(SNAPSHOT_PARTITIONS)
        else:
            session.conf.set(SNAPSHOT_PARTITIONS, before)
        return
    from pipeline_magics.spark.session import get_session

    session = get_session()
    session.conf.set("spark.sql.shuffle.partitions", "2")
    session.conf.set(SNAPSHOT_PARTITIONS, "2")
    if TARGET == "standalone":
        _wait_for_executors(session, 2)
    yield session
    session.stop()


def _wait_for_executors(session: Any, count: int, timeout: float = 90.0) -> None:
    """Waits until ``count`` executors (one per worker) have registered with the driver."""
    status = session.sparkContext._jsc.sc().getExecutorMemoryStatus()  # driver + executors
    deadline = time.monotonic() + timeout
    while status.size() - 1 < count:
        assert time.monotonic() < deadline, f"{status.size() - 1} of {count} executors after {timeout:.0f}s"
        time.sleep(0.5)
        status = session.sparkContext._jsc.sc().getExecutorMemoryStatus()


@pytest.fixture(scope="module")
def pg(request):
    """PostgreSQL: the one a parent run hands over (``PIPELINE_TEST_POSTGRES_JSON``), else the suite's."""
    handed = os.environ.get("PIPELINE_TEST_POSTGRES_JSON")
    if handed:
        return Postgres(**json.loads(handed))
    return request.getfixturevalue("postgres")


@pytest.fixture
def lake(tmp_path):
    path = tmp_path / "lake"
    path.mkdir()
    return path


@pytest.fixture(scope="module")
def orders():
    return pd.read_csv(os.path.join(DATA, "orders.csv"))


@pytest.fixture(scope="module")
def customers():
    return pd.read_csv(os.path.join(DATA, "customers.csv"))


# ------------------------------------------------------------------ helpers


def kind_of(spark: Any) -> str:
    """``connect``, ``standalone`` or ``local``: what the session runs on."""
    if is_connect(spark):
        return "connect"
    master = spark.sparkContext.master
    return "standalone" if master.startswith("spark://") else "local" if master.startswith("local") else master


def delta_versions(spark: Any, path: Any) -> list[int]:
    """The table's versions, newest first, through SQL (works on Spark Connect too)."""
    return [r.version for r in spark.sql(f"DESCRIBE HISTORY delta.`{path}`").select("version").collect()]


def read_delta(spark: Any, path: Any) -> pd.DataFrame:
    return spark.read.format("delta").load(str(path)).toPandas()


def observed_or_missing(value: int | None, expected: int) -> bool:
    """An Observation's figure: right, or missing.

    Spark Connect 4.0 reads a command's Observations on the server as soon as the
    command ends (``ExecuteThreadRunner``: ``observation.getOrEmpty``), before the
    listener that fills them has run when a shuffle comes between the observed frame
    and the write; such a figure never reaches the client. It is never wrong.
    """
    return value is None or value == expected


# ------------------------------------------------------------------ the subset


@everywhere
def test_runs_on_the_target(target_spark):
    assert kind_of(target_spark) == TARGET
    assert target_spark.range(10).selectExpr("sum(id) AS s").first().s == 45


@everywhere
def test_join_aggregate_and_expect_into_delta(target_spark, lake, orders, customers):
    out = lake / "by_segment"
    spec = f"""
name: segments_{TARGET}
steps:
  - {{type: extract, method: fromCsv, name: orders, config: {{path: "{DATA}/orders.csv", schema: "{ORDERS}"}}}}
  - {{type: extract, method: fromCsv, name: customers, config: {{path: "{DATA}/customers.csv", schema: "{CUSTOMERS}"}}}}
  - {{type: transform, method: join, name: joined, input: orders, config: {{right: customers, on: customer_id}}}}
  - {{type: transform, method: expect, name: no_test_orders, config: {{condition: "amount >= 5", onFail: drop}}}}
  - type: transform
    method: aggregate
    name: by_segment
    config:
      groupBy: [segment]
      aggregations: {{orders: "count(*)", revenue: "round(sum(amount), 2)"}}
  - {{type: load, method: toDelta, name: save, config: {{path: "{out}", mode: overwrite}}}}
"""
    result = Pipeline.from_yaml(spec).run(target_spark)

    joined = orders.merge(customers, on="customer_id")
    kept = joined[joined.amount >= 5]
    want = kept.groupby("segment").agg(orders=("order_id", "size"), revenue=("amount", "sum")).reset_index()
    got = read_delta(target_spark, out).sort_values("segment").reset_index(drop=True)
    assert result.status == "done" and all(s.status == "done" for s in result.metrics.steps)
    assert list(got.segment) == list(want.segment) and list(got.orders) == list(want.orders)
    assert ((got.revenue - want.revenue).abs() < 0.01).all()
    save = result.metrics.step("save")
    assert save.rows_out == len(want)  # from the Delta commit's operationMetrics
    assert delta_versions(target_spark, out) == [0]
    rule = result.metrics.step("no_test_orders")
    assert observed_or_missing(rule.failed_rows, int((joined.amount < 5).sum())), rule


@everywhere
def test_every_step_has_its_rows(target_spark, lake, orders, customers):
    """Two CSV extracts, a filter, a sql step, a join whose condition filters its right side, an aggregate, a
    Delta load: every step's rows out are what pandas computes, with no Spark job of their own."""
    spec = f"""
name: rows_{TARGET}
steps:
  - {{type: extract, method: fromCsv, name: orders, config: {{path: "{DATA}/orders.csv", schema: "{ORDERS}"}}}}
  - {{type: extract, method: fromCsv, name: customers, config: {{path: "{DATA}/customers.csv", schema: "{CUSTOMERS}"}}}}
  - {{type: transform, method: filterRows, name: big, input: orders, config: {{condition: "amount > 20"}}}}
  - {{type: transform, method: sql, name: gross, config: {{query: "SELECT *, amount * 1.2 AS gross FROM big"}}}}
  - type: transform
    method: join
    name: joined
    config: {{right: customers, on: "left.customer_id = right.customer_id AND right.segment <> 'retail'"}}
  - {{type: transform, method: aggregate, name: by_country, config: {{groupBy: [country], aggregations: {{n: "count(*)"}}}}}}
  - {{type: load, method: toDelta, name: save, config: {{path: "{lake}/rows", mode: overwrite}}}}
"""
    result = Pipeline.from_yaml(spec).run(target_spark)
    big = orders[orders.amount > 20]
    joined = big.merge(customers[customers.segment != "retail"], on="customer_id")
    want = {"orders": len(orders), "customers": len(customers), "big": len(big), "gross": len(big),
            "joined": len(joined), "by_country": joined.country.nunique(), "save": joined.country.nunique()}
    if TARGET == "connect" and not observes_any_frame(target_spark):  # a Connect client before 4.2
        want = {name: None if name != "save" else rows for name, rows in want.items()}
        assert result.metrics.step("big").rows_note == OLD_CONNECT
    elif TARGET == "connect":  # read only through the sql step's temp view: the figures never reach the client
        want.update(orders=None, big=None)
        assert result.metrics.step("big").rows_note == VIEW
    assert {s.step: s.rows_out for s in result.metrics.steps} == want, result.metrics.to_text(reasons=True)


@everywhere
def test_the_quickstart_counts_every_step(target_spark, lake, orders):
    result = Pipeline.from_file(os.path.join(ROOT, "examples", "quickstart.yaml"),
                                {"data_dir": DATA, "lake": str(lake)}).run(target_spark)
    big = orders[orders.amount > 10]
    counted = observes_any_frame(target_spark)  # not on a Spark Connect client before 4.2: only the load's rows
    assert [s.rows_out for s in result.metrics.steps] == [len(orders) if counted else None,
                                                         len(big) if counted else None,
                                                         big.country.nunique() if counted else None,
                                                         big.country.nunique()]


@everywhere
def test_postgres_read(target_spark, pg, lake, orders, monkeypatch):
    table = f"everywhere_orders_{TARGET}"
    with pg.connect() as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute(f"CREATE TABLE {table} (order_id int PRIMARY KEY, customer_id int, country text, "
                     "amount numeric(10,2), order_date date)")
        with conn.cursor() as cur:
            cur.executemany(f"INSERT INTO {table} VALUES (%s, %s, %s, %s, %s)", [
                (int(o.order_id), int(o.customer_id), o.country, float(o.amount), dt.date.fromisoformat(o.order_date))
                for o in orders.itertuples(index=False)])
    monkeypatch.setenv("PM_EVERYWHERE_PG_PASSWORD", pg.password)
    out = lake / "fr_orders"
    spec = f"""
name: pg_{TARGET}
steps:
  - type: extract
    method: fromPostgres
    name: orders
    config:
      host: {pg.host}
      port: {pg.port}
      database: {pg.database}
      user: {pg.user}
      password: {{env: PM_EVERYWHERE_PG_PASSWORD}}
      table: {table}
      partitionColumn: order_id
      lowerBound: 1
      upperBound: 201
      numPartitions: 2
  - {{type: transform, method: filterRows, config: {{condition: "country = 'FR'"}}}}
  - {{type: load, method: toDelta, name: save, config: {{path: "{out}", mode: overwrite}}}}
"""
    result = Pipeline.from_yaml(spec).run(target_spark)
    want = orders[orders.country == "FR"].sort_values("order_id").reset_index(drop=True)
    got = read_delta(target_spark, out).sort_values("order_id").reset_index(drop=True)
    assert result.status == "done"
    assert list(got.order_id) == list(want.order_id)
    assert [float(a) for a in got.amount] == pytest.approx(list(want.amount))
    assert [str(d) for d in got.order_date] == list(want.order_date)
    assert result.metrics.step("save").rows_out == len(want)


@everywhere
def test_failing_expect_writes_nothing(target_spark, lake, orders):
    out = lake / "never"
    spec = f"""
name: gate_{TARGET}
steps:
  - {{type: extract, method: fromCsv, config: {{path: "{DATA}/orders.csv", schema: "{ORDERS}"}}}}
  - {{type: transform, method: expect, name: under_100, config: {{condition: "amount < 100"}}}}
  - {{type: load, method: toDelta, config: {{path: "{out}"}}}}
"""
    with pytest.raises(ExpectationError) as info:
        Pipeline.from_yaml(spec).run(target_spark)
    err = info.value
    bad = int((orders.amount >= 100).sum())
    assert err.params == {"failed": bad, "total": len(orders), "rules": {"under_100": bad}}
    assert err.step_name == "under_100" and err.result.status == "failed"
    assert err.result.metrics.steps[2].status == "pending"
    assert not out.exists()


@everywhere
def test_quarantine_and_scd2_history(target_spark, lake, orders):
    """Quarantined rows and an SCD2 history with a late change and a delete, against pandas."""
    spec = f"""
name: quality_{TARGET}
steps:
  - {{type: extract, method: fromCsv, config: {{path: "{DATA}/orders.csv", schema: "{ORDERS}"}}}}
  - type: transform
    method: expect
    name: checks
    config: {{rules: {{big: "amount >= 20", europe: "country IN ('DE', 'FR', 'NL')"}}, onFail: quarantine,
             quarantine: {{path: "{lake}/rejected"}}}}
  - {{type: load, method: toDelta, config: {{path: "{lake}/good"}}}}
"""
    Pipeline.from_yaml(spec).run(target_spark)
    failing = ~(orders.amount >= 20) | ~orders.country.isin(["DE", "FR", "NL"])
    rejected = read_delta(target_spark, lake / "rejected")
    assert sorted(rejected.order_id) == sorted(orders[failing].order_id)
    assert sorted(read_delta(target_spark, lake / "good").order_id) == sorted(orders[~failing].order_id)

    def apply(rows: list[tuple[int, str, int, str]]) -> None:
        folder = lake / f"changes{len(list(lake.glob('changes*')))}"
        folder.mkdir()
        (folder / "c.json").write_text("".join(json.dumps(dict(zip(("id", "city", "seq", "op"), r))) + "\n"
                                               for r in rows))
        Pipeline.from_yaml(f"""
steps:
  - {{type: extract, method: fromJson, config: {{path: "{folder}", schema: "id INT, city STRING, seq BIGINT, op STRING"}}}}
  - {{type: load, method: toDelta, config: {{path: "{lake}/history", mode: scd2, mergeKeys: [id], sequenceBy: seq,
      deleteWhen: "op = 'D'", exceptColumns: [op]}}}}
""").run(target_spark)

    apply([(1, "a", 10, "U"), (1, "c", 30, "U"), (2, "x", 5, "U")])
    # late for key 1, a delete of key 2, a delete of key 4 before any row of it (kept aside)
    apply([(1, "b", 20, "U"), (2, None, 8, "D"), (3, "z", 1, "U"), (4, None, 9, "D")])
    apply([(1, "b", 20, "U"), (2, None, 8, "D")])  # again: nothing changes
    apply([(4, "q", 3, "U")])  # late: its row ends at the delete
    got = read_delta(target_spark, lake / "history").sort_values(["id", "__START_AT"])
    assert [(int(i), c, int(s), None if pd.isna(e) else int(e))
            for i, c, s, e in got[["id", "city", "__START_AT", "__END_AT"]].values.tolist()] == [
        (1, "a", 10, 20), (1, "b", 20, 30), (1, "c", 30, None), (2, "x", 5, 8), (3, "z", 1, None), (4, "q", 3, 9)]


SLOW_ROW_MS = 300  # per row: 200 rows take a minute unless the run is cancelled


@everywhere
def test_cancelled_batch_commits_nothing(target_spark, lake):
    out = lake / "orders"
    load = f"{{type: load, method: toDelta, name: save, config: {{path: \"{out}\", mode: append}}}}"
    extract = f"{{type: extract, method: fromCsv, config: {{path: \"{DATA}/orders.csv\", schema: '{ORDERS}'}}}}"
    Pipeline.from_yaml(f"name: seed_{TARGET}\nsteps:\n  - {extract}\n  - {load}\n").run(target_spark)
    assert delta_versions(target_spark, out) == [0]

    slow = Pipeline.from_yaml(f"""
name: slow_{TARGET}
steps:
  - {extract}
  - {{type: transform, method: filterRows,
      config: {{condition: "reflect('java.lang.Thread', 'sleep', CAST({SLOW_ROW_MS} AS BIGINT)) IS NULL"}}}}
  - {load}
""")
    writing = threading.Event()
    outcome: dict[str, Any] = {}

    def on_update(run: Any) -> None:
        if run.metrics.steps[2].status == "running":
            writing.set()

    def go() -> None:
        try:
            outcome["result"] = slow.run(target_spark, on_update=on_update)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = exc
        outcome["ended"] = time.monotonic()

    worker = threading.Thread(target=go, daemon=True)
    worker.start()
    assert writing.wait(120), "the load step never started"
    time.sleep(2)  # the write is running, a row at a time
    assert worker.is_alive()
    cancelled_at = time.monotonic()
    slow.cancel()
    worker.join(60)
    assert not worker.is_alive(), "cancel() did not stop the run"
    error = outcome.get("error")
    assert isinstance(error, PipelineCancelledError), outcome
    assert outcome["ended"] - cancelled_at < 20
    assert error.result.status == "cancelled"
    assert delta_versions(target_spark, out) == [0]  # the interrupted write committed nothing
    assert len(read_delta(target_spark, out)) == 200
    assert target_spark.range(5).count() == 5  # the session is fine afterwards


def write_events(folder: Any, start: int, count: int, name: str) -> list[dict[str, Any]]:
    os.makedirs(folder, exist_ok=True)
    rows = [{"id": i, "user": f"u{i % 3}", "v": i % 7} for i in range(start, start + count)]
    with open(os.path.join(folder, name), "w") as fh:
        fh.write("\n".join(json.dumps(r) for r in rows) + "\n")
    return rows


@everywhere
def test_streaming_available_now_and_restart(target_spark, lake, monkeypatch):
    monkeypatch.setenv("PIPELINE_CHECKPOINT_ROOT", str(lake / "checkpoints"))
    src, out = lake / "in", lake / "out"
    spec = f"""
name: stream_{TARGET}
mode: streaming
steps:
  - {{type: extract, method: fromJson, config: {{path: "{src}", schema: "id INT, user STRING, v INT"}}}}
  - {{type: transform, method: filterRows, config: {{condition: "v >= 3"}}}}
  - {{type: load, method: toDelta, name: sink, config: {{path: "{out}", trigger: {{availableNow: true}}}}}}
"""
    first = write_events(src, 0, 40, "a.json")
    result = Pipeline.from_yaml(spec).run(target_spark)
    assert result.status == "done" and not result.queries[0].isActive
    assert result.queries[0].name == f"stream_{TARGET}.sink"
    assert sorted(read_delta(target_spark, out).id) == [r["id"] for r in first if r["v"] >= 3]
    assert result.metrics.step("sink").rows_out == sum(1 for r in first if r["v"] >= 3)
    assert os.path.isdir(lake / "checkpoints" / f"stream_{TARGET}" / "sink")

    second = write_events(src, 40, 30, "b.json")
    again = Pipeline.from_yaml(spec).run(target_spark)  # resumes from the checkpoint
    assert again.status == "done"
    assert again.metrics.step("sink").rows_out == sum(1 for r in second if r["v"] >= 3)  # this run's rows
    ids = sorted(read_delta(target_spark, out).id)
    assert ids == [r["id"] for r in first + second if r["v"] >= 3]  # the new rows, nothing twice


# ------------------------------------------------------------------ the other targets


@dataclasses.dataclass
class ChildRun:
    target: str
    returncode: int
    output: str
    seconds: float


#: what a child must not inherit: it would point its session somewhere else
_FOREIGN = ("SPARK_REMOTE", "PIPELINE_SPARK_REMOTE", "PIPELINE_SPARK_MASTER", "SPARK_CONNECT_MODE_ENABLED",
            "SPARK_LOCAL_REMOTE", "PYSPARK_SUBMIT_ARGS", "MASTER", "SPARK_API_MODE")


def _run_child(target: str, pg: Any, tmp: Any, timeout: float = 600.0) -> ChildRun:
    """Starts ``target``, runs this file against it in a child pytest, stops it."""
    env = {k: v for k, v in os.environ.items() if k not in _FOREIGN}
    env.update(PIPELINE_TEST_SPARK_TARGET=target, PIPELINE_TEST_POSTGRES_JSON=json.dumps(dataclasses.asdict(pg)),
               SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable, PIPELINE_SPARK_LOG_LEVEL="ERROR")
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        if target == "standalone":
            cluster = stack.enter_context(spark_cluster.standalone_cluster())
            env["PIPELINE_SPARK_MASTER"] = cluster.master_url
            # one small executor per worker; the driver's jars (spark.jars) are shipped to them
            opts = shlex.quote(spark_cluster.TEST_JAVA_OPTS)
            env["PYSPARK_SUBMIT_ARGS"] = (
                "--conf spark.executor.memory=512m --conf spark.executor.cores=1 --conf spark.cores.max=2 "
                f"--conf spark.ui.enabled=false --driver-java-options {opts} "
                f"--conf spark.executor.extraJavaOptions={opts} pyspark-shell")
        else:
            env["PIPELINE_SPARK_REMOTE"] = spark_cluster.shared_connect_server().url
        ready = time.monotonic() - started
        cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-o", "addopts=-ra",
               "--durations=0", "--basetemp", str(tmp / "basetemp"), os.path.abspath(__file__)]
        child = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True, start_new_session=True)
        try:
            output, _ = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)  # the child and its Spark driver JVM
            output, _ = child.communicate()
            output += f"\n*** killed after {timeout:.0f}s"
    header = f"[{target}: cluster ready in {ready:.0f}s, total {time.monotonic() - started:.0f}s]\n"
    return ChildRun(target, child.returncode, header + output, time.monotonic() - started)


@pytest.fixture(scope="module")
def child_runs(pg, tmp_path_factory, request):
    """The selected cluster targets (``-k 'not standalone'`` leaves that one out), each run in a thread of its
    own: their JVMs spend much of their time starting."""
    if TARGET != "local":
        pytest.skip("a child run launches no children")
    import pyspark.sql  # noqa: F401 - here, before two threads import it at once (a half-imported module)

    pool = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="everywhere")
    selected = {item.callspec.params["target"] for item in request.session.items
                if getattr(item, "originalname", None) == "test_subset_on"}
    runs = {t: pool.submit(_run_child, t, pg, tmp_path_factory.mktemp(f"child-{t}"))
            for t in ("standalone", "connect") if t in selected}
    yield runs
    pool.shutdown(wait=True)


@pytest.mark.parametrize("target", ["standalone", "connect"])
def test_subset_on(target, child_runs):
    run = child_runs[target].result()
    print(run.output)
    assert run.returncode == 0, f"the subset failed on {target}:\n{run.output}"
    assert f"{len(SUBSET)} passed" in run.output, run.output
