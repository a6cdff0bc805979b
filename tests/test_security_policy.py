"""References, the security policy and redaction, without Spark or Vault (fast)."""
from __future__ import annotations

import logging
import warnings

import pytest

from pipeline_magics import CredentialError, Pipeline
from pipeline_magics.secrets.credentials import (Reference, Resolver, SecurityPolicy, as_reference, placeholders,
                                                 references)
from pipeline_magics.secrets.redaction import MASK, mask_text, redact, register_secret

ENV_VARS = ("PIPELINE_SECURITY_POLICY", "PIPELINE_VAULT_ONLY", "PIPELINE_ALLOW_PLAINTEXT",
            "PIPELINE_AUDIT_CREDENTIALS", "PIPELINE_AUDIT_LOG")


@pytest.fixture(autouse=True)
def _clean_policy_env(monkeypatch):
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)


def pg_spec(password_yaml: str, name: str = "pg_read") -> str:
    return f"""
name: {name}
steps:
  - type: extract
    method: fromPostgres
    name: orders
    config:
      host: 127.0.0.1
      database: shop
      table: public.orders
      user: analyst
      password: {password_yaml}
  - type: load
    method: display
"""


# ---------------------------------------------------------------- references


@pytest.mark.parametrize("value, expected", [
    ({"vault": "secret/pg", "key": "password"}, Reference("vault", "secret/pg", "password")),
    ("vault:secret/pg#password", Reference("vault", "secret/pg", "password")),
    ("vault:pg", Reference("vault", "pg")),
    ({"vault": "team/pg", "key": "pw", "mount": "kv"}, Reference("vault", "team/pg", "pw", "kv")),
    ({"env": "PGPASSWORD"}, Reference("env", "PGPASSWORD")),
    ("plain", None), ({"vault": "x", "other": 1}, None), ({"env": 3}, None), (42, None),
])
def test_reference_forms(value, expected):
    assert as_reference(value) == expected


def test_vault_key_defaults_to_the_setting_name_and_references_anywhere():
    config = {"password": "vault:secret/pg", "options": {"sslpassword": {"vault": "secret/pg"}},
              "list": [{"env": "A"}, "vault:secret/x#k"], "user": "analyst"}
    refs = {".".join(map(str, p)): str(r) for p, r in references(config)}
    assert refs == {"password": "vault:secret/pg#password", "options.sslpassword": "vault:secret/pg#sslpassword",
                    "list.0": "env:A", "list.1": "vault:secret/x#k"}
    assert str(Reference("vault", "team/pg", "pw", "kv")) == "vault:kv/team/pg#pw"


def test_placeholders_fit_the_field_type():
    from pipeline_magics.methods.jdbc import PostgresConnection

    config = {"host": {"env": "PGHOST"}, "port": {"env": "PGPORT"}, "database": "db",
              "password": "vault:secret/pg"}
    stand_in = placeholders(config, PostgresConnection)
    assert stand_in["port"] == 1 and stand_in["host"] == "***" and stand_in["password"] == "***"
    PostgresConnection.model_validate(stand_in)  # no false error for a port from the environment
    assert placeholders(config)["port"] == "***"


# -------------------------------------------------------------------- policy


def test_named_policies_and_overrides():
    assert SecurityPolicy.from_env({}) == SecurityPolicy("default", False, True, False, None)
    strict = SecurityPolicy.from_env({"PIPELINE_SECURITY_POLICY": "strict", "PIPELINE_AUDIT_LOG": "/tmp/a"})
    assert (strict.vault_only, strict.allow_plaintext, strict.audit, strict.audit_log) == (True, False, True, "/tmp/a")
    permissive = SecurityPolicy.from_env({"PIPELINE_SECURITY_POLICY": "Permissive"})
    assert permissive.allow_plaintext and not permissive.warn_plaintext
    custom = SecurityPolicy.from_env({"PIPELINE_VAULT_ONLY": "true", "PIPELINE_AUDIT_CREDENTIALS": "1"})
    assert custom.vault_only and custom.audit and custom.name == "default"


@pytest.mark.parametrize("env, code, variable", [
    ({"PIPELINE_SECURITY_POLICY": "paranoid"}, "POLICY_UNKNOWN", "PIPELINE_SECURITY_POLICY"),
    ({"PIPELINE_VAULT_ONLY": "maybe"}, "POLICY_INVALID", "PIPELINE_VAULT_ONLY"),
])
def test_bad_policy_settings_are_errors(env, code, variable):
    with pytest.raises(CredentialError) as info:
        SecurityPolicy.from_env(env)
    assert info.value.code == code and info.value.params["variable"] == variable


