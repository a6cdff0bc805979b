"""What every test service shares: free ports, polling, and child processes that never outlive the run.

Every process a service starts goes through :func:`spawn` (or :func:`track`, for a daemon such as
PostgreSQL's postmaster that another program started):

- it runs in a process group of its own: Ctrl-C in a terminal does not reach it, and stopping the
  group also stops what it started (a worker's executors, a kernel's Spark JVM);
- its environment carries the run's mark (``PIPELINE_TEST_SERVICE_OF=<run id>``), so that the end of
  the run finds it whoever started it (a notebook kernel too, see :func:`leftovers`);
- a watchdog (``sh``) reads a pipe from this process and ends the group when the pipe closes:
  when this process ends, however it ends (even SIGKILL), the service ends too;
- :func:`stop_all` stops whatever is still tracked; it runs at exit, and the pytest plugin calls it
  when the session finishes.
"""
from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

HOST = "127.0.0.1"
#: this run's id; processes started by the run (notebook kernels) inherit it
RUN_VAR = "PIPELINE_TEST_RUN"
#: in the environment of every service process: the id of the run that started it
MARK_VAR = "PIPELINE_TEST_SERVICE_OF"

T = TypeVar("T")


class ServiceUnavailable(RuntimeError):
    """The service cannot be started here (the message says what to install or run)."""


# ------------------------------------------------------------------ ports, files


