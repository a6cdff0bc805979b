"""Resolving credential references for a run: Vault and the environment, cached for that run only.

A config value may be ``{vault: PATH, key: KEY}``, ``"vault:PATH#KEY"`` or
``{env: NAME}`` (``mount:`` names a KV mount whose path has slashes; see
:mod:`.references`). References are resolved at run time only, cached for that one
run, and every resolved value is registered for masking (:mod:`.redaction`) so no
message, log line or export can show it. The policy is :mod:`.policy`, the audit log
:mod:`.audit`, logging in to Vault :mod:`.vault`.
"""
from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Mapping

from .audit import AUDIT_ENTRIES, audit, audit_command, audit_text  # noqa: F401  (re-exported)
from ..errors import CredentialError
from .policy import SecurityPolicy
from .redaction import register_secret
from .references import (Path, Reference, _replace, _setting, as_reference, placeholders,  # noqa: F401
                         references, walk)
from .vault_renewal import RENEWAL
from .vault_session import client, token_state

log = logging.getLogger("pipeline_magics.credentials")

DEFAULT_MOUNT = "secret"


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
        if self.vault_client is None:
            self.vault_client = client()
        RENEWAL.touch()  # a streaming run keeps the token alive while its queries run
        return self.vault_client

    def _audit(self, ref: Reference, step: str, outcome: str) -> None:
        if self.policy.audit:
            audit(self.policy, pipeline=self.pipeline, step=step, reference=str(ref), outcome=outcome)

    def __repr__(self) -> str:
        return f"<Resolver {self.pipeline or '-'}: {len(self._cache)} credentials resolved>"


def vault_client() -> Any:
    """An hvac client for the kernel's Vault login, else ``VAULT_ADDR``/``VAULT_TOKEN``/``VAULT_NAMESPACE``."""
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
