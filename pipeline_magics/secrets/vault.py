"""Vault login for this kernel: token, userpass, ldap or approle; status and logout (renewal: :mod:`.vault_renewal`).

Plain Python over hvac: the notebook form (:mod:`.vault_form`) and the magic
call these functions, and so do tests and scripts. The token lives in
:data:`SESSION`, in this process's memory only: no function returns it, no
``repr`` shows it, and it is registered for masking so no log line carries it.
"""
from __future__ import annotations

import argparse
import getpass
import logging
import os
from dataclasses import dataclass
from typing import Any, Callable

from .audit import audit
from .. import config
from ..errors import CredentialError
from .policy import SecurityPolicy
from .redaction import mask_text, register_secret
from .vault_renewal import RENEWAL
from .vault_session import (_LOCK, SESSION, Session, _namespace, address, client, current_token,  # noqa: F401
                            fmt_ttl, token_state)

log = logging.getLogger("pipeline_magics.vault")

METHODS = ("token", "userpass", "ldap", "approle")
LABELS = {"token": "Token", "userpass": "Username & password", "ldap": "LDAP", "approle": "AppRole"}


# -------------------------------------------------------------------- status


@dataclass(frozen=True)
class TokenStatus:
    """Who the kernel is logged in as, and for how long; never the token itself."""

    addr: str | None
    authenticated: bool
    source: str  # "login" | "VAULT_TOKEN" | "none"
    method: str | None = None
    identity: str | None = None
    policies: tuple[str, ...] = ()
    ttl: int | None = None  # seconds left; 0 = never expires
    renewable: bool = False
    problem: str | None = None

    @property
    def expires(self) -> str:
        if self.ttl is None:
            return "unknown"
        return "never" if self.ttl == 0 else "in " + fmt_ttl(self.ttl)

    def text(self) -> str:
        """One line: address, identity, method, policies, TTL."""
        where = f"Vault {self.addr or '(no address)'}"
        if not self.authenticated:
            return f"{where}: not logged in" + (f" ({self.problem})" if self.problem else "")
        via = f"{self.method} login" if self.source == "login" else f"token from {self.source}"
        return (f"{where}: logged in as {self.identity or '?'} ({via}); policies: "
                f"{', '.join(self.policies) or 'none'}; token expires {self.expires}"
                + (", renewable" if self.renewable else ""))

    def __str__(self) -> str:
        return self.text()


def status(addr: str | None = None) -> TokenStatus:
    """The kernel's Vault identity and token TTL (asks Vault; the token is not shown)."""
    import hvac.exceptions as hexc
    import requests

    url = address(addr)
    token, source = current_token()
    if not url:
        return TokenStatus(None, False, source, problem="no address: set VAULT_ADDR or log in")
    if not token:
        return TokenStatus(url, False, source, problem="no token: %pipeline vault login, or set VAULT_TOKEN")
    try:
        data = client(url, token).auth.token.lookup_self()["data"]
    except (hexc.Forbidden, hexc.Unauthorized):
        return TokenStatus(url, False, source, SESSION.method,
                           problem="the token has expired or was revoked: log in again")
    except (requests.exceptions.RequestException, hexc.VaultError) as exc:
        return TokenStatus(url, False, source, SESSION.method,
                           problem=mask_text(f"Vault did not answer: {type(exc).__name__}"))
    identity = data.get("display_name") or data.get("entity_id") or None
    if source == "login":
        SESSION.identity = identity
    never = not data.get("expire_time") and not data.get("creation_ttl")
    ttl = 0 if never else max(1, int(data.get("ttl") or 0))  # 0 means "never", not "about to expire"
    return TokenStatus(url, True, source, SESSION.method if source == "login" else None, identity,
                       tuple(data.get("policies") or ()), ttl, bool(data.get("renewable")))


# --------------------------------------------------------------------- login


