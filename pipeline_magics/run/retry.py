"""Which failures are worth retrying, and how often a step is tried.

A failure is transient when the service was not there just now: PostgreSQL
refusing connections, shutting down or starting (SQLSTATE class 08, 57P01-57P03),
a Kafka broker restarting (Kafka's ``RetriableException`` family: timeouts waiting
for a node or for metadata, leader changes, network errors), a socket refused,
reset or timed out, Vault unreachable. Everything else (bad SQL, a missing
column or table, a wrong password, bad data) fails at once: retrying it would
only repeat it.

Where there is a JVM exception (classic sessions) its cause chain is read:
classes, their superclasses and the SQLSTATE of SQL exceptions decide. Where
there is none (Spark Connect), the text is matched against the messages those
same exceptions carry (captured from the real services in ``tests/test_faults.py``).
"""
from __future__ import annotations

import random
import re
from typing import Any

from ..spark.causes import condition, jvm_chain
from .. import config
from ..errors import CredentialError, PipelineError
from ..methods import METHODS
from ..spec.model import RetryPolicy

#: The retry of a step without a ``retry`` setting that talks to a service (see ``policy_for``).
DEFAULT_RETRY = RetryPolicy(attempts=3, backoffSeconds=1.0)
NO_RETRY = RetryPolicy(attempts=1, backoffSeconds=0.0)

#: SQLSTATEs worth a retry: connection exceptions (class 08), admin/crash shutdown and "cannot
#: connect now" (57P01-57P03), too many connections, serialization failure, deadlock.
TRANSIENT_SQLSTATES = ("08", "57P01", "57P02", "57P03", "53300", "40001", "40P01")

#: JVM classes (the class itself or any superclass) that mean "not reachable just now".
TRANSIENT_CLASSES = frozenset({
    "java.net.ConnectException", "java.net.SocketTimeoutException", "java.net.NoRouteToHostException",
    "java.net.SocketException",  # connection reset, broken pipe
    "org.apache.kafka.common.errors.RetriableException",  # timeouts, leader not available, network errors
    "org.apache.kafka.common.errors.DisconnectException",
    "java.sql.SQLTransientConnectionException",
})

#: JVM classes that are never retried, whatever their cause chain says.
PERMANENT_CLASSES = frozenset({
    "org.apache.spark.sql.AnalysisException", "org.apache.spark.sql.catalyst.parser.ParseException",
    "org.apache.kafka.common.errors.AuthenticationException", "org.apache.kafka.common.errors.AuthorizationException",
    "org.apache.kafka.common.errors.InvalidTopicException", "org.apache.kafka.common.errors.RecordTooLargeException",
})

#: The same failures as text, for exceptions without a JVM object (Spark Connect, plain Python).
_TRANSIENT_TEXT = re.compile(
    r"Connection refused|Connection to \S+ refused|Connection reset|Broken pipe|No route to host|"
    r"connect timed out|Read timed out|SocketTimeoutException|"
    r"This connection has been closed|An I/O error occurred while sending to the backend|"
    r"terminating connection due to administrator command|"
    r"the database system is (?:starting up|shutting down|in recovery mode|not yet accepting connections)|"
    r"sorry, too many clients already|could not serialize access due to|deadlock detected|"
    r"Timed out waiting for a node assignment|not present in metadata after \d+ ?ms|"
    r"LEADER_NOT_AVAILABLE|NOT_LEADER_OR_FOLLOWER|NOT_ENOUGH_REPLICAS|NetworkException|DisconnectException|"
    r"Broker may not be available")

#: Spark conditions of an AnalysisException that only wraps a failed connection (Spark 4.2 reports a
#: JDBC source it cannot reach while resolving its schema so): its cause chain judges.
CONNECTION_CONDITIONS = frozenset({"FAILED_JDBC.CONNECTION"})

#: Analysis and parse failures, by the condition Spark gives them (never retried).
_PERMANENT_TEXT = re.compile(
    r"\[(?:UNRESOLVED_\w+|PARSE_SYNTAX_ERROR|TABLE_OR_VIEW_NOT_FOUND|TABLE_OR_VIEW_ALREADY_EXISTS|"
    r"DATATYPE_MISMATCH\w*|PATH_NOT_FOUND|PATH_ALREADY_EXISTS|SCHEMA_NOT_FOUND|COLUMN_ALREADY_EXISTS|"
    r"AMBIGUOUS_\w+|INVALID_\w+|MISSING_\w+)[.\]]|AnalysisException|ParseException")


