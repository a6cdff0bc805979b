"""Spark clusters for the tests, started from the pip ``pyspark`` install and the fetched jars.

- :func:`standalone_cluster`: a standalone master and two workers (``--cores 1 --memory 1g``);
  a driver reaches it at ``cluster.master_url`` (``spark://127.0.0.1:PORT``).
- :func:`connect_server`: a Spark Connect server (``local[2]``) with Delta Lake configured
  through its SQL extension and catalog, and the Delta, Kafka and PostgreSQL jars;
  a client reaches it at ``server.url`` (``sc://127.0.0.1:PORT``).

Everything binds to 127.0.0.1 on free ports and writes its logs and scratch files
to a temporary folder. Each JVM runs in a process group of its own, so stopping
it also stops what it started (a worker's executors); nothing is left running.

``python -m services.spark_cluster connect|standalone`` (from ``tests/``) starts one in the
foreground for trying it out (Ctrl-C stops it).
"""
from __future__ import annotations

import atexit
import contextlib
import importlib.util
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import urllib.request
from dataclasses import dataclass
from typing import Iterator

from . import base
from .base import HOST, ServiceUnavailable, free_port

DELTA_CONFS = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    "spark.databricks.delta.snapshotPartitions": "2",  # as tests/spark-conf/spark-defaults.conf says why
}
#: for the short-lived JVMs of the tests: the C1 compiler alone and the serial collector warm up
#: far faster on a small machine (the subset on the standalone cluster ran in half the time)
TEST_JAVA_OPTS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
#: variables of the caller that would point a Spark process somewhere else
_FOREIGN = ("SPARK_REMOTE", "PIPELINE_SPARK_REMOTE", "SPARK_CONNECT_MODE_ENABLED", "SPARK_LOCAL_REMOTE",
            "PYSPARK_SUBMIT_ARGS", "MASTER", "SPARK_API_MODE", "SPARK_CONF_DIR")


def spark_home() -> str:
    """The installed ``pyspark`` package folder: it holds ``bin/``, ``jars/`` and ``sbin/``.

    Found without importing pyspark: importing it in two threads at once breaks its
    circular imports, and the tests start clusters from a background thread.
    """
    spec = importlib.util.find_spec("pyspark")
    if spec is None or spec.origin is None:
        raise ServiceUnavailable("pyspark is not installed in this Python")
    return os.path.dirname(os.path.abspath(spec.origin))


def cluster_jars() -> list[str]:
    """The jars of ``make jars`` (Delta, the Kafka connector, the PostgreSQL driver)."""
    from pipeline_magics.spark.jars import jars_dir, local_jars

    jars = local_jars()
    if not jars:
        raise ServiceUnavailable(f"no jars in {jars_dir()}; run `make jars` first")
    return jars


def spark_env(**extra: str) -> dict[str, str]:
    """The environment of a Spark process the tests start: this Python, loopback only."""
    env = {k: v for k, v in os.environ.items() if k not in _FOREIGN}
    env.update(SPARK_HOME=spark_home(), SPARK_LOCAL_IP=HOST, SPARK_LOCAL_HOSTNAME=HOST,
               PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable,
               SPARK_DAEMON_MEMORY="512m", SPARK_DAEMON_JAVA_OPTS=TEST_JAVA_OPTS, SPARK_NO_DAEMONIZE="1")
    env.update(extra)
    return env