def login(method: str = "token", *, addr: str | None = None, namespace: str | None = None,
          mount: str | None = None, token: str | None = None, username: str | None = None,
          password: str | None = None, role_id: str | None = None, secret_id: str | None = None,
          policy: SecurityPolicy | None = None) -> TokenStatus:
    """Logs the kernel in to Vault; the new token replaces the old one (kept if the login fails).

    ``token``: checks and adopts a token; ``userpass``/``ldap``: ``username`` and
    ``password``; ``approle``: ``role_id`` and ``secret_id``. ``mount`` is the
    auth method's path when not the default (``userpass``, ``ldap``, ``approle``).
    """
    import hvac

    secrets = [s for s in (token, password, secret_id) if s]
    if method not in METHODS:
        raise CredentialError(f"unknown Vault login method '{method}'", code="VAULT_LOGIN_INPUT",
                              hint="methods: " + ", ".join(METHODS))
    needs = {"token": {"token": token}, "userpass": {"username": username, "password": password},
             "ldap": {"username": username, "password": password},
             "approle": {"role_id": role_id, "secret_id": secret_id}}[method]
    missing = [k for k, v in needs.items() if not v]
    if missing:
        raise CredentialError(f"{LABELS[method]} login needs {' and '.join(missing)}", code="VAULT_LOGIN_INPUT",
                              params={"method": method, "missing": missing})
    url = address(addr)
    if not url:
        raise CredentialError("no Vault address", code="VAULT_NOT_CONFIGURED", hint="give the address of your Vault")
    mount = (mount or method).strip("/")
    who = f" as '{username}'" if username else ""
    reference = f"auth/{mount}/login" + (f"/{username}" if username else "")
    policy = policy or SecurityPolicy.from_env()
    c = hvac.Client(url=url, namespace=_namespace(namespace), timeout=30)
    try:
        if method == "token":
            c.token = token
            c.auth.token.lookup_self()
        elif method == "userpass":
            c.auth.userpass.login(username, password, mount_point=mount)
        elif method == "ldap":
            c.auth.ldap.login(username, password, mount_point=mount)
        else:
            c.auth.approle.login(role_id, secret_id, mount_point=mount)
    except Exception as exc:  # noqa: BLE001 - every failure becomes one short CredentialError
        error = _login_error(exc, method, mount, who, url, secrets)
        if policy.audit:
            audit(policy, reference=reference, outcome="error: " + error.code, event="login")
        raise error from None
    for s in (c.token, *secrets):  # masked from now on, wherever they might be echoed
        register_secret(s)
    with _LOCK:
        SESSION.addr, SESSION.namespace = url, _namespace(namespace)
        SESSION.token, SESSION.method, SESSION.use_env, SESSION.issued = c.token, method, True, method != "token"
        SESSION.identity = None
    result = status()
    if policy.audit:
        audit(policy, reference=reference, outcome="ok", event="login")
    log.info("logged in to Vault at %s as %s (%s)", url, result.identity, method)
    return result


def _login_error(exc: Exception, method: str, mount: str, who: str, url: str, secrets: list[str]) -> CredentialError:
    """One short message for a failed login; the secrets typed are masked in it."""
    import hvac.exceptions as hexc
    import requests

    label = LABELS[method]
    params = {"method": method, "mount": mount}
    if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout, hexc.VaultDown)):
        return CredentialError(f"Vault at {url} is unreachable ({type(exc).__name__})", code="VAULT_UNREACHABLE",
                               params=params, hint="check the address and that Vault is running")
    if isinstance(exc, (hexc.InvalidPath, hexc.UnsupportedOperation)):
        return CredentialError(f"no {label} auth method at auth/{mount}/", code="VAULT_LOGIN_FAILED", params=params,
                               hint="check the method, or give its mount path if it is not the default")
    if isinstance(exc, hexc.VaultError):
        errors = getattr(exc, "errors", None) or [str(exc).split(", on ")[0]]
        reason = "; ".join(str(e).strip() for e in errors if str(e).strip()) or type(exc).__name__
        hint = None
        if method == "token" and isinstance(exc, (hexc.Forbidden, hexc.Unauthorized)):
            reason = "the token is invalid, expired or revoked"
        elif isinstance(exc, (hexc.Forbidden, hexc.Unauthorized)):
            hint = f"check the {label} method is enabled at auth/{mount}/ (or give its mount path)"
        return CredentialError(mask_text(f"{label} login{who} failed: {reason}", secrets), code="VAULT_LOGIN_FAILED",
                               params=params, hint=hint)
    return CredentialError(mask_text(f"{label} login{who} failed: {type(exc).__name__}: {exc}", secrets),
                           code="VAULT_LOGIN_FAILED", params=params)