def is_transient(exc: BaseException) -> bool:
    """True for failures worth retrying (a service unreachable just now), never for bad SQL, schema or data."""
    return transient_reason(exc) is not None


def transient_reason(exc: BaseException) -> str | None:
    """Why ``exc`` is worth a retry (a short phrase for the log), or None when it is not."""
    if isinstance(exc, PipelineError):
        if isinstance(exc, CredentialError) and exc.code == "VAULT_UNREACHABLE":
            return "Vault unreachable"
        return None
    if isinstance(exc, (ConnectionError, TimeoutError)):  # Python's own: refused, reset, timed out
        return type(exc).__name__
    wrapper = condition(exc) in CONNECTION_CONDITIONS
    if not wrapper and ("AnalysisException" in type(exc).__name__ or "ParseException" in type(exc).__name__):
        return None
    chain = _chain_links(exc)
    if wrapper and chain:
        chain = chain[1:]  # the wrapping AnalysisException judges nothing; its cause does
    if chain is not None:
        return _chain_reason(chain)
    text = str(exc)
    if _PERMANENT_TEXT.search(text.split("\n", 1)[0]):
        return None
    found = _TRANSIENT_TEXT.search(text)
    return found.group(0) if found else None


def _chain_reason(chain: list[tuple[set[str], str | None, str]]) -> str | None:
    """The verdict on a JVM cause chain: (class names incl. superclasses, SQLSTATE, message) per link."""
    reason = None
    for classes, state, _message in chain:
        if classes & PERMANENT_CLASSES:
            return None
        if state:
            if not state.startswith(TRANSIENT_SQLSTATES):
                return None  # PostgreSQL said what is wrong: bad SQL, no such table, wrong password …
            reason = reason or f"SQLSTATE {state}"
        hit = classes & TRANSIENT_CLASSES
        if hit and reason is None:
            reason = sorted(hit)[0].rsplit(".", 1)[-1]
    if reason is None:  # classes we do not know (a wrapper's own): their messages may still tell
        for _, _, message in chain:
            found = _TRANSIENT_TEXT.search(message)
            if found:
                return found.group(0)
    return reason


def _chain_links(exc: BaseException) -> list[tuple[set[str], str | None, str]] | None:
    """The JVM cause chain (``causes.jvm_chain``) as (class names incl. superclasses, SQLSTATE, message)
    per link, or None when there is no JVM object."""
    chain = jvm_chain(exc)
    if chain is None:
        return None
    links = []
    try:
        for java in chain:
            classes, cls = set(), java.getClass()
            while cls is not None and len(classes) < 20:
                classes.add(str(cls.getName()))
                cls = cls.getSuperclass()
            state = None
            if "java.sql.SQLException" in classes:
                state = str(java.getSQLState() or "") or None
            # Only a database's SQLSTATE judges: Spark's own (in its messages) names Spark's
            # condition, e.g. a write that failed, not why it failed.
            links.append((classes, state, str(java.getMessage() or "")))
    except Exception:  # noqa: BLE001 - a JVM that went away: judge by the text instead
        return None
    return links


def policy_for(step: Any, mode: str) -> RetryPolicy:
    """How often the step's method is tried: its ``retry``, else ``DEFAULT_RETRY`` for batch steps
    whose method is registered as ``retried`` (it talks to a service), else once."""
    if step.retry is not None:
        return step.retry
    method = METHODS.get((step.type, step.method))
    return DEFAULT_RETRY if mode == "batch" and method is not None and method.retried else NO_RETRY


def resolve_policy(step: Any) -> RetryPolicy:
    """How often the step's credential references are read: its ``retry``, else ``DEFAULT_RETRY``.

    Always safe: nothing of the step has run while its settings are being resolved.
    """
    return step.retry if step.retry is not None else DEFAULT_RETRY


def backoff_delay(policy: RetryPolicy, attempt: int, rand: Any = random.random, scale: float | None = None) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1-based): exponential, with +-50% jitter, times
    ``scale`` (default: the ``retry_backoff_scale`` setting, 1; the test suite shortens back-offs with it)."""
    scale = config.number("retry_backoff_scale") if scale is None else scale
    return policy.backoffSeconds * (2 ** (attempt - 1)) * (0.5 + rand()) * scale
