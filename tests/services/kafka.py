"""A real Apache Kafka broker (KRaft mode, one node that is broker and controller) for the tests.

Where a Docker engine is reachable, Testcontainers' ``KafkaContainer`` runs it;
elsewhere the jars that ``make kafka`` copies from Maven Central into
``.venv/share/pipeline_magics/kafka`` run as ``java -cp '<dir>/*' kafka.Kafka
server.properties``, after ``kafka.tools.StorageTool format --standalone``, with
every listener on 127.0.0.1, its data in a temporary folder and a small heap.

``PIPELINE_TEST_KAFKA=docker|local`` forces one of the two;
``PIPELINE_KAFKA_DIR`` points at another folder of jars.

    with kafka_service() as kafka:
        kafka.create_topic("events", partitions=2)
        kafka.produce("events", ["a", "b"], keys=["k1", "k2"])
        kafka.consume("events")          # [(b"k1", b"a"), (b"k2", b"b")] (per partition, in offset order)
        kafka.kill(); kafka.restart()    # same ports, same data

As a script (``python tests/services/kafka.py --port 9092``, or ``make services``)
it runs a broker in the foreground until Ctrl-C.
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import glob
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

if not __package__:  # run as a script: python tests/services/kafka.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "services"  # noqa: A001 - lets the relative imports below work (PEP 366)

from . import base  # noqa: E402
from .base import HOST, ServiceUnavailable, free_port, port_open  # noqa: E402

IMAGE = os.environ.get("PIPELINE_TEST_KAFKA_IMAGE", "confluentinc/cp-kafka:7.6.0")
HEAP = os.environ.get("PIPELINE_TEST_KAFKA_HEAP", "-Xmx512m -Xms64m")
START_TIMEOUT = float(os.environ.get("PIPELINE_TEST_KAFKA_START_TIMEOUT", "90"))

#: librdkafka's own log lines (connection refused while the broker restarts, ...) go here, not to stderr.
CLIENT_LOG = logging.getLogger("kafka_service.client")
CLIENT_LOG.addHandler(logging.NullHandler())  # kept by pytest's log capture, not printed by Python's last resort


# --------------------------------------------------------------------- helpers


def kafka_dir() -> str:
    """Where ``make kafka`` puts the broker's jars (``$PIPELINE_KAFKA_DIR``, else inside the venv)."""
    if os.environ.get("PIPELINE_KAFKA_DIR"):
        return os.environ["PIPELINE_KAFKA_DIR"]
    here = os.path.join(sys.prefix, "share", "pipeline_magics", "kafka")
    repo_venv = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, ".venv",
                             "share", "pipeline_magics", "kafka")
    for folder in (here, os.path.normpath(repo_venv)):
        if glob.glob(os.path.join(folder, "kafka_2.13-*.jar")):
            return folder
    return here


