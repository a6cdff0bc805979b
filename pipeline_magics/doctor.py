"""``%pipeline doctor`` and ``python -m pipeline_magics doctor``: what the extension depends on, one row each.

Every row says what was found, whether it is fine, and when it is not, the fix. Nothing here
starts a JVM unless asked (``spark=True``): the checks read package metadata, run ``java
-version``, and knock on the Spark Connect and Vault ports, so the whole table takes a second
or two. Nothing here imports IPython: the notebook adds its own row (the widget frontend).
"""
from __future__ import annotations

import html
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import sys
import tempfile
from dataclasses import dataclass
from typing import Any, Callable

from .errors import PipelineError
from .secrets import vault
from .spark import jars as spark_jars
from .spark.environment import answers, host_port, pyspark_module, require_java
from .spark.session import active_session, get_session, jvm_log, remote_url
from .spark.kind import is_connect
from .spark.versions import local_line, spark_home, spark_line
from .run import history

#: the packages the extension imports, and why a missing one matters
PACKAGES = ("ipython", "ipywidgets", "pydantic", "pandas", "pyarrow", "PyYAML", "hvac", "prometheus_client")
STATES = {"ok": "✔", "warn": "!", "fail": "✘", "info": "·"}
COLOURS = {"ok": "#2e7d32", "warn": "#b26a00", "fail": "#c62828", "info": "#555"}


@dataclass(frozen=True)
class Check:
    """One row: what was checked, its state (ok, warn, fail, info), what was found, and the fix."""

    name: str
    state: str
    found: str
    fix: str = ""
    required: bool = False

    @property
    def failed(self) -> bool:
        return self.state == "fail" and self.required


@dataclass(frozen=True)
class Report:
    """The doctor's table; ``ok`` is False when something required failed."""

    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return not any(c.failed for c in self.checks)

    def to_text(self) -> str:
        width = max(len(c.name) for c in self.checks)
        lines = []
        for c in self.checks:
            lines.append(f"{STATES[c.state]} {c.name:<{width}}  {c.found}")
            if c.fix and c.state in ("warn", "fail"):
                lines.append(f"  {'':<{width}}  fix: {c.fix}")
        lines.append("everything required is in place" if self.ok else "something required is missing (✘ above)")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.to_text()

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td style='color:{COLOURS[c.state]};font-weight:bold'>{STATES[c.state]}</td>"
            f"<td style='text-align:left'>{html.escape(c.name)}</td>"
            f"<td style='text-align:left'>{html.escape(c.found)}</td>"
            f"<td style='text-align:left'>{html.escape(c.fix) if c.state in ('warn', 'fail') else ''}</td></tr>"
            for c in self.checks)
        return ("<table><thead><tr><th></th><th style='text-align:left'>check</th><th style='text-align:left'>found"
                f"</th><th style='text-align:left'>fix</th></tr></thead><tbody>{rows}</tbody></table>")

    def to_frame(self) -> Any:
        import pandas as pd

        return pd.DataFrame([c.__dict__ for c in self.checks])


def _guard(name: str, check: Callable[[], Check], required: bool = False) -> Check:
    """Runs one check; an error it raises becomes its row (a PipelineError's hint is the fix)."""
    try:
        return check()
    except PipelineError as exc:
        return Check(name, "fail", f"{exc.code}: {exc.message}", exc.hint or "", required)
    except Exception as exc:  # noqa: BLE001 - a check that breaks is a row, never a broken table
        return Check(name, "fail", f"{type(exc).__name__}: {exc}", "", required)


def _python() -> Check:
    try:
        version = importlib.metadata.version("pipeline_magics")
    except importlib.metadata.PackageNotFoundError:
        version = "(not installed: imported from its folder)"
    where = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return Check("python", "ok", f"Python {platform.python_version()} ({sys.executable}); pipeline_magics "
                 f"{version} from {where}")


