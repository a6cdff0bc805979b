"""Which settings are secrets, and how their values are kept out of text.

Two layers: :func:`redact` hides secret *settings* of a config by name (for
``explain``, errors, ``repr``), and :func:`mask_text` hides secret *values*
wherever they turn up in text (a JVM message that echoes a JDBC option, a log
line). Every value resolved from Vault or the environment, and the kernel's
Vault token, is registered with :func:`register_secret`; from then on every
log record of the process is masked as it is made.
"""
from __future__ import annotations

import json
import logging
import re
import threading
import traceback
from typing import Any, Iterable
from urllib.parse import quote, quote_plus

from .references import as_reference

MASK = "***"
#: Shorter values are not masked in free text: they would blank out ordinary words and digits.
MIN_MASKED = 3

_SECRET_NAMES = {"password", "passwd", "token", "secret", "sasl.jaas.config", "kafka.sasl.jaas.config",
                 "client_secret", "secret_id", "secretid", "private_key", "privatekey"}
_SECRET_SUFFIXES = ("Password", "Secret", "Token", ".password", ".secret", ".token", ".secret.key",
                    "sasl.jaas.config", "_password", "_secret", "_token")


def is_secret_key(key: str) -> bool:
    """True for settings whose values are credentials (SPEC section 3)."""
    return key.lower() in _SECRET_NAMES or key.endswith(_SECRET_SUFFIXES)


def redact(value: Any, key: str = "") -> Any:
    """A copy of a config with every secret literal replaced by ``***``.

    Credential references (``{vault: ...}``, ``{env: ...}``, ``vault:...``) are
    not secrets themselves and stay visible, so a reader can see where a value
    comes from. Known secret values and URL passwords are masked in any string.
    """
    if as_reference(value) is not None:
        return dict(value) if isinstance(value, dict) else value
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v, key) for v in value]
    if key and is_secret_key(key) and value is not None:
        return MASK
    if isinstance(value, str):
        return mask_text(value)
    return value


_URL_PASSWORD = re.compile(r"(?i)((?:password|passwd|pwd)=)[^&;\s]+|(://[^:/@\s]+:)[^@/\s]+(@)")


def mask_url_password(text: str) -> str:
    """Masks ``password=...`` parameters and ``user:pass@`` parts of URLs."""
    def sub(m: re.Match[str]) -> str:
        if m.group(1):
            return m.group(1) + MASK
        return m.group(2) + MASK + m.group(3)
    return _URL_PASSWORD.sub(sub, text)


def has_url_password(text: str) -> bool:
    """True when ``text`` holds a ``password=`` parameter or a ``user:pass@`` URL part."""
    return bool(_URL_PASSWORD.search(text))


# ---------------------------------------------------------- known secret values


class SecretRegistry:
    """The secret values known to this process, with the forms text may carry them in."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._forms: list[str] = []
        self._lock = threading.Lock()

    def add(self, value: str) -> None:
        if not isinstance(value, str) or len(value) < MIN_MASKED:
            return
        with self._lock:
            if value in self._values:
                return
            self._values.add(value)
            forms = set(self._forms) | _forms(value)
            self._forms = sorted(forms, key=len, reverse=True)
        install_log_masking()

    def forms(self) -> list[str]:
        return self._forms

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"<SecretRegistry: {len(self._values)} values>"


def _forms(value: str) -> set[str]:
    """``value`` as written, URL-encoded and JSON-escaped: how Spark and drivers may echo it."""
    forms = {value, quote(value, safe=""), quote_plus(value, safe=""), json.dumps(value)[1:-1],
             value.replace("'", "''")}
    return {f for f in forms if len(f) >= MIN_MASKED}


#: The process-wide registry (a kernel's memory: it is never written anywhere).
SECRETS = SecretRegistry()


def register_secret(value: Any) -> None:
    """Remembers ``value`` so every later message and log line masks it."""
    if isinstance(value, str):
        SECRETS.add(value)


def mask_text(text: str, secrets: Iterable[str] = ()) -> str:
    """Replaces every known secret value (``secrets`` and the registered ones) in ``text`` by ``***``."""
    if not isinstance(text, str):
        return text
    extra = {f for s in secrets if isinstance(s, str) and len(s) >= MIN_MASKED for f in _forms(s)}
    forms = sorted(extra, key=len, reverse=True) + SECRETS.forms() if extra else SECRETS.forms()
    for s in forms:
        if s in text:
            text = text.replace(s, MASK)
    return mask_url_password(text)


# ------------------------------------------------------------------- logging

_installed = False
_install_lock = threading.Lock()


def install_log_masking() -> None:
    """Masks known secrets in every log record made from now on (any logger, py4j included)."""
    global _installed
    with _install_lock:
        if _installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            if len(SECRETS):
                _mask_record(record)
            return record

        logging.setLogRecordFactory(factory)
        _installed = True


def _mask_record(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a bad format string is the logger's problem, not ours
        return
    masked = mask_text(message)
    if masked != message:
        record.msg, record.args = masked, None
    if record.exc_info and not record.exc_text:
        text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        record.exc_text = mask_text(text)
        if record.exc_text != text:
            # Formatters that read the exception itself (pyspark's JSONFormatter does) would show it:
            # they get the masked text only.
            record.exc_info = None
