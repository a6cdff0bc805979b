"""A real JupyterLab and a real Chromium for the browser tests, started for the run and stopped afterwards.

:func:`jupyter_lab` runs ``jupyter lab`` from this virtual environment on
127.0.0.1, a free port and a random token, with its root in a temporary folder
and its settings, workspaces and runtime files in folders of their own (no news
pop-up, no restored tabs). Its kernels are the venv's ``python3`` kernel, so
they import ``pipeline_magics`` from here. On exit every kernel is shut down,
then the server, then whatever is left of the process tree (kernels, their
Spark JVMs) is killed: nothing outlives the run.

:func:`chromium` launches Debian's ``/usr/bin/chromium`` through Playwright
(``playwright install`` is not needed, nor used).

``python -m services.jupyter [FOLDER]`` (from ``tests/``) starts one in the foreground and
prints its URL, for looking at what the tests look at.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Iterator

from . import base
from .base import HOST, ServiceUnavailable, free_port, tail

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout
CHROMIUM = os.environ.get("PIPELINE_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
START_TIMEOUT = 90.0

#: User settings for the test server: no news or update checks (their toasts would cover the page), and
#: widget state saved into the notebook, as an analyst who turns it on gets (the tests check what it holds).
SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
        {"fetchNews": "false", "checkForUpdates": False},
    "@jupyter-widgets/jupyterlab-manager/plugin.jupyterlab-settings": {"saveState": True},
}


@dataclass
class JupyterLab:
    """A running ``jupyter lab``: its URL, token, root folder and REST helpers."""

    url: str
    token: str = field(repr=False)
    root_dir: str
    log: str
    proc: subprocess.Popen = field(repr=False)

    def notebook_url(self, name: str) -> str:
        """The page that opens notebook ``name`` (relative to the root folder), logged in by the token."""
        return f"{self.url}/lab/tree/{name}?token={self.token}"

    def api(self, method: str, path: str, body: Any = None, timeout: float = 30) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method,
                                         headers={"Authorization": f"token {self.token}",
                                                  "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            text = response.read().decode()
        return json.loads(text) if text else None

    def kernels(self) -> list[dict[str, Any]]:
        return self.api("GET", "/api/kernels")

    def shutdown_kernels(self) -> None:
        """Shuts every kernel down (a kernel's Spark JVM exits with it)."""
        for kernel in self.kernels():
            with contextlib.suppress(urllib.error.URLError, OSError):
                self.api("DELETE", f"/api/kernels/{kernel['id']}", timeout=60)

    def log_tail(self, lines: int = 40) -> str:
        return tail(self.log, lines)


@contextlib.contextmanager
def jupyter_lab(root_dir: str | None = None, env: dict[str, str] | None = None,
                make_lab: bool = False) -> Iterator[JupyterLab]:
    """A JupyterLab server on 127.0.0.1 for the duration of the ``with`` block.

    ``env`` is added to the server's environment, which its kernels inherit
    (service addresses, ``PIPELINE_CHECKPOINT_ROOT``, ...); a None value removes a variable.
    ``make_lab``: started the way the README says, with ``make lab`` (this venv as its ``VENV``),
    the test's address, token and root passed in ``JUPYTER_ARGS``.
    """
    jupyter = os.path.join(os.path.dirname(sys.executable), "jupyter")
    if not os.path.exists(jupyter):
        raise ServiceUnavailable("no `jupyter` next to this Python: pip install jupyterlab "
                                 "(it is in the project's `test` extra)")
    home = tempfile.mkdtemp(prefix="pipeline-magics-lab-")
    root = root_dir or os.path.join(home, "root")
    os.makedirs(root, exist_ok=True)
    settings = os.path.join(home, "settings")
    for name, value in SETTINGS.items():
        path = os.path.join(settings, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(value, fh)
    token = secrets.token_hex(24)
    log = os.path.join(home, "jupyter.log")
    child_env = dict(os.environ)
    child_env.update({
        "PATH": os.path.dirname(sys.executable) + os.pathsep + child_env.get("PATH", ""),
        "SPARK_LOCAL_IP": HOST,
        "PYSPARK_PYTHON": sys.executable,
        "JUPYTERLAB_SETTINGS_DIR": settings,
        "JUPYTERLAB_WORKSPACES_DIR": os.path.join(home, "workspaces"),
        "JUPYTER_RUNTIME_DIR": os.path.join(home, "runtime"),
        "PYTHONUNBUFFERED": "1",
    })
    child_env.pop("JUPYTER_TOKEN", None)
    for name, value in (env or {}).items():
        if value is None:
            child_env.pop(name, None)
        else:
            child_env[name] = value
    proc = lab = None
    try:
        for attempt in range(3):
            port = free_port()
            open(log, "w").close()
            args = ["--no-browser", f"--ServerApp.ip={HOST}", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
                    f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}"]
            command = ([shutil.which("make") or "make", "--no-print-directory", "-C", ROOT, "lab",
                        f"VENV={os.path.dirname(os.path.dirname(sys.executable))}", "JUPYTER_ARGS=" + " ".join(args)]
                       if make_lab else [jupyter, "lab", "--allow-root", *args])
            proc = base.spawn("jupyter lab", command, log=log, env=child_env, cwd=root)
            lab = JupyterLab(f"http://{HOST}:{port}", token, root, log, proc)
            if _answers(lab):
                break
            already = "already in use" in tail(log)
            base.stop(proc, timeout=20)
            if not already or attempt == 2:
                raise ServiceUnavailable(f"jupyter lab did not start on port {port}:\n{tail(log)}")
        yield lab
    finally:
        if proc is not None:
            if lab is not None and proc.poll() is None:
                with contextlib.suppress(Exception):
                    lab.shutdown_kernels()
            # SIGTERM: jupyter's own clean shutdown (kernels first); then whatever is left of the tree
            # (kernels lead process groups of their own, their Spark JVMs with them)
            base.stop_tree(proc, timeout=20)
        shutil.rmtree(home, ignore_errors=True)


def _answers(lab: JupyterLab) -> bool:
    """Polls ``/api/status`` until the server answers (True) or exits or time runs out (False)."""
    def status() -> bool:
        try:
            lab.api("GET", "/api/status", timeout=2)
            return True
        except (urllib.error.URLError, OSError, ValueError):
            return lab.proc.poll() is not None  # exited: stop waiting

    try:
        base.wait_until(status, START_TIMEOUT, "jupyter lab answering", interval=0.2)
    except ServiceUnavailable:
        return False
    return lab.proc.poll() is None


@contextlib.contextmanager
def chromium(executable: str = CHROMIUM) -> Iterator[Any]:
    """A headless Chromium (Debian's) driven by Playwright; closed on exit."""
    if not os.access(executable, os.X_OK):
        raise ServiceUnavailable(f"no Chromium at {executable}: apt-get install chromium (`make system`)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        raise ServiceUnavailable("no playwright: pip install playwright (it is in the project's `test` extra)") from exc
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


if __name__ == "__main__":  # python -m services.jupyter [FOLDER] (from tests/): a server to look at by hand
    with jupyter_lab(sys.argv[1] if len(sys.argv) > 1 else None) as server:
        print(f"{server.url}/lab?token={server.token}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while server.proc.poll() is None:
                time.sleep(1)
