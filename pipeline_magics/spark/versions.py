"""The Spark adapter: which Spark versions are supported and the jars each one loads.

Everything that differs between Spark versions is answered here, from one table,
so the rest of the package never compares version numbers itself.
"""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from typing import Any

from ..errors import PipelineExecutionError
from .environment import pyspark_module

POSTGRES_JDBC = "org.postgresql:postgresql:42.7.8"


@dataclass(frozen=True)
class SparkLine:
    """One supported Spark line (major.minor) on one Scala binary version, and its jars."""

    line: str
    scala: str
    delta: str
    tested: str
    #: The Kafka connector's version when it is not the running Spark's own (its jars are missing).
    kafka: str | None = None
    #: Spark Declarative Pipelines (``pyspark.pipelines``, ``spark-pipelines``) ships with it.
    declarative_pipelines: bool = False
    #: The oldest Java major version this line runs on.
    java: int = 17
    #: The wheel has no Spark Connect server jar (3.5): it is fetched with the others.
    connect_jar: bool = False

    def kafka_connector(self, version: str) -> str:
        """The Kafka connector coordinate for Spark ``version`` of this line."""
        return f"org.apache.spark:spark-sql-kafka-0-10_{self.scala}:{self.kafka or version}"

    def connect_server(self, version: str) -> str | None:
        """The Spark Connect server's coordinate for Spark ``version`` when its wheel lacks it, else None."""
        return f"org.apache.spark:spark-connect_{self.scala}:{version}" if self.connect_jar else None

    def packages(self, version: str) -> tuple[str, ...]:
        """Delta Lake, the Kafka connector, the PostgreSQL driver (and the Connect server where the wheel
        lacks it), as Maven coordinates."""
        connect = self.connect_server(version)
        return (self.delta, self.kafka_connector(version), POSTGRES_JDBC, *([connect] if connect else []))


#: The supported versions, newest first; the first is the development and test default.
#: Measured: each set resolves from Maven Central with `make jars` and passes the suite
#: (the default) or its matrix subset (the others). Delta 4.1+ names the Spark line in its
#: artifact; Delta 4.3+ brings delta-kernel jars. Kafka's 4.0.x connectors after 4.0.0 miss
#: their token-provider jar on Central, so every 4.0.x uses the 4.0.0 connector; the same holds for
#: 4.1.2 to 4.1.4 (4.1.4's connector itself is missing), so every 4.1.x uses the 4.1.1 connector. Spark 3.5
#: runs on Scala 2.12 with Delta 3.3; its wheel has no Spark Connect server, so that jar is fetched too.
LINES: tuple[SparkLine, ...] = (
    SparkLine("4.2", "2.13", "io.delta:delta-spark_4.2_2.13:4.4.0", tested="4.2.0", declarative_pipelines=True),
    SparkLine("4.1", "2.13", "io.delta:delta-spark_4.1_2.13:4.3.1", tested="4.1.1", kafka="4.1.1",
              declarative_pipelines=True),
    SparkLine("4.0", "2.13", "io.delta:delta-spark_2.13:4.0.0", tested="4.0.0", kafka="4.0.0"),
    SparkLine("3.5", "2.12", "io.delta:delta-spark_2.12:3.3.2", tested="3.5.7", java=8, connect_jar=True),
)
DEFAULT = LINES[0]


def supported() -> str:
    """The supported versions in words, for messages: ``4.2.x, 4.1.x, 4.0.x, 3.5.x``."""
    return ", ".join(dict.fromkeys(f"{line.line}.x" for line in LINES))


def spark_line(version: str, scala: str | None = None) -> SparkLine:
    """The line of Spark ``version`` (on Scala ``scala``, default: that line's first), or
    ``SPARK_VERSION_UNSUPPORTED``."""
    minor = ".".join(version.split(".")[:2])
    for line in LINES:
        if line.line == minor and (scala is None or line.scala == scala):
            return line
    on = f" on Scala {scala}" if scala else ""
    raise PipelineExecutionError(
        f"Spark {version}{on} is not supported; supported: {supported()}",
        code="SPARK_VERSION_UNSUPPORTED", params={"version": version, "scala": scala, "supported": supported()},
        hint="install a supported pyspark (pip install 'pipeline_magics[spark]'), or run on a "
             "Spark of a supported version")


def sdp_since() -> str:
    """The oldest supported line that ships Spark Declarative Pipelines (``4.1``)."""
    return [line.line for line in LINES if line.declarative_pipelines][-1]


def ships_sdp(version: str) -> bool:
    """Whether Spark ``version`` ships Spark Declarative Pipelines (False for an unsupported one)."""
    try:
        return spark_line(version).declarative_pipelines
    except PipelineExecutionError:
        return False


def pyspark_version() -> str:
    """The installed pyspark's version (``pyspark`` or the Connect-only ``pyspark-client``)."""
    return pyspark_module().__version__


def spark_home() -> str | None:
    """The installed pyspark's folder when it carries a JVM Spark (its ``jars/``); None for pyspark-client."""
    home = os.path.dirname(pyspark_module().__file__)
    return home if os.path.isdir(os.path.join(home, "jars")) else None


def local_scala() -> str | None:
    """The Scala binary version of the installed pyspark's jars (``2.13``), or None without jars."""
    home = spark_home()
    found = glob.glob(os.path.join(home, "jars", "scala-library-*.jar")) if home else []
    if not found:
        return None
    return ".".join(os.path.basename(found[0])[len("scala-library-"):].split(".")[:2])


def local_line() -> SparkLine:
    """The line of the installed pyspark, checked."""
    return spark_line(pyspark_version(), local_scala())


def session_version(spark: Any) -> str:
    """The running Spark's version (the server's on Spark Connect)."""
    return str(spark.version)


def check_session(spark: Any) -> SparkLine:
    """The line of a running session, or ``SPARK_VERSION_UNSUPPORTED`` at once."""
    return spark_line(session_version(spark))