def test_strict_refuses_a_plaintext_password_before_anything_runs(monkeypatch):
    monkeypatch.setenv("PIPELINE_SECURITY_POLICY", "strict")
    secret = "Plain-Text-Pa55"
    with pytest.raises(CredentialError) as info:
        Pipeline.from_yaml(pg_spec(secret))
    err = info.value
    assert err.code == "POLICY_REFUSED"
    assert err.step_index == 0 and err.step_name == "orders" and err.method == "fromPostgres"
    assert err.line == 12  # the password's line
    text = str(err) + repr(err.config) + "".join(err._render_traceback_())
    assert "'password'" in text and "strict" in text
    assert secret not in text
    assert err.config["password"] == MASK


def test_plaintext_refused_when_allow_plaintext_is_false_and_in_a_url(monkeypatch):
    monkeypatch.setenv("PIPELINE_ALLOW_PLAINTEXT", "false")
    with pytest.raises(CredentialError, match="plaintext secrets are refused"):
        Pipeline.from_yaml(pg_spec("hunter2-xyz"))
    spec = pg_spec("{env: PGPASSWORD}").replace("host: 127.0.0.1\n      database: shop",
                                                "url: 'jdbc:postgresql://h/shop?password=UrlSecret9'")
    with pytest.raises(CredentialError) as info:
        Pipeline.from_yaml(spec)
    assert "setting 'url'" in str(info.value) and "UrlSecret9" not in str(info.value)


def test_vault_only_refuses_env_references(monkeypatch):
    monkeypatch.setenv("PIPELINE_VAULT_ONLY", "true")
    with pytest.raises(CredentialError) as info:
        Pipeline.from_yaml(pg_spec("{env: PGPASSWORD}"))
    assert info.value.code == "POLICY_REFUSED"
    assert "environment" in info.value.message and "'password'" in info.value.message
    Pipeline.from_yaml(pg_spec("vault:secret/pg#password"))  # a Vault reference passes


def test_default_policy_warns_on_plaintext_and_permissive_does_not(monkeypatch):
    with pytest.warns(UserWarning, match="setting 'password' is a literal secret"):
        Pipeline.from_yaml(pg_spec("not-so-secret"))
    monkeypatch.setenv("PIPELINE_SECURITY_POLICY", "permissive")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Pipeline.from_yaml(pg_spec("not-so-secret"))


def test_env_reference_missing_is_a_credential_error(monkeypatch):
    monkeypatch.delenv("NO_SUCH_VAR_X", raising=False)
    with pytest.raises(CredentialError) as info:
        Resolver(SecurityPolicy()).resolve({"password": {"env": "NO_SUCH_VAR_X"}})
    assert info.value.code == "ENV_MISSING"


# ----------------------------------------------------------------- redaction


def test_explain_and_errors_show_references_not_values(monkeypatch):
    pipeline = Pipeline.from_yaml(pg_spec("vault:secret/pg#password"))
    assert "vault:secret/pg#password" in pipeline.explain()
    with pytest.warns(UserWarning):
        plain = Pipeline.from_yaml(pg_spec("Visible-Pa55word"))
    assert "Visible-Pa55word" not in plain.explain()
    assert redact({"options": {"kafka.sasl.jaas.config": "x y password=\"p\";", "clientSecret": "abc"},
                   "url": "jdbc:postgresql://u:pw123@h/db", "path": "/data"}) == {
        "options": {"kafka.sasl.jaas.config": MASK, "clientSecret": MASK},
        "url": "jdbc:postgresql://u:***@h/db", "path": "/data"}


def test_resolver_repr_and_a_runs_repr_hold_no_secret(monkeypatch):
    from pipeline_magics.run.engine import Run

    monkeypatch.setenv("PG_SECRET_FOR_REPR", "Repr-Secret-77")
    pipeline = Pipeline.from_yaml(pg_spec("{env: PG_SECRET_FOR_REPR}"))
    run = Run(pipeline.plan, spark=None, policy=pipeline.policy)
    assert run.resolver.resolve({"password": {"env": "PG_SECRET_FOR_REPR"}}) == {"password": "Repr-Secret-77"}
    assert "Repr-Secret-77" not in repr(run.resolver) + repr(run) + repr(pipeline.plan)


def test_mask_text_catches_encoded_forms_and_url_passwords():
    secret = "p@ss/w:rd'x"
    text = (f"url=jdbc:postgresql://h/db?user=a&password=p%40ss%2Fw%3Ard%27x; literal '{secret}'; "
            f"sql 'p@ss/w:rd''x'")
    masked = mask_text(text, [secret])
    assert "p@ss" not in masked and "p%40ss" not in masked
    assert mask_text("abc ab", ["ab"]) == "abc ab"  # too short to mask safely


def test_log_records_are_masked_once_a_secret_is_known(caplog):
    secret = "Log-Secret-" + "42x"
    register_secret(secret)
    logger = logging.getLogger("py4j.clientserver")  # any logger, not only ours
    with caplog.at_level(logging.DEBUG, logger="py4j"):
        logger.debug("Command to send: c\no0\noption\nspassword\ns%s\ne\n", secret)
        try:
            raise RuntimeError(f"connect failed for {secret}")
        except RuntimeError:
            logger.exception("failed")
    assert secret not in caplog.text
    assert MASK in caplog.text
