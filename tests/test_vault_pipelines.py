"""Pipelines whose credentials come from a real Vault, on the session's SparkSession: a PostgreSQL read
whose password is only in Vault (strict policy, audited), masking of what Spark echoes, an expired
token, and token renewal while a streaming pipeline runs."""
from __future__ import annotations

import json
import secrets as pysecrets
import time

import pytest
import yaml

from pipeline_magics import CredentialError, Pipeline, PipelineExecutionError
from pipeline_magics.secrets import vault as kv, vault_renewal as renewal
from pipeline_magics.metrics import to_prometheus
from services.base import wait_until

pytestmark = pytest.mark.vault

POLICY_VARS = ("PIPELINE_SECURITY_POLICY", "PIPELINE_VAULT_ONLY", "PIPELINE_ALLOW_PLAINTEXT",
               "PIPELINE_AUDIT_CREDENTIALS", "PIPELINE_AUDIT_LOG", "VAULT_TOKEN")


@pytest.fixture(autouse=True)
def session(vault, monkeypatch):
    for var in POLICY_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("VAULT_ADDR", vault.addr)
    renewal.RENEWAL.stop()
    kv.SESSION.clear()
    kv.SESSION.addr, kv.SESSION.use_env = None, True
    yield
    renewal.RENEWAL.stop()
    kv.SESSION.clear()
    kv.SESSION.addr = None


def put(vault, data: dict[str, str]) -> str:
    """Writes a new KV v2 secret; returns its path under ``secret/``."""
    path = f"pipelines/{pysecrets.token_hex(4)}"
    vault.client().secrets.kv.v2.create_or_update_secret(path=path, secret=data)
    return path


def spec(name: str, steps: list[dict], mode: str = "batch") -> str:
    return yaml.safe_dump({"name": name, "mode": mode, "steps": steps}, sort_keys=False)


# ------------------------------------------------------------------ PostgreSQL


@pytest.fixture(scope="module")
def pg_orders(postgres):
    with postgres.connect() as conn:
        conn.execute("DROP TABLE IF EXISTS public.vault_orders")
        conn.execute("CREATE TABLE public.vault_orders (id int PRIMARY KEY, customer text, amount numeric(8,2))")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO public.vault_orders VALUES (%s, %s, %s)",
                            [(i, f"c{i % 5}", i * 1.5) for i in range(1, 41)])
    return 40


def test_postgres_read_with_the_password_only_in_vault(spark, vault, postgres, pg_orders, lake, tmp_path,
                                                       monkeypatch):
    path = put(vault, {"password": postgres.password})
    audit_log = tmp_path / "audit.jsonl"
    monkeypatch.setenv("PIPELINE_SECURITY_POLICY", "strict")
    monkeypatch.setenv("PIPELINE_AUDIT_LOG", str(audit_log))
    kv.login("approle", role_id=vault.role_id, secret_id=vault.secret_id)
    text = spec("pg_vault", [
        {"type": "extract", "method": "fromPostgres", "name": "orders",
         "config": {"host": postgres.host, "port": postgres.port, "database": postgres.database,
                    "table": "public.vault_orders", "user": postgres.user,
                    "password": {"vault": f"secret/{path}", "key": "password"}}},
        {"type": "transform", "method": "filterRows", "config": {"condition": "amount > 30"}},
        {"type": "load", "method": "toDelta", "config": {"path": str(lake / "orders"), "mode": "overwrite"}},
    ])
    assert postgres.password not in text
    pipeline = Pipeline.from_yaml(text)
    metrics = [f"json:{tmp_path / 'm.json'}", f"prometheus:{tmp_path / 'm.prom'}", "log"]
    result = pipeline.run(spark, metrics=metrics)
    assert result.ok, result.metrics.error
    expected = sum(1 for i in range(1, pg_orders + 1) if i * 1.5 > 30)
    assert spark.read.format("delta").load(str(lake / "orders")).count() == expected
    assert result.metrics.step("orders").status == "done"

    lines = [json.loads(line) for line in audit_log.read_text().splitlines()]
    reads = [e for e in lines if e["event"] == "read"]
    assert [(e["pipeline"], e["step"], e["reference"], e["outcome"]) for e in reads] == [
        ("pg_vault", "orders", f"vault:secret/{path}#password", "ok")]
    shown = "\n".join([pipeline.explain(), repr(result), result.metrics.to_json(), to_prometheus(result.metrics),
                       result._repr_html_(), audit_log.read_text(), (tmp_path / "m.json").read_text(),
                       (tmp_path / "m.prom").read_text(), repr(pipeline._run)])
    assert postgres.password not in shown, _debug_find(shown, postgres.password)
    assert f"secret/{path}" in pipeline.explain()  # where it comes from, not what it is


def test_a_failing_jdbc_read_and_metrics_leak_nothing(spark, vault, postgres, pg_orders, tmp_path, caplog):
    path = put(vault, {"password": postgres.password})
    kv.login("userpass", username=vault.user, password=vault.user_password)
    text = spec("pg_vault_fail", [
        {"type": "extract", "method": "fromPostgres",
         "config": {"url": f"jdbc:postgresql://{postgres.host}:{postgres.port}/no_such_db", "table": "t",
                    "user": postgres.user, "password": f"vault:secret/{path}#password"}},
        {"type": "load", "method": "display"},
    ])
    with caplog.at_level("DEBUG"):
        result = Pipeline.from_yaml(text).run(spark, raise_on_error=False,
                                             metrics=[f"json:{tmp_path / 'f.json'}", "log"])
    err = result.error
    assert isinstance(err, PipelineExecutionError) and "no_such_db" in str(err)
    shown = "\n".join([str(err), err.detail or "", repr(err.config), (tmp_path / "f.json").read_text(),
                       caplog.text, result._repr_html_()])
    assert postgres.password not in shown


