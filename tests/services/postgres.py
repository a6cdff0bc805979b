"""A real PostgreSQL for the tests, started for the run and stopped afterwards.

Where a Docker engine is reachable, Testcontainers runs the official image;
elsewhere Debian's PostgreSQL binaries (``/usr/lib/postgresql/<ver>/bin``)
start a throw-away cluster in a temporary folder, on 127.0.0.1 and a free port
only, with SCRAM password authentication and a random password.

``PIPELINE_TEST_POSTGRES=docker|local`` forces one of the two.
"""
from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from typing import Any, Iterator

from . import base
from .base import ServiceUnavailable, free_port

DATABASE = "pipelines"
USER = "postgres"
IMAGE = os.environ.get("PIPELINE_TEST_POSTGRES_IMAGE", "postgres:16-alpine")


@dataclass(frozen=True)
class Postgres:
    """Where the test PostgreSQL listens and how to log in."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)
    database: str = DATABASE
    backend: str = "local"

    @property
    def jdbc_url(self) -> str:
        return f"jdbc:postgresql://{self.host}:{self.port}/{self.database}"

    def connect(self, database: str | None = None, password: str | None = None) -> Any:
        """A psycopg (v3) connection in autocommit mode."""
        import psycopg

        return psycopg.connect(host=self.host, port=self.port, user=self.user,
                               password=self.password if password is None else password,
                               dbname=database or self.database, autocommit=True, connect_timeout=10)

    def stop(self) -> None:
        """Stops the server (fast shutdown: open sessions are ended); its data and port are kept (local only)."""
        _control(self).halt()

    def start(self) -> None:
        """Starts a stopped server again on the same port and data; returns when it accepts logins."""
        _control(self).resume()
        _wait_ready(self)

    @property
    def running(self) -> bool:
        return _control(self).started


#: the local clusters behind running ``Postgres`` objects, by (host, port): not a field, so that
#: ``dataclasses.asdict(pg)`` stays plain data
_CLUSTERS: dict[tuple[str, int], "_LocalCluster"] = {}


def _control(pg: Postgres) -> "_LocalCluster":
    cluster = _CLUSTERS.get((pg.host, pg.port))
    if cluster is None:
        raise ServiceUnavailable(f"stop/start needs the local backend (this one is {pg.backend!r})")
    return cluster


# --------------------------------------------------------------------- helpers


def find_pg_bin() -> str:
    """The folder with ``initdb`` and ``pg_ctl`` (``$PG_BIN``, else the newest Debian/PATH install)."""
    candidates = []
    if os.environ.get("PG_BIN"):
        candidates.append(os.environ["PG_BIN"])

    def version(path: str) -> tuple[int, ...]:
        ver = path.split(os.sep)[-3]
        return tuple(int(p) for p in ver.split(".") if p.isdigit()) or (0,)

    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    candidates += [os.path.dirname(p) for p in sorted(found, key=version, reverse=True)]
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(os.path.dirname(on_path))
    for folder in candidates:
        if all(os.access(os.path.join(folder, exe), os.X_OK) for exe in ("initdb", "pg_ctl")):
            return folder
    raise ServiceUnavailable(
        "no Docker engine and no PostgreSQL server binaries (initdb, pg_ctl) were found; "
        "run `make system` or `apt-get install postgresql` (or set PG_BIN to their folder)")


def _wait_ready(pg: Postgres, timeout: float = 60.0) -> None:
    import psycopg

    def logs_in() -> bool:
        try:
            with pg.connect(database="postgres"):
                return True
        except psycopg.OperationalError:
            return False

    base.wait_until(logs_in, timeout, f"PostgreSQL at {pg.host}:{pg.port} accepting logins", interval=0.2)


def _create_database(pg: Postgres) -> None:
    from psycopg import sql

    with pg.connect(database="postgres") as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (pg.database,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(pg.database)))


# ---------------------------------------------------------------------- docker


@contextlib.contextmanager
def _docker_postgres() -> Iterator[Postgres]:
    try:
        from testcontainers.community.postgres import PostgresContainer
    except ImportError:  # testcontainers < 4.14
        from testcontainers.postgres import PostgresContainer

    password = secrets.token_urlsafe(18)
    container = PostgresContainer(IMAGE, username=USER, password=password, dbname=DATABASE, driver=None)
    container.start()
    try:
        pg = Postgres(container.get_container_host_ip(), int(container.get_exposed_port(5432)), USER, password,
                      DATABASE, backend="docker")
        _wait_ready(pg)
        _create_database(pg)
        yield pg
    finally:
        container.stop()


# ----------------------------------------------------------------------- local


class _LocalCluster:
    """A PostgreSQL cluster made with initdb in a temporary folder and run with pg_ctl."""

    def __init__(self) -> None:
        self.bin = find_pg_bin()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            try:
                self.os_user = pwd.getpwnam("postgres")
            except KeyError:
                raise ServiceUnavailable(
                    "running as root, PostgreSQL must run as another user, and there is no 'postgres' "
                    "OS user; install the `postgresql` package (it creates it) or run the tests as a "
                    "normal user") from None
        self.root = self._make_root()
        self.data = os.path.join(self.root, "data")
        self.sockets = os.path.join(self.root, "sockets")
        self.log = os.path.join(self.root, "postgres.log")
        self.password = secrets.token_urlsafe(18)
        self.port: int | None = None
        self.pid = 0
        self.started = False

    def _make_root(self) -> str:
        root = tempfile.mkdtemp(prefix="pipeline-magics-pg-")
        if self.as_root and not self._postgres_can_enter(root):
            # $TMPDIR is not reachable for the postgres user: fall back to /tmp
            shutil.rmtree(root, ignore_errors=True)
            root = tempfile.mkdtemp(prefix="pipeline-magics-pg-", dir="/tmp")
        os.makedirs(os.path.join(root, "sockets"))
        if self.as_root:
            for folder in (root, os.path.join(root, "sockets")):
                os.chown(folder, self.os_user.pw_uid, self.os_user.pw_gid)
        os.chmod(root, 0o700)
        return root

    def _postgres_can_enter(self, folder: str) -> bool:
        parent = os.path.dirname(folder)
        return subprocess.run(["runuser", "-u", "postgres", "--", "test", "-x", parent],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0

    def _cmd(self, exe: str, *args: str) -> list[str]:
        cmd = [os.path.join(self.bin, exe), *args]
        return ["runuser", "-u", "postgres", "--", *cmd] if self.as_root else cmd

    def _run(self, exe: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        env = base.service_env({k: v for k, v in os.environ.items() if not k.startswith("PG")})
        env.update(LC_ALL="C", LANG="C")
        return subprocess.run(self._cmd(exe, *args), cwd=self.root, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)

    def _log_tail(self) -> str:
        return base.tail(self.log, 30)

    def init(self) -> None:
        pwfile = os.path.join(self.root, "pwfile")
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(self.password + "\n")
        if self.as_root:
            os.chown(pwfile, self.os_user.pw_uid, self.os_user.pw_gid)
        try:
            done = self._run("initdb", "-D", self.data, "-U", USER, "-A", "scram-sha-256", "--pwfile", pwfile,
                             "-E", "UTF8", "--locale=C", "--no-sync")
        finally:
            os.unlink(pwfile)
        if done.returncode != 0:
            raise ServiceUnavailable(f"initdb failed ({done.returncode}):\n{done.stdout}")

    def _pg_ctl_start(self) -> subprocess.CompletedProcess[str]:
        opts = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.sockets} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=50")
        done = self._run("pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "60", "-o", opts, "start")
        if done.returncode == 0:
            self.started = True
            # pg_ctl starts the postmaster in a session of its own: it leads its process group
            with open(os.path.join(self.data, "postmaster.pid"), encoding="utf-8") as fh:
                self.pid = int(fh.readline())
            base.track("postgres", self.pid, stopper=self._pg_ctl_stop)
        return done

    def _pg_ctl_stop(self) -> subprocess.CompletedProcess[str]:
        done = self._run("pg_ctl", "-D", self.data, "-m", "fast", "-w", "-t", "30", "stop", timeout=60)
        if done.returncode != 0:
            done = self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop", timeout=60)
        if self.pid:
            base.untrack(self.pid)
        self.started = False
        return done

    def start(self, attempts: int = 3) -> None:
        for attempt in range(attempts):
            self.port = free_port()
            done = self._pg_ctl_start()
            if done.returncode == 0:
                return
            if "could not bind" not in self._log_tail() or attempt == attempts - 1:
                raise ServiceUnavailable(f"pg_ctl start failed ({done.returncode}):\n{done.stdout}\n"
                                         f"--- {self.log}:\n{self._log_tail()}")

    def halt(self) -> None:
        """``pg_ctl stop -m fast``, keeping the folder (``resume`` starts it again on the same port)."""
        done = self._pg_ctl_stop()
        if done.returncode != 0 and "not running" not in done.stdout.lower():
            raise RuntimeError(f"pg_ctl stop failed ({done.returncode}):\n{done.stdout}")

    def resume(self) -> None:
        done = self._pg_ctl_start()
        if done.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed ({done.returncode}):\n{done.stdout}\n{self._log_tail()}")

    def stop(self) -> None:
        try:
            if self.started:
                self._pg_ctl_stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def _local_postgres() -> Iterator[Postgres]:
    cluster = _LocalCluster()
    try:
        cluster.init()
        cluster.start()
        assert cluster.port is not None
        pg = Postgres("127.0.0.1", cluster.port, USER, cluster.password, DATABASE, backend="local")
        _CLUSTERS[(pg.host, pg.port)] = cluster
        _wait_ready(pg)
        _create_database(pg)
        yield pg
    finally:
        _CLUSTERS.pop(("127.0.0.1", cluster.port or 0), None)
        cluster.stop()


# ---------------------------------------------------------------------- public


@contextlib.contextmanager
def postgres_service(backend: str | None = None) -> Iterator[Postgres]:
    """A running PostgreSQL with an empty ``pipelines`` database; stopped and removed on exit.

    ``backend``: ``docker`` (Testcontainers), ``local`` (initdb/pg_ctl) or None
    (``$PIPELINE_TEST_POSTGRES``, else Docker when reachable, else local).
    """
    factory = _docker_postgres if base.backend("PIPELINE_TEST_POSTGRES", backend) == "docker" else _local_postgres
    with factory() as pg:
        yield pg


if __name__ == "__main__":  # a quick manual check: python -m services.postgres (from tests/)
    with postgres_service() as pg, pg.connect() as conn:
        print(pg.backend, pg.jdbc_url, conn.execute("SELECT version()").fetchone()[0])
