"""Help built from the code: the method registry and the settings models (the subcommands' own come from
``commands.py``).

Nothing here is written twice: a method's summary is its function's docstring, its
settings (type, default, required, secret, description) come from its pydantic
config model, its example from its registration. ``commands.py`` only prints or
displays what these functions return; tests call them directly.
"""
from __future__ import annotations

import html
import json
import typing
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from pydantic import BaseModel, SecretStr

from ..methods import METHODS, Method, methods_of
from ..methods.streaming_sink import STREAMING_KEYS, StreamingOptions
from ..secrets.redaction import is_secret_key
from ..spec.model import STEP_TYPES, GivenRows, SpecTest, suggest


@dataclass(frozen=True)
class Setting:
    """One row of a method's settings table."""

    name: str
    type: str
    default: str
    required: bool
    secret: bool
    description: str

    @property
    def summary(self) -> str:
        """``str, default "raw", secret — what it is``."""
        facts = [self.type, "required" if self.required else
                 ("optional" if self.default == "—" else f"default {self.default}")]
        if self.secret:
            facts.append("secret")
        return ", ".join(facts) + (f" — {self.description}" if self.description else "")


@dataclass(frozen=True)
class MethodHelp:
    """A method's summary, where it runs, its settings and an example step."""

    method: Method
    settings: tuple[Setting, ...]
    notes: str
    example: str

    @property
    def title(self) -> str:
        return f"{self.method.name} ({self.method.type}): {self.method.summary}"

    @property
    def usage(self) -> str:
        """Which modes it works in and what it takes as input."""
        modes = " and ".join(m for m in ("batch", "streaming") if m in self.method.modes)
        arity = self.method.arity
        inputs = ("reads a source, takes no input" if arity == 0 else
                  "reads the named steps its query mentions" if self.method.reads_views else
                  "takes several inputs: 'inputs: [a, b]'" if arity == "many" else
                  "takes one input (default: the previous step's output)")
        return f"{modes} mode; {inputs}"

    def text(self) -> str:
        """Plain text: title, usage, one line per setting, the example."""
        width = max((len(s.name) for s in self.settings), default=0)
        out = [self.title, self.usage]
        if self.notes:
            out.append(self.notes)
        out += ["", "settings:"] if self.settings else ["", "no settings"]
        out += [f"  {s.name:<{width}}  {s.summary}" for s in self.settings]
        if self.example:
            out += ["", "example:", *("  " + line for line in self.example.splitlines())]
        return "\n".join(out)

    def _repr_html_(self) -> str:
        cells = "".join(
            f"<tr><td><code>{html.escape(s.name)}</code></td><td>{html.escape(s.type).replace('|', '|<wbr>')}</td>"
            f"<td>{'<b>required</b>' if s.required else f'<code>{html.escape(s.default)}</code>'}</td>"
            f"<td>{'🔒 secret' if s.secret else ''}</td><td>{html.escape(s.description)}</td></tr>"
            for s in self.settings)
        notes = f"<p>{html.escape(self.notes)}</p>" if self.notes else ""
        example = f"<p>example:</p><pre>{html.escape(self.example)}</pre>" if self.example else ""
        return (f"<div class='pipeline-help'><p><b>{html.escape(self.method.name)}</b> "
                f"({html.escape(self.method.type)}): {html.escape(self.method.summary)}<br/>"
                f"<i>{html.escape(self.usage)}</i></p>{notes}"
                "<table><thead><tr><th>setting</th><th>type</th><th>default</th><th>secret</th>"
                f"<th>description</th></tr></thead><tbody>{cells}</tbody></table>{example}</div>")

    def __repr__(self) -> str:
        return self.text()


# ------------------------------------------------------------------ methods


def find_method(name: str) -> Method:
    """The method called ``name`` (or ``type.name``); KeyError naming the closest one."""
    type_, _, bare = name.rpartition(".")
    matches = [m for (t, n), m in sorted(METHODS.items()) if n == bare and (not type_ or t == type_)]
    if matches:
        return matches[0]
    names = sorted({n for _, n in METHODS})
    close = suggest(bare, names)
    raise KeyError(f"no method '{name}'" + (f" — did you mean '{close}'?" if close else "")
                   + "; `%pipeline help` lists them all")


def method_help(name: str) -> MethodHelp:
    """Everything about one method, from its registration and settings model."""
    method = find_method(name)
    own_doc = method.config.__dict__.get("__doc__")
    rows = settings_of(method.config, streaming_only=_streaming_keys(method))
    rows.sort(key=lambda s: s.description.endswith("(streaming only)") or s.name.startswith("trigger."))
    return MethodHelp(method, tuple(rows),
                      " ".join((own_doc or "").split()).replace("``", "'"), example_step(method))


TESTS_EXAMPLE = """tests:
  - name: only_big_orders
    given:
      orders:
        schema: "order_id INT, amount DOUBLE, country STRING"
        rows:
          - {order_id: 1, amount: 5.0, country: NL}
          - {order_id: 2, amount: 50.0, country: NL}
    expect:
      revenue:
        - {country: NL, orders: 1, revenue: 50.0}
  - name: negative_amount_fails
    given: {orders: {rows: [{order_id: 3, amount: -1.0, country: DE}]}}
    expectError: positive_amount"""

