"""The jars a session that pipeline_magics creates loads: fetched once per Spark version with
Maven (``python -m pipeline_magics jars``, ``make jars``), else resolved by Spark itself."""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile

from .. import config
from ..errors import PipelineExecutionError
from .versions import SparkLine, local_line, pyspark_version, spark_home

MAVEN_DIR = os.path.join(os.path.dirname(__file__), "maven")


def jars_root() -> str:
    """Where fetched jars live: a folder per Spark version inside the Python environment."""
    return os.path.join(sys.prefix, "share", "pipeline_magics", "jars")


def jars_dir(version: str | None = None) -> str:
    """The jars for Spark ``version`` (default: the installed pyspark's), or ``$PIPELINE_JARS_DIR``."""
    return config.value("jars_dir") or os.path.join(jars_root(), version or pyspark_version())


def local_jars(version: str | None = None) -> list[str]:
    """The fetched jars for ``version``, or ``[]`` when none were fetched."""
    return sorted(glob.glob(os.path.join(jars_dir(version), "*.jar")))


def _provided(spark_jars: list[str], artifact: str) -> bool:
    """Whether Spark already ships ``artifact`` (any version): then its copy would clash."""
    prefix = artifact + "-"
    return any(name.startswith(prefix) and name[len(prefix):][:1].isdigit() for name in spark_jars)


def maven_args(line: SparkLine, version: str) -> list[str]:
    """The ``-D`` properties that point ``maven/pom.xml`` at ``line``'s jars."""
    delta_group, delta_artifact, delta_version = line.delta.split(":")
    _, kafka_artifact, kafka_version = line.kafka_connector(version).split(":")
    return [f"-Ddelta.artifact={delta_artifact}", f"-Ddelta.version={delta_version}",
            f"-Dkafka.artifact={kafka_artifact}", f"-Dkafka.version={kafka_version}",
            f"-Dpostgresql.version={line.packages(version)[2].split(':')[2]}"]


def fetch(dest: str | None = None, mvn: str = "mvn") -> str:
    """Fetches the jars for the installed pyspark into ``dest`` (default :func:`jars_dir`) with Maven,
    leaving out those Spark ships itself; returns the folder."""
    home = spark_home()
    if home is None:
        raise PipelineExecutionError(
            "this pyspark has no local Spark (pyspark-client): the jars belong to the Spark Connect server",
            code="NO_LOCAL_SPARK", hint="give the server Delta Lake, the Kafka connector and the JDBC driver")
    version = pyspark_version()
    line = local_line()
    dest = dest or jars_dir(version)
    spark_jars = os.listdir(os.path.join(home, "jars"))
    with tempfile.TemporaryDirectory(prefix="pipeline-magics-jars-") as tmp:
        cmd = [mvn, "-q", "-B", "-s", os.path.join(MAVEN_DIR, "settings.xml"), "-f", os.path.join(MAVEN_DIR, "pom.xml"),
               "dependency:copy-dependencies", "-DincludeScope=runtime", f"-DoutputDirectory={tmp}",
               "-Dmdep.useRepositoryLayout=true", *maven_args(line, version)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise PipelineExecutionError(
                f"Maven could not fetch the jars for Spark {version}: {(done.stdout + done.stderr).strip()[-600:]}",
                code="JARS_FETCH_FAILED", params={"packages": line.packages(version)},
                hint="check that Maven reaches Maven Central, or let Spark resolve spark.jars.packages")
        os.makedirs(dest, exist_ok=True)
        for jar in glob.glob(os.path.join(tmp, "**", "*.jar"), recursive=True):
            artifact = os.path.basename(os.path.dirname(os.path.dirname(jar)))  # .../group/artifact/version/x.jar
            if not _provided(spark_jars, artifact):
                shutil.copy2(jar, dest)
    return dest
