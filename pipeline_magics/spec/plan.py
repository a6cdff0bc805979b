"""Planning: check a parsed spec against the method registry before any Spark action.

Unknown methods, bad settings, unknown inputs, batch-only methods in a
streaming spec and security-policy refusals all become a ``SpecError`` (or
``CredentialError``) naming the YAML line, the step and the valid choices.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from ..secrets.credentials import SecurityPolicy, as_reference, placeholders, walk
from ..errors import CredentialError, DataFrameResolutionError, SpecError
from ..methods import METHODS, Method, methods_of
from ..methods.registry import step_label
from ..methods.streaming_sink import STREAMING_KEYS
from ..secrets.redaction import redact
from .model import PipelineSpec, Step, suggest

_COUNT = {2: "two", 3: "three"}
STORAGE_LEVELS = ("DISK_ONLY", "DISK_ONLY_2", "DISK_ONLY_3", "MEMORY_AND_DISK", "MEMORY_AND_DISK_2",
                  "MEMORY_AND_DISK_DESER", "MEMORY_ONLY", "MEMORY_ONLY_2", "OFF_HEAP", "NONE")


@dataclass(frozen=True)
class PlannedStep:
    """A step with its method, its validated settings and the names of its inputs."""

    index: int
    step: Step
    method: Method
    inputs: tuple[str, ...]
    output: str  # the key of its DataFrame: the step's name, else "stepN"

    @property
    def label(self) -> str:
        return step_label(self.index, self.step.name)

    def config(self, resolved: dict[str, Any]) -> Any:
        """The method's settings model for resolved config values."""
        return self.method.config.model_validate(resolved)


@dataclass(frozen=True)
class Plan:
    spec: PipelineSpec
    steps: tuple[PlannedStep, ...]

    def text(self) -> str:
        """The plan as plain text (the config redacted)."""
        lines = [f"pipeline {self.spec.name} ({self.spec.mode}), {len(self.steps)} steps"]
        for p in self.steps:
            src = f" <- {', '.join(p.inputs)}" if p.inputs else ""
            cache = f" [cache {p.step.cacheStorageLevel or 'MEMORY_AND_DISK'}]" if p.step.cache else ""
            lines.append(f"  {p.index + 1}. {p.label}: {p.step.label}{src}{cache}")
            for key, value in redact(p.step.config).items():
                lines.append(f"       {key}: {value}")
        return "\n".join(lines)


def _err(cls: type, spec: PipelineSpec, i: int, message: str, path: tuple[Any, ...] = (), **kw: Any) -> Any:
    step = spec.steps[i]
    line, column = spec.line_of("steps", i, *path)
    return cls(message, pipeline=spec.name, step_index=i, step_name=step.name, step_type=step.type,
               method=step.method, config=step.config, line=line, column=column, **kw)


def _method(spec: PipelineSpec, i: int) -> Method:
    step = spec.steps[i]
    method = METHODS.get((step.type, step.method))
    if method is None:
        choices = methods_of(step.type)
        other = [t for (t, n) in METHODS if n == step.method]
        if other:
            article = "an" if other[0][0] in "aeiou" else "a"
            message = f"'{step.method}' is {article} {other[0]} method, not a {step.type} method"
            hint = f"write 'type: {other[0]}'"
        else:
            close = suggest(step.method, choices)
            message = f"unknown {step.type} method '{step.method}'" + (f" — did you mean '{close}'?" if close else "")
            hint = f"{step.type} methods: " + ", ".join(choices)
        raise _err(SpecError, spec, i, message, ("method",), code="UNKNOWN_METHOD", hint=hint,
                   params={"method": step.method, "choices": choices})
    if spec.mode not in method.modes:
        other = "streaming" if spec.mode == "batch" else "batch"
        raise _err(SpecError, spec, i, f"{step.method} works only in {other} mode, and this pipeline is {spec.mode}",
                   ("method",), code="MODE_UNSUPPORTED", hint=f"set 'mode: {other}' or use another method")
    return method


