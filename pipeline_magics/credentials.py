"""Credential references (Vault, environment), the security policy, and the audit log.

A config value may be ``{vault: PATH, key: KEY}``, ``"vault:PATH#KEY"`` or
``{env: NAME}``. References are resolved at run time only; the resolved values
are remembered by the run so every message can be masked.
"""
from __future__ import annotations

import getpass
import json
import logging
import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

from .errors import CredentialError
from .redaction import is_secret_key

log = logging.getLogger("pipeline_magics.credentials")

Path = tuple[Any, ...]


@dataclass(frozen=True)
class Reference:
    """Where a credential comes from."""

    source: str  # "vault" | "env"
    path: str
    key: str | None = None

    def __str__(self) -> str:
        return f"vault:{self.path}#{self.key}" if self.source == "vault" else f"env:{self.path}"


def as_reference(value: Any) -> Reference | None:
    """The reference ``value`` stands for, or None for a literal."""
    if isinstance(value, dict):
        if set(value) == {"env"} and isinstance(value["env"], str):
            return Reference("env", value["env"])
        if "vault" in value and set(value) <= {"vault", "key"} and isinstance(value["vault"], str):
            return Reference("vault", value["vault"], value.get("key"))
    if isinstance(value, str) and value.startswith("vault:"):
        path, _, key = value[len("vault:"):].partition("#")
        return Reference("vault", path, key or None)
    return None


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


def _replace(config: Any, fn: Any, path: Path = ()) -> Any:
    if as_reference(config) is not None:
        return fn(path, as_reference(config))
    if isinstance(config, dict):
        return {k: _replace(v, fn, path + (k,)) for k, v in config.items()}
    if isinstance(config, list):
        return [_replace(v, fn, path + (i,)) for i, v in enumerate(config)]
    return config


def placeholders(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config with every reference replaced by ``***``, for validation before the run."""
    return _replace(dict(config), lambda path, ref: "***")


# ----------------------------------------------------------------- policy


@dataclass(frozen=True)
class SecurityPolicy:
    """What credentials a spec may use (SPEC section 3)."""

    name: str = "default"
    vault_only: bool = False
    allow_plaintext: bool = True
    audit: bool = False
    audit_log: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "SecurityPolicy":
        env = os.environ if env is None else env
        name = env.get("PIPELINE_SECURITY_POLICY", "default").lower()
        if name not in ("strict", "default", "permissive"):
            raise CredentialError(f"PIPELINE_SECURITY_POLICY is '{name}'", code="POLICY_UNKNOWN",
                                  hint="use strict, default or permissive")
        base = {"strict": (True, False, True), "default": (False, True, False),
                "permissive": (False, True, False)}[name]

        def flag(var: str, default: bool) -> bool:
            value = env.get(var)
            return default if value is None else value.strip().lower() in ("1", "true", "yes", "on")

        return cls(name, flag("PIPELINE_VAULT_ONLY", base[0]), flag("PIPELINE_ALLOW_PLAINTEXT", base[1]),
                   flag("PIPELINE_AUDIT_CREDENTIALS", base[2]), env.get("PIPELINE_AUDIT_LOG"))

    def check(self, config: Mapping[str, Any]) -> list[tuple[Path, str]]:
        """Problems with the secret settings of one step's config: (path, what is wrong)."""
        problems = []
        for path, value in walk(config):
            key = next((str(p) for p in reversed(path) if isinstance(p, str)), "")
            ref = as_reference(value)
            if ref is not None:
                if self.vault_only and ref.source != "vault":
                    problems.append((path, f"'{key}' comes from the environment, but policy "
                                           f"'{self.name}' accepts only Vault references"))
                continue
            if not is_secret_key(key) or value in (None, ""):
                continue
            if self.vault_only:
                problems.append((path, f"'{key}' is a literal secret; policy '{self.name}' needs a Vault "
                                       f"reference such as vault:secret/NAME#{key}"))
            elif not self.allow_plaintext:
                problems.append((path, f"'{key}' is a literal secret and plaintext secrets are refused"))
            elif self.name == "default":
                warnings.warn(f"'{key}' is written in the spec as plain text; use a vault: or env: reference",
                              stacklevel=2)
        return problems


# ---------------------------------------------------------------- resolving


@dataclass
class Resolver:
    """Resolves references for one run, caches them for that run, audits each read."""

    policy: SecurityPolicy = field(default_factory=SecurityPolicy.from_env)
    pipeline: str = ""
    vault_client: Any = None
    secrets: set[str] = field(default_factory=set)
    _cache: dict[Reference, str] = field(default_factory=dict)

    def resolve(self, config: Mapping[str, Any], step: str = "") -> dict[str, Any]:
        """A copy of ``config`` with every reference replaced by its value."""
        return _replace(dict(config), lambda path, ref: self._value(ref, step))

    def _value(self, ref: Reference, step: str) -> str:
        if ref not in self._cache:
            try:
                value = self._read(ref)
            except CredentialError as exc:
                self._audit(ref, step, "error: " + exc.code)
                raise
            self._audit(ref, step, "ok")
            self._cache[ref] = value
            self.secrets.add(value)
        return self._cache[ref]

    def _read(self, ref: Reference) -> str:
        if ref.source == "env":
            if ref.path not in os.environ:
                raise CredentialError(f"environment variable {ref.path} is not set", code="ENV_MISSING",
                                      hint=f"set {ref.path} in the kernel's environment")
            return os.environ[ref.path]
        return read_vault(self.client(), ref)

    def client(self) -> Any:
        if self.vault_client is None:
            self.vault_client = vault_client()
        return self.vault_client

    def _audit(self, ref: Reference, step: str, outcome: str) -> None:
        if not self.policy.audit:
            return
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "user": _user(),
                 "pipeline": self.pipeline, "step": step, "reference": str(ref), "outcome": outcome}
        AUDIT_ENTRIES.append(entry)
        if self.policy.audit_log:
            with open(self.policy.audit_log, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(entry) + "\n")
        log.info("credential read %s", entry)


