"""Settings and options shared by fromPostgres and toPostgres (JDBC)."""
from __future__ import annotations

import re
from typing import Any

from pydantic import Field, SecretStr, model_validator

from .registry import Config

DRIVER = "org.postgresql.Driver"


class PostgresConnection(Config):
    """Where the database is and who connects: ``url`` or ``host``/``port``/``database``."""

    url: str | None = Field(None, description="jdbc:postgresql://host:port/database")
    host: str | None = None
    port: int = 5432
    database: str | None = None
    user: str | None = None
    password: SecretStr | None = Field(None, description="secret: use a vault:/env: reference")
    options: dict[str, Any] = Field(default_factory=dict, description="more Spark JDBC options")

    @model_validator(mode="after")
    def _where(self) -> "PostgresConnection":
        if not self.url and not (self.host and self.database):
            raise ValueError("set 'url', or 'host' and 'database'")
        if self.url and not self.url.startswith("jdbc:postgresql:"):
            raise ValueError("'url' must start with jdbc:postgresql://")
        return self

    @property
    def jdbc_url(self) -> str:
        return self.url or f"jdbc:postgresql://{self.host}:{self.port}/{self.database}"

    def jdbc_options(self) -> dict[str, str]:
        """The Spark JDBC options for this connection (the password included, never logged)."""
        opts = {"url": self.jdbc_url, "driver": DRIVER}
        if self.user:
            opts["user"] = self.user
        if self.password is not None:
            opts["password"] = self.password.get_secret_value()
        opts.update({k: str(v) for k, v in self.options.items()})
        return opts


# ------------------------------------------------------------ atomic writes (toPostgres)
#
# Spark's JDBC writer commits each partition on its own, and its overwrite drops the table
# before it writes, so a failed or cancelled write leaves a half-written (or missing) table.
# toPostgres therefore writes to a staging table next to the target (Spark's own writer, any
# number of partitions), then swaps it in with ONE PostgreSQL statement: a PL/pgSQL ``DO`` block,
# atomic under autocommit. Only Spark's JDBC API is used (no py4j, so Spark Connect works too):
# the block is the ``sessionInitStatement`` of a one-row JDBC read. Spark may open more than one
# connection for a read, so the block is idempotent: it does nothing once the staging table is gone,
# and an advisory lock keeps two runs of it from overlapping.

#: Spark JDBC options that configure a read or a write, not the connection (left out of the swap's read)
_NOT_CONNECTION = frozenset(o.lower() for o in (
    "dbtable", "query", "batchsize", "truncate", "cascadeTruncate", "createTableOptions", "createTableColumnTypes",
    "customSchema", "isolationLevel", "numPartitions", "partitionColumn", "lowerBound", "upperBound", "fetchsize",
    "sessionInitStatement", "prepareQuery", "queryTimeout", "pushDownPredicate", "pushDownAggregate",
    "pushDownLimit", "pushDownOffset", "pushDownTableSample", "mode"))

_IDENT = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_]*)'
TABLE_NAME = re.compile(rf"^{_IDENT}(?:\.{_IDENT}){{0,2}}$")
_PART = re.compile(_IDENT)
MAX_IDENT = 63  # PostgreSQL's NAMEDATALEN - 1, in bytes


def check_table_name(table: str) -> str:
    """``table`` if it is ``[database.][schema.]name`` with plain or double-quoted parts, else ValueError."""
    if not TABLE_NAME.match(table.strip()):
        raise ValueError(f"'{table}' is not a table name: use [schema.]name (quote a part with \"...\")")
    return table.strip()


def _parts(table: str) -> list[str]:
    return _PART.findall(check_table_name(table))


def bare_name(table: str) -> str:
    """The relation's own name as PostgreSQL stores it (unquoted parts fold to lower case)."""
    last = _parts(table)[-1]
    return last[1:-1].replace('""', '"') if last.startswith('"') else last.lower()


def staging_table(table: str, tag: str) -> str:
    """The staging table for ``table``: the same schema, the name with ``__pm_<tag>`` appended (63 bytes at most)."""
    parts = _parts(table)
    suffix = f"__pm_{tag}"
    name = bare_name(table)
    while len((name + suffix).encode()) > MAX_IDENT:
        name = name[:-1]
    parts[-1] = '"' + (name + suffix).replace('"', '""') + '"'
    return ".".join(parts)


def sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def swap_statement(target: str, staging: str, mode: str, truncate: bool = False) -> str:
    """The ``DO`` block that moves ``staging`` into ``target`` in one transaction, then drops it.

    append: INSERT INTO target (its columns matched by name, case-insensitively as Spark does)
    SELECT FROM staging; overwrite: DROP target and RENAME staging (Spark's own overwrite
    recreates the table from the data's schema), or with ``truncate`` TRUNCATE target + INSERT
    (keeps its definition, indexes and grants); error/errorifexists: refuses when the target
    exists; ignore: leaves an existing target alone. A missing target is the staging table renamed.
    """
    if mode not in ("append", "overwrite", "error", "errorifexists", "ignore"):
        raise ValueError(f"unknown write mode '{mode}'")
    t, s = sql_literal(target), sql_literal(staging)
    if mode in ("error", "errorifexists"):
        existing = f"RAISE EXCEPTION 'table % already exists (mode: {mode})', {t} USING ERRCODE = '42P07';"
    elif mode == "ignore":
        existing = "EXECUTE format('DROP TABLE %s', stage);"
    elif mode == "overwrite" and not truncate:
        existing = ("EXECUTE format('DROP TABLE %s', dest);\n"
                    "    EXECUTE format('ALTER TABLE %s RENAME TO %I', stage, new_name);")
    else:
        clear = "EXECUTE format('TRUNCATE TABLE %s', dest);" if mode == "overwrite" else ""
        existing = f"""SELECT string_agg(quote_ident(s.attname), ', ' ORDER BY s.attnum) FILTER (WHERE d.attname IS NULL),
           string_agg(quote_ident(d.attname), ', ' ORDER BY s.attnum),
           string_agg(quote_ident(s.attname), ', ' ORDER BY s.attnum)
      INTO missing, dest_cols, stage_cols
      FROM pg_attribute s
      LEFT JOIN LATERAL (SELECT a.attname FROM pg_attribute a
                          WHERE a.attrelid = dest AND a.attnum > 0 AND NOT a.attisdropped
                            AND lower(a.attname) = lower(s.attname)
                          ORDER BY a.attname = s.attname DESC LIMIT 1) d ON true
     WHERE s.attrelid = stage AND s.attnum > 0 AND NOT s.attisdropped;
    IF missing IS NOT NULL THEN
      RAISE EXCEPTION 'table % has no column(s) % of the data', {t}, missing USING ERRCODE = '42703';
    END IF;
    {clear}
    EXECUTE format('INSERT INTO %s (%s) SELECT %s FROM %s', dest, dest_cols, stage_cols, stage);
    EXECUTE format('DROP TABLE %s', stage);"""
    return f"""DO $pm_swap$
DECLARE
  dest regclass;
  stage regclass;
  new_name text := {sql_literal(bare_name(target))};
  missing text;
  dest_cols text;
  stage_cols text;
BEGIN
  PERFORM pg_advisory_xact_lock(hashtext({s}));
  stage := to_regclass({s});
  IF stage IS NULL THEN
    RETURN;  -- swapped already (Spark may run this statement on more than one connection)
  END IF;
  dest := to_regclass({t});
  IF dest IS NULL THEN
    EXECUTE format('ALTER TABLE %s RENAME TO %I', stage, new_name);
  ELSE
    {existing}
  END IF;
END
$pm_swap$"""


def drop_statement(*tables: str) -> str:
    """Drops staging tables that are there (best-effort clean-up)."""
    return "; ".join(f"DROP TABLE IF EXISTS {check_table_name(t)}" for t in tables)


def connection_options(opts: dict[str, str]) -> dict[str, str]:
    """The options of ``opts`` that say where and how to connect (for a statement run through a read)."""
    return {k: v for k, v in opts.items() if k.lower() not in _NOT_CONNECTION}


def run_statement(spark: Any, opts: dict[str, str], statement: str | None, query: str = "SELECT 1 AS done") -> list[Any]:
    """Runs ``statement`` on the database through Spark's JDBC reader (its ``sessionInitStatement``),
    then ``query``; returns the query's rows. Under autocommit (no fetch size is passed, so Spark
    leaves it on) the statement is its own transaction, and its error fails the read."""
    reader = spark.read.format("jdbc").options(**connection_options(opts)).option("query", query)
    if statement:
        reader = reader.option("sessionInitStatement", statement)
    return reader.load().collect()
