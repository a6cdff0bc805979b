"""The leak test: a notebook logs in to Vault (arguments and the form), runs pipelines that read a
known secret, fails on purpose, exports metrics and writes logs at DEBUG; nbclient runs it in a real
kernel and saves it with its widget state. Then every output, the saved .ipynb, the logs (Python and
the kernel's own stderr, where the JVM writes), the metrics files and the audit log are searched for
each secret value: none may be found."""
from __future__ import annotations

import json
import os
import secrets as pysecrets
import textwrap

import pytest

pytestmark = [pytest.mark.vault, pytest.mark.postgres]


def cells(pg, paths: dict[str, str], work: str) -> list[tuple[str, list[str]]]:
    """(source, tags) of each cell."""
    conn = (f"host: {pg.host}, port: {pg.port}, database: {pg.database}, user: {pg.user}, "
            f"password: 'vault:secret/{paths['pg']}#password'")
    return [
        (f"""
import logging, os
logging.basicConfig(filename={os.path.join(work, 'debug.log')!r}, level=logging.DEBUG, force=True)
logging.getLogger("py4j").setLevel(logging.DEBUG)  # every command sent to the JVM, JDBC options included
%load_ext pipeline_magics""", []),
        ("%pipeline vault login --method token --token-env LEAK_TEST_TOKEN", []),
        ("%pipeline vault status", []),
        ("""
form = %pipeline vault login
form.method.value = "userpass"
form.username.value = os.environ["LEAK_TEST_USER"]
form.password.value = os.environ["LEAK_TEST_PASSWORD"]
form.button.click()
form""", []),
        (f"""
%%pipeline leak_ok --lineage file:{work}/lineage.jsonl --metrics json:{work}/ok.json --metrics prometheus:{work}/ok.prom --metrics log
steps:
  - type: extract
    method: fromPostgres
    name: orders
    config: {{{conn}, table: public.leak_orders}}
  - type: transform
    method: withColumn
    config: {{column: not_tagged, expr: 'vault:secret/{paths['tag']}#expr'}}
  - type: load
    method: display""", []),
        ("result = _\nprint(repr(result)); print(result.metrics.to_json()); result", []),
        (f"""
%%pipeline leak_jdbc_fail --lineage file:{work}/lineage.jsonl --metrics json:{work}/fail.json --metrics prometheus:{work}/fail.prom --metrics log
steps:
  - type: extract
    method: fromPostgres
    config: {{{conn.replace(pg.database, 'no_such_db')}, table: public.leak_orders}}
  - type: load
    method: display""", ["raises-exception"]),
        ("%pipeline last-error", []),
        (f"""
%%pipeline leak_echo --lineage file:{work}/lineage.jsonl --metrics json:{work}/echo.json --metrics log
steps:
  - type: extract
    method: fromPostgres
    config: {{{conn}, table: public.leak_orders}}
  - type: transform
    method: filterRows
    config: {{condition: 'vault:secret/{paths['rule']}#rule'}}
  - type: load
    method: display""", ["raises-exception"]),
        ("%pipeline last-error", []),
        ("%pipeline metrics leak_echo --format prometheus", []),
        ("%pipeline metrics leak_ok --format json", []),
        ("%pipeline explain", []),
        (f"""
%%pipeline leak_ok
steps:
  - type: extract
    method: fromPostgres
    config: {{{conn}, table: public.leak_orders}}
  - type: load
    method: display""", []),
        ("%pipeline audit", []),
        ("import pipeline_magics.secrets.vault as v\nprint(repr(v.SESSION), v.status())\n%pipeline vault logout", []),
    ]


