"""Credential references (Vault, environment), the security policy, and the audit log.

A config value may be ``{vault: PATH, key: KEY}``, ``"vault:PATH#KEY"`` or
``{env: NAME}`` (``mount:`` names a KV mount whose path has slashes). References
are resolved at run time only, cached for that one run, and every resolved value
is registered for masking (:mod:`.redaction`) so no message, log line or export
can show it. Logging in to Vault lives in :mod:`.vault`.
"""
from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import threading
import time
import warnings
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator, Mapping

from . import config
from .errors import CredentialError
from .redaction import has_url_password, is_secret_key, register_secret

log = logging.getLogger("pipeline_magics.credentials")

Path = tuple[Any, ...]
DEFAULT_MOUNT = "secret"


@dataclass(frozen=True)
class Reference:
    """Where a credential comes from: ``vault`` (mount, path, key) or ``env`` (a variable name)."""

    source: str  # "vault" | "env"
    path: str
    key: str | None = None
    mount: str | None = None

    def __str__(self) -> str:
        if self.source == "env":
            return f"env:{self.path}"
        path = f"{self.mount.strip('/')}/{self.path}" if self.mount else self.path
        return f"vault:{path}#{self.key or 'value'}"

    def for_setting(self, setting: str) -> "Reference":
        """The key defaults to the setting's name: ``password: vault:secret/pg`` reads key ``password``."""
        if self.source == "vault" and not self.key:
            return replace(self, key=setting or "value")
        return self


def as_reference(value: Any) -> Reference | None:
    """The reference ``value`` stands for, or None for a literal."""
    if isinstance(value, dict):
        if set(value) == {"env"} and isinstance(value["env"], str):
            return Reference("env", value["env"])
        if ("vault" in value and set(value) <= {"vault", "key", "mount"} and isinstance(value["vault"], str)
                and all(isinstance(value.get(k), (str, type(None))) for k in ("key", "mount"))):
            return Reference("vault", value["vault"].strip("/"), value.get("key"), value.get("mount"))
    if isinstance(value, str) and value.startswith("vault:"):
        path, _, key = value[len("vault:"):].partition("#")
        return Reference("vault", path.strip("/"), key or None)
    return None


def _setting(path: Path) -> str:
    return next((str(p) for p in reversed(path) if isinstance(p, str)), "")


def walk(config: Any, path: Path = ()) -> Iterator[tuple[Path, Any]]:
    """Every leaf (or reference) of a config, with its path."""
    if as_reference(config) is not None:
        yield path, config
    elif isinstance(config, dict):
        for k, v in config.items():
            yield from walk(v, path + (k,))
    elif isinstance(config, list):
        for i, v in enumerate(config):
            yield from walk(v, path + (i,))
    else:
        yield path, config


def references(config: Any) -> list[tuple[Path, Reference]]:
    """Every reference in a config, its key defaulted from the setting name."""
    return [(p, as_reference(v).for_setting(_setting(p))) for p, v in walk(config) if as_reference(v)]


def _replace(config: Any, fn: Callable[[Path, Reference], Any], path: Path = ()) -> Any:
    ref = as_reference(config)
    if ref is not None:
        return fn(path, ref.for_setting(_setting(path)))
    if isinstance(config, dict):
        return {k: _replace(v, fn, path + (k,)) for k, v in config.items()}
    if isinstance(config, list):
        return [_replace(v, fn, path + (i,)) for i, v in enumerate(config)]
    return config


def placeholders(config: Mapping[str, Any], model: Any = None) -> dict[str, Any]:
    """The config with every reference replaced by a stand-in, for validation before the run.

    With the settings ``model``, a top-level reference gets a stand-in its field
    accepts (``1`` for a port, ``***`` for a string); otherwise ``***``.
    """
    fields = {(f.alias or n): f for n, f in getattr(model, "model_fields", {}).items()}

    def stand_in(path: Path, ref: Reference) -> Any:
        f = fields.get(path[0]) if len(path) == 1 else None
        return _accepted(f.annotation) if f is not None else "***"

    return _replace(dict(config), stand_in)


def _accepted(annotation: Any) -> Any:
    import typing

    from pydantic import TypeAdapter, ValidationError

    literals = [a for a in typing.get_args(annotation) if typing.get_origin(annotation) is typing.Literal]
    for candidate in ("***", 1, 1.0, True, *literals):
        try:
            TypeAdapter(annotation).validate_python(candidate)
            return candidate
        except (ValidationError, TypeError, ValueError):
            continue
        except Exception:  # noqa: BLE001 - an annotation TypeAdapter cannot handle
            break
    return "***"


