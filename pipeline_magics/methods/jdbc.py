"""Settings and options shared by fromPostgres and toPostgres (JDBC)."""
from __future__ import annotations

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
