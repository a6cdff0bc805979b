"""Where each step reads or writes, named as OpenLineage's naming spec says (namespace, name).

Files and Delta paths: ``file`` and the absolute path (``s3://bucket`` and the key for object
stores); Kafka: ``kafka://host:port`` and the topic; PostgreSQL: ``postgres://host:port`` and
``database.schema.table``; catalog tables: ``spark_catalog`` and the table's name. Names are
read from the spec's own settings; a setting that is a credential reference is never read.
"""
from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlparse

from ..secrets.references import as_reference
from ..spec.plan import PlannedStep

Dataset = tuple[str, str]
CATALOG = "spark_catalog"


def _plain(config: dict[str, Any], key: str) -> str | None:
    """A setting's literal text; None when unset or a credential reference."""
    value = config.get(key)
    if value is None or as_reference(value) is not None or isinstance(value, dict):
        return None
    return str(value)


def path_dataset(path: str) -> Dataset:
    """A file or folder: ``file`` + absolute path, or ``scheme://authority`` + path for other file systems."""
    if "://" in path:
        parsed = urlparse(path)
        return f"{parsed.scheme}://{parsed.netloc}", parsed.path or "/"
    return "file", os.path.abspath(os.path.expanduser(path))


def _postgres(config: dict[str, Any]) -> Dataset | None:
    url, table = _plain(config, "url"), _plain(config, "table")
    if url:
        parsed = urlparse(url[len("jdbc:"):])
        host, port, database = parsed.hostname, parsed.port or 5432, parsed.path.strip("/")
    else:
        host, port, database = _plain(config, "host"), _plain(config, "port") or "5432", _plain(config, "database")
    if not host or not database:
        return None
    name = (table if table.count(".") == 1 else f"public.{table}") if table else "query"
    return f"postgres://{host}:{port}", f"{database}.{name.replace(chr(34), '')}"


def _kafka(config: dict[str, Any]) -> list[Dataset]:
    servers = _plain(config, "bootstrapServers")
    topics = _plain(config, "topic") or _plain(config, "subscribePattern")
    if not servers or not topics:
        return []
    namespace = f"kafka://{servers.split(',')[0].strip()}"
    if config.get("topic"):
        return [(namespace, t.strip()) for t in topics.split(",") if t.strip()]
    return [(namespace, topics)]


def _target(config: dict[str, Any]) -> list[Dataset]:
    """A ``path`` (one or a list) or a catalog ``table``."""
    paths = config.get("path")
    if isinstance(paths, list):
        return [path_dataset(p) for p in paths if isinstance(p, str) and as_reference(p) is None]
    path, table = _plain(config, "path"), _plain(config, "table")
    if path:
        return [path_dataset(path)]
    return [(CATALOG, table)] if table else []


def datasets_of(planned: PlannedStep) -> list[Dataset]:
    """The datasets an extract reads or a load writes (none for display, memory, rate and transforms)."""
    step, config = planned.step, planned.step.config
    if step.type == "transform":
        return []
    if step.method in ("fromPostgres", "toPostgres"):
        found = _postgres(config)
        return [found] if found else []
    if step.method in ("fromKafka", "toKafka"):
        return _kafka(config)
    if step.method in ("fromRate", "toMemory", "display"):
        return []
    return _target(config)


def quarantine_of(planned: PlannedStep) -> list[Dataset]:
    """The quarantine table an ``expect`` step with ``onFail: quarantine`` writes, else nothing."""
    target = planned.step.config.get("quarantine") if planned.step.method == "expect" else None
    return _target(target) if isinstance(target, dict) else []