def test_what_spark_echoes_is_masked(spark, vault, tmp_path, ip, capsys):
    """A secret Spark repeats in an AnalysisException (here a rule kept in Vault) shows as ***."""
    echoed = "Echo-" + pysecrets.token_hex(6)
    path = put(vault, {"rule": f"name = '{echoed}' AND ((("})  # a syntax error: Spark quotes the SQL back
    kv.login("token", token=vault.root_token)
    text = spec("echo", [
        {"type": "extract", "method": "fromCsv",
         "config": {"path": str(write_csv(tmp_path)), "header": True}},
        {"type": "transform", "method": "filterRows", "config": {"condition": f"vault:secret/{path}#rule"}},
        {"type": "load", "method": "display"},
    ])
    with pytest.raises(PipelineExecutionError) as info:
        ip.run_cell_magic("pipeline", f"--metrics json:{tmp_path / 'e.json'}", text)
    err = info.value
    assert "PARSE_SYNTAX_ERROR" in str(err)
    assert "== SQL ==\n***\n" in err.detail  # Spark quoted the rule (the whole secret) back: masked
    ip.run_line_magic("pipeline", "last-error")
    ip.run_line_magic("pipeline", "metrics echo --format json")
    out = capsys.readouterr()
    shown = "\n".join([str(err), err.detail or "", "".join(err._render_traceback_()), out.out, out.err,
                       (tmp_path / "e.json").read_text()])
    assert echoed not in shown


def write_csv(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("id,name\n1,a\n2,b\n")
    return path


# ------------------------------------------------------------ expiry, renewal


def test_an_expired_token_stops_the_run_before_the_step_with_log_in_again(spark, vault, tmp_path):
    path = put(vault, {"password": "irrelevant-pw"})
    token = vault.client().auth.token.create(policies=[vault.policy], ttl="2s", renewable=False)
    kv.login("token", token=token["auth"]["client_token"])
    wait_until(lambda: kv.token_state(vault.client(token["auth"]["client_token"])) == "invalid", 10,
               "the token expired", error=AssertionError)
    text = spec("expired", [
        {"type": "extract", "method": "fromCsv", "name": "rows", "config": {"path": str(write_csv(tmp_path))}},
        {"type": "load", "method": "toPostgres",
         "config": {"url": "jdbc:postgresql://127.0.0.1:1/x", "table": "t", "user": "u",
                    "password": f"vault:secret/{path}#password"}},
    ])
    with pytest.raises(CredentialError) as info:
        Pipeline.from_yaml(text).run(spark)
    err = info.value
    assert err.code == "VAULT_TOKEN_EXPIRED" and err.step_index == 1 and err.method == "toPostgres"
    assert "log in again" in err.hint
    assert err.result.metrics.steps[1].status == "failed"


def test_the_token_is_renewed_while_a_streaming_pipeline_runs(spark, vault, tmp_path, monkeypatch):
    root = vault.client()
    root.auth.userpass.create_or_update_user("streamer", "streamer-pw-1", policies=[vault.policy],
                                             token_ttl="5s", token_max_ttl="10m")
    path = put(vault, {"condition": "value >= 0"})
    monkeypatch.setenv("PIPELINE_CHECKPOINT_ROOT", str(tmp_path / "cp"))
    monkeypatch.setattr(renewal.RENEWAL, "grace", 2.0)
    monkeypatch.setattr(renewal.RENEWAL, "poll", 0.2)


    def stream(name: str, condition: str) -> str:
        return spec(name, [
            {"type": "extract", "method": "fromRate", "config": {"rowsPerSecond": 5}},
            {"type": "transform", "method": "filterRows", "config": {"condition": condition}},
            {"type": "load", "method": "toMemory", "name": name,
             "config": {"trigger": {"processingTime": "1 second"}}},
        ], mode="streaming")

    # a first streaming query warms the JVM up, so the 5 s token outlives the start of the real one
    Pipeline.from_yaml(stream("warm_up_stream", "value >= 0")).run(spark).stop()
    status = kv.login("userpass", username="streamer", password="streamer-pw-1")
    assert status.ttl <= 5
    result = Pipeline.from_yaml(stream("renewing_stream", f"vault:secret/{path}#condition")).run(spark)
    started = time.monotonic()
    try:
        assert result.status == "running"
        wait_until(lambda: renewal.RENEWAL.renewer.renewals >= 2 and time.monotonic() - started > 8, 30,
                   "two renewals, well past the token's 5 s TTL", error=AssertionError)
        assert kv.status().authenticated, renewal.RENEWAL.renewer.last_error
        assert renewal.RENEWAL.renewer.renewals >= 2
    finally:
        result.stop()
    deadline = time.time() + 10
    while renewal.RENEWAL.renewer.running and time.time() < deadline:
        time.sleep(0.2)
    assert not renewal.RENEWAL.renewer.running  # no streaming query left: renewal ends
    wait_until(lambda: not kv.status().authenticated, 15, "the short token expired",  # as it should
               error=AssertionError)


def _debug_find(shown, secret):
    i = shown.find(secret)
    return shown[max(0, i - 600): i + 100]
