"""Random and mutated YAML into the parser: only SpecError (with a line) comes out, never a hang."""
from __future__ import annotations

import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline_magics import Pipeline, PipelineError, SpecError
from pipeline_magics.errors import CredentialError, DataFrameResolutionError

VALID = """\
name: fuzzed
vars: {min_amount: 10}
steps:
  - type: extract
    method: fromCsv
    name: orders
    config: {path: data/orders.csv, header: true}
  - type: transform
    method: filterRows
    config: {condition: "amount > ${min_amount}"}
  - type: transform
    method: join
    config: {right: orders, on: order_id}
  - type: load
    method: toDelta
    config: {path: /tmp/out, mode: merge, mergeKeys: [order_id]}
"""
PLANNING_ERRORS = (SpecError, DataFrameResolutionError, CredentialError)


def check(text: str) -> None:
    try:
        Pipeline.from_yaml(text)
    except PLANNING_ERRORS as exc:
        assert exc.line is not None and exc.line >= 1, f"no line for: {exc!r}"
        assert str(exc)
    except PipelineError as exc:  # pragma: no cover - shown by the assertion
        raise AssertionError(f"{type(exc).__name__} is not a spec error: {exc}") from exc


FUZZ = settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
YAMLISH = st.text(alphabet=string.printable + "äß€", max_size=200)


@FUZZ
@given(YAMLISH)
def test_random_text(text):
    check(text)


@FUZZ
@given(st.integers(0, len(VALID) - 1), st.integers(0, 12), YAMLISH.map(lambda s: s[:8]))
def test_mutated_valid_spec(position, cut, insert):
    check(VALID[:position] + insert + VALID[position + cut:])


@FUZZ
@given(st.lists(st.sampled_from(VALID.splitlines()), min_size=1, max_size=20))
def test_shuffled_lines(lines):
    check("\n".join(lines) + "\n")


@FUZZ
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                    max_leaves=12))
def test_structures_as_yaml(value):
    import yaml

    check(yaml.safe_dump({"steps": [value]}) if not isinstance(value, dict) else yaml.safe_dump(value))


def test_tags_and_impossible_values_are_spec_errors():
    for text, line in (("steps:\n  - !!python/name:os.system x: 1\n", 2), ("!0 a: b\n", 1),
                       ("steps:\n  - type: extract\n    when: 2026-13-45\n", 3), ("\x0cfoo", 1)):
        try:
            Pipeline.from_yaml(text)
        except SpecError as exc:
            assert exc.line == line, (text, exc)
        else:
            raise AssertionError(f"no error for {text!r}")
