"""The Spark Connect session an SDP run needs, and the check that SDP exists at all.

SDP definitions are registered over Spark Connect. On a Connect notebook session
that session is used; on a classic one a Connect server is started once inside the
notebook's own JVM (same Spark, Delta and jars) and a client session connects to it.
"""
from __future__ import annotations

import contextlib
import importlib.util
import threading
from typing import Any, Iterator

from .. import config
from ..errors import PipelineExecutionError
from ..metrics.sources import is_classic
from ..spark.versions import pyspark_version, sdp_since, ships_sdp

_LOCK = threading.Lock()
_PORTS: dict[int, int] = {}  # id of the JVM SparkContext -> port of the Connect server in it
_CLIENTS: dict[int, Any] = {}  # port -> the client session kept for the kernel's life


def require_sdp() -> None:
    """Fails at once (``SDP_UNAVAILABLE``) unless the installed pyspark ships ``pyspark.pipelines``
    (Spark 4.1 and later, from the version table)."""
    try:
        version = pyspark_version()
    except PipelineExecutionError:  # PYSPARK_MISSING
        version = "none"
    else:
        if ships_sdp(version) and importlib.util.find_spec("pyspark.pipelines") is not None:
            return
    raise PipelineExecutionError(
        f"Spark Declarative Pipelines need Spark >= {sdp_since()}; this environment has pyspark {version}",
        code="SDP_UNAVAILABLE", params={"pyspark": version},
        hint=f"install pyspark>={sdp_since()} (with its [connect] extra) to export and run SDP projects")


def _start_server(spark: Any) -> int:
    """Starts a Connect server in the classic session's JVM (once) and returns its port."""
    sc = spark.sparkContext._jsc.sc()
    key = sc.hashCode()
    with _LOCK:
        if key not in _PORTS:
            conf = sc.conf()
            conf.set("spark.connect.grpc.binding.port", "0")  # a free port
            conf.set("spark.connect.grpc.binding.address", (config.outside("SPARK_LOCAL_IP") or "127.0.0.1"))
            service = spark._jvm.org.apache.spark.sql.connect.service
            service.SparkConnectService.start(sc)
            _PORTS[key] = getattr(service, "SparkConnectService$").__getattr__("MODULE$").localPort()
        return _PORTS[key]


@contextlib.contextmanager
def connect_session(spark: Any) -> Iterator[Any]:
    """A Spark Connect session on ``spark``'s Spark: ``spark`` itself, or a client of the JVM's own server."""
    if not is_classic(spark):
        yield spark
        return
    from pyspark.sql.connect.session import SparkSession as ConnectSession

    port = _start_server(spark)
    host = config.outside("SPARK_LOCAL_IP") or "127.0.0.1"
    with _LOCK:
        # One client for the kernel's life: stopping it after each run would race the client's
        # own background release of finished operations (the server then logs SESSION_CLOSED).
        if port not in _CLIENTS or _CLIENTS[port].is_stopped:
            _CLIENTS[port] = ConnectSession.builder.remote(f"sc://{host}:{port}").create()
        session = _CLIENTS[port]
    yield session


@contextlib.contextmanager
def connect_functions() -> Iterator[None]:
    """While definitions are imported, ``pyspark.sql.functions`` build Connect columns.

    In a process whose own session is classic, pyspark's functions build classic columns
    unless Connect mode is on; the definitions are Connect plans.
    """
    with config.temporarily("SPARK_CONNECT_MODE_ENABLED", "1"):
        yield
