"""Which settings are secrets, and how their values are kept out of text."""
from __future__ import annotations

import re
from typing import Any, Iterable

MASK = "***"

_SECRET_NAMES = {"password", "token", "secret", "sasl.jaas.config", "kafka.sasl.jaas.config"}
_SECRET_SUFFIXES = ("Password", "Secret", "Token")


def is_secret_key(key: str) -> bool:
    """True for settings whose values are credentials (SPEC section 3)."""
    return key in _SECRET_NAMES or key.endswith(_SECRET_SUFFIXES)


def redact(value: Any, key: str = "") -> Any:
    """A copy of a config with every secret literal replaced by ``***``.

    Credential references (``{vault: ...}``, ``{env: ...}``, ``vault:...``) are
    not secrets themselves and stay visible, so a reader can see where a value
    comes from.
    """
    if isinstance(value, dict):
        if set(value) <= {"vault", "key", "env", "mount"} and value:
            return dict(value)
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v, key) for v in value]
    if key and is_secret_key(key) and value is not None:
        if isinstance(value, str) and value.startswith("vault:"):
            return value
        return MASK
    if isinstance(value, str):
        return mask_url_password(value)
    return value


_URL_PASSWORD = re.compile(r"(?i)(password=)[^&;\s]+|(://[^:/@\s]+:)[^@/\s]+(@)")


def mask_url_password(text: str) -> str:
    """Masks ``password=...`` parameters and ``user:pass@`` parts of URLs."""
    def sub(m: re.Match[str]) -> str:
        if m.group(1):
            return m.group(1) + MASK
        return m.group(2) + MASK + m.group(3)
    return _URL_PASSWORD.sub(sub, text)


def mask_text(text: str, secrets: Iterable[str]) -> str:
    """Replaces every known secret value in ``text`` by ``***``."""
    for s in sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True):
        text = text.replace(s, MASK)
    return mask_url_password(text)