AUDIT_ENTRIES: list[dict[str, Any]] = []
_VAULT_TOKEN: dict[str, str] = {}


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001
        return "unknown"


def vault_client() -> Any:
    """An hvac client from ``VAULT_ADDR``/``VAULT_TOKEN``/``VAULT_NAMESPACE`` (or the kernel's login)."""
    import hvac

    addr = _VAULT_TOKEN.get("addr") or os.environ.get("VAULT_ADDR")
    token = _VAULT_TOKEN.get("token") or os.environ.get("VAULT_TOKEN")
    if not addr:
        raise CredentialError("no Vault address", code="VAULT_NOT_CONFIGURED",
                              hint="set VAULT_ADDR (and VAULT_TOKEN), or run %pipeline vault login")
    return hvac.Client(url=addr, token=token, namespace=os.environ.get("VAULT_NAMESPACE"))


def read_vault(client: Any, ref: Reference) -> str:
    """Reads one key from Vault KV (v2, falling back to v1): ``secret/pg`` is mount ``secret``, path ``pg``."""
    import hvac.exceptions as hexc
    import requests

    mount, _, path = ref.path.partition("/")
    if not path:
        mount, path = "secret", ref.path
    key = ref.key or "value"
    try:
        try:
            data = client.secrets.kv.v2.read_secret_version(path=path, mount_point=mount,
                                                            raise_on_deleted_version=True)["data"]["data"]
        except hexc.InvalidPath:
            raise
        except (hexc.InvalidRequest, hexc.UnsupportedOperation):
            data = client.secrets.kv.v1.read_secret(path=path, mount_point=mount)["data"]
    except hexc.InvalidPath:
        raise CredentialError(f"no secret at vault:{ref.path}", code="VAULT_NOT_FOUND",
                              hint="check the path (KV v2 paths omit 'data/')") from None
    except (hexc.Forbidden, hexc.Unauthorized):
        raise CredentialError(f"Vault refused access to vault:{ref.path}", code="VAULT_FORBIDDEN",
                              hint="your token may have expired: run %pipeline vault login") from None
    except (requests.exceptions.ConnectionError, hexc.VaultDown) as exc:
        raise CredentialError(f"Vault is unreachable: {type(exc).__name__}", code="VAULT_UNREACHABLE",
                              hint="check VAULT_ADDR and that Vault is running") from None
    if key not in data:
        raise CredentialError(f"vault:{ref.path} has no key '{key}' (keys: {', '.join(sorted(data))})",
                              code="VAULT_KEY_MISSING")
    return str(data[key])