# ----------------------------------------------------------------- policy

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


@dataclass(frozen=True)
class SecurityPolicy:
    """What credentials a spec may use (SPEC section 3).

    ``strict`` = Vault references only, no plaintext, every read audited;
    ``default`` = Vault or env references, a plaintext secret warns;
    ``permissive`` = anything. The single variables override the named policy.
    """

    name: str = "default"
    vault_only: bool = False
    allow_plaintext: bool = True
    audit: bool = False
    audit_log: str | None = None
    warn_plaintext: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "SecurityPolicy":
        """The policy set by ``PIPELINE_SECURITY_POLICY`` and the variables of SPEC section 3
        (``env``: those variables; default: :func:`config.environ`, ``%config`` values included)."""
        env = config.environ() if env is None else env
        name = env.get("PIPELINE_SECURITY_POLICY", "default").strip().lower() or "default"
        if name not in ("strict", "default", "permissive"):
            raise CredentialError(f"PIPELINE_SECURITY_POLICY is '{name}'", code="POLICY_UNKNOWN",
                                  hint="use strict, default or permissive",
                                  params={"variable": "PIPELINE_SECURITY_POLICY"})
        vault_only, plaintext, audit = {"strict": (True, False, True), "default": (False, True, False),
                                        "permissive": (False, True, False)}[name]

        def flag(var: str, default: bool) -> bool:
            value = env.get(var)
            if value is None:
                return default
            value = value.strip().lower()
            if value not in _TRUE + _FALSE:
                raise CredentialError(f"{var} is '{value}'", code="POLICY_INVALID", hint="use true or false",
                                      params={"variable": var})
            return value in _TRUE

        return cls(name, flag("PIPELINE_VAULT_ONLY", vault_only), flag("PIPELINE_ALLOW_PLAINTEXT", plaintext),
                   flag("PIPELINE_AUDIT_CREDENTIALS", audit), env.get("PIPELINE_AUDIT_LOG") or None,
                   warn_plaintext=name == "default")

    def check(self, config: Mapping[str, Any]) -> list[tuple[Path, str]]:
        """Problems with the secret settings of one step's config: (path, what is wrong; never the value)."""
        problems = []
        for path, value in walk(config):
            key = _setting(path)
            where = ".".join(str(p) for p in path) or key
            ref = as_reference(value)
            if ref is not None:
                if self.vault_only and ref.source != "vault":
                    problems.append((path, f"setting '{where}' comes from the environment ({ref}), but policy "
                                           f"'{self.name}' accepts only Vault references"))
                continue
            if value in (None, "") or not (is_secret_key(key) or
                                            (isinstance(value, str) and has_url_password(value))):
                continue
            what = "a literal secret" if is_secret_key(key) else "a URL with a literal password"
            if self.vault_only:
                problems.append((path, f"setting '{where}' is {what}; policy '{self.name}' needs a Vault "
                                       f"reference such as vault:secret/NAME#{key}"))
            elif not self.allow_plaintext:
                problems.append((path, f"setting '{where}' is {what}, and plaintext secrets are refused "
                                       "(PIPELINE_ALLOW_PLAINTEXT=false)"))
            elif self.warn_plaintext:
                warnings.warn(f"setting '{where}' is {what} written in the spec; use a vault: or env: reference",
                              stacklevel=2)
        return problems


# ---------------------------------------------------------------- resolving


