"""The audit log of credential events: who read which reference, when, with what outcome (never a value)."""
from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import threading
import time
from typing import Any

from ..errors import CredentialError
from .policy import SecurityPolicy
from .vault_session import SESSION

log = logging.getLogger("pipeline_magics.credentials")

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


def arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Adds ``audit [--pipeline NAME] [--last N] [--json]``'s arguments to ``parser``."""
    parser.add_argument("--pipeline", metavar="NAME", help="only this pipeline's reads")
    parser.add_argument("--last", type=int, metavar="N", help="only the last N reads")
    parser.add_argument("--json", action="store_true", help="one JSON object a line")
    return parser


def audit_command(args: argparse.Namespace, policy: SecurityPolicy | None = None) -> str:
    """``%pipeline audit [--pipeline NAME] [--last N] [--json]``: this kernel's audit entries."""
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