def free_port(host: str = HOST) -> int:
    """A TCP port nobody listens on now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def tail(path: str, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file ('' when there is none)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return "".join(fh.readlines()[-lines:])
    except OSError:
        return ""


def docker_available() -> bool:
    """True when a Docker engine answers (the Docker SDK's ping, else ``docker info``)."""
    try:
        import docker  # the SDK testcontainers itself uses

        client = docker.from_env(timeout=5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # noqa: BLE001 - no SDK, no socket, no permission: no Docker
        pass
    if shutil.which("docker"):
        try:
            return subprocess.run(["docker", "info"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  timeout=20).returncode == 0
        except (OSError, subprocess.SubprocessError):
            return False
    return False


def backend(variable: str, given: str | None = None) -> str:
    """``docker`` or ``local``: ``given``, else ``$variable``, else Docker when one answers."""
    name = (given or os.environ.get(variable) or "").strip().lower()
    if not name:
        name = "docker" if docker_available() else "local"
    if name not in ("docker", "local"):
        raise ValueError(f"unknown backend {name!r} ({variable}): use docker or local")
    return name


# ---------------------------------------------------------------------- waiting


def wait_until(check: Callable[[], T], timeout: float, what: str, interval: float = 0.1,
               alive: Callable[[], None] | None = None, error: type[Exception] = ServiceUnavailable) -> T:
    """Polls ``check`` until it returns something true and returns that.

    ``alive`` is called before each try and may raise (a process that exited while starting);
    after ``timeout`` seconds ``error`` (tests pass AssertionError) says ``what`` did not happen.
    """
    deadline = time.monotonic() + timeout
    while True:
        if alive is not None:
            alive()
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise error(f"{what}: not after {timeout:.0f}s")
        time.sleep(interval)


# -------------------------------------------------------------- child processes

# Reads its standard input until this process goes away, then ends the service's process group
# (and removes its folder, when one is given).
WATCHDOG = ('read _ignored; kill -TERM -- "-$1" 2>/dev/null; sleep 3; kill -KILL -- "-$1" 2>/dev/null; '
            '[ -n "$2" ] && rm -rf "$2"; exit 0')


@dataclass
class Child:
    """A service process this run started (the leader of its own process group)."""

    name: str
    pid: int
    popen: subprocess.Popen | None
    watchdog: subprocess.Popen | None
    stopper: Callable[[], None] | None = None


_CHILDREN: dict[int, Child] = {}


def run_id() -> str:
    """This run's id (made on first use; a kernel the run starts inherits it)."""
    return os.environ.setdefault(RUN_VAR, uuid.uuid4().hex[:12])


def new_run() -> str:
    """A fresh run id (a pytest session inside another one must not count its parent's services)."""
    os.environ[RUN_VAR] = uuid.uuid4().hex[:12]
    return os.environ[RUN_VAR]


def service_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's) with the run's mark added."""
    out = dict(os.environ if env is None else env)
    out[MARK_VAR] = run_id()
    return out


def _watch(pid: int, folder: str | None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != MARK_VAR}
    return subprocess.Popen(["sh", "-c", WATCHDOG, "service-watchdog", str(pid), folder or ""],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=env, start_new_session=True)


def spawn(name: str, cmd: list[str], log: str | None = None, env: dict[str, str] | None = None,
          cwd: str | None = None, folder: str | None = None) -> subprocess.Popen:
    """Starts a service process: its own process group, the run's mark, output to ``log``, a watchdog.

    ``folder`` is removed by the watchdog if this process dies without stopping the service.
    """
    out: Any = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - closed below
    try:
        proc = subprocess.Popen(cmd, cwd=cwd, env=service_env(env), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    finally:
        if log:
            out.close()
    _CHILDREN[proc.pid] = Child(name, proc.pid, proc, _watch(proc.pid, folder))
    return proc


def track(name: str, pid: int, stopper: Callable[[], None] | None = None) -> None:
    """Tracks a service process another program started (a daemon leading its own process group)."""
    _CHILDREN[pid] = Child(name, pid, None, _watch(pid, None), stopper)


def tracked() -> list[Child]:
    """The service processes this process started and has not stopped yet."""
    return list(_CHILDREN.values())


def untrack(pid: int) -> None:
    """Forgets a process (it was stopped by its owner); its watchdog is disarmed."""
    child = _CHILDREN.pop(pid, None)
    if child is not None and child.watchdog is not None:
        _disarm(child.watchdog)


def _disarm(watchdog: subprocess.Popen) -> None:
    # killed before its pipe closes: it must not signal a process group id reused later
    with contextlib.suppress(OSError):
        watchdog.kill()
    with contextlib.suppress(OSError, ValueError):
        watchdog.stdin.close()  # type: ignore[union-attr]
    watchdog.wait()


def group_alive(pgid: int) -> bool:
    """True while some process of the group ``pgid`` exists."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member we may not signal still counts
        return True
    return True


def _gone(pid: int, popen: subprocess.Popen | None) -> bool:
    if popen is not None:
        popen.poll()  # reaps the leader, which would otherwise linger as a zombie in its group
        if popen.returncode is None:
            return False
    return not group_alive(pid)


def stop(proc: subprocess.Popen | int, timeout: float = 30.0, kill: bool = False) -> None:
    """Ends a service's process group: SIGTERM (or SIGKILL with ``kill``), SIGKILL for what is left."""
    popen = proc if isinstance(proc, subprocess.Popen) else None
    pid = proc.pid if isinstance(proc, subprocess.Popen) else proc
    untrack(pid)
    steps = ((signal.SIGKILL, 10.0),) if kill else ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0))
    for sig, wait in steps:
        if _gone(pid, popen):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if _gone(pid, popen):
                return
            time.sleep(0.05)


def stop_tree(proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """:func:`stop`, then ends its descendants that left its process group (Jupyter's kernels have their own)."""
    import psutil

    try:
        known = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        known = []
    stop(proc, timeout=timeout)
    alive = []
    for p in known:
        with contextlib.suppress(psutil.Error):
            if p.is_running():
                p.terminate()
                alive.append(p)
    _, still = psutil.wait_procs(alive, timeout=10)
    for p in still:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(still, timeout=10)


def stop_all() -> list[str]:
    """Stops every service process still tracked; returns their names (none at a clean end)."""
    names = []
    for child in list(_CHILDREN.values()):
        names.append(f"{child.name} (pid {child.pid})")
        if child.stopper is not None:
            with contextlib.suppress(Exception):
                child.stopper()
        stop(child.popen or child.pid, timeout=10)
    return names


def leftovers(run: str | None = None) -> list[str]:
    """Processes still running with this run's mark, whoever started them: ``pid command line``."""
    import psutil

    mark, found = run or run_id(), []
    for process in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if process.pid == os.getpid() or process.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if process.environ().get(MARK_VAR) == mark:
                found.append(f"{process.pid} {' '.join(process.info['cmdline'] or [])[:160]}")
        except psutil.Error:  # gone meanwhile, or not ours to read
            continue
    return found


def kill_leftovers(lines: list[str]) -> None:
    """SIGKILL to the processes :func:`leftovers` listed."""
    for line in lines:
        with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):
            os.kill(int(line.split()[0]), signal.SIGKILL)


atexit.register(stop_all)