def _cluster_id() -> str:
    """A Kafka ``Uuid`` as ``kafka-storage random-uuid`` prints it (url-safe base64, no padding)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def _as_bytes(value: Any) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    return str(value).encode("utf-8")


# ------------------------------------------------------------------ dataclass


@dataclass(frozen=True)
class Kafka:
    """A running test broker: where it listens, and small helpers built on confluent-kafka."""

    bootstrap: str
    backend: str = "local"
    _server: Any = field(default=None, repr=False, compare=False)

    # -- connection ---------------------------------------------------------

    @property
    def host(self) -> str:
        return self.bootstrap.rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.bootstrap.rsplit(":", 1)[1])

    def spark_options(self) -> dict[str, str]:
        """The options a Spark Kafka source or sink needs: ``{"kafka.bootstrap.servers": ...}``."""
        return {"kafka.bootstrap.servers": self.bootstrap}

    def client_config(self, **extra: Any) -> dict[str, Any]:
        """A confluent-kafka configuration for this broker (librdkafka logs to ``kafka_service.client``)."""
        conf: dict[str, Any] = {"bootstrap.servers": self.bootstrap, "logger": CLIENT_LOG,
                                "broker.address.family": "v4", "socket.connection.setup.timeout.ms": 5000}
        conf.update(extra)
        return conf

    def admin(self) -> Any:
        from confluent_kafka.admin import AdminClient

        return AdminClient(self.client_config())

    # -- topics and messages ------------------------------------------------

    def topics(self, timeout: float = 10) -> list[str]:
        """The topics there are, internal ones (``__consumer_offsets``, ...) left out."""
        md = self.admin().list_topics(timeout=timeout)
        return sorted(t for t in md.topics if not t.startswith("__"))

    def create_topic(self, name: str, partitions: int = 1, config: dict[str, str] | None = None,
                     exist_ok: bool = False, timeout: float = 30) -> None:
        """Create a topic (replication factor 1) and wait until each partition has a leader."""
        from confluent_kafka import KafkaError, KafkaException
        from confluent_kafka.admin import NewTopic

        admin = self.admin()
        future = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1,
                                               config=dict(config or {}))],
                                     operation_timeout=timeout, request_timeout=timeout)[name]
        try:
            future.result(timeout=timeout)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if not (exist_ok and getattr(err, "code", lambda: None)() == KafkaError.TOPIC_ALREADY_EXISTS):
                raise
        _wait_leaders(admin, [name], timeout)

    def delete_topic(self, name: str, timeout: float = 30) -> None:
        self.admin().delete_topics([name], operation_timeout=timeout, request_timeout=timeout)[name].result(timeout)

    def produce(self, topic: str, values: Sequence[str | bytes | None], keys: Sequence[str | bytes | None] | None = None,
                partition: int | None = None, timeout: float = 30) -> int:
        """Send ``values`` (str is UTF-8 encoded) in order, with ``keys`` if given; wait until all are acknowledged.

        The topic is created on first use when it does not exist (auto topic creation is on).
        Returns the number of messages written.
        """
        from confluent_kafka import KafkaException, Producer

        if keys is not None and len(keys) != len(values):
            raise ValueError(f"{len(keys)} keys for {len(values)} values")
        producer = Producer(self.client_config(**{"acks": "all", "enable.idempotence": True, "linger.ms": 5,
                                                  "message.timeout.ms": int(timeout * 1000)}))
        errors: list[Any] = []

        def delivered(err: Any, msg: Any) -> None:
            if err is not None:
                errors.append(err)

        extra = {} if partition is None else {"partition": partition}
        for i, value in enumerate(values):
            key = None if keys is None else _as_bytes(keys[i])
            while True:
                try:
                    producer.produce(topic, value=_as_bytes(value), key=key, on_delivery=delivered, **extra)
                    break
                except BufferError:  # the local queue is full: let it drain
                    producer.poll(0.1)
            producer.poll(0)
        left = producer.flush(timeout)
        if errors:
            raise KafkaException(errors[0])
        if left:
            raise TimeoutError(f"{left} of {len(values)} messages to {topic!r} not acknowledged in {timeout}s "
                               f"(broker {self.bootstrap})")
        return len(values)

    def consume(self, topic: str, timeout: float = 30, expect: int | None = None,
                decode: bool = False) -> list[tuple[Any, Any]]:
        """The topic's messages from the beginning as ``(key, value)`` pairs, partition by partition in offset order.

        Without ``expect``: everything up to the end of each partition as it is now.
        With ``expect``: wait (up to ``timeout`` seconds) until at least that many are there.
        Values and keys are bytes (None for a null), or str with ``decode=True``.
        A topic that does not exist reads as ``[]`` (after ``timeout`` when ``expect`` is given).
        """
        from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

        deadline = time.monotonic() + timeout
        consumer = Consumer(self.client_config(**{
            "group.id": f"kafka-service-{uuid.uuid4().hex}", "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "enable.partition.eof": True, "allow.auto.create.topics": False}))
        got: list[tuple[int, int, Any, Any]] = []
        try:
            while True:  # the topic's partitions (waiting for the topic only when messages are expected)
                md = consumer.list_topics(topic, timeout=max(1.0, min(10.0, deadline - time.monotonic())))
                meta = md.topics.get(topic)
                if meta is not None and meta.error is None and meta.partitions:
                    break
                if expect is None or time.monotonic() > deadline:
                    return []
                time.sleep(0.2)
            partitions = sorted(meta.partitions)
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
            at_end: set[int] = set()
            while time.monotonic() < deadline:
                if expect is None and at_end >= set(partitions):
                    break
                if expect is not None and len(got) >= expect:
                    break
                msg = consumer.poll(min(0.5, max(0.01, deadline - time.monotonic())))
                if msg is None:
                    continue
                if msg.error():
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        at_end.add(msg.partition())
                        continue
                    raise KafkaException(msg.error())
                at_end.discard(msg.partition())
                got.append((msg.partition(), msg.offset(), msg.key(), msg.value()))
        finally:
            consumer.close()
        got.sort(key=lambda m: (m[0], m[1]))
        if decode:
            return [(None if k is None else k.decode("utf-8"), None if v is None else v.decode("utf-8"))
                    for _, _, k, v in got]
        return [(k, v) for _, _, k, v in got]

    # -- life cycle ---------------------------------------------------------

    @property
    def running(self) -> bool:
        return bool(self._server and self._server.running)

    def stop(self, timeout: float = 30) -> None:
        """Stop the broker gracefully (SIGTERM, then SIGKILL after ``timeout`` s); data and ports are kept."""
        self._server.stop(timeout)

    def kill(self) -> None:
        """Stop the broker at once (SIGKILL), as a crash would; data and ports are kept."""
        self._server.kill()

    def restart(self, timeout: float = START_TIMEOUT) -> None:
        """(Stop if running, then) start the broker again on the same ports and data; return when it serves."""
        self._server.restart(timeout)

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        _wait_ready(self, timeout, self._server)

    def log_tail(self, lines: int = 40) -> str:
        return self._server.log_tail(lines) if self._server else ""


def _wait_leaders(admin: Any, topics: Sequence[str] | None, timeout: float) -> None:
    """Until each partition of ``topics`` (None: all topics) has a leader."""
    deadline = time.monotonic() + timeout
    last = "no metadata"
    while True:
        try:
            md = admin.list_topics(timeout=max(1.0, min(5.0, deadline - time.monotonic())))
            names = list(md.topics) if topics is None else list(topics)
            missing = []
            for name in names:
                meta = md.topics.get(name)
                if meta is None or meta.error is not None or not meta.partitions:
                    missing.append(f"{name}: {getattr(meta, 'error', None) or 'no partitions'}")
                    continue
                missing += [f"{name}[{p.id}]: no leader" for p in meta.partitions.values()
                            if p.leader < 0 or p.error is not None]
            if md.brokers and not missing:
                return
            last = "; ".join(missing[:5]) or "no broker in the metadata"
        except Exception as exc:  # noqa: BLE001 - KafkaException while the broker starts
            last = str(exc)
        if time.monotonic() > deadline:
            raise TimeoutError(f"Kafka metadata not ready after {timeout}s: {last}")
        time.sleep(0.2)


def _wait_ready(kafka: Kafka, timeout: float, server: Any = None) -> None:
    """Until the port accepts connections, a metadata request answers and every partition has a leader."""
    deadline = time.monotonic() + timeout
    while not port_open(kafka.host, kafka.port):
        if server is not None:
            server.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"Kafka at {kafka.bootstrap} did not open its port in {timeout}s")
        time.sleep(0.1)
    _wait_leaders(kafka.admin(), None, max(1.0, deadline - time.monotonic()))


# ----------------------------------------------------------------------- local

LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
logger.apache.name = org.apache.kafka
logger.apache.level = INFO
"""