def test_no_secret_anywhere(vault, postgres, tmp_path, capfd, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    pg_password = postgres.password
    tag_secret = "TagSecret-" + pysecrets.token_hex(6)
    rule_secret = "RuleSecret-" + pysecrets.token_hex(6)
    token = vault.client().auth.token.create(policies=[vault.policy], ttl="1h")["auth"]["client_token"]
    root = vault.client()
    paths = {name: f"leak/{name}-{pysecrets.token_hex(3)}" for name in ("pg", "tag", "rule")}
    root.secrets.kv.v2.create_or_update_secret(path=paths["pg"], secret={"password": pg_password})
    # a secret inside an expression (the rows show only its boolean result)
    root.secrets.kv.v2.create_or_update_secret(path=paths["tag"], secret={"expr": f"customer <> '{tag_secret}'"})
    root.secrets.kv.v2.create_or_update_secret(path=paths["rule"], secret={"rule": f"id = '{rule_secret}' AND ((("})
    with postgres.connect() as conn:
        conn.execute("DROP TABLE IF EXISTS public.leak_orders")
        conn.execute("CREATE TABLE public.leak_orders AS SELECT g AS id, 'c' || g AS customer "
                     "FROM generate_series(1, 12) g")

    work = str(tmp_path)
    audit_log = os.path.join(work, "audit.jsonl")
    # what the kernel inherits: Vault's address (no token), strict policy, the audit log, and the
    # login secrets in variables the notebook reads (never written in a cell)
    monkeypatch.delenv("VAULT_TOKEN", raising=False)
    monkeypatch.setenv("VAULT_ADDR", vault.addr)
    monkeypatch.setenv("PIPELINE_SECURITY_POLICY", "strict")
    monkeypatch.setenv("PIPELINE_AUDIT_LOG", audit_log)
    monkeypatch.setenv("LEAK_TEST_TOKEN", token)
    monkeypatch.setenv("LEAK_TEST_USER", vault.user)
    monkeypatch.setenv("LEAK_TEST_PASSWORD", vault.user_password)
    monkeypatch.setenv("PIPELINE_SPARK_MASTER", "local[1]")
    monkeypatch.setenv("SPARK_LOCAL_IP", "127.0.0.1")

    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    for source, tags in cells(postgres, paths, work):
        nb.cells.append(nbformat.v4.new_code_cell(textwrap.dedent(source).strip(), metadata={"tags": tags}))
    capfd.readouterr()
    client = NotebookClient(nb, timeout=600, kernel_name="python3", store_widget_state=True,
                            resources={"metadata": {"path": work}})
    client.execute()
    saved = os.path.join(work, "leak.ipynb")
    nbformat.write(nb, saved)
    kernel_streams = capfd.readouterr()

    # the notebook did what it says: logged in twice, read the secrets, failed twice, audited
    outputs = {i: json.dumps(c.get("outputs", [])) for i, c in enumerate(nb.cells)}
    assert "logged in as token" in outputs[1] and f"userpass-{vault.user}" in outputs[3]
    assert "not_tagged" in outputs[4] and "c12" in outputs[4]  # the rows were displayed
    assert "PipelineExecutionError" in outputs[6] and "no_such_db" in outputs[6]
    assert "PARSE_SYNTAX_ERROR" in outputs[8] and "== SQL ==" in outputs[9]
    assert "Password" in json.dumps(nb.metadata.get("widgets", {}))  # the form's state was saved
    audit = [json.loads(line) for line in open(audit_log, encoding="utf-8")]
    assert {e["reference"] for e in audit if e["event"] == "read"} >= {
        f"vault:secret/{paths['pg']}#password", f"vault:secret/{paths['tag']}#expr",
        f"vault:secret/{paths['rule']}#rule"}
    assert {e["event"] for e in audit} == {"login", "read"}

    places = {"saved notebook": open(saved, encoding="utf-8").read(),
              "kernel stdout": kernel_streams.out, "kernel stderr (JVM and Python)": kernel_streams.err,
              "audit log": open(audit_log, encoding="utf-8").read()}
    for name in ("debug.log", "ok.json", "ok.prom", "fail.json", "fail.prom", "echo.json", "lineage.jsonl"):
        places[name] = open(os.path.join(work, name), encoding="utf-8").read()
    assert "Command to send" in places["debug.log"]  # py4j did log at DEBUG
    secrets = {"PostgreSQL password": pg_password, "tag secret": tag_secret, "rule secret": rule_secret,
               "Vault token": token, "userpass password": vault.user_password}
    found = [(what, where) for what, value in secrets.items() for where, text in places.items() if value in text]
    assert not found, f"secrets leaked: {found}"
    # the OpenLineage events: sent for every run, and no credential reference or Vault path in them
    events = [json.loads(line) for line in places["lineage.jsonl"].splitlines()]
    assert [(e["job"]["name"], e["eventType"]) for e in events] == [
        ("leak_ok", "START"), ("leak_ok", "COMPLETE"), ("leak_jdbc_fail", "START"), ("leak_jdbc_fail", "FAIL"),
        ("leak_echo", "START"), ("leak_echo", "FAIL")]
    assert events[1]["inputs"][0]["name"] == f"{postgres.database}.public.leak_orders"
    references = [*paths.values(), "vault:", "secret/leak"]
    assert not [r for r in references if r in places["lineage.jsonl"]]
