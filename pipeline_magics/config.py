"""Every ``PIPELINE_*`` setting, read in one place.

Each setting has a name (also a traitlet of the magics class, so ``%config PipelineMagics.graph =
'text'`` works), an environment variable, a default and a meaning. Its value is, first found:
the value the magic pushed for this kernel (:func:`override`, from ``%config``), the environment
variable, the default. Values are strings (``None`` when unset and without default); the modules
that use a setting check it. Nothing here imports IPython or Spark.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Iterator, Mapping

_OFF = ("0", "false", "no", "off")


@dataclass(frozen=True)
class Setting:
    """One setting: its name, its environment variable, its default and what it does."""

    name: str
    variable: str
    default: str | None
    meaning: str
    flag: bool = False  # true/false (its traitlet is a Bool)


SETTINGS: tuple[Setting, ...] = (
    Setting("security_policy", "PIPELINE_SECURITY_POLICY", "default",
            "credential policy: strict (Vault references only, no plaintext, audited), default, permissive"),
    Setting("vault_only", "PIPELINE_VAULT_ONLY", None,
            "accept only vault: references for secrets (default: from the policy)", flag=True),
    Setting("allow_plaintext", "PIPELINE_ALLOW_PLAINTEXT", None,
            "accept a literal secret written in a spec (default: from the policy)", flag=True),
    Setting("audit_credentials", "PIPELINE_AUDIT_CREDENTIALS", None,
            "record every credential read in the audit (default: from the policy)", flag=True),
    Setting("audit_log", "PIPELINE_AUDIT_LOG", None, "file the credential audit is appended to (JSON lines)"),
    Setting("checkpoint_root", "PIPELINE_CHECKPOINT_ROOT", None,
            "folder of streaming checkpoints (<root>/<pipeline>/<step>); default: the session's "
            "spark.sql.streaming.checkpointLocation, else ~/.pipeline_magics/checkpoints"),
    Setting("sandbox", "PIPELINE_SANDBOX", "~/.pipeline_magics/sandbox",
            "folder of the sandbox tables --sandbox writes instead of the real targets (<folder>/<pipeline>/<step>)"),
    Setting("graph", "PIPELINE_GRAPH", "auto", "how pipelines are drawn: auto, svg, mermaid or text"),
    Setting("widgets", "PIPELINE_WIDGETS", "1", "live widgets in a kernel with a widget frontend (0 turns them off)",
            flag=True),
    Setting("live_view", "PIPELINE_LIVE_VIEW", "1",
            "the live view of a running cell (0: the cell shows its result only; the Vault form keeps its widgets)",
            flag=True),
    Setting("spark_master", "PIPELINE_SPARK_MASTER", "local[*]",
            "master of the session the magic creates when there is none (an sc:// address means Spark Connect)"),
    Setting("spark_remote", "PIPELINE_SPARK_REMOTE", None,
            "Spark Connect server to use (sc://host:port); else $SPARK_REMOTE"),
    Setting("spark_log_level", "PIPELINE_SPARK_LOG_LEVEL", "ERROR", "log level of a session the magic creates"),
    Setting("timezone", "PIPELINE_TIMEZONE", "UTC", "spark.sql.session.timeZone of a session the magic creates"),
    Setting("jars_dir", "PIPELINE_JARS_DIR", None,
            "folder of the Delta, Kafka and JDBC jars (default: <python prefix>/share/pipeline_magics/jars/<spark version>)"),
    Setting("jars_cache", "PIPELINE_JARS_CACHE", "~/.cache/pipeline_magics",
            "private Maven and Ivy caches the jars are fetched through (~/.m2 and ~/.ivy2 are never used)"),
    Setting("history", "PIPELINE_HISTORY", "~/.pipeline_magics/history",
            "folder of the run history (one JSON-lines file per run); none turns it off"),
    Setting("lineage", "PIPELINE_LINEAGE", None,
            "OpenLineage events of every run: console or file:PATH (off: none); unset: on only when the client's "
            "OPENLINEAGE_URL or OPENLINEAGE_CONFIG is set"),
    Setting("lineage_namespace", "PIPELINE_LINEAGE_NAMESPACE", "pipeline_magics",
            "the OpenLineage namespace of the pipelines' jobs (the job's name is the pipeline's)"),
    Setting("retry_backoff_scale", "PIPELINE_RETRY_BACKOFF_SCALE", "1",
            "multiplies every retry back-off (the test suite sets 0.1: same attempts, less waiting)"),
)

BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}

#: Variables other tools own that pipeline_magics reads (credential ``env:`` references aside), and why.
OUTSIDE = {
    "SPARK_LOCAL_IP": "the address a created session's driver (and the SDP runner's Connect server) binds to",
    "SPARK_REMOTE": "Spark Connect's own variable: the server when PIPELINE_SPARK_REMOTE is not set",
    "PYSPARK_GATEWAY_PORT": "set when the process was started by spark-submit: its JVM is already running",
    "JAVA_HOME": "the Java a local Spark starts with (else java on PATH)",
    "PATH": "where java and mvn are looked for",
    "VAULT_ADDR": "Vault's address until %pipeline vault login names one",
    "VAULT_TOKEN": "Vault's token until %pipeline vault login",
    "VAULT_NAMESPACE": "Vault Enterprise namespace",
    "OPENLINEAGE_URL": "the OpenLineage client's own server address: lineage events on (PIPELINE_LINEAGE unset)",
    "OPENLINEAGE_CONFIG": "the OpenLineage client's own configuration file: lineage events on (PIPELINE_LINEAGE unset)",
}

#: values set for this kernel (``%config PipelineMagics.<name> = ...``), by setting name
_overrides: dict[str, str] = {}


def value(name: str, env: Mapping[str, str] | None = None) -> str | None:
    """The setting's value: this kernel's override, else its environment variable, else its default."""
    setting = BY_NAME[name]
    if name in _overrides:
        return _overrides[name]
    env = os.environ if env is None else env
    found = env.get(setting.variable)
    return setting.default if found is None else found


def outside(name: str, env: Mapping[str, str] | None = None) -> str | None:
    """One of the :data:`OUTSIDE` variables (other tools' own), or None when unset or empty."""
    if name not in OUTSIDE:
        raise KeyError(f"{name} is not one of the outside variables pipeline_magics reads")
    return (os.environ if env is None else env).get(name) or None


@contextlib.contextmanager
def temporarily(variable: str, new: str) -> Iterator[None]:
    """Sets an environment variable of another tool for the duration of a block (pyspark reads some)."""
    previous = os.environ.get(variable)
    os.environ[variable] = new
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(variable, None)
        else:
            os.environ[variable] = previous


def enabled(name: str) -> bool:
    """A true/false setting read leniently (anything but 0/false/no/off is on; unset is its default)."""
    found = value(name)
    return found is not None and found.strip().lower() not in _OFF


def number(name: str) -> float:
    """A numeric setting; a value that is not a number counts as its default."""
    try:
        return float(value(name) or "")
    except ValueError:
        return float(BY_NAME[name].default or 0)


def environ(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``{variable: value}`` of the settings that are set (overridden or in the environment), no defaults."""
    env = os.environ if env is None else env
    out = {s.variable: env[s.variable] for s in SETTINGS if s.variable in env}
    out.update({BY_NAME[name].variable: v for name, v in _overrides.items()})
    return out


def override(name: str, new: object) -> None:
    """Sets a setting for this kernel (``None`` goes back to the environment); booleans become true/false."""
    if name not in BY_NAME:
        raise KeyError(f"unknown setting {name!r}; known: {', '.join(BY_NAME)}")
    if new is None:
        _overrides.pop(name, None)
    elif isinstance(new, bool):
        _overrides[name] = "true" if new else "false"
    else:
        _overrides[name] = str(new)


def table() -> str:
    """The settings as a Markdown table (the README holds this one)."""
    rows = ["| Variable | `%config PipelineMagics.` | Default | Meaning |", "|---|---|---|---|"]
    rows += [f"| `{s.variable}` | `{s.name}` | {f'`{s.default}`' if s.default is not None else '-'} | {s.meaning} |"
             for s in SETTINGS]
    return "\n".join(rows)