class JavaProcess:
    """A Spark JVM started with ``spark-class``/``spark-submit``, its output in a log file."""

    def __init__(self, name: str, cmd: list[str], cwd: str, env: dict[str, str]) -> None:
        self.name = name
        self.log_path = os.path.join(cwd, f"{name}.log")
        open(self.log_path, "wb").close()
        # a process group of its own: stop() reaches the JVM's children (executors) too
        self.popen = base.spawn(f"spark {name}", cmd, log=self.log_path, env=env, cwd=cwd)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self, lines: int = 40) -> str:
        return base.tail(self.log_path, lines)

    def wait_for(self, pattern: str, timeout: float = 120.0) -> re.Match[str]:
        """Waits until the log has a line matching ``pattern``; raises if the JVM exits or time runs out."""
        regex = re.compile(pattern)

        def exited() -> None:
            if self.popen.poll() is not None:
                raise ServiceUnavailable(f"{self.name} exited ({self.popen.returncode}):\n{self.log_tail()}")

        def found() -> re.Match[str] | None:
            with open(self.log_path, encoding="utf-8", errors="replace") as fh:
                return regex.search(fh.read())

        try:
            return base.wait_until(found, timeout, f"{self.name}: no {pattern!r}", interval=0.2, alive=exited)
        except ServiceUnavailable as exc:
            if "exited (" in str(exc):
                raise
            raise ServiceUnavailable(f"{exc}:\n{self.log_tail()}") from None

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM to the process group (Spark's shutdown hooks run), SIGKILL for what is left."""
        base.stop(self.popen, timeout=timeout)


@dataclass
class StandaloneCluster:
    """A running standalone cluster: its master URL and its processes."""

    master_url: str
    web_url: str
    workers: int
    processes: list[JavaProcess]
    root: str

    def alive_workers(self) -> int:
        """How many workers the master reports ALIVE (its JSON status page)."""
        with urllib.request.urlopen(f"{self.web_url}/json", timeout=5) as page:
            status = json.load(page)
        return sum(1 for w in status.get("workers", []) if w.get("state") == "ALIVE")


@dataclass
class ConnectServer:
    """A running Spark Connect server."""

    url: str
    port: int
    process: JavaProcess
    root: str


@contextlib.contextmanager
def standalone_cluster(workers: int = 2, cores: int = 1, memory: str = "1g",
                       timeout: float = 120.0) -> Iterator[StandaloneCluster]:
    """A master and ``workers`` workers on 127.0.0.1; all stopped (with their executors) on exit."""
    root = tempfile.mkdtemp(prefix="pipeline-magics-standalone-")
    spark_class = os.path.join(spark_home(), "bin", "spark-class")
    env = spark_env()
    processes: list[JavaProcess] = []
    try:
        port, web_port = free_port(), free_port()
        master = JavaProcess("master", [spark_class, "org.apache.spark.deploy.master.Master", "--host", HOST,
                                        "--port", str(port), "--webui-port", str(web_port)], root, env)
        processes.append(master)
        master.wait_for(r"I have been elected leader", timeout)
        master_url = f"spark://{HOST}:{port}"
        for i in range(workers):
            work_dir = os.path.join(root, f"worker-{i + 1}")
            os.makedirs(work_dir)
            processes.append(JavaProcess(f"worker-{i + 1}", [
                spark_class, "org.apache.spark.deploy.worker.Worker", master_url, "--host", HOST,
                "--cores", str(cores), "--memory", memory, "--webui-port", str(free_port()),
                "--work-dir", work_dir], root, env))
        for worker in processes[1:]:
            worker.wait_for(r"Successfully registered with master", timeout)
        cluster = StandaloneCluster(master_url, f"http://{HOST}:{web_port}", workers, processes, root)
        base.wait_until(lambda: cluster.alive_workers() >= workers, 30,
                        f"the master lists {workers} alive workers", interval=0.3)
        yield cluster
    finally:
        for process in reversed(processes):  # workers first: their executors go with them
            process.stop()
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def connect_server(master: str = "local[2]", timeout: float = 120.0,
                   confs: dict[str, str] | None = None) -> Iterator[ConnectServer]:
    """A Spark Connect server on 127.0.0.1 with Delta configured and the jars loaded; stopped on exit."""
    root = tempfile.mkdtemp(prefix="pipeline-magics-connect-")
    port = free_port()
    settings = {
        **DELTA_CONFS,
        "spark.connect.grpc.binding.address": HOST,
        "spark.connect.grpc.binding.port": str(port),
        "spark.driver.host": HOST,
        "spark.driver.bindAddress": HOST,
        "spark.ui.enabled": "false",
        "spark.sql.shuffle.partitions": "4",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.warehouse.dir": os.path.join(root, "warehouse"),
        "spark.driver.extraJavaOptions": f"-Dderby.system.home={root} {TEST_JAVA_OPTS}",
        **(confs or {}),
    }
    cmd = [os.path.join(spark_home(), "bin", "spark-submit"),
           "--class", "org.apache.spark.sql.connect.service.SparkConnectServer",
           "--name", "pipeline_magics-tests-connect", "--master", master, "--driver-memory", "1g",
           "--jars", ",".join(cluster_jars())]
    for key, value in settings.items():
        cmd += ["--conf", f"{key}={value}"]
    cmd.append("spark-internal")
    process = JavaProcess("connect-server", cmd, root, spark_env())
    try:
        process.wait_for(r"Spark Connect server started at", timeout)
        yield ConnectServer(f"sc://{HOST}:{port}", port, process, root)
    finally:
        process.stop()
        shutil.rmtree(root, ignore_errors=True)


# ------------------------------------------------------------ one per process

_shared: dict[str, object] = {}
_stack = contextlib.ExitStack()
_lock = threading.Lock()


def shared_connect_server() -> ConnectServer:
    """One Connect server for this Python process, started on first use (the suite's tests and the
    Connect notebook share it); :func:`stop_shared` stops it, and so does the end of the process."""
    with _lock:
        if "connect" not in _shared:
            _shared["connect"] = _stack.enter_context(connect_server())
        return _shared["connect"]  # type: ignore[return-value]


def stop_shared() -> None:
    """Stops what :func:`shared_connect_server` started."""
    with _lock:
        _shared.clear()
        _stack.close()


atexit.register(stop_shared)


if __name__ == "__main__":  # python -m services.spark_cluster connect|standalone (from tests/)
    kind = sys.argv[1] if len(sys.argv) > 1 else "connect"
    # Ctrl-C and SIGTERM both stop the JVMs (a background job would otherwise ignore SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with (connect_server() if kind == "connect" else standalone_cluster()) as running:
        print(getattr(running, "url", None) or running.master_url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
