"""How a ``%%pipeline`` cell waits for its run while widget messages (a Cancel click) go on being handled.

A run with widgets works on a thread of its own (a :class:`Background`, started by
:mod:`.live`); the cell waits for it here. ``wait`` pumps widget messages with jupyter-ui-poll
(ipykernel 6); ``wait_async`` awaits, which on ipykernel 7 lets the kernel dispatch them
itself, and ``await_pipeline_cells`` makes ``%%pipeline`` cells await.
"""
from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any, Callable, NoReturn

from ..errors import PipelineCancelledError


class Background:
    """``work()`` on a thread of its own; ``cancel`` stops it, ``shown`` gets its result (None when it has
    none) once it has ended."""

    def __init__(self, name: str, work: Callable[[], Any], cancel: Callable[[], None],
                 shown: Callable[[Any], None] = lambda result: None) -> None:
        self.name, self._cancel, self._shown = name, cancel, shown
        self._outcome: dict[str, Any] = {}
        self.thread = threading.Thread(target=self._work, args=(work,), name=f"pipeline-{name}", daemon=True)
        self.thread.start()

    def _work(self, work: Callable[[], Any]) -> None:
        try:
            self._outcome["result"] = work()
        except BaseException as exc:  # noqa: BLE001 - handed to the cell's thread
            self._outcome["error"] = exc

    def outcome(self) -> Any:
        """The work's result (or its error, raised), once it has ended."""
        self._shown(self._outcome.get("result"))
        if "error" in self._outcome:
            raise self._outcome["error"]
        return self._outcome["result"]

    def interrupt(self) -> NoReturn:
        """The cell was interrupted: cancels the work, waits a minute at most for it to stop."""
        self._cancel()
        self.thread.join(60)
        self._shown(self._outcome.get("result"))
        raise PipelineCancelledError("interrupted", pipeline=self.name) from None


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


def wait(started: Any) -> Any:
    """The outcome of ``started``: a :class:`Background` is waited for while widget messages are
    pumped with jupyter-ui-poll (ipykernel 6; elsewhere the pump does nothing); anything else
    is already an outcome."""
    if not isinstance(started, Background):
        return started
    try:
        with _ui_events() as poll:
            while started.thread.is_alive():
                poll(20)  # Cancel clicks arrive on the shell channel, queued behind this cell
                started.thread.join(0.05)
    except KeyboardInterrupt:
        started.interrupt()
    return started.outcome()


async def wait_async(started: Any) -> Any:
    """``wait``, awaiting a :class:`Background` so that the kernel goes on handling messages."""
    if not isinstance(started, Background):
        return started
    try:
        while started.thread.is_alive():
            await asyncio.sleep(0.05)
    except (KeyboardInterrupt, asyncio.CancelledError):
        started.interrupt()
    return started.outcome()


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
