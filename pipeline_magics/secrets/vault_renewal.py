"""Keeping the kernel's Vault token alive while a run needs it (streaming queries may run for days).

A run that reads Vault calls ``RENEWAL.touch()``; a daemon thread then renews the token
once less than half its lifetime is left, for a grace period and for as long as
``RENEWAL.busy()`` says a streaming pipeline of this kernel runs (the streaming registry
sets it, so this module needs nothing above the Vault session).
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

from .redaction import mask_text
from .vault_session import client, fmt_ttl

log = logging.getLogger("pipeline_magics.vault")


def renew_token(vault_client: Any, increment: int | None = None) -> int:
    """Renews the client's token; returns its new TTL in seconds."""
    kwargs = {"increment": f"{int(increment)}s"} if increment else {}
    auth = vault_client.auth.token.renew_self(**kwargs)["auth"]
    return int(auth.get("lease_duration") or 0)


class TokenRenewer:
    """Renews a token in a daemon thread while ``should_run()`` says so (e.g. while a streaming pipeline runs).

    ``client_factory`` is called on every check, so a new login is picked up. A
    token is renewed once less than half its lifetime (or two checks) is left.
    """

    def __init__(self, client_factory: Callable[[], Any], should_run: Callable[[], bool], *,
                 increment: int | None = None, poll: float = 1.0, max_wait: float = 300.0) -> None:
        self.client_factory = client_factory
        self.should_run = should_run
        self.increment = increment
        self.poll = poll
        self.max_wait = max_wait
        self.renewals = 0
        self.last_ttl: int | None = None
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> "TokenRenewer":
        if not self.running:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="pipeline-magics-vault-renewal", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def check(self) -> float | None:
        """Looks the token up, renews it if due; the seconds until the next check (None: stop)."""
        import hvac.exceptions as hexc

        c = self.client_factory()
        if not getattr(c, "token", None):
            return self.max_wait
        try:
            data = c.auth.token.lookup_self()["data"]
            ttl, creation = int(data.get("ttl") or 0), int(data.get("creation_ttl") or 0)
            if creation == 0 and not data.get("expire_time"):  # a token that never expires (root)
                self.last_ttl = 0
                return self.max_wait
            wait = min(self.max_wait, max(self.poll, ttl / 3))
            if data.get("renewable") and ttl <= max(creation / 2, 2 * wait):
                ttl = renew_token(c, self.increment)
                self.renewals += 1
                log.info("renewed the Vault token: %s left", fmt_ttl(ttl))
                wait = min(self.max_wait, max(self.poll, ttl / 3))
            self.last_ttl, self.last_error = ttl, None
            log.debug("Vault token: %s left, next check in %.1fs", fmt_ttl(ttl), wait)
            return wait
        except (hexc.Forbidden, hexc.Unauthorized):
            # nothing left to renew; the next read says "log in again", a new login restarts renewal
            self.last_error = "the token has expired or was revoked: log in again"
            log.warning("Vault token renewal stopped: %s", self.last_error)
            return None
        except Exception as exc:  # noqa: BLE001 - a failed renewal is retried, never fatal
            self.last_error = mask_text(f"{type(exc).__name__}: {exc}")
            log.warning("Vault token renewal failed: %s", self.last_error)
            return self.poll * 5

    def _loop(self) -> None:
        due = 0.0
        while not self._stop.is_set():
            try:
                if not self.should_run():
                    log.debug("Vault token renewal ends: no streaming pipeline runs")
                    break
                if time.monotonic() >= due:
                    wait = self.check()
                    if wait is None:
                        break
                    due = time.monotonic() + wait
            except Exception as exc:  # noqa: BLE001 - the thread must never die noisily
                self.last_error = mask_text(f"{type(exc).__name__}: {exc}")
                due = time.monotonic() + self.poll * 5
            self._stop.wait(self.poll)


class Renewal:
    """The kernel's renewal: started when a run reads Vault, running while streaming queries run."""

    #: after the last Vault read, how long renewal stays on even without a streaming run
    grace = 30.0
    poll = 1.0

    def __init__(self) -> None:
        #: True while a run that may read Vault later goes on (set by the streaming registry)
        self.busy: Callable[[], bool] = lambda: False
        self._hold_until = 0.0
        self._renewer: TokenRenewer | None = None
        self._lock = threading.Lock()

    def touch(self) -> None:
        """Called on each Vault read of a run: keeps renewal on for ``grace`` seconds, then while streaming."""
        with self._lock:
            self._hold_until = time.monotonic() + self.grace
            if self._renewer is None or not self._renewer.running:
                self._renewer = TokenRenewer(self._client, self._should_run, poll=self.poll).start()

    def _client(self) -> Any:
        return client()

    def _should_run(self) -> bool:
        if time.monotonic() < self._hold_until:
            return True
        try:
            return self.busy()
        except Exception:  # noqa: BLE001 - a query that does not answer keeps nothing alive
            return False

    @property
    def renewer(self) -> TokenRenewer | None:
        return self._renewer

    def stop(self) -> None:
        with self._lock:
            self._hold_until = 0.0
            if self._renewer is not None:
                self._renewer.stop()


RENEWAL = Renewal()
