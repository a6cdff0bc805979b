"""How a ``%%pipeline`` cell waits for its run while widget messages (a Cancel click) go on being handled.

The run works off the main thread; the cell is a generator that yields that thread
(``magic.PipelineMagics._cell``). ``drive`` waits here and pumps widget messages with
jupyter-ui-poll (ipykernel 6); ``drive_async`` awaits, which on ipykernel 7 lets the kernel
dispatch them itself, and ``await_pipeline_cells`` makes ``%%pipeline`` cells await.
"""
from __future__ import annotations

import asyncio
import contextlib
from typing import Any


@contextlib.contextmanager
def _ui_events() -> Any:
    """jupyter-ui-poll's event pump, or a no-op where it cannot run (no kernel)."""
    try:
        from jupyter_ui_poll import ui_events
    except ImportError:
        yield lambda n: None
        return
    with ui_events() as poll:
        yield poll


def drive(cell: Any) -> Any:
    """Runs a cell generator to its end here; while it waits for its worker, widget messages are
    pumped with jupyter-ui-poll (ipykernel 6; elsewhere the pump does nothing)."""
    try:
        worker = next(cell)
    except StopIteration as done:  # nothing to wait for (a dry run, no widgets)
        return done.value
    try:
        with _ui_events() as poll:
            while worker.is_alive():
                poll(20)  # Cancel clicks arrive on the shell channel, queued behind this cell
                worker.join(0.05)
    except KeyboardInterrupt:
        return _resume(cell, KeyboardInterrupt())
    return _resume(cell)


async def drive_async(cell: Any) -> Any:
    """Runs a cell generator, awaiting its worker so that the kernel goes on handling messages."""
    try:
        worker = next(cell)
    except StopIteration as done:
        return done.value
    try:
        while worker.is_alive():
            await asyncio.sleep(0.05)
    except (KeyboardInterrupt, asyncio.CancelledError):
        return _resume(cell, KeyboardInterrupt())
    return _resume(cell)


def _resume(cell: Any, interrupt: BaseException | None = None) -> Any:
    """Resumes the cell once its worker has ended (or throws ``interrupt`` in); returns its value."""
    try:
        cell.throw(interrupt) if interrupt is not None else cell.send(None)
    except StopIteration as done:
        return done.value
    raise RuntimeError("a cell waits for one worker only")


#: what IPython makes of a ``%%pipeline`` cell and of a ``%pipeline ...`` line
_CELL_CALL = "get_ipython().run_cell_magic('pipeline', "
_LINE_CALL = "get_ipython().run_line_magic('pipeline', "


def await_pipeline_cells(shell: Any) -> None:
    """Makes ``%%pipeline`` cells await their run where the kernel handles widget messages meanwhile.

    IPython turns a ``%%pipeline`` cell into one ``run_cell_magic`` call; this input transformer
    turns that (and a cell that is only ``%pipeline run FILE``) into ``await ...pipeline_async(...)``.
    Only for kernels without ``do_one_iteration`` (ipykernel 7 and later, where jupyter-ui-poll
    cannot pump messages).
    """
    kernel = getattr(shell, "kernel", None)
    if kernel is None or hasattr(kernel, "do_one_iteration"):
        return

    def transform(lines: list[str]) -> list[str]:
        if len(lines) != 1 or not getattr(shell, "autoawait", False):
            return lines
        code = lines[0]
        for prefix in (_CELL_CALL, _LINE_CALL):
            args = code[len(prefix):] if code.startswith(prefix) else ""
            if args and (prefix == _CELL_CALL or args.startswith("'run ")):
                return ["await get_ipython().magics_manager.registry['PipelineMagics'].pipeline_async(" + args]
        return lines

    transform.pipeline_magics = True  # type: ignore[attr-defined]
    forget_pipeline_cells(shell)
    shell.input_transformers_post.append(transform)


def forget_pipeline_cells(shell: Any) -> None:
    """Removes the transformer of ``await_pipeline_cells``."""
    shell.input_transformers_post[:] = [t for t in shell.input_transformers_post
                                        if not getattr(t, "pipeline_magics", False)]