@dataclass
class Resolver:
    """Resolves references for one run, caches them for that run only, audits each read."""

    policy: SecurityPolicy = field(default_factory=SecurityPolicy.from_env)
    pipeline: str = ""
    vault_client: Any = field(default=None, repr=False)
    secrets: set[str] = field(default_factory=set, repr=False)
    _cache: dict[Reference, str] = field(default_factory=dict, repr=False)
    _lock: Any = field(default_factory=threading.RLock, repr=False)

    def resolve(self, config: Mapping[str, Any], step: str = "") -> dict[str, Any]:
        """A copy of ``config`` with every reference replaced by its value."""
        return _replace(dict(config), lambda path, ref: self.value(ref, step))

    def value(self, ref: Reference, step: str = "") -> str:
        """One reference's value (read once per run)."""
        with self._lock:
            if ref not in self._cache:
                try:
                    value = self._read(ref)
                except CredentialError as exc:
                    self._audit(ref, step, "error: " + exc.code)
                    raise
                register_secret(value)
                self._audit(ref, step, "ok")
                self._cache[ref] = value
                self.secrets.add(value)
            return self._cache[ref]

    def _read(self, ref: Reference) -> str:
        if ref.source == "env":
            if ref.path not in os.environ:
                raise CredentialError(f"environment variable {ref.path} is not set", code="ENV_MISSING",
                                      hint=f"set {ref.path} in the kernel's environment",
                                      params={"reference": str(ref)})
            return os.environ[ref.path]
        return read_vault(self.client(), ref)

    def client(self) -> Any:
        """This run's Vault client (the kernel's login, else ``VAULT_TOKEN``)."""
        from . import vault

        from .vault_renewal import RENEWAL

        if self.vault_client is None:
            self.vault_client = vault.client()
        RENEWAL.touch()  # a streaming run keeps the token alive while its queries run
        return self.vault_client

    def _audit(self, ref: Reference, step: str, outcome: str) -> None:
        if self.policy.audit:
            audit(self.policy, pipeline=self.pipeline, step=step, reference=str(ref), outcome=outcome)

    def __repr__(self) -> str:
        return f"<Resolver {self.pipeline or '-'}: {len(self._cache)} credentials resolved>"


# -------------------------------------------------------------------- audit

#: This kernel's audit entries (``%pipeline audit``); the file is ``PIPELINE_AUDIT_LOG``.
AUDIT_ENTRIES: list[dict[str, Any]] = []
_AUDIT_LOCK = threading.Lock()


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001
        return "unknown"


