"""Credential references: ``{vault: PATH, key: KEY}``, ``"vault:PATH#KEY"`` or ``{env: NAME}``.

Whether a config value is a reference is answered here only (:func:`as_reference`); the
policy, the resolver, redaction and the graph all ask this module.
"""
from __future__ import annotations

import typing
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator, Mapping

from pydantic import TypeAdapter, ValidationError

Path = tuple[Any, ...]


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
