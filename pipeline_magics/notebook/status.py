"""``%pipeline list``, ``status``, ``stop``, ``metrics``, ``last-error``, ``history`` and ``vault``: what the
kernel's pipelines did and hold, each a handler of the subcommand table (``commands.py``)."""
from __future__ import annotations

import argparse
import json
from typing import Any

from IPython.core.error import UsageError
from IPython.display import HTML, display

from .. import config
from ..metrics.exporters import to_prometheus
from ..run import history
from ..run.streaming import REGISTRY
from ..secrets import vault
from .vault_form import VaultLoginForm


def history_command(magics: Any, args: argparse.Namespace) -> Any:
    """The run history as a DataFrame, shown with a chart."""
    frame = history.read(args.name, args.last)
    display(HTML(history.chart_html(frame)))
    return frame


def list_command(magics: Any, args: argparse.Namespace) -> None:
    """Prints the kernel's pipelines, their status and their streaming queries."""
    if not magics.pipelines:
        print("no pipelines have run in this kernel")
    for name in magics.pipelines:
        result = magics.results.get(name)
        stream = REGISTRY.get(name)
        if stream is not None:
            stream.refresh()
        metrics = stream.run.metrics if stream else (result.metrics if result else None)
        status = metrics.status if metrics is not None else "running"  # as the run's status machine set it
        print(f"{name}: {status}")
        for q in stream.describe() if stream else []:
            state = "active" if q["active"] else ("failed: " + q["error"] if q["error"] else "stopped")
            print(f"  query {q['query']} ({state}), batch {q.get('batch_id', '—')}, "
                  f"{q.get('processed_rows_per_second') or 0:.1f} rows/s")


def status_command(magics: Any, args: argparse.Namespace) -> None:
    """Prints the step table (and query progress) of the named pipelines (none named: every one)."""
    for name in args.names or list(magics.results):
        if name not in magics.results:
            raise UsageError(f"no pipeline '{name}'; known: {', '.join(magics.results) or 'none'}")
        stream = REGISTRY.get(name)
        if stream is not None:
            stream.refresh()
        print(magics.results[name].metrics.to_text())
        for q in stream.describe() if stream else []:
            print(f"  query {q['query']}: {'active' if q['active'] else 'stopped'}, batch {q.get('batch_id')}, "
                  f"input {q.get('input_rows_per_second') or 0:.1f} rows/s, "
                  f"processed {q.get('processed_rows_per_second') or 0:.1f} rows/s"
                  + (f", error: {q['error']}" if q["error"] else ""))


def stop_command(magics: Any, args: argparse.Namespace) -> None:
    """Stops the named pipelines' runs and their queries (``--all``: every one)."""
    names = list(magics.pipelines) if args.all else args.names
    if not names:
        raise UsageError("usage: %pipeline stop NAME|--all")
    for name in names:
        if name not in magics.pipelines:
            raise UsageError(f"no pipeline '{name}'; known: {', '.join(magics.pipelines) or 'none'}")
        magics.pipelines[name].cancel()
        if REGISTRY.get(name) is not None:
            REGISTRY.stop(name)  # its end goes into the history
        print(f"stopped {name}")


def metrics_command(magics: Any, args: argparse.Namespace) -> None:
    """Prints a pipeline's metrics as text, JSON or Prometheus' exposition format."""
    if args.name not in magics.results:
        raise UsageError(f"no metrics for '{args.name}'; known: {', '.join(magics.results) or 'none'}")
    m = magics.results[args.name].metrics
    print({"json": m.to_json, "prometheus": lambda: to_prometheus(m), "text": m.to_text}[args.format]())


def last_error_command(magics: Any, args: argparse.Namespace) -> None:
    """Prints everything about the kernel's last failure, the full trace included."""
    exc = magics.last_error
    if exc is None:
        print("no pipeline has failed in this kernel")
        return
    print(f"{type(exc).__name__} [{exc.code}]: {exc}")
    if exc.config is not None:
        print("config:", json.dumps(exc.config, default=str))
    if exc.params:
        print("params:", json.dumps(exc.params, default=str))
    if exc.detail:
        print(exc.detail)


def vault_command(magics: Any, args: argparse.Namespace) -> Any:
    """Logs in to Vault (the form, where widgets can show, when no credential is named), out, or shows the state."""
    args = vault.settle(args)
    if args.interactive and config.enabled("widgets") and getattr(magics.shell, "kernel", None) is not None:
        return VaultLoginForm(address=args.address)  # the cell shows it; no secret ever enters it
    print(vault.command(args))
    return None