def audit(policy: SecurityPolicy, *, pipeline: str = "", step: str = "", reference: str, outcome: str,
          event: str = "read") -> dict[str, Any]:
    """Records one credential event (never a value): in memory, in ``PIPELINE_AUDIT_LOG``, in the log."""
    from .vault import SESSION

    now = time.time()
    entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z",
             "user": _user(), "vault_identity": SESSION.identity, "event": event, "pipeline": pipeline,
             "step": step, "reference": reference, "outcome": outcome}
    with _AUDIT_LOCK:
        AUDIT_ENTRIES.append(entry)
        if policy.audit_log:
            try:
                fd = os.open(policy.audit_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                with os.fdopen(fd, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(entry) + "\n")
            except OSError as exc:
                raise CredentialError(f"cannot write the audit log {policy.audit_log}: {exc.strerror}",
                                      code="AUDIT_LOG_UNWRITABLE", hint="fix PIPELINE_AUDIT_LOG") from None
    log.info("credential %s %s by %s: %s", event, reference, entry["user"], outcome)
    return entry


def audit_text(entries: list[dict[str, Any]]) -> str:
    """The entries as a plain table."""
    if not entries:
        return "no credential reads were audited in this kernel"
    rows = [("time", "user", "pipeline", "step", "reference", "outcome")]
    rows += [(e["time"], e["user"], e["pipeline"] or "-", e["step"] or "-", e["reference"], e["outcome"])
             for e in entries]
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


class _Parser(argparse.ArgumentParser):
    """argparse that raises ``ValueError`` instead of printing and exiting."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        raise ValueError(message)


def audit_command(argv: list[str], policy: SecurityPolicy | None = None) -> str:
    """``%pipeline audit [--pipeline NAME] [--last N] [--json]``: this kernel's audit entries."""
    parser = _Parser(prog="%pipeline audit", add_help=False)
    parser.add_argument("--pipeline")
    parser.add_argument("--last", type=int)
    parser.add_argument("--json", action="store_true")
    try:
        args = parser.parse_args(argv)
    except ValueError:
        raise ValueError("usage: %pipeline audit [--pipeline NAME] [--last N] [--json]") from None
    policy = policy or SecurityPolicy.from_env()
    with _AUDIT_LOCK:
        entries = [e for e in AUDIT_ENTRIES if not args.pipeline or e["pipeline"] == args.pipeline]
    if args.last:
        entries = entries[-args.last:]
    if args.json:
        return "\n".join(json.dumps(e) for e in entries)
    head = (f"credential auditing is {'on' if policy.audit else 'off'} (policy '{policy.name}')"
            + (f"; log: {policy.audit_log}" if policy.audit and policy.audit_log else "")
            + ("" if policy.audit else "; set PIPELINE_AUDIT_CREDENTIALS=true or PIPELINE_SECURITY_POLICY=strict"))
    return head + "\n" + audit_text(entries)


# -------------------------------------------------------------------- Vault


def vault_client() -> Any:
    """An hvac client for the kernel's Vault login, else ``VAULT_ADDR``/``VAULT_TOKEN``/``VAULT_NAMESPACE``."""
    from .vault import client

    return client()


def _mount_of(client: Any, ref: Reference) -> tuple[str, str, int]:
    """(mount, path inside it, KV version), asking Vault as its own CLI does; ``secret/`` when unsure."""
    import hvac.exceptions as hexc

    if ref.mount:
        candidates = [f"{ref.mount.strip('/')}/{ref.path}"]
    else:
        candidates = [ref.path, f"{DEFAULT_MOUNT}/{ref.path}"]
    for full in candidates:
        try:
            data = client.adapter.get(f"/v1/sys/internal/ui/mounts/{full}")["data"]
        except (hexc.Forbidden, hexc.InvalidPath, hexc.InvalidRequest, hexc.UnsupportedOperation):
            continue
        mount = str(data.get("path") or "").strip("/")
        if data.get("type") in ("kv", "generic") and mount and (full + "/").startswith(mount + "/"):
            version = int(((data.get("options") or {}).get("version")) or 1)
            return mount, full[len(mount) + 1:], version
    if ref.mount:
        return ref.mount.strip("/"), ref.path, 2
    mount, _, path = ref.path.partition("/")
    return (mount, path, 2) if path else (DEFAULT_MOUNT, ref.path, 2)


def read_vault(client: Any, ref: Reference) -> str:
    """Reads one key from Vault KV (v2 or v1, found from the mount): ``secret/pg`` is mount ``secret``, path ``pg``."""
    import hvac.exceptions as hexc
    import requests

    key = ref.key or "value"
    params = {"reference": str(ref)}
    try:
        if not getattr(client, "token", None):
            raise hexc.Unauthorized("no token")
        mount, path, version = _mount_of(client, ref)
        if version == 2:
            data = client.secrets.kv.v2.read_secret_version(path=path, mount_point=mount,
                                                            raise_on_deleted_version=True)["data"]["data"]
        else:
            data = client.secrets.kv.v1.read_secret(path=path, mount_point=mount)["data"]
    except hexc.InvalidPath:
        raise CredentialError(f"no secret at {ref}", code="VAULT_NOT_FOUND", params=params,
                              hint="check the path (write secret/NAME; KV v2 paths omit 'data/')") from None
    except (hexc.Forbidden, hexc.Unauthorized):
        raise _refused(client, ref) from None
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout, hexc.VaultDown) as exc:
        raise CredentialError(f"Vault is unreachable: {type(exc).__name__}", code="VAULT_UNREACHABLE",
                              params=params, hint="check VAULT_ADDR and that Vault is running") from None
    except hexc.VaultError as exc:
        first = (str(exc).splitlines() or [""])[0]
        raise CredentialError(f"Vault could not read {ref}: {first}", code="VAULT_ERROR", params=params) from None
    if not isinstance(data, dict) or key not in data:
        keys = ", ".join(sorted(data)) if isinstance(data, dict) else "none"
        raise CredentialError(f"{ref}: the secret has no key '{key}' (keys: {keys})", code="VAULT_KEY_MISSING",
                              params=params)
    value = data[key]
    return value if isinstance(value, str) else json.dumps(value)


def _refused(client: Any, ref: Reference) -> CredentialError:
    """Tells an expired (or missing) token from a valid one that lacks the policy."""
    from .vault import token_state

    state = token_state(client)
    params = {"reference": str(ref), "token": state}
    if state == "missing":
        return CredentialError(f"not logged in to Vault, so {ref} cannot be read", code="VAULT_NOT_LOGGED_IN",
                               params=params, hint="log in with %pipeline vault login, or set VAULT_TOKEN")
    if state == "invalid":
        return CredentialError(f"the Vault token has expired or was revoked, so {ref} cannot be read",
                               code="VAULT_TOKEN_EXPIRED", params=params,
                               hint="log in again with %pipeline vault login (or set a fresh VAULT_TOKEN)")
    return CredentialError(f"Vault refused access to {ref}: the token's policies do not allow reading it",
                           code="VAULT_FORBIDDEN", params=params,
                           hint="ask for a policy with read on this path, or log in as someone who has it")
