"""Executes the tutorial notebooks in place and stores their outputs, with the services they need.

    python examples/execute.py                       # every examples/NN-*.ipynb
    python examples/execute.py examples/03-*.ipynb   # some of them

Like the test suite (examples/conftest.py): a notebook about Kafka gets a broker
(``KAFKA_BOOTSTRAP``), one about Vault gets a seeded dev Vault (``PIPELINE_TEST_VAULT_ADDR``
and ``_TOKEN``), one about Spark Connect a Connect server (``PIPELINE_SPARK_REMOTE``), each
started before the notebook's kernel, which inherits the addresses, and stopped afterwards,
also when a cell fails. Each notebook runs in its own kernel, in its own folder, with a
local Spark on 127.0.0.1. Run it with the environment the suite uses: PYTHONPATH (default:
this checkout), PYSPARK_PYTHON (default: this Python), PIPELINE_JARS_DIR.
"""
from __future__ import annotations

import contextlib
import glob
import os
import sys
from typing import Iterator

import nbformat
from nbclient import NotebookClient

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, os.pardir, "tests"))

#: seconds a cell may take (a Spark session starts in the first pipeline cell)
CELL_TIMEOUT = 900
#: what the JVM prints to the kernel's stderr as Spark starts (nbval's kernel does not show it)
JVM_START = ("WARNING: Using incubator modules", "Setting default log level", "To adjust logging level")


def drop_jvm_start(cell: nbformat.NotebookNode) -> None:
    """Removes the JVM's start-up lines from a cell's stderr (and the stderr outputs left empty)."""
    kept = []
    for output in cell.get("outputs", []):
        if output.output_type == "stream" and output.name == "stderr":
            output.text = "".join(line for line in output.text.splitlines(keepends=True)
                                  if not line.startswith(JVM_START))
            if not output.text:
                continue
        kept.append(output)
    if "outputs" in cell:
        cell.outputs = kept


@contextlib.contextmanager
def _environ(**values: str) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            os.environ.pop(name, None) if value is None else os.environ.__setitem__(name, value)


@contextlib.contextmanager
def services_for(notebook: str) -> Iterator[None]:
    """The services a notebook needs, chosen by its name as the suite does; all stopped on exit."""
    name = os.path.basename(notebook)
    with contextlib.ExitStack() as stack:
        if "kafka" in name and "KAFKA_BOOTSTRAP" not in os.environ:
            from services.kafka import kafka_service

            broker = stack.enter_context(kafka_service())
            stack.enter_context(_environ(KAFKA_BOOTSTRAP=broker.bootstrap))
        if "vault" in name and "PIPELINE_TEST_VAULT_ADDR" not in os.environ:
            from services.vault import seed, vault_service

            vault = seed(stack.enter_context(vault_service()))
            stack.enter_context(_environ(PIPELINE_TEST_VAULT_ADDR=vault.addr,
                                         PIPELINE_TEST_VAULT_TOKEN=vault.root_token))
        if "connect" in name and "PIPELINE_SPARK_REMOTE" not in os.environ:
            from services.spark_cluster import connect_server

            server = stack.enter_context(connect_server())
            stack.enter_context(_environ(PIPELINE_SPARK_REMOTE=server.url))
        yield


def execute(notebook: str) -> None:
    """Runs every cell in a fresh kernel and writes the notebook back with its outputs."""
    nb = nbformat.read(notebook, as_version=4)
    # without the live view, as nbval runs them (examples/conftest.py): each run's output is the static result
    # the live view leaves, which nbval can compare (it ignores the update that replaces the view)
    with services_for(notebook), _environ(PIPELINE_LIVE_VIEW=os.environ.get("PIPELINE_LIVE_VIEW", "0")):
        client = NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3", record_timing=False,
                                resources={"metadata": {"path": os.path.dirname(os.path.abspath(notebook))}})
        client.execute()  # a cell that fails (unless tagged raises-exception) raises CellExecutionError
    nb.metadata.pop("widgets", None)  # no widget frontend ran: no widget state worth keeping
    for cell in nb.cells:
        cell.metadata.pop("execution", None)  # timings of an earlier run
        drop_jvm_start(cell)
    nbformat.write(nb, notebook)


def main(argv: list[str]) -> int:
    notebooks = argv or sorted(glob.glob(os.path.join(HERE, "[0-9][0-9]-*.ipynb")))
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYTHONPATH", os.path.normpath(os.path.join(HERE, os.pardir)))  # this checkout's package
    failed = []
    for notebook in notebooks:
        print(f"executing {notebook}", flush=True)
        try:
            execute(notebook)
        except Exception as exc:  # noqa: BLE001 - report it, leave the notebook as it was, go on
            print(f"FAILED {notebook} (left unchanged):\n{exc}", file=sys.stderr, flush=True)
            failed.append(notebook)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