class _LocalBroker:
    """One KRaft node (broker + controller) from the jars in ``kafka_dir()``, data in a temporary folder."""

    def __init__(self, port: int | None = None, controller_port: int | None = None) -> None:
        self.jars = kafka_dir()
        if not glob.glob(os.path.join(self.jars, "kafka_2.13-*.jar")):
            raise ServiceUnavailable(
                f"the Kafka broker jars are missing from {self.jars}; run `make kafka` (copies "
                "org.apache.kafka:kafka_2.13 from Maven Central) or set PIPELINE_KAFKA_DIR to a folder of them")
        self.java = shutil.which("java") or (os.path.join(os.environ["JAVA_HOME"], "bin", "java")
                                             if os.environ.get("JAVA_HOME") else None)
        if not self.java:
            raise ServiceUnavailable("no `java` found (Java 17 or newer): run `make system` or "
                                     "`apt-get install openjdk-17-jdk-headless`")
        self.fixed_port = port
        self.fixed_controller_port = controller_port
        self.root = tempfile.mkdtemp(prefix="pipeline-magics-kafka-")
        self.log = os.path.join(self.root, "server.log")
        self.props = os.path.join(self.root, "server.properties")
        self.port = 0
        self.controller_port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.lock = threading.RLock()
        with open(os.path.join(self.root, "log4j2.properties"), "w", encoding="utf-8") as fh:
            fh.write(LOG4J2)

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- configuration --------------------------------------------------------

    def _write_properties(self) -> None:
        data = os.path.join(self.root, "data")
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"{HOST}:{self.controller_port}",
            "listeners": f"PLAINTEXT://{HOST}:{self.port},CONTROLLER://{HOST}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{HOST}:{self.port},CONTROLLER://{HOST}:{self.controller_port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "log.dirs": data,
            "num.partitions": "1",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "auto.create.topics.enable": "true",
            "delete.topic.enable": "true",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # after a kill() the restarted broker cannot register until the old session expires (default 9 s)
            "broker.heartbeat.interval.ms": "500",
            "broker.session.timeout.ms": "3000",
            "num.network.threads": "2",
            "num.io.threads": "2",
            "num.recovery.threads.per.data.dir": "1",
            "log.retention.check.interval.ms": "300000",
            "log.segment.bytes": str(16 * 1024 * 1024),
            "log.flush.interval.messages": "10000000",
        }
        with open(self.props, "w", encoding="utf-8") as fh:
            fh.write("".join(f"{k}={v}\n" for k, v in props.items()))

    def _java(self, main: str, *args: str, heap: str = HEAP) -> list[str]:
        return [self.java, *heap.split(), "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xss1m",
                "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={os.path.join(self.root, 'log4j2.properties')}",
                f"-Dkafka.logs.dir={self.root}", "-cp", os.path.join(self.jars, "*"), main, *args]

    def _format(self) -> None:
        shutil.rmtree(os.path.join(self.root, "data"), ignore_errors=True)
        cmd = self._java("kafka.tools.StorageTool", "format", "-t", _cluster_id(), "-c", self.props,
                         "--standalone", heap="-Xmx256m")
        done = subprocess.run(cmd, cwd=self.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=120)
        if done.returncode != 0:
            raise ServiceUnavailable(f"kafka-storage format failed ({done.returncode}):\n{done.stdout[-4000:]}")

    # -- process ----------------------------------------------------------------

    def log_tail(self, lines: int = 40) -> str:
        try:
            with open(self.log, encoding="utf-8", errors="replace") as fh:
                return "".join(fh.readlines()[-lines:])
        except OSError:
            return ""

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            code = self.proc.returncode
            raise ServiceUnavailable(f"the Kafka broker exited ({code}) while starting; {self.log}:\n"
                                     f"{self.log_tail()}")

    def _spawn(self) -> None:
        # its watchdog ends it and removes its data if this process dies without stopping it
        self.proc = base.spawn("kafka broker", self._java("kafka.Kafka", self.props), log=self.log, cwd=self.root,
                               folder=self.root)

    def _wait(self, timeout: float) -> None:
        try:
            _wait_ready(Kafka(self.bootstrap, "local", self), timeout, self)
        except TimeoutError as exc:
            raise ServiceUnavailable(f"{exc}; {self.log}:\n{self.log_tail()}") from None

    def start(self, timeout: float = START_TIMEOUT, attempts: int = 3) -> None:
        """First start: pick ports, format the storage, run and wait (new ports if one was taken meanwhile)."""
        with self.lock:
            for attempt in range(attempts):
                self.port = self.fixed_port or free_port()
                self.controller_port = self.fixed_controller_port or free_port()
                while self.controller_port == self.port:
                    self.controller_port = free_port()
                if self.fixed_port and port_open(HOST, self.port):
                    raise ServiceUnavailable(f"port {self.port} on {HOST} is taken already (another broker?)")
                self._write_properties()
                self._format()
                open(self.log, "wb").close()
                self._spawn()
                try:
                    self._wait(timeout)
                    return
                except ServiceUnavailable:
                    bind_error = "Address already in use" in self.log_tail(200)
                    self._halt(kill=True)
                    if not bind_error or attempt == attempts - 1 or self.fixed_port:
                        raise

    def restart(self, timeout: float = START_TIMEOUT) -> None:
        with self.lock:
            if self.running:
                self._halt(kill=False)
            deadline = time.monotonic() + timeout
            while True:  # the old process is gone; its ports are normally free again at once
                with open(self.log, "ab") as out:
                    out.write(b"\n---- restart ----\n")
                self._spawn()
                try:
                    self._wait(max(5.0, deadline - time.monotonic()))
                    return
                except ServiceUnavailable:
                    bind_error = "Address already in use" in self.log_tail(200)
                    self._halt(kill=True)
                    if not bind_error or time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)

    def _halt(self, kill: bool, timeout: float = 30) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        base.stop(proc, timeout=timeout, kill=kill)
        self.proc = proc  # keep the exit code for messages; poll() is no longer None

    def stop(self, timeout: float = 30) -> None:
        with self.lock:
            self._halt(kill=False, timeout=timeout)

    def kill(self) -> None:
        with self.lock:
            self._halt(kill=True)

    def close(self) -> None:
        """Kill the broker and remove its data (the end of a test run: no graceful shutdown needed)."""
        with self.lock:
            try:
                self._halt(kill=True)
            finally:
                shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def _local_kafka(port: int | None = None, timeout: float = START_TIMEOUT) -> Iterator[Kafka]:
    broker = _LocalBroker(port)
    try:
        broker.start(timeout)
        yield Kafka(broker.bootstrap, "local", broker)
    finally:
        broker.close()


