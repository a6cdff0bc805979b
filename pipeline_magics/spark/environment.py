"""What the machine offers Spark before any JVM starts: pyspark, Java, ports and servers.

Each check either returns what it found or raises a ``PipelineExecutionError`` whose code,
one-line cause and hint say what is wrong and how to fix it; ``%pipeline doctor`` shows the
same facts as rows.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from dataclasses import dataclass
from types import ModuleType
from typing import Mapping
from urllib.parse import urlparse

from .. import config
from ..errors import PipelineExecutionError

#: Lines of a JVM's or spark-submit's output that say why it stopped, most telling first.
_CAUSES = (
    re.compile(r"download failed|unresolved dependency:|: not found$|Failed to resolve", re.I),
    re.compile(r"Error occurred during initialization of VM|Could not create the Java Virtual Machine|"
               r"UnsupportedClassVersionError|Invalid maximum heap size|Too small", re.I),
    re.compile(r"No such file or directory|command not found|JAVA_HOME", re.I),
    re.compile(r"^(Exception|Error)\b|\bException\b|\bError:", re.I),
)


def pyspark_module() -> ModuleType:
    """The installed ``pyspark`` package, or ``PYSPARK_MISSING``."""
    try:
        import pyspark
    except ImportError:
        raise PipelineExecutionError(
            "this Python has no pyspark", code="PYSPARK_MISSING",
            hint="install one: pip install 'pipeline_magics[spark]' (Spark with a JVM), or pip install "
                 "pyspark-client and set PIPELINE_SPARK_REMOTE=sc://HOST:PORT (a Spark Connect server)") from None
    return pyspark


@dataclass(frozen=True)
class Java:
    """The ``java`` a local Spark would start, and its major version (0 when it cannot run)."""

    path: str
    major: int
    version: str


def java_path(env: Mapping[str, str] | None = None) -> tuple[str | None, str]:
    """The ``java`` Spark's launcher runs (``$JAVA_HOME/bin/java``, else ``java`` on PATH) and where it came from."""
    home = config.outside("JAVA_HOME", env)
    if home:
        return os.path.join(home, "bin", "java"), f"JAVA_HOME={home}"
    return shutil.which("java", path=config.outside("PATH", env)), "PATH"


def find_java(env: Mapping[str, str] | None = None) -> Java:
    """The Java a local Spark would start, with its version; ``JAVA_MISSING`` when there is none that runs."""
    path, origin = java_path(env)
    fix = "install Java 17 (e.g. apt-get install openjdk-17-jdk-headless) or set JAVA_HOME to a Java installation"
    if not path or not os.access(path, os.X_OK):
        where = f"{path} (from {origin})" if path else "no java on PATH and JAVA_HOME is not set"
        raise PipelineExecutionError(f"no Java to start Spark with: {where}", code="JAVA_MISSING",
                                     params={"java": path, "origin": origin}, hint=fix)
    try:
        done = subprocess.run([path, "-version"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PipelineExecutionError(f"{path} (from {origin}) does not run: {exc}", code="JAVA_MISSING",
                                     params={"java": path, "origin": origin}, hint=fix) from None
    text = (done.stderr + done.stdout).strip()
    found = re.search(r'version "([^"]+)"', text)
    version = found.group(1) if found else (text.splitlines() or ["?"])[0]
    return Java(path, java_major(version) if found else 0, version)


def java_major(version: str) -> int:
    """``17.0.15`` -> 17, ``1.8.0_392`` -> 8."""
    parts = [int(p) for p in re.findall(r"\d+", version)[:2]] or [0]
    return parts[1] if parts[0] == 1 and len(parts) > 1 else parts[0]


def require_java(minimum: int, spark_version: str, env: Mapping[str, str] | None = None) -> Java:
    """The Java a local Spark would start, checked against what Spark ``spark_version`` needs."""
    java = find_java(env)
    if java.major < minimum:
        raise PipelineExecutionError(
            f"Spark {spark_version} needs Java {minimum} or newer; {java.path} is Java {java.version}",
            code="JAVA_TOO_OLD", params={"java": java.path, "version": java.version, "minimum": minimum},
            hint=f"install Java {minimum} (e.g. apt-get install openjdk-{max(minimum, 17)}-jdk-headless) "
                 "and point JAVA_HOME at it")
    return java


def jvm_cause(output: str) -> str | None:
    """The line of a JVM's start-up output that says why it stopped, or None."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip() and not ln.lstrip().startswith("at ")]
    for pattern in _CAUSES:
        for i, line in enumerate(lines):
            if pattern.search(line) and not line.startswith("WARNING"):
                if line.startswith("Error occurred during initialization") and i + 1 < len(lines):
                    line = f"{line}: {lines[i + 1]}"  # the JVM says what it was on the next line
                return re.sub(r'^Exception in thread "[^"]*" [\w.$]+: ', "", line)[:300]
    return None


def host_port(url: str, default_port: int) -> tuple[str, int]:
    """``sc://host:port/;params`` or ``http://host:port`` -> (host, port)."""
    parsed = urlparse(url.split(";", 1)[0])
    return parsed.hostname or "127.0.0.1", parsed.port or default_port


def answers(host: str, port: int, timeout: float = 2.0) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_server(url: str, what: str, default_port: int, hint: str) -> None:
    """``SERVER_UNREACHABLE`` at once (not after a client's minutes of retries) when ``url`` does not answer."""
    host, port = host_port(url, default_port)
    if not answers(host, port):
        raise PipelineExecutionError(f"{what} at {url} does not answer (nothing accepts connections on {host}:{port})",
                                     code="SERVER_UNREACHABLE", params={"url": url, "host": host, "port": port},
                                     hint=hint)


def require_free_port(port: int, host: str, what: str, hint: str) -> None:
    """``PORT_IN_USE`` when something already listens on ``host:port``."""
    if answers(host, port, timeout=0.5):
        raise PipelineExecutionError(f"{what} cannot listen on {host}:{port}: the port is in use",
                                     code="PORT_IN_USE", params={"host": host, "port": port}, hint=hint)