def logout(revoke: bool | None = None) -> str:
    """Forgets the kernel's token (revoked if a login issued it); ``VAULT_TOKEN`` is ignored until the next login."""
    import hvac.exceptions as hexc
    import requests

    with _LOCK:
        token, issued, url = SESSION.token, SESSION.issued, address()
        revoke = issued if revoke is None else revoke
        note = ""
        if token and revoke and url:
            try:
                client(url, token).auth.token.revoke_self()
                note = " (token revoked)"
            except (requests.exceptions.RequestException, hexc.VaultError) as exc:
                note = f" (could not revoke the token: {type(exc).__name__})"
        SESSION.clear()
        had_env = SESSION.use_env and bool(config.outside("VAULT_TOKEN"))
        SESSION.use_env = False
    RENEWAL.stop()
    if not token and not had_env:
        return "not logged in to Vault"
    return ("logged out of Vault" + note + (
        "; VAULT_TOKEN from the environment is ignored until the next login" if had_env else ""))


# ------------------------------------------------------------ the subcommand


def arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Adds ``vault login|logout|status [options]``'s arguments to ``parser``."""
    parser.add_argument("action", choices=["login", "logout", "status"])
    parser.add_argument("--address", "--addr", metavar="URL", help="the Vault server (default: VAULT_ADDR)")
    parser.add_argument("--method", choices=METHODS, help="how to log in (default: from the options given)")
    parser.add_argument("--username", metavar="U", help="userpass or ldap: the user (the password is asked for)")
    parser.add_argument("--role-id", metavar="ID", help="approle: the role id")
    parser.add_argument("--mount", metavar="PATH", help="where the auth method is mounted (default: the method's name)")
    parser.add_argument("--namespace", metavar="NS", help="the Vault namespace")
    parser.add_argument("--token-env", metavar="VAR", help="token: the environment variable holding it")
    parser.add_argument("--password-env", metavar="VAR", help="userpass or ldap: the variable holding the password")
    parser.add_argument("--secret-id-env", metavar="VAR", help="approle: the variable holding the secret id")
    parser.add_argument("--revoke", action="store_true", help="logout: also revoke the token")
    return parser


def settle(args: argparse.Namespace) -> argparse.Namespace:
    """Parsed ``vault`` arguments with the login method chosen and ``interactive`` (a login that names no
    credential: the form, or prompts) set."""
    args.interactive = args.action == "login" and not any(
        (args.username, args.role_id, args.token_env, args.password_env, args.secret_id_env, args.method))
    if args.method is None:
        args.method = ("approle" if args.role_id else "userpass" if args.username else "token")
    return args


def command(args: argparse.Namespace, prompt: Callable[[str], str] | None = None) -> str:
    """Runs a parsed ``vault`` subcommand without widgets; secrets come from ``--*-env`` or ``prompt``."""
    if args.action == "status":
        return status(args.address).text()
    if args.action == "logout":
        return logout(True if args.revoke else None)

    def secret(env_var: str | None, label: str) -> str:
        if env_var:
            if not os.environ.get(env_var):
                raise CredentialError(f"environment variable {env_var} is not set", code="VAULT_LOGIN_INPUT")
            return os.environ[env_var]
        return (prompt or getpass.getpass)(f"{label}: ")

    m = args.method
    values: dict[str, Any] = {}
    if m == "token":
        values["token"] = secret(args.token_env, "Vault token")
    elif m in ("userpass", "ldap"):
        values["username"] = args.username or input("Username: ")
        values["password"] = secret(args.password_env, f"Password for {values['username']}")
    else:
        values["role_id"] = args.role_id or input("Role ID: ")
        values["secret_id"] = secret(args.secret_id_env, "Secret ID")
    return login(m, addr=args.address, namespace=args.namespace, mount=args.mount, **values).text()