def _check_config(spec: PipelineSpec, i: int, method: Method, policy: SecurityPolicy) -> None:
    step = spec.steps[i]
    if spec.mode == "batch":
        # queryName also names a batch in-memory table
        for key in STREAMING_KEYS & set(step.config) - {"queryName"} if method.sink != "memory" else ():
            raise _err(SpecError, spec, i, f"'{key}' applies to streaming pipelines only", ("config", key),
                       code="STREAMING_ONLY_SETTING", hint="set 'mode: streaming', or remove it")
    for path, problem in policy.check(step.config):
        raise _err(CredentialError, spec, i, problem, ("config", *path), code="POLICY_REFUSED",
                   hint="store the secret in Vault and write {vault: secret/NAME, key: KEY}")
    try:
        method.config.model_validate(placeholders(step.config, method.config))
    except ValidationError as exc:
        rank = {"extra_forbidden": 0, "missing": 1}
        errors = exc.errors()
        if any(as_reference(v) is not None for _, v in walk(step.config)):
            # Rules across settings are checked again at run time, with the real values.
            errors = [e for e in errors if e["loc"]]
            if not errors:
                return
        e = min(errors, key=lambda e: rank.get(e["type"], 2))
        loc = tuple(e["loc"])
        fields = {f.alias or n: f for n, f in method.config.model_fields.items()}
        key = str(loc[0]) if loc else ""
        if e["type"] == "extra_forbidden":
            close = suggest(key, list(fields))
            message = f"unknown setting '{key}'" + (f" — did you mean '{close}'?" if close else "")
            hint = f"{method.name} settings: " + ", ".join(fields)
        elif e["type"] == "missing":
            message = f"missing required setting '{key}'"
            hint = f"required: {', '.join(k for k, f in fields.items() if f.is_required())}" + \
                (f"; example: {method.example}" if method.example else "")
        elif not loc:  # a rule across settings
            message = e["msg"].removeprefix("Value error, ")
            hint = f"example: {method.example}" if method.example else None
        else:
            message = f"setting '{'.'.join(map(str, loc))}': {e['msg']} (got {e.get('input')!r})"
            hint = None
        raise _err(SpecError, spec, i, message, ("config", *loc), code="INVALID_SETTING", hint=hint,
                   params={"setting": key, "type": e["type"]}) from None


def build_plan(spec: PipelineSpec, policy: SecurityPolicy | None = None) -> Plan:
    """Checks every step and resolves its inputs; raises before anything runs."""
    policy = policy or SecurityPolicy.from_env()
    planned: list[PlannedStep] = []
    known: list[str] = []
    names: set[str] = set()
    previous: str | None = None
    for i, step in enumerate(spec.steps):
        method = _method(spec, i)
        _check_config(spec, i, method, policy)
        if step.name and step.name in names:
            raise _err(SpecError, spec, i, f"the name '{step.name}' is already used by an earlier step",
                       ("name",), code="DUPLICATE_NAME", hint="give each step a different name")
        if step.cacheStorageLevel and step.cacheStorageLevel not in STORAGE_LEVELS:
            close = suggest(step.cacheStorageLevel, STORAGE_LEVELS)
            raise _err(SpecError, spec, i, f"unknown storage level '{step.cacheStorageLevel}'" +
                       (f" — did you mean '{close}'?" if close else ""), ("cacheStorageLevel",),
                       code="INVALID_SETTING", hint="levels: " + ", ".join(STORAGE_LEVELS))
        if step.input and step.inputs:
            raise _err(SpecError, spec, i, "set 'input' or 'inputs', not both", ("inputs",), code="INPUTS")
        if method.arity == 0:
            if step.input or step.inputs:
                raise _err(SpecError, spec, i, "an extract step reads a source and takes no input",
                           ("input" if step.input else "inputs",), code="INPUTS")
            inputs: tuple[str, ...] = ()
        elif step.inputs:
            if method.arity != "many":
                raise _err(SpecError, spec, i, f"{step.method} takes one input; 'inputs' is for join, union and sql",
                           ("inputs",), code="INPUTS", hint="use 'input: NAME'")
            inputs = tuple(step.inputs)
        elif step.input:
            inputs = (step.input,)
        elif previous is not None:
            inputs = (previous,) if method.default_input else ()  # e.g. sql reads the views it names
        else:
            raise _err(SpecError, spec, i, f"{step.label} needs an input, and no step comes before it",
                       ("type",), code="NO_INPUT", hint="start the pipeline with an extract step")
        if len(inputs) < method.min_inputs:
            fewest = _COUNT.get(method.min_inputs, method.min_inputs)
            raise _err(SpecError, spec, i, f"{step.method} needs at least {fewest} inputs", ("inputs",),
                       code="INPUTS", hint="write inputs: [first, second]")
        references = [(("input",) if step.input else ("inputs", n), name) for n, name in enumerate(inputs)]
        references += [(("config", s), step.config[s]) for s in method.frame_settings if s in step.config]
        for path, name in references:
            if name not in known and name != previous:
                close = suggest(name, known)
                raise _err(DataFrameResolutionError, spec, i,
                           f"unknown input '{name}'" + (f" — did you mean '{close}'?" if close else ""),
                           path, hint="known names: " + (", ".join(known) or "none yet (name a step with 'name:')"),
                           params={"name": name, "known": list(known)})
        names.add(step.name) if step.name else None
        output = step_label(i, step.name)
        planned.append(PlannedStep(i, step, method, inputs, output))
        if step.type != "load":
            previous = output
            known.append(output) if step.name else None
    return Plan(spec, tuple(planned))
