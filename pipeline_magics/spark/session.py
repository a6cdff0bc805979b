"""Finding or creating the SparkSession, and the jars a local session loads."""
from __future__ import annotations

import os
import re
import tempfile
from typing import Any, Callable

from .. import config
from ..errors import PipelineExecutionError
from .causes import session_conflict
from .environment import jvm_cause, require_free_port, require_java, require_server
from .jars import FETCH_COMMAND, session_jars
from .versions import check_session, local_line, pyspark_version, spark_home
from .kind import is_connect

#: the port a ``local`` Spark Connect URL starts its in-process server on
LOCAL_CONNECT_PORT = 15002

DELTA_CONFS = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}


def builder_confs(progress: Callable[[str], None] = print) -> dict[str, str]:
    """Spark confs for a session that pipeline_magics creates itself, with the jars of the installed
    pyspark's version (``SPARK_VERSION_UNSUPPORTED`` for any other), fetched now if need be."""
    local_line()
    confs = {
        **DELTA_CONFS,
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.session.timeZone": config.value("timezone"),
        # The JVM logs errors only, so its start-up chatter does not fill the notebook.
        "spark.driver.extraJavaOptions": "-Dlog4j2.configurationFile=file:" + os.path.join(
            os.path.dirname(__file__), "log4j2.properties"),
    }
    confs.update(session_jars(progress))
    local_ip = config.outside("SPARK_LOCAL_IP")
    if local_ip:
        confs["spark.driver.host"] = confs["spark.driver.bindAddress"] = local_ip
    return confs


def active_session() -> Any:
    """The active session, or None; with only pyspark-client (no local Spark) only Connect sessions exist."""
    if spark_home() is None:
        from pyspark.sql.connect.session import SparkSession as ConnectSession

        return ConnectSession.getActiveSession()
    from pyspark.sql import SparkSession

    return SparkSession.getActiveSession()


def remote_url() -> str | None:
    """The Spark Connect server to use, if any: ``$PIPELINE_SPARK_REMOTE``, else ``$SPARK_REMOTE``,
    else ``$PIPELINE_SPARK_MASTER`` when it is an ``sc://`` address."""
    master = config.value("spark_master") or ""
    return (config.value("spark_remote") or config.outside("SPARK_REMOTE")
            or (master if master.startswith("sc://") else None))


def jvm_log() -> str:
    """Where the JVM of a session pipeline_magics starts writes its output (not the notebook)."""
    return os.path.join(tempfile.gettempdir(), f"pipeline_magics-spark-{os.getpid()}.log")


def _launch(confs: dict[str, str], master: str) -> None:
    """Starts the JVM for a new local session with its output in :func:`jvm_log`, after checking Java;
    a JVM that exits while starting is one ``JVM_START_FAILED`` (or ``JARS_UNAVAILABLE``) line."""
    from pyspark import SparkConf, SparkContext
    from pyspark.java_gateway import launch_gateway

    if SparkContext._gateway is not None or config.outside("PYSPARK_GATEWAY_PORT"):
        return  # a JVM runs already (a stopped session's, or spark-submit's)
    line = local_line()
    require_java(line.java, pyspark_version())
    conf = SparkConf(loadDefaults=False).setAll(list(confs.items())).setMaster(master).setAppName("pipeline_magics")
    path = jvm_log()
    with open(path, "ab") as log:
        start = log.tell()
        try:
            gateway = launch_gateway(conf, popen_kwargs={"stdout": log, "stderr": log})
        except Exception as exc:  # noqa: BLE001 - pyspark's JAVA_GATEWAY_EXITED, said with the JVM's own reason
            if "JAVA_GATEWAY_EXITED" not in str(exc) and "Java gateway process exited" not in str(exc):
                raise
            with open(path, encoding="utf-8", errors="replace") as fh:
                fh.seek(start)
                output = fh.read()
            raise _start_failure(output, path) from None
    SparkContext._ensure_initialized(gateway=gateway)


def _start_failure(output: str, log: str) -> PipelineExecutionError:
    """The error for a JVM that exited while starting, from what it printed."""
    cause = jvm_cause(output) or "it printed nothing that says why"
    if re.search(r"download failed|unresolved dependency|failed to resolve|#\S+: not found", cause, re.I):
        return PipelineExecutionError(
            f"Spark could not get its jars from Maven Central: {cause}", code="JARS_UNAVAILABLE", detail=output,
            params={"log": log}, hint=f"run {FETCH_COMMAND} once on a machine that reaches Maven Central "
                                      "(it stores them in this environment for offline starts)")
    return PipelineExecutionError(
        f"the Spark JVM exited while starting: {cause}", code="JVM_START_FAILED", detail=output,
        params={"log": log}, hint=f"fix what that line says; the JVM's whole output is in {log} "
                                  "(and %pipeline last-error)")


