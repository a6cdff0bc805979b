"""A failure's cause chain, walked in one place: PySpark's converted causes and the JVM's own.

PySpark keeps a wrapped failure's causes as converted Python exceptions (``_cause``; 3.5:
``cause``) and the JVM exception itself (``_origin`` / ``java_exception``, classic sessions only). The
readable one-line cause (``root_cause``) and the retry verdict (``retry.transient_reason``)
both read the chain from here, and a failure's error condition (``condition``).
"""
from __future__ import annotations

import traceback
from typing import Any

#: how far a chain is followed (a cause that is its own cause ends it sooner)
DEPTH = 50


def is_spark_error(exc: BaseException) -> bool:
    """True for PySpark's own exceptions, whose text starts with their error condition."""
    return hasattr(exc, "getCondition") or hasattr(exc, "getErrorClass")


def condition(exc: BaseException) -> str | None:
    """A Spark failure's error condition (``TABLE_OR_VIEW_NOT_FOUND``), or None."""
    # Spark 4 names it a condition; 3.5 has only the error class (deprecated in 4, same value).
    for name in ("getCondition", "getErrorClass"):
        try:
            return getattr(exc, name)()
        except Exception:  # noqa: BLE001 - not a Spark error, or not this Spark's name for it
            continue
    return None


def session_conflict(exc: BaseException) -> bool:
    """True when a Spark Connect session was refused because a classic one runs in this process."""
    # Spark 3.5 raises a plain RuntimeError with this text; Spark 4 names the condition.
    return (condition(exc) == "SESSION_ALREADY_EXIST"
            or "is a regular Spark session already running" in str(exc))


def captured(exc: Any, name: str) -> Any:
    """A PySpark exception's own field (``cause``, ``desc``, ``stackTrace``), or None."""
    value = getattr(exc, "_" + name, None)  # Spark 4 keeps them private
    if value is None and is_spark_error(exc):
        value = getattr(exc, name, None)  # Spark 3.5
    return value


def innermost(exc: BaseException) -> Any:
    """The innermost of PySpark's converted causes (``exc`` itself when it wraps none)."""
    current: Any = exc
    for _ in range(DEPTH):
        cause = captured(current, "cause")
        if cause is None:
            break
        current = cause
    return current


def jvm_chain(exc: BaseException) -> list[Any] | None:
    """The JVM exception and its causes, outermost first (classic sessions), or None without one."""
    current = innermost(exc)
    java = (getattr(exc, "_origin", None) or getattr(exc, "java_exception", None)
            or getattr(current, "_origin", None) or getattr(current, "java_exception", None))
    if java is None:
        return None
    chain = []
    try:
        while java is not None and len(chain) < DEPTH:
            chain.append(java)
            nxt = java.getCause()
            java = None if nxt is None or nxt.equals(java) else nxt
    except Exception:  # noqa: BLE001 - a JVM that went away: what was read so far
        return chain or None
    return chain


def _first_line(text: Any) -> str:
    return (str(text or "").strip().splitlines() or [""])[0]


def _innermost_message(exc: BaseException) -> str | None:
    """The message of the innermost cause of a wrapped Spark failure, or None when not wrapped."""
    current = innermost(exc)
    chain = jvm_chain(exc)
    try:
        if chain and (len(chain) > 1 or current is not exc or not is_spark_error(exc)):
            java = chain[-1]
            message = _first_line(java.getMessage())
            # Spark's own messages start with their [CONDITION]; others need the class name.
            return message if message.startswith("[") else f"{java.getClass().getSimpleName()}: {message}"
    except Exception:  # noqa: BLE001 - fall back to the Python text
        pass
    if current is not exc:
        return _first_line(captured(current, "desc") or current)
    return None


def root_cause(exc: BaseException) -> tuple[str, str]:
    """One readable line for ``exc`` (the deepest JVM cause where there is one) and the full detail."""
    detail = "".join(traceback.format_exception(exc))
    jvm_trace = captured(exc, "stackTrace")
    if jvm_trace:
        detail += "\nJVM stack trace:\n" + str(jvm_trace)
    message = _innermost_message(exc)
    if message is not None:
        return message[:400], detail
    text = str(exc).strip() or type(exc).__name__
    first = text.splitlines()[0]
    if len(first) > 400:
        first = first[:400] + "…"
    if not is_spark_error(exc) and not isinstance(exc, (ValueError, KeyError)):
        first = f"{type(exc).__name__}: {first}"
    return first, detail
