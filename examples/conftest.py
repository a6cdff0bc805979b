"""The tutorial notebooks run under nbval with the suite's services (tests/services/, a pytest plugin):
a notebook about Kafka gets a broker, one about Spark Connect a Connect server, before its kernel starts.

nbval (``--nbval`` in pyproject's addopts) compares each cell's outputs with the stored ones, after the
regexes of nbval-sanitize.cfg (next to this file) have replaced what varies from run to run: times,
durations, temporary paths, ports, ids, SVG geometry. ``--nbval-sanitize-with FILE`` on the command line
names another file instead.

Their kernels run without the live view (``PIPELINE_LIVE_VIEW=0``), as examples/execute.py stores them: nbval
keeps a display's first version and ignores its updates, so it would see the widget the live view is
replaced by its result when the run ends; without it, each run's output is that same static result."""
from __future__ import annotations

import os
import sys
from typing import Iterator

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, os.pardir, "tests"))

pytest_plugins = ["services.plugin"]

#: the sanitizer of the stored outputs, found from any working directory
SANITIZE = os.path.join(HERE, "nbval-sanitize.cfg")


@pytest.hookimpl(trylast=True)  # after nbval's own, which resolves its deprecated --sanitize-with
def pytest_configure(config: pytest.Config) -> None:
    if getattr(config.option, "nbval_sanitize_with", None) is None:
        config.option.nbval_sanitize_with = SANITIZE


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    """A tutorial's kernel (started in its first cell's setup) runs without the live view."""
    path = getattr(item, "path", None)
    if path is None or path.suffix != ".ipynb" or "PIPELINE_LIVE_VIEW" in os.environ:
        yield
        return
    os.environ["PIPELINE_LIVE_VIEW"] = "0"
    try:
        yield
    finally:
        del os.environ["PIPELINE_LIVE_VIEW"]
