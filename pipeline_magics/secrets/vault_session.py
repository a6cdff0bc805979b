"""The kernel's Vault session: address, namespace and token, and a client for them.

The token lives in :data:`SESSION`, in this process's memory only: no function returns
it, no ``repr`` shows it, and it is registered for masking so no log line carries it.
Logging in and out is :mod:`.vault`; renewal :mod:`.vault_renewal`.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from .. import config
from ..errors import CredentialError
from .redaction import register_secret


@dataclass
class Session:
    """The kernel's Vault connection: address, namespace and the token of the last login."""

    addr: str | None = None
    namespace: str | None = None
    token: str | None = field(default=None, repr=False)
    method: str | None = None
    identity: str | None = None
    #: False after ``logout``: ``VAULT_TOKEN`` is ignored until the next login
    use_env: bool = True
    #: the token came from a login (so logout revokes it), not from the user
    issued: bool = False

    def clear(self) -> None:
        self.token, self.method, self.identity, self.issued = None, None, None, False


SESSION = Session()
_LOCK = threading.RLock()


def address(addr: str | None = None) -> str | None:
    """The Vault address: ``addr``, else the last login's, else ``VAULT_ADDR``."""
    return (addr or SESSION.addr or config.outside("VAULT_ADDR") or "").rstrip("/") or None


def _namespace(namespace: str | None = None) -> str | None:
    return namespace or SESSION.namespace or config.outside("VAULT_NAMESPACE") or None


def current_token() -> tuple[str | None, str]:
    """The token requests use now and where it comes from: ``login``, ``VAULT_TOKEN`` or ``none``."""
    with _LOCK:
        if SESSION.token:
            return SESSION.token, "login"
        token = config.outside("VAULT_TOKEN") if SESSION.use_env else None
        if token:
            register_secret(token)
            return token, "VAULT_TOKEN"
        return None, "none"


def client(addr: str | None = None, token: str | None = None, namespace: str | None = None) -> Any:
    """An hvac client for the kernel's Vault (its login token, else ``VAULT_TOKEN``)."""
    import hvac

    url = address(addr)
    if not url:
        raise CredentialError("no Vault address", code="VAULT_NOT_CONFIGURED",
                              hint="set VAULT_ADDR (and VAULT_TOKEN), or run %pipeline vault login")
    return hvac.Client(url=url, token=token if token is not None else current_token()[0],
                       namespace=_namespace(namespace), timeout=30)


def token_state(vault_client: Any) -> str:
    """``valid``, ``invalid`` (expired, revoked or unknown) or ``missing`` for a client's token."""
    import hvac.exceptions as hexc

    if not getattr(vault_client, "token", None):
        return "missing"
    try:
        vault_client.auth.token.lookup_self()
        return "valid"
    except (hexc.Forbidden, hexc.Unauthorized, hexc.InvalidRequest):
        return "invalid"
    except Exception:  # noqa: BLE001 - unreachable: say nothing certain
        return "unknown"


def fmt_ttl(seconds: int) -> str:
    """``3725`` -> ``1h 2m 5s``."""
    h, rest = divmod(int(seconds), 3600)
    m, s = divmod(rest, 60)
    return " ".join(f"{v}{u}" for v, u in ((h, "h"), (m, "m"), (s, "s")) if v) or "0s"
