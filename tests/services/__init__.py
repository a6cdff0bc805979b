"""The real services of the test suite, started on 127.0.0.1 and free ports, and stopped afterwards.

- :mod:`.base`: free ports, polling, and the child processes of the run (never left running);
- :mod:`.postgres`, :mod:`.kafka`, :mod:`.vault`: PostgreSQL, a Kafka broker, a Vault (OpenBao) dev
  server, through Testcontainers where Docker answers, else from local binaries;
- :mod:`.spark_cluster`: a standalone Spark cluster and a Spark Connect server;
- :mod:`.jupyter`: JupyterLab and a headless Chromium for the browser tests;
- :mod:`.plugin`: the pytest plugin with the fixtures (``tests/conftest.py`` registers it).

Notebooks in ``examples/`` import the same helpers (``tests/`` on ``sys.path``).
"""
from __future__ import annotations

from .base import ServiceUnavailable, docker_available, free_port
from .kafka import Kafka, kafka_service
from .postgres import Postgres, postgres_service
from .vault import Vault, notebook_vault, seed, vault_service

__all__ = ["Kafka", "Postgres", "ServiceUnavailable", "Vault", "docker_available", "free_port", "kafka_service",
           "notebook_vault", "postgres_service", "seed", "vault_service"]