def get_session(spark: Any = None, progress: Callable[[str], None] = print) -> Any:
    """``spark`` if given, else the active session, else a new one.

    The new session is a Spark Connect session when :func:`remote_url` names a
    server, else a session on ``$PIPELINE_SPARK_MASTER`` (default ``local[*]``;
    ``spark://host:7077``, ``yarn``, ``k8s://...`` work too) with Delta Lake and
    the fetched jars.
    """
    if spark is not None:
        return checked(spark)
    active = active_session()
    if active is not None:
        return checked(active)
    remote = remote_url()
    if remote:
        return connect_session(remote)
    if spark_home() is None:
        raise PipelineExecutionError(
            "this Python has only the Spark Connect client (pyspark-client) and no Spark Connect server is named",
            code="CONNECT_ONLY",
            hint="set PIPELINE_SPARK_REMOTE=sc://HOST:PORT before the first pipeline runs, or pass --spark "
                 "with a Connect session")
    from pyspark.sql import SparkSession

    master = config.value("spark_master") or "local[*]"
    confs = builder_confs(progress)
    _launch(confs, master)
    builder = SparkSession.builder.appName("pipeline_magics").master(master)
    for key, value in confs.items():
        builder = builder.config(key, value)
    session = checked(builder.getOrCreate())
    if not is_connect(session):  # spark.api.mode=connect gives a Connect session even here
        # JVM warnings go to the kernel's terminal, not the notebook; keep them to errors.
        session.sparkContext.setLogLevel(config.value("spark_log_level") or "ERROR")
    return session


def connect_session(url: str) -> Any:
    """A Spark Connect session on ``url`` (``sc://host:port``).

    Delta Lake and the jars are the server's configuration; only session confs
    are sent. A ``local`` URL starts a Connect server in this process, so it gets
    the jars and Delta confs of a local session.
    """
    from pyspark.sql import SparkSession

    if url.startswith("local"):
        require_free_port(LOCAL_CONNECT_PORT, "127.0.0.1", "the local Spark Connect server",
                          hint="stop what listens there (another local Connect server or spark-pipelines run), "
                               "or connect to it with PIPELINE_SPARK_REMOTE=sc://127.0.0.1:15002")
    else:
        require_server(url, "the Spark Connect server", LOCAL_CONNECT_PORT,
                       hint="start the server (see docs/cluster.md) or fix PIPELINE_SPARK_REMOTE / SPARK_REMOTE")
    confs = builder_confs() if url.startswith("local") else {
        "spark.sql.session.timeZone": config.value("timezone") or "UTC"}
    builder = SparkSession.builder.remote(url).appName("pipeline_magics")
    for key, value in confs.items():
        builder = builder.config(key, value)
    try:
        return checked(builder.getOrCreate())
    except ImportError as exc:  # pyspark's check for the Connect client's own packages
        raise PipelineExecutionError(
            f"cannot use Spark Connect at {url}: {exc}", code="CONNECT_CLIENT_MISSING",
            hint=f"install the Connect client: pip install 'pyspark[connect]=={pyspark_version()}'") from None
    except Exception as exc:  # noqa: BLE001 - only pyspark's 'classic session exists' is translated
        if not session_conflict(exc):
            raise
        raise PipelineExecutionError(
            f"cannot use Spark Connect at {url}: a classic SparkSession already runs in this Python process",
            code="CONNECT_SESSION_CONFLICT",
            hint="PySpark allows one kind of session per process: restart the kernel with "
                 "PIPELINE_SPARK_REMOTE set before any session is created (or unset it to stay local)") from None


_CHECKED: dict[int, Any] = {}


def checked(spark: Any) -> Any:
    """``spark``, once its Spark version is known to be supported (asked once per session)."""
    if _CHECKED.get(id(spark)) is not spark:
        check_session(spark)
        _CHECKED[id(spark)] = spark
    return spark


def require_delta(spark: Any) -> None:
    """Raises a clear error when the session has no Delta Lake configured."""
    try:
        extensions = spark.conf.get("spark.sql.extensions", "") or ""
        catalog = spark.conf.get("spark.sql.catalog.spark_catalog", "") or ""
    except Exception:  # noqa: BLE001 - a session that hides its confs is trusted
        return
    if "DeltaSparkSessionExtension" in extensions or "DeltaCatalog" in catalog:
        return
    lines = "\n".join(f"      .config({k!r}, {v!r})" for k, v in DELTA_CONFS.items())
    raise PipelineExecutionError(
        "this SparkSession has no Delta Lake configured",
        code="DELTA_NOT_CONFIGURED",
        hint=("create it with the Delta jar and these confs:\n"
              f"    SparkSession.builder\n      .config('spark.jars.packages', {delta_package(spark)!r})\n{lines}\n"
              "  or stop it and let pipeline_magics create a local session with Delta"),
    )


def delta_package(spark: Any) -> str:
    """The Delta Lake coordinate for ``spark``'s version (of the installed pyspark if it cannot be read)."""
    try:
        return check_session(spark).delta
    except Exception:  # noqa: BLE001 - only a hint is built from it
        return local_line().delta
