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
