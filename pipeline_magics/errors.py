"""The error hierarchy of pipeline_magics (SPEC section 4); standard library only.

Every error carries a stable ``code`` and where it happened (pipeline, step
index, step type, method, YAML line); the readable text is built from those in
one place, :meth:`PipelineError.__str__`.
"""
from __future__ import annotations

from typing import Any, Mapping

from .secrets.redaction import redact


class PipelineError(Exception):
    """Base class: what went wrong, where, and (sanitized) with which config."""

    code = "PIPELINE_ERROR"
    #: the command line's exit status for this class: 1 a run (or a test) that failed, 2 a spec to fix
    exit_code = 1

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        pipeline: str | None = None,
        step_index: int | None = None,
        step_name: str | None = None,
        step_type: str | None = None,
        method: str | None = None,
        config: Mapping[str, Any] | None = None,
        line: int | None = None,
        column: int | None = None,
        hint: str | None = None,
        params: Mapping[str, Any] | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.pipeline = pipeline
        self.step_index = step_index
        self.step_name = step_name
        self.step_type = step_type
        self.method = method
        self.config = redact(dict(config)) if config is not None else None
        self.line = line
        self.column = column
        self.hint = hint
        self.params = dict(params or {})
        #: the full technical detail (e.g. a JVM stack trace), for ``%pipeline last-error``
        self.detail = detail
        #: the result of the run that failed with it (``Pipeline.run``, an SDP project's run), set as the run ends
        self.result: Any = None

    @property
    def where(self) -> str:
        """``line 7, step 2 'orders' (extract.fromCsv)`` — whatever is known."""
        parts = []
        if self.line is not None:
            parts.append(f"line {self.line}" + (f", column {self.column}" if self.column else ""))
        if self.step_index is not None:
            step = f"step {self.step_index + 1}"
            if self.step_name:
                step += f" '{self.step_name}'"
            if self.step_type and self.method:
                step += f" ({self.step_type}.{self.method})"
            parts.append(step)
        return ", ".join(parts)

    def __str__(self) -> str:
        where = self.where
        text = f"{where}: {self.message}" if where else self.message
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text

    def with_context(self, **context: Any) -> "PipelineError":
        """Fills in context fields that are still unset; returns self."""
        for key, value in context.items():
            if key == "config":
                if self.config is None and value is not None:
                    self.config = redact(dict(value))
            elif getattr(self, key, None) is None:
                setattr(self, key, value)
        return self

    def _render_traceback_(self) -> list[str]:
        # IPython shows these lines instead of a traceback.
        name = type(self).__name__
        pipeline = f" in pipeline '{self.pipeline}'" if self.pipeline else ""
        lines = [f"{name}{pipeline}: {self}"]
        if self.detail:
            lines.append("(full trace: %pipeline last-error)")
        return lines


def exit_status(exc: BaseException) -> int:
    """The command line's exit status for an error, one rule for every command: the class's ``exit_code`` (a spec
    to fix 2; a run or a test that failed 1); a file that cannot be read or a usage mistake 2."""
    if isinstance(exc, PipelineError):
        return exc.exit_code
    return 2 if isinstance(exc, (OSError, ValueError)) else 1


class SpecError(PipelineError):
    """The YAML or the spec is invalid; carries line and column."""

    code = "SPEC_INVALID"
    exit_code = 2


class PipelineExecutionError(PipelineError):
    """A step failed while running on Spark."""

    code = "STEP_FAILED"


class DataFrameResolutionError(PipelineError):
    """A step names an input that no earlier step produced."""

    code = "UNKNOWN_INPUT"
    exit_code = 2


class ExpectationError(PipelineError):
    """An ``expect`` rule with ``onFail: fail`` found failing rows."""

    code = "EXPECTATION_FAILED"


class CredentialError(PipelineError):
    """A credential could not be resolved or is refused by the security policy."""

    code = "CREDENTIAL_ERROR"


class StreamingQueryError(PipelineError):
    """A streaming query stopped with an error."""

    code = "STREAMING_QUERY_FAILED"


class RetryableError(PipelineError):
    """A transient failure that persisted through every retry."""

    code = "RETRIES_EXHAUSTED"


class PipelineCancelledError(PipelineError):
    """The run was cancelled (Cancel button, ``%pipeline stop``, interrupt, SIGTERM)."""

    code = "CANCELLED"


class SpecTestError(PipelineError):
    """A test inside the spec (``tests:``) failed; ``report`` holds every test's outcome."""

    code = "SPEC_TEST_FAILED"


class SchemaContractError(PipelineError):
    """A load's ``schemaContract`` refused the data's columns before anything was written."""

    code = "SCHEMA_CONTRACT"


class DiffError(PipelineError):
    """``%pipeline diff`` cannot compare what was asked: no such run, step or recorded version."""

    code = "DIFF_UNAVAILABLE"


class IterateError(PipelineError):
    """``--until``, ``--from``, ``--sample`` or ``--sandbox`` cannot do what was asked (no such step, nothing
    kept, a step above changed since its output was kept)."""

    code = "ITERATE"
    exit_code = 2
