"""The jars a session that pipeline_magics creates loads: fetched once per Spark version with
Maven (``python -m pipeline_magics jars``, ``make jars``, or the first session), else resolved
by Spark's own Ivy with settings of our own.

Neither way reads or writes ``~/.m2`` or ``~/.ivy2*``: Maven works in a private local
repository and Ivy in a private folder (``PIPELINE_JARS_CACHE``), so what other tools left
in the user's caches cannot break the fetch, and the fetch leaves nothing there that could
break theirs (a Maven folder with a ``.pom`` and no ``.jar`` fails Spark's Ivy).
"""
from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Callable

from .. import config
from ..errors import PipelineExecutionError
from .versions import SparkLine, local_line, pyspark_version, spark_home

MAVEN_DIR = os.path.join(os.path.dirname(__file__), "maven")
IVY_SETTINGS = os.path.join(MAVEN_DIR, "ivysettings.xml")
FETCH_COMMAND = "python -m pipeline_magics jars"


def jars_root() -> str:
    """Where fetched jars live: a folder per Spark version inside the Python environment."""
    return os.path.join(sys.prefix, "share", "pipeline_magics", "jars")


def jars_dir(version: str | None = None) -> str:
    """The jars for Spark ``version`` (default: the installed pyspark's), or ``$PIPELINE_JARS_DIR``."""
    return config.value("jars_dir") or os.path.join(jars_root(), version or pyspark_version())


def local_jars(version: str | None = None) -> list[str]:
    """The fetched jars for ``version``, or ``[]`` when none were fetched."""
    return sorted(glob.glob(os.path.join(jars_dir(version), "*.jar")))


def cache_dir(kind: str) -> str:
    """pipeline_magics' own ``maven`` or ``ivy`` cache (under ``$PIPELINE_JARS_CACHE``)."""
    return os.path.join(os.path.expanduser(config.value("jars_cache") or "~/.cache/pipeline_magics"), kind)


def _provided(spark_jars: list[str], artifact: str) -> bool:
    """Whether Spark already ships ``artifact`` (any version): then its copy would clash."""
    prefix = artifact + "-"
    return any(name.startswith(prefix) and name[len(prefix):][:1].isdigit() for name in spark_jars)


def maven_args(line: SparkLine, version: str) -> list[str]:
    """The ``-D`` properties that point ``maven/pom.xml`` at ``line``'s jars."""
    delta_group, delta_artifact, delta_version = line.delta.split(":")
    _, kafka_artifact, kafka_version = line.kafka_connector(version).split(":")
    connect = line.connect_server(version)
    return [f"-Ddelta.artifact={delta_artifact}", f"-Ddelta.version={delta_version}",
            f"-Dkafka.artifact={kafka_artifact}", f"-Dkafka.version={kafka_version}",
            f"-Dpostgresql.version={line.packages(version)[2].split(':')[2]}",
            *([f"-Dconnect.artifact={connect.split(':')[1]}", f"-Dconnect.version={connect.split(':')[2]}"]
              if connect else [])]


def _maven_error(output: str) -> str:
    """The line of Maven's output that says why it failed."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", ln).strip() for ln in output.splitlines()]
    errors = [re.sub(r"\s*-> \[Help \d+\]$", "", ln[len("[ERROR]"):].strip()) for ln in lines
              if ln.startswith("[ERROR]")]
    errors = [ln for ln in errors if ln and not ln.startswith(("To see the full", "Re-run Maven", "For more inf", "[Help"))]
    return (errors or [ln for ln in lines if ln] or ["no output"])[0][:400]


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
        cmd = [mvn, "-q", "-B", "-Dstyle.color=never", "-s", os.path.join(MAVEN_DIR, "settings.xml"), "-f", os.path.join(MAVEN_DIR, "pom.xml"),
               f"-Dmaven.repo.local={cache_dir('maven')}",
               "dependency:copy-dependencies", "-DincludeScope=runtime", f"-DoutputDirectory={tmp}",
               "-Dmdep.useRepositoryLayout=true", *maven_args(line, version)]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True)
        except OSError as exc:
            raise PipelineExecutionError(f"cannot run Maven ({mvn}): {exc}", code="JARS_UNAVAILABLE",
                                         hint="install Maven (apt-get install maven) and run " + FETCH_COMMAND) from None
        if done.returncode != 0:
            raise PipelineExecutionError(
                f"Maven could not fetch the jars for Spark {version}: {_maven_error(done.stdout + done.stderr)}",
                code="JARS_UNAVAILABLE", params={"packages": line.packages(version)},
                detail=(done.stdout + done.stderr)[-20000:],
                hint=f"run {FETCH_COMMAND} on a machine that reaches Maven Central (https://repo.maven.apache.org)")
        staged = os.path.join(tmp, "jars")
        os.makedirs(staged)
        for jar in glob.glob(os.path.join(tmp, "**", "*.jar"), recursive=True):
            artifact = os.path.basename(os.path.dirname(os.path.dirname(jar)))  # .../group/artifact/version/x.jar
            if not _provided(spark_jars, artifact) and os.path.dirname(jar) != staged:
                shutil.copy2(jar, staged)
        _replace(staged, dest)
    return dest


def _replace(staged: str, dest: str) -> None:
    """Puts the folder ``staged`` at ``dest`` whole: a session starting meanwhile sees the old set or the new."""
    parent = os.path.dirname(os.path.abspath(dest))
    os.makedirs(parent, exist_ok=True)
    incoming = tempfile.mkdtemp(prefix=".incoming-", dir=parent)
    os.rmdir(incoming)
    shutil.copytree(staged, incoming)  # same file system as dest from here on: the renames are atomic
    old = incoming + ".old"
    if os.path.isdir(dest):
        os.rename(dest, old)
    os.rename(incoming, dest)
    shutil.rmtree(old, ignore_errors=True)


def session_jars(progress: Callable[[str], None] = print) -> dict[str, str]:
    """The confs that give a new local session its jars: the fetched ones; else fetched now with Maven
    (once, said through ``progress``); else resolved by Spark's Ivy from Maven Central."""
    jars = local_jars()
    if jars:
        return {"spark.jars": ",".join(jars)}
    version = pyspark_version()
    packages = local_line().packages(version)
    mvn = shutil.which("mvn")
    if mvn:
        progress(f"Fetching Delta Lake, the Kafka connector and the JDBC driver for Spark {version} "
                 "from Maven Central (once)…")
        return {"spark.jars": ",".join(sorted(glob.glob(os.path.join(fetch(mvn=mvn), "*.jar"))))}
    progress(f"Resolving Delta Lake, the Kafka connector and the JDBC driver for Spark {version} with Spark's "
             f"Ivy (no Maven here; {FETCH_COMMAND} stores them for offline starts)…")
    return {"spark.jars.packages": ",".join(packages), "spark.jars.ivySettings": IVY_SETTINGS,
            "spark.jars.ivy": cache_dir("ivy")}
