"""The suite's services never outlive a run: a run stops what it started, and one that leaves a service
process behind fails, naming it. Each case runs a small pytest file in a child pytest with the plugin."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import psutil
import pytest

TESTS = os.path.dirname(os.path.abspath(__file__))

STARTS_A_VAULT = """
import os

from services import base

def test_uses_the_vault(vault):
    with open(os.environ["PID_FILE"], "w") as fh:
        fh.write(" ".join(str(child.pid) for child in base.tracked()))
    assert vault.client().is_authenticated()
"""

LEAKS = """
import os
import subprocess

from services import base, vault_service

KEPT = []  # a context manager that is collected closes itself: this one must not

def test_forgets_to_stop_its_services():
    KEPT.append(vault_service())
    vault = KEPT[0].__enter__()  # never left: the server outlives the test
    leaked = [str(child.pid) for child in base.tracked()]
    # and a service process someone else started (as a notebook kernel would), with the run's mark
    other = subprocess.Popen(["sleep", "300"], env=base.service_env(), start_new_session=True)
    leaked.append(str(other.pid))
    with open(os.environ["PID_FILE"], "w") as fh:
        fh.write(" ".join(leaked))
    assert vault.client().is_authenticated()
"""


def run_pytest(tmp_path, source: str) -> tuple[subprocess.CompletedProcess[str], list[int]]:
    """A child pytest on ``source`` with the services plugin; the pids the test wrote down."""
    (tmp_path / "test_child.py").write_text(textwrap.dedent(source))
    pid_file = tmp_path / "pids"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")]),
           "PID_FILE": str(pid_file), "PIPELINE_TEST_VAULT": "local"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "services.plugin",
                           "-q", "test_child.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    pids = [int(p) for p in pid_file.read_text().split()] if pid_file.exists() else []
    return done, pids


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.vault
def test_a_run_stops_the_services_it_started(tmp_path):
    done, pids = run_pytest(tmp_path, STARTS_A_VAULT)
    assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout + done.stderr
    assert "SERVICE LEAK" not in done.stdout
    assert len(pids) == 1 and not running(pids[0])


@pytest.mark.vault
def test_a_service_left_running_fails_the_run_and_is_killed(tmp_path):
    done, pids = run_pytest(tmp_path, LEAKS)
    assert "1 passed" in done.stdout, done.stdout + done.stderr
    assert done.returncode == 1, done.stdout
    assert "SERVICE LEAK" in done.stdout
    bao, sleeper = pids
    assert f"stopped now: bao server -dev (pid {bao})" in done.stdout
    assert f"killed now: {sleeper} sleep 300" in done.stdout
    assert not running(bao) and not running(sleeper)
