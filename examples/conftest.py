"""Services for the tutorial notebooks: started before a notebook's kernel, which inherits their addresses."""
from __future__ import annotations

import contextlib
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "tests"))

_services = contextlib.ExitStack()
_connect_stop_registered: list[bool] = []


def pytest_collect_file(file_path, parent):
    """A notebook about Kafka gets a broker (unless KAFKA_BOOTSTRAP names one) before its kernel starts."""
    if file_path.suffix == ".ipynb" and "kafka" in file_path.name and "KAFKA_BOOTSTRAP" not in os.environ:
        from kafka_service import kafka_service

        broker = _services.enter_context(kafka_service())
        os.environ["KAFKA_BOOTSTRAP"] = broker.bootstrap


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    """A notebook about Spark Connect gets a Connect server (unless PIPELINE_SPARK_REMOTE names one).

    Its address is in PIPELINE_SPARK_REMOTE only while the notebook's kernel starts (it
    starts in the first cell's setup): this process's own local session must stay local.
    """
    path = getattr(item, "path", None)
    if path is None or path.suffix != ".ipynb" or "connect" not in path.name or \
            "PIPELINE_SPARK_REMOTE" in os.environ:
        yield
        return
    import cluster_service

    server = cluster_service.shared_connect_server()  # shared with tests/test_everywhere.py
    if not _connect_stop_registered:
        _connect_stop_registered.append(True)
        _services.callback(cluster_service.stop_shared)
    os.environ["PIPELINE_SPARK_REMOTE"] = server.url
    try:
        yield
    finally:
        del os.environ["PIPELINE_SPARK_REMOTE"]


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    _services.close()