#: ``%pipeline help TOPIC`` for the spec's sections that are not methods
TOPICS = ("tests",)


def topic_help(name: str) -> str:
    """``tests``: the keys of a test and of its given rows (from the models), and an example."""
    rows = settings_of(SpecTest) + settings_of(GivenRows, "given.NAME.")
    width = max(len(s.name) for s in rows)
    return "\n".join([
        "tests: run by `%%pipeline --test`, `%pipeline test NAME|FILE.yaml`, `python -m pipeline_magics test FILE`;",
        "each test runs as a batch over its given rows: no source is read, no sink written, no checkpoint made.",
        "", "keys of a test:", *(f"  {s.name:<{width}}  {s.summary}" for s in rows),
        "", "example:", *("  " + line for line in TESTS_EXAMPLE.splitlines())])


def method_list(types: Sequence[str] = STEP_TYPES) -> str:
    """Every method, by step type, with its one-line summary."""
    out: list[str] = []
    for type_ in types:
        names = methods_of(type_)
        width = max(map(len, names), default=0)
        out.append(f"{type_} methods:")
        for name in names:
            m = METHODS[(type_, name)]
            only = "" if len(m.modes) > 1 else f"  [{next(iter(m.modes))} only]"
            out.append(f"  {name:<{width}}  {m.summary}{only}")
    return "\n".join(out)


def overview(subcommands: Mapping[str, str] | None = None) -> str:
    """``%pipeline help``: the subcommands (with their docstrings' first lines), then the methods by type."""
    out: list[str] = []
    if subcommands:
        documented = {name: doc for name, doc in subcommands.items() if doc}
        width = max(map(len, documented), default=0)
        out.append("%pipeline subcommands (`%pipeline?` has the cell magic's options):")
        out += [f"  {name:<{width}}  {doc}" for name, doc in documented.items()]
        others = [name for name in subcommands if name not in documented]
        if others:
            out.append("  also: " + ", ".join(others))
        out.append("")
    out.append(method_list())
    out += ["", "`%pipeline help METHOD` shows a method's settings, their types and defaults, and an example."]
    return "\n".join(out)


def example_step(method: Method) -> str:
    """The method's registered example as a whole step of a spec."""
    head = f"- type: {method.type}\n  method: {method.name}"
    if not method.example:
        return head
    return head + "\n" + "\n".join("  " + line for line in method.example.splitlines())


def _streaming_keys(method: Method) -> frozenset[str]:
    # queryName also names a batch toMemory table, so it is not streaming-only
    return STREAMING_KEYS - {"queryName"} if issubclass(method.config, StreamingOptions) else frozenset()


def settings_of(model: type[BaseModel], prefix: str = "", streaming_only: Iterable[str] = ()) -> list[Setting]:
    """The rows for ``model``'s fields; a nested settings model adds its own rows as ``parent.child``."""
    rows: list[Setting] = []
    streaming_only = set(streaming_only)
    for attr, field in model.model_fields.items():
        name = field.alias or attr
        description = " ".join((field.description or "").split())
        if name in streaming_only:
            description = (f"{description} " if description else "") + "(streaming only)"
        annotation = field.annotation
        secret = is_secret_key(name) or _mentions(annotation, SecretStr)
        default = "" if field.is_required() else _default(field.get_default(call_default_factory=True))
        rows.append(Setting(prefix + name, type_name(annotation), default, field.is_required(), secret, description))
        nested = _nested_model(annotation)
        if nested is not None:
            rows += settings_of(nested, prefix + name + ".")
    return rows


def _default(value: Any) -> str:
    if value is None:
        return "—"
    try:
        return json.dumps(value)
    except TypeError:
        return str(value)


def _args(annotation: Any) -> tuple[Any, ...]:
    return tuple(a for a in typing.get_args(annotation) if a is not type(None))


def _is_union(annotation: Any) -> bool:
    import types

    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _mentions(annotation: Any, target: type) -> bool:
    return annotation is target or any(_mentions(a, target) for a in typing.get_args(annotation))


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    candidates = _args(annotation) if _is_union(annotation) else (annotation,)
    for a in candidates:
        if isinstance(a, type) and issubclass(a, BaseModel):
            return a
    return None


def type_name(annotation: Any) -> str:
    """A reader's name for a settings type: ``str or list of str``, ``one of a|b``, ``mapping``."""
    if _is_union(annotation):
        return " or ".join(type_name(a) for a in _args(annotation))
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return "one of " + "|".join(str(a) for a in typing.get_args(annotation))
    if origin in (list, tuple, set, frozenset, Sequence):
        inner = _args(annotation)
        return "list of " + type_name(inner[0]) if inner else "list"
    if origin in (dict, Mapping):
        key, value = (typing.get_args(annotation) + (Any, Any))[:2]
        return "mapping" if value is Any else f"mapping of {type_name(key)} to {type_name(value)}"
    if annotation is SecretStr:
        return "str"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping {" + ", ".join(f.alias or n for n, f in annotation.model_fields.items()) + "}"
    if annotation is Any:
        return "any"
    return getattr(annotation, "__name__", str(annotation))