def _packages() -> Check:
    found, missing = [], []
    for name in PACKAGES:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
    if missing:
        return Check("packages", "fail", "missing: " + ", ".join(missing), "pip install pipeline_magics again "
                     f"(it brings {', '.join(missing)})", required=True)
    return Check("packages", "ok", ", ".join(found))


def _pyspark() -> Check:
    module = pyspark_module()
    kind = "classic, with a local Spark" if spark_home() else "pyspark-client: Spark Connect only"
    try:
        local_line() if spark_home() else spark_line(module.__version__)
    except PipelineError as exc:
        return Check("pyspark", "fail", f"{module.__version__} ({kind}): {exc.message}", exc.hint or "", True)
    return Check("pyspark", "ok", f"{module.__version__} ({kind})")


def _no_pyspark(name: str) -> Check | None:
    """The row of a check that needs pyspark, when there is none."""
    if importlib.util.find_spec("pyspark") is None:
        return Check(name, "info", "needs pyspark first")
    return None


def _java() -> Check:
    if (missing := _no_pyspark("java")) is not None:
        return missing
    if spark_home() is None:
        return Check("java", "info", "not needed: this pyspark only talks to a Spark Connect server")
    line = local_line()
    java = require_java(line.java, pyspark_module().__version__)
    return Check("java", "ok", f"Java {java.version} ({java.path}); Spark {line.line} needs {line.java}+")


def _jars() -> Check:
    if (missing := _no_pyspark("jars")) is not None:
        return missing
    if spark_home() is None:
        return Check("jars", "info", "the Spark Connect server brings its own")
    jars = spark_jars.local_jars()
    if jars:
        return Check("jars", "ok", f"{len(jars)} jars for Spark {pyspark_module().__version__} in "
                     f"{os.path.dirname(jars[0])}")
    how = "Maven" if shutil.which("mvn") else "Spark's Ivy (no mvn on PATH)"
    return Check("jars", "warn", f"none fetched for Spark {pyspark_module().__version__}: the first session "
                 f"fetches them with {how}, which needs Maven Central", f"run {spark_jars.FETCH_COMMAND} now")


def _maven_cache() -> Check:
    """Folders of ~/.m2 (the JVM's user.home) holding a .pom and no .jar for an artifact our jars need:
    Spark's own Ivy resolution (spark.jars.packages) fails on them, in the user's code too."""
    import pwd

    home = os.path.join(pwd.getpwuid(os.getuid()).pw_dir, ".m2", "repository")
    ours = spark_jars.cache_dir("maven")
    if not os.path.isdir(home):
        return Check("~/.m2", "ok", "no Maven cache (pipeline_magics uses its own)")
    broken = []
    for folder, _, files in os.walk(ours):
        poms = [f for f in files if f.endswith(".pom")]
        theirs = os.path.join(home, os.path.relpath(folder, ours))
        if not poms or not os.path.isdir(theirs):
            continue
        with open(os.path.join(folder, poms[0]), encoding="utf-8", errors="replace") as fh:
            if "<packaging>pom</packaging>" in fh.read():
                continue  # a parent or BOM: no jar belongs there
        held = os.listdir(theirs)
        if any(f.endswith(".pom") for f in held) and not any(f.endswith(".jar") for f in held):
            broken.append(theirs)
    if not broken:
        return Check("~/.m2", "ok", "no folder that would break Spark's spark.jars.packages")
    return Check("~/.m2", "warn", f"{len(broken)} folders hold a .pom and no .jar; Spark's spark.jars.packages "
                 "(e.g. Delta's configure_spark_with_delta_pip, not pipeline_magics) fails when it needs one: "
                 + ", ".join(broken[:3]) + (", …" if len(broken) > 3 else ""),
                 "remove those folders (rm -r); Maven or Spark fetches them again whole")


def _session(start: bool) -> Callable[[], Check]:
    def check() -> Check:
        if (missing := _no_pyspark("session")) is not None:
            return missing
        spark = get_session() if start else active_session()
        if spark is None:
            return Check("session", "info", "none yet: the first %%pipeline cell starts one (doctor --spark starts "
                         "it now)")
        if is_connect(spark):
            return Check("session", "ok", f"Spark Connect, Spark {spark.version}")
        conf = spark.sparkContext.getConf()
        return Check("session", "ok", f"classic, Spark {spark.version}, master {conf.get('spark.master')}; "
                     f"the JVM of a session pipeline_magics started writes to {jvm_log()}")
    return check


