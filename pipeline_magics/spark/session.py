"""Finding or creating the SparkSession, and the jars a local session loads."""
from __future__ import annotations

import os
from typing import Any

from .. import config
from ..errors import PipelineExecutionError
from .jars import local_jars
from .versions import check_session, local_line, pyspark_version, spark_home
from .kind import is_connect

DELTA_CONFS = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}


def builder_confs() -> dict[str, str]:
    """Spark confs for a session that pipeline_magics creates itself, with the jars of the installed
    pyspark's version (``SPARK_VERSION_UNSUPPORTED`` for any other)."""
    line = local_line()
    confs = {
        **DELTA_CONFS,
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.session.timeZone": config.value("timezone"),
        # The JVM logs errors only, so its start-up chatter does not fill the notebook.
        "spark.driver.extraJavaOptions": "-Dlog4j2.configurationFile=file:" + os.path.join(
            os.path.dirname(__file__), "log4j2.properties"),
    }
    jars = local_jars()
    if jars:
        confs["spark.jars"] = ",".join(jars)
    else:
        # Resolved by Spark from ~/.m2 (or Maven Central) on first start.
        confs["spark.jars.packages"] = ",".join(line.packages(pyspark_version()))
    if os.environ.get("SPARK_LOCAL_IP"):
        confs["spark.driver.host"] = os.environ["SPARK_LOCAL_IP"]
        confs["spark.driver.bindAddress"] = os.environ["SPARK_LOCAL_IP"]
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
    return (config.value("spark_remote") or os.environ.get("SPARK_REMOTE")
            or (master if master.startswith("sc://") else None))


def get_session(spark: Any = None) -> Any:
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

    builder = SparkSession.builder.appName("pipeline_magics").master(
        config.value("spark_master") or "local[*]")
    for key, value in builder_confs().items():
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
        condition = getattr(exc, "getCondition", lambda: None)()
        if condition != "SESSION_ALREADY_EXIST":
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