# ---------------------------------------------------------------------- docker


class _DockerBroker:
    """Testcontainers' KafkaContainer (KRaft) on a fixed host port, so that a restart keeps the address."""

    def __init__(self, port: int | None = None) -> None:
        try:
            from testcontainers.community.kafka import KafkaContainer
        except ImportError:  # testcontainers < 4.14
            from testcontainers.kafka import KafkaContainer

        self.port = port or free_port()
        self.container = KafkaContainer(IMAGE).with_kraft().with_bind_ports(9093, self.port)
        self.container.with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
        self.container.with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
        self.container.with_env("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "true")
        self.container.with_env("KAFKA_HEAP_OPTS", HEAP)
        self.container.with_env("KAFKA_BROKER_HEARTBEAT_INTERVAL_MS", "500")  # quick re-registration after kill()
        self.container.with_env("KAFKA_BROKER_SESSION_TIMEOUT_MS", "3000")
        self.started = False

    @property
    def bootstrap(self) -> str:
        return self.container.get_bootstrap_server()

    @property
    def running(self) -> bool:
        try:
            wrapped = self.container.get_wrapped_container()
            wrapped.reload()
            return wrapped.status == "running"
        except Exception:  # noqa: BLE001
            return False

    def start(self, timeout: float = START_TIMEOUT) -> None:
        self.container.start(timeout=int(timeout))
        self.started = True
        _wait_ready(Kafka(self.bootstrap, "docker", self), timeout)

    def check_alive(self) -> None:
        pass

    def log_tail(self, lines: int = 40) -> str:
        try:
            return self.container.get_wrapped_container().logs(tail=lines).decode("utf-8", "replace")
        except Exception:  # noqa: BLE001
            return ""

    def stop(self, timeout: float = 30) -> None:
        self.container.get_wrapped_container().stop(timeout=int(timeout))

    def kill(self) -> None:
        self.container.get_wrapped_container().kill()

    def restart(self, timeout: float = START_TIMEOUT) -> None:
        wrapped = self.container.get_wrapped_container()
        if self.running:
            wrapped.stop(timeout=30)
        wrapped.start()
        _wait_ready(Kafka(self.bootstrap, "docker", self), timeout)

    def close(self) -> None:
        if self.started:
            self.container.stop()


@contextlib.contextmanager
def _docker_kafka(port: int | None = None, timeout: float = START_TIMEOUT) -> Iterator[Kafka]:
    broker = _DockerBroker(port)
    try:
        broker.start(timeout)
        yield Kafka(broker.bootstrap, "docker", broker)
    finally:
        broker.close()


# ---------------------------------------------------------------------- public


@contextlib.contextmanager
def kafka_service(backend: str | None = None, port: int | None = None,
                  timeout: float = START_TIMEOUT) -> Iterator[Kafka]:
    """A running single-node Kafka (KRaft) on 127.0.0.1; killed and its data removed on exit.

    ``backend``: ``docker`` (Testcontainers), ``local`` (the jars of ``make kafka``) or None
    (``$PIPELINE_TEST_KAFKA``, else Docker when reachable, else local).
    ``port``: the client port (default: a free one).
    """
    factory = _docker_kafka if base.backend("PIPELINE_TEST_KAFKA", backend) == "docker" else _local_kafka
    with factory(port, timeout) as kafka:
        yield kafka


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run a single-node Kafka broker (KRaft) on 127.0.0.1 "
                                                 "until Ctrl-C; its data is removed on exit.")
    parser.add_argument("--port", type=int, default=9092, help="client port (default 9092)")
    parser.add_argument("--backend", choices=("docker", "local"), default=None,
                        help="default: $PIPELINE_TEST_KAFKA, else Docker when reachable, else the local jars")
    args = parser.parse_args(argv)

    def interrupted(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)  # `kill` stops it as cleanly as Ctrl-C
    started = time.monotonic()
    try:
        with kafka_service(args.backend, args.port) as kafka:
            where = getattr(kafka._server, "root", None)
            print(f"Kafka ({kafka.backend}) ready on {kafka.bootstrap} in {time.monotonic() - started:.1f}s"
                  + (f"; log and data in {where} (removed on exit)" if where else "") + "\n"
                  f"  Spark: .option('kafka.bootstrap.servers', '{kafka.bootstrap}')\n"
                  "Ctrl-C stops it.", flush=True)
            while True:
                time.sleep(1)
                if not kafka.running:
                    print("the broker stopped on its own:\n" + kafka.log_tail(), file=sys.stderr)
                    return 1
    except KeyboardInterrupt:
        print("stopped.", flush=True)
        return 0
    except ServiceUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
