"""Vault against a real server (OpenBao dev server, or Vault in Testcontainers): reading KV v2/v1,
login by token/userpass/ldap/approle, status, logout, expiry, renewal, the audit log, the login form
and the ``%pipeline vault``/``audit`` subcommands. No Spark here."""
from __future__ import annotations

import json
import os
import secrets as pysecrets
import time

import pytest
from IPython.core.error import UsageError

from pipeline_magics import CredentialError
from pipeline_magics.secrets import vault as kv, vault_renewal as renewal
from pipeline_magics.secrets.credentials import AUDIT_ENTRIES, Resolver, SecurityPolicy, as_reference
from services.base import wait_until

pytestmark = pytest.mark.vault


@pytest.fixture(autouse=True)
def fresh_session(vault, monkeypatch):
    """Each test starts logged out, with only ``VAULT_ADDR`` set and the default policy."""
    for var in ("VAULT_TOKEN", "VAULT_NAMESPACE", "PIPELINE_SECURITY_POLICY", "PIPELINE_VAULT_ONLY",
                "PIPELINE_ALLOW_PLAINTEXT", "PIPELINE_AUDIT_CREDENTIALS", "PIPELINE_AUDIT_LOG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("VAULT_ADDR", vault.addr)
    renewal.RENEWAL.stop()
    kv.SESSION.clear()
    kv.SESSION.addr, kv.SESSION.namespace, kv.SESSION.use_env = None, None, True
    yield
    renewal.RENEWAL.stop()
    kv.SESSION.clear()
    kv.SESSION.addr, kv.SESSION.use_env = None, True


@pytest.fixture
def secret(vault):
    """A fresh KV v2 secret ``secret/t/<random>`` with a password; returns (path, value)."""
    path, value = f"t/{pysecrets.token_hex(4)}", "pw-" + pysecrets.token_urlsafe(16)
    vault.client().secrets.kv.v2.create_or_update_secret(path=path, secret={"password": value, "user": "app"})
    return path, value


def root_login(vault):
    kv.login("token", token=vault.root_token)


def short_token(vault, ttl="3s", **kw):
    return vault.client().auth.token.create(policies=[vault.policy], ttl=ttl, **kw)["auth"]["client_token"]


# -------------------------------------------------------------------- reading


def test_kv2_kv1_default_key_and_one_read_per_run(vault, secret):
    path, value = secret
    root_login(vault)
    vault.client().secrets.kv.v1.create_or_update_secret(path="t/legacy", secret={"password": "v1-" + value},
                                                         mount_point="kv1")
    resolver = Resolver(SecurityPolicy(), "p")
    config = {"password": f"vault:secret/{path}", "user": {"vault": f"secret/{path}", "key": "user"},
              "short": f"vault:{path}#password",  # no mount named: secret/
              "legacy": {"vault": "kv1/t/legacy", "key": "password"},
              "mounted": {"vault": path, "key": "password", "mount": "secret"}}
    assert resolver.resolve(config) == {"password": value, "user": "app", "short": value,
                                        "legacy": "v1-" + value, "mounted": value}
    vault.client().secrets.kv.v2.create_or_update_secret(path=path, secret={"password": "rotated"})
    assert resolver.resolve({"password": f"vault:secret/{path}"})["password"] == value  # cached for the run
    assert Resolver(SecurityPolicy(), "p").resolve({"password": f"vault:secret/{path}"})["password"] == "rotated"


@pytest.mark.parametrize("ref, code", [("vault:secret/t/none-here#password", "VAULT_NOT_FOUND"),
                                       ("vault:secret/pipelines/demo#nokey", "VAULT_KEY_MISSING")])
def test_missing_secret_or_key(vault, ref, code):
    root_login(vault)
    with pytest.raises(CredentialError) as info:
        Resolver(SecurityPolicy()).value(as_reference(ref))
    assert info.value.code == code
    if code == "VAULT_KEY_MISSING":
        assert "keys: password" in info.value.message


def test_not_logged_in_forbidden_and_unreachable(vault, secret, monkeypatch):
    ref = as_reference(f"vault:secret/{secret[0]}#password")
    with pytest.raises(CredentialError) as info:
        Resolver(SecurityPolicy()).value(ref)
    assert info.value.code == "VAULT_NOT_LOGGED_IN" and "vault login" in info.value.hint
    limited = vault.client().auth.token.create(policies=["default"], ttl="5m")["auth"]["client_token"]
    kv.login("token", token=limited)
    with pytest.raises(CredentialError) as info:
        Resolver(SecurityPolicy()).value(ref)
    assert info.value.code == "VAULT_FORBIDDEN"
    kv.SESSION.clear()
    kv.SESSION.addr = None
    monkeypatch.setenv("VAULT_ADDR", "http://127.0.0.1:1")
    monkeypatch.setenv("VAULT_TOKEN", "anything")
    with pytest.raises(CredentialError) as info:
        Resolver(SecurityPolicy()).value(ref)
    assert info.value.code == "VAULT_UNREACHABLE"


def test_an_expired_token_says_log_in_again(vault, secret):
    token = short_token(vault, "2s", renewable=False)
    kv.login("token", token=token)
    wait_until(lambda: kv.token_state(vault.client(token)) == "invalid", 10, "the token expired", error=AssertionError)
    with pytest.raises(CredentialError) as info:
        Resolver(SecurityPolicy()).value(as_reference(f"vault:secret/{secret[0]}#password"))
    err = info.value
    assert err.code == "VAULT_TOKEN_EXPIRED"
    assert "expired" in err.message and "log in again" in err.hint and "%pipeline vault login" in err.hint
    status = kv.status()
    assert not status.authenticated and "log in again" in status.text()


# ---------------------------------------------------------------------- login


def test_userpass_login_status_and_logout(vault, secret):
    status = kv.login("userpass", username=vault.user, password=vault.user_password)
    assert status.authenticated and status.source == "login" and status.method == "userpass"
    assert status.identity == f"userpass-{vault.user}" and vault.policy in status.policies
    assert 3500 < status.ttl <= 3600 and status.renewable
    text = status.text()
    assert vault.user in text and "expires in" in text and kv.SESSION.token not in text + repr(status)
    assert vault.user_password not in repr(kv.SESSION)
    assert Resolver(SecurityPolicy()).value(as_reference(f"vault:secret/{secret[0]}#password")) == secret[1]
    token = kv.SESSION.token
    assert kv.logout() == "logged out of Vault (token revoked)"
    assert kv.token_state(vault.client(token)) == "invalid"  # revoked on the server too
    assert not kv.status().authenticated


def test_approle_login(vault, secret):
    status = kv.login("approle", role_id=vault.role_id, secret_id=vault.secret_id)
    assert status.authenticated and status.method == "approle" and vault.policy in status.policies
    assert Resolver(SecurityPolicy()).value(as_reference(f"vault:secret/{secret[0]}#password")) == secret[1]


def test_ldap_login_uses_the_ldap_endpoint(vault):
    """OpenBao's dev server has no LDAP plugin; the LDAP login API (``auth/<mount>/login/<user>`` with
    a password) is the same as userpass's, so a userpass method mounted at ``ldap-test`` answers it."""
    root = vault.client()
    if "ldap-test/" not in root.sys.list_auth_methods()["data"]:
        root.sys.enable_auth_method("userpass", path="ldap-test")
    root.auth.userpass.create_or_update_user("bob", "bob-pw-123", policies=[vault.policy], mount_point="ldap-test")
    status = kv.login("ldap", username="bob", password="bob-pw-123", mount="ldap-test")
    assert status.authenticated and status.method == "ldap" and vault.policy in status.policies
    with pytest.raises(CredentialError) as info:
        kv.login("ldap", username="bob", password="bob-pw-123")  # no method at auth/ldap/
    assert info.value.code == "VAULT_LOGIN_FAILED" and "auth/ldap/" in info.value.hint


@pytest.mark.parametrize("method, kwargs, code", [
    ("userpass", {"username": "analyst", "password": "Wr0ng-Passw0rd"}, "VAULT_LOGIN_FAILED"),
    ("approle", {"role_id": "nope", "secret_id": "Wr0ng-Secret-Id"}, "VAULT_LOGIN_FAILED"),
    ("token", {"token": "s.Wr0ngToken123"}, "VAULT_LOGIN_FAILED"),
    ("userpass", {"username": "analyst"}, "VAULT_LOGIN_INPUT"),
    ("kerberos", {}, "VAULT_LOGIN_INPUT"),
])
def test_failed_logins_keep_the_previous_token_and_show_no_secret(vault, method, kwargs, code):
    root_login(vault)
    with pytest.raises(CredentialError) as info:
        kv.login(method, **kwargs)
    assert info.value.code == code
    shown = str(info.value) + repr(info.value.params)
    assert not any(v in shown for k, v in kwargs.items() if k in ("password", "secret_id", "token"))
    assert kv.SESSION.token == vault.root_token


def test_token_from_the_environment_and_logout_ignores_it(vault, monkeypatch):
    monkeypatch.setenv("VAULT_TOKEN", vault.root_token)
    status = kv.status()
    assert status.authenticated and status.source == "VAULT_TOKEN" and "root" in status.policies
    assert "ignored until the next login" in kv.logout()
    assert not kv.status().authenticated
    kv.login("userpass", username=vault.user, password=vault.user_password)
    assert kv.status().source == "login"


def test_unreachable_and_unconfigured(monkeypatch):
    with pytest.raises(CredentialError) as info:
        kv.login("token", token="x-token", addr="http://127.0.0.1:1")
    assert info.value.code == "VAULT_UNREACHABLE"
    monkeypatch.delenv("VAULT_ADDR")
    with pytest.raises(CredentialError) as info:
        kv.client()
    assert info.value.code == "VAULT_NOT_CONFIGURED"


# -------------------------------------------------------------------- renewal


def test_renewer_keeps_a_short_token_alive_then_it_expires(vault):
    token = short_token(vault, "3s", explicit_max_ttl="2m")
    keep = {"on": True}
    renewer = renewal.TokenRenewer(lambda: vault.client(token), lambda: keep["on"], poll=0.2).start()
    started = time.monotonic()
    try:
        wait_until(lambda: renewer.renewals >= 2 and time.monotonic() - started > 4.5, 30,
                   "two renewals and more than the token's TTL", error=AssertionError)
        assert renewer.last_error is None
        assert kv.token_state(vault.client(token)) == "valid"  # 4.5 s > its 3 s TTL
        keep["on"] = False
        wait_until(lambda: not renewer.running, 5, "the renewer stopped", error=AssertionError)
        wait_until(lambda: kv.token_state(vault.client(token)) == "invalid", 10, "the token expired",
                   error=AssertionError)
    finally:
        renewer.stop()


def test_renew_token_helper(vault):
    token = short_token(vault, "30s")
    assert renewal.renew_token(vault.client(token), increment=120) == 120


# ---------------------------------------------------------------------- audit


def test_audit_lines_for_each_read_never_the_value(vault, secret, tmp_path, monkeypatch):
    log_file = tmp_path / "audit.jsonl"
    monkeypatch.setenv("PIPELINE_SECURITY_POLICY", "strict")
    monkeypatch.setenv("PIPELINE_AUDIT_LOG", str(log_file))
    before = len(AUDIT_ENTRIES)
    kv.login("userpass", username=vault.user, password=vault.user_password)
    resolver = Resolver(SecurityPolicy.from_env(), "audited")
    resolver.resolve({"password": f"vault:secret/{secret[0]}", "user": f"vault:secret/{secret[0]}#user"}, "extract1")
    resolver.resolve({"password": f"vault:secret/{secret[0]}"}, "extract1")  # cached: no second read
    with pytest.raises(CredentialError):
        resolver.resolve({"password": "vault:secret/t/absent#password"}, "load2")
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert [(e["event"], e["reference"], e["step"], e["outcome"]) for e in lines] == [
        ("login", f"auth/userpass/login/{vault.user}", "", "ok"),
        ("read", f"vault:secret/{secret[0]}#password", "extract1", "ok"),
        ("read", f"vault:secret/{secret[0]}#user", "extract1", "ok"),
        ("read", "vault:secret/t/absent#password", "load2", "error: VAULT_NOT_FOUND")]
    for e in lines:
        assert set(e) >= {"time", "user", "pipeline", "step", "reference", "outcome"}
        assert e["time"].endswith("Z") and e["user"]
    assert all(e["pipeline"] == "audited" and e["vault_identity"] == f"userpass-{vault.user}" for e in lines[1:])
    assert secret[1] not in log_file.read_text() and vault.user_password not in log_file.read_text()
    assert oct(os.stat(log_file).st_mode & 0o777) == "0o600"
    assert AUDIT_ENTRIES[before:] == lines


def test_no_audit_when_off(vault, secret, tmp_path, monkeypatch):
    monkeypatch.setenv("PIPELINE_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    root_login(vault)
    Resolver(SecurityPolicy.from_env(), "quiet").resolve({"password": f"vault:secret/{secret[0]}"})
    assert not (tmp_path / "audit.jsonl").exists()


# ------------------------------------------------------------ form and magics


def widget_states(form) -> str:
    return json.dumps([w.get_state() for w in form.all_widgets()], default=str)


@pytest.mark.parametrize("method", ["userpass", "approle", "token"])
def test_login_form_clears_secrets_and_never_holds_the_token(vault, method):
    from pipeline_magics.notebook.vault_form import VaultLoginForm

    form = VaultLoginForm(address=vault.addr)
    form.method.value = method
    if method == "userpass":
        form.username.value, form.password.value = vault.user, vault.user_password
        typed = vault.user_password
    elif method == "approle":
        form.role_id.value, form.secret_id.value = vault.role_id, vault.secret_id
        typed = vault.secret_id
    else:
        typed = short_token(vault, "10m")
        form.token.value = typed
    assert typed in widget_states(form)  # while typed, it is there…
    form.button.click()
    state = widget_states(form)
    assert "✔" in form.status.value and "expires in" in form.status.value
    assert typed not in state and kv.SESSION.token not in state  # …and gone after Login
    assert form.token.value == form.password.value == form.secret_id.value == ""
    assert kv.status().method == method


def test_login_form_failure_clears_too_and_shows_a_short_message(vault):
    from pipeline_magics.notebook.vault_form import VaultLoginForm

    form = VaultLoginForm(address=vault.addr, method="userpass")
    form.username.value, form.password.value = vault.user, "Wr0ng-Pa55-Form"
    assert form.submit() is None
    assert "invalid username or password" in form.status.value and "Wr0ng-Pa55-Form" not in widget_states(form)
    form.password.value = "typed-then-switched"
    form.method.value = "token"  # switching the method empties the secret fields as well
    assert "typed-then-switched" not in widget_states(form)
    assert form.password.layout.display == "none" and form.token.layout.display is None


def test_vault_subcommands_in_a_terminal_shell(ip, vault, secret, capsys, monkeypatch):
    monkeypatch.setenv("ANALYST_PW_FOR_TEST", vault.user_password)
    ip.run_line_magic("pipeline", "vault status")
    assert "not logged in" in capsys.readouterr().out
    ip.run_line_magic("pipeline", f"vault login --method userpass --username {vault.user} "
                                  "--password-env ANALYST_PW_FOR_TEST")
    out = capsys.readouterr().out
    assert f"logged in as userpass-{vault.user}" in out and vault.user_password not in out
    # --method userpass with the password typed at a getpass prompt
    monkeypatch.setattr("getpass.getpass", lambda prompt="": vault.user_password)
    ip.run_line_magic("pipeline", f"vault login --method userpass --username {vault.user}")
    assert "logged in" in capsys.readouterr().out
    monkeypatch.setenv("A_TOKEN_VAR", vault.root_token)
    ip.run_line_magic("pipeline", "vault login --token-env A_TOKEN_VAR")
    assert "root" in capsys.readouterr().out
    ip.run_line_magic("pipeline", "vault logout")
    assert "logged out" in capsys.readouterr().out
    with pytest.raises(UsageError, match="usage: %pipeline vault"):
        ip.run_line_magic("pipeline", "vault sideways")


def test_vault_login_without_arguments_prompts_for_a_token_outside_a_kernel(ip, vault, capsys, monkeypatch):
    monkeypatch.setattr("getpass.getpass", lambda prompt="": vault.root_token)
    ip.run_line_magic("pipeline", "vault login")
    assert "logged in" in capsys.readouterr().out and kv.SESSION.token == vault.root_token


def test_vault_login_shows_the_form_in_a_kernel(ip, vault, monkeypatch):
    from pipeline_magics.notebook.vault_form import VaultLoginForm

    monkeypatch.setattr(ip, "kernel", object(), raising=False)  # what ipykernel's shell has
    form = ip.run_line_magic("pipeline", f"vault login --address {vault.addr}")
    assert isinstance(form, VaultLoginForm) and form.address.value == vault.addr
    assert "application/vnd.jupyter.widget-view+json" in form._repr_mimebundle_()


def test_audit_subcommand(ip, vault, secret, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("PIPELINE_AUDIT_CREDENTIALS", "true")
    root_login(vault)
    Resolver(SecurityPolicy.from_env(), "shown_in_audit").resolve({"password": f"vault:secret/{secret[0]}"}, "s1")
    ip.run_line_magic("pipeline", "audit --pipeline shown_in_audit")
    out = capsys.readouterr().out
    assert "credential auditing is on" in out and f"vault:secret/{secret[0]}#password" in out
    assert secret[1] not in out
    ip.run_line_magic("pipeline", "audit --json --last 1")
    assert json.loads(capsys.readouterr().out)["pipeline"] == "shown_in_audit"
    with pytest.raises(UsageError):
        ip.run_line_magic("pipeline", "audit --bogus")
