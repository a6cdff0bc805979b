"""Shared fixtures: small data and temporary lakes; the services (Spark, PostgreSQL, Kafka, Vault, ...) and
the ``ip`` shell come from the ``services.plugin`` pytest plugin (tests/services/)."""
from __future__ import annotations

import os

import pytest

pytest_plugins = ["services.plugin"]


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
