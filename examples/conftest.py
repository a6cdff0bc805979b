"""Services for the tutorial notebooks: started before a notebook's kernel, which inherits their addresses."""
from __future__ import annotations

import contextlib
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "tests"))

_services = contextlib.ExitStack()


def pytest_collect_file(file_path, parent):
    """A notebook about Kafka gets a broker (unless KAFKA_BOOTSTRAP names one) before its kernel starts."""
    if file_path.suffix == ".ipynb" and "kafka" in file_path.name and "KAFKA_BOOTSTRAP" not in os.environ:
        from kafka_service import kafka_service

        broker = _services.enter_context(kafka_service())
        os.environ["KAFKA_BOOTSTRAP"] = broker.bootstrap


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    _services.close()