def _connect() -> Check:
    url = remote_url()
    if not url:
        return Check("spark connect", "info", "no server named (PIPELINE_SPARK_REMOTE, SPARK_REMOTE)")
    if url.startswith("local"):
        return Check("spark connect", "info", f"{url}: a server is started in this process")
    host, port = host_port(url, 15002)
    if answers(host, port, timeout=1.5):
        return Check("spark connect", "ok", f"{url} answers")
    return Check("spark connect", "fail", f"{url} does not answer", "start the Spark Connect server, or fix "
                 "PIPELINE_SPARK_REMOTE / SPARK_REMOTE", required=True)


def _vault() -> Check:
    addr = vault.address()
    if not addr:
        return Check("vault", "info", "no address (VAULT_ADDR, %pipeline vault login): vault: references fail")
    host, port = host_port(addr, 8200)
    if not answers(host, port, timeout=1.5):
        return Check("vault", "warn", f"{addr} does not answer", "start Vault or fix VAULT_ADDR")
    status = vault.status(addr)
    if not status.logged_in:
        return Check("vault", "warn", f"{addr} answers; not logged in ({status.problem})",
                     "%pipeline vault login (or set VAULT_TOKEN)")
    return Check("vault", "ok", f"{addr} answers; logged in as {status.identity or '?'} (token not shown)")


def _history() -> Check:
    folder = history.root()
    if folder is None:
        return Check("history", "info", "off (PIPELINE_HISTORY=none)")
    probe = folder if os.path.isdir(folder) else os.path.dirname(folder.rstrip("/")) or "."
    while not os.path.isdir(probe) and probe not in ("/", ""):
        probe = os.path.dirname(probe)
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        return Check("history", "warn", f"{folder}: cannot write ({exc.strerror})",
                     "set PIPELINE_HISTORY to a writable folder (or none)")
    return Check("history", "ok", folder)


def _labextension() -> Check:
    try:
        from jupyter_core.paths import jupyter_config_path, jupyter_path
    except ImportError:
        return Check("jupyterlab extension", "info", "no Jupyter in this environment")
    found = next((p for p in (os.path.join(d, "pipeline-magics", "package.json")
                              for d in jupyter_path("labextensions")) if os.path.isfile(p)), None)
    if found is None:
        return Check("jupyterlab extension", "warn", "not installed (no YAML highlighting or completion popup in "
                     "%%pipeline cells)", "pip install pipeline_magics (not -e), or make lab")
    for folder in jupyter_config_path():
        page = os.path.join(folder, "labconfig", "page_config.json")
        try:
            with open(page, encoding="utf-8") as fh:
                disabled = json.load(fh).get("disabledExtensions", {})
        except (OSError, ValueError):
            continue
        if disabled.get("pipeline-magics"):
            return Check("jupyterlab extension", "warn", f"installed, disabled in {page}",
                         "jupyter labextension enable pipeline-magics")
    return Check("jupyterlab extension", "ok", f"installed and enabled ({os.path.dirname(found)})")


def diagnose(spark: bool = False, extra: tuple[Check, ...] = ()) -> Report:
    """Runs every check (``spark``: also start or find the session); ``extra`` rows come from the caller."""
    checks = [
        _guard("python", _python),
        _guard("packages", _packages, required=True),
        _guard("pyspark", _pyspark, required=True),
        _guard("java", _java, required=True),
        _guard("jars", _jars),
        _guard("~/.m2", _maven_cache),
        _guard("session", _session(spark), required=spark),
        _guard("spark connect", _connect, required=True),
        _guard("vault", _vault),
        _guard("history", _history),
        _guard("jupyterlab extension", _labextension),
        *extra,
    ]
    return Report(tuple(checks))
