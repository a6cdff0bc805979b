"""The tutorial notebooks run under nbval with the suite's services (tests/services/, a pytest plugin):
a notebook about Kafka gets a broker, one about Spark Connect a Connect server, before its kernel starts."""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "tests"))

pytest_plugins = ["services.plugin"]
