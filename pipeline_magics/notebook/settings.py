"""The settings of :mod:`config` as traitlets of the magics class, so ``%config PipelineMagics.<name> = ...``
works as JupySQL users expect: a value set so overrides its ``PIPELINE_*`` variable for this kernel,
and ``None`` goes back to the variable."""
from __future__ import annotations

from typing import Any

from IPython.core.magic import Magics
from traitlets import Bool, TraitType, Unicode, observe

from .. import config


def _trait(setting: config.Setting) -> TraitType:
    default = f"default {setting.default!r}" if setting.default is not None else "no default"
    text = f"{setting.meaning}. None: ${setting.variable} ({default})."
    kind = Bool if setting.flag else Unicode
    return kind(None, allow_none=True, help=text).tag(config=True)


def _push(self: Any, change: Any) -> None:
    config.override(change["name"], change["new"])


def _init(self: Any, shell: Any = None, **kwargs: Any) -> None:
    Magics.__init__(self, shell, **kwargs)
    for setting in config.SETTINGS:  # values from an IPython config file
        if getattr(self, setting.name) is not None:
            config.override(setting.name, getattr(self, setting.name))
    if shell is not None and self not in shell.configurables:
        shell.configurables.append(self)  # what %config looks through


#: A Magics base class with one traitlet per setting (built from the table in config.py).
SettingsMagics: type = type("SettingsMagics", (Magics,), {
    **{s.name: _trait(s) for s in config.SETTINGS},
    "_push_setting": observe(*(s.name for s in config.SETTINGS))(_push),
    "__init__": _init,
    "__doc__": "Magics whose traitlets are the settings of pipeline_magics.config.",
})
