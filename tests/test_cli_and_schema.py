"""Headless runs and the shipped JSON Schema."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pipeline_magics.spec.schema import SCHEMA_FILE, json_schema

ROOT = os.path.join(os.path.dirname(__file__), os.pardir)


def test_shipped_schema_is_current():
    with open(SCHEMA_FILE, encoding="utf-8") as fh:
        shipped = json.load(fh)
    assert shipped == json.loads(json.dumps(json_schema())), \
        "pipeline-spec.schema.json is stale: run `python -m pipeline_magics.spec.schema`"


def test_schema_has_a_variant_per_method():
    from pipeline_magics.methods import METHODS

    variants = json_schema()["properties"]["steps"]["items"]["oneOf"]
    assert {(v["properties"]["type"]["const"], v["properties"]["method"]["const"]) for v in variants} == set(METHODS)


def test_headless_dry_run_and_bad_spec(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.path.abspath(ROOT)}
    spec = os.path.join(ROOT, "examples", "quickstart.yaml")
    done = subprocess.run([sys.executable, "-m", "pipeline_magics", "run", spec, "--dry-run"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "pipeline quickstart (batch), 4 steps" in done.stdout


EXTRACT = "  - {type: extract, method: fromCsv, name: a, config: {path: /nowhere/a.csv}}\n"
SPECS_TO_FIX = {  # every spec error exits 2, whatever its code
    "SPEC_INVALID": "steps:\n  - type: extract\n    method: fromCsv\n    config: {heder: true, path: x}\n",
    "DUPLICATE_NAME": "steps:\n" + EXTRACT + EXTRACT,
    "INPUTS": "steps:\n" + EXTRACT + "  - {type: transform, method: filterRows, input: a, inputs: [a], "
                                      "config: {condition: 'true'}}\n",
    "NO_INPUT": "steps:\n  - {type: transform, method: filterRows, config: {condition: 'true'}}\n",
    "UNKNOWN_INPUT": "steps:\n" + EXTRACT + "  - {type: transform, method: filterRows, input: b, "
                                             "config: {condition: 'true'}}\n",
}


@pytest.mark.parametrize("code", list(SPECS_TO_FIX))
def test_command_line_exits_2_for_a_spec_to_fix(code, tmp_path, capsys):
    from pipeline_magics.__main__ import main

    bad = tmp_path / "bad.yaml"
    bad.write_text(SPECS_TO_FIX[code])
    assert main(["run", str(bad)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) <= 2 and "Error" in err
    if code == "SPEC_INVALID":
        assert "line 4" in err and "unknown setting 'heder'" in err and "did you mean 'header'" in err


@pytest.mark.parametrize("command", [["run"], ["test"], ["diff", "--preview"], ["export", "--sdp", "project"]],
                         ids=lambda c: c[0])
def test_every_command_exits_by_the_errors_class(command, tmp_path, capsys):
    """One rule for every command: a spec to fix exits 2, the same from run, test, diff and export."""
    from pipeline_magics.__main__ import main
    from pipeline_magics.errors import DiffError, IterateError, PipelineExecutionError, SpecTestError, exit_status

    bad = tmp_path / "bad.yaml"
    bad.write_text(SPECS_TO_FIX["DUPLICATE_NAME"])
    assert main([command[0], str(bad), *command[1:]]) == 2
    assert "SpecError" in capsys.readouterr().err and not (tmp_path / "project").exists()
    assert [exit_status(e("x")) for e in (IterateError, PipelineExecutionError, SpecTestError, DiffError)] == [2, 1, 1, 1]
    assert exit_status(OSError("unreadable")) == exit_status(ValueError("usage")) == 2


def test_command_line_exits_1_for_a_run_that_fails(spark, tmp_path, capsys):
    from pipeline_magics.__main__ import main

    spec = tmp_path / "fails.yaml"
    spec.write_text("steps:\n" + EXTRACT)
    assert main(["run", str(spec)]) == 1
    assert "PipelineExecutionError" in capsys.readouterr().err


def test_cell_and_command_line_share_their_options(capsys):
    """--mode, --var, --dry-run, --metrics and --timeout read the same in `%%pipeline` and `run`."""
    import pytest

    from pipeline_magics.__main__ import main
    from pipeline_magics.notebook.magic import PipelineMagics
    from pipeline_magics.options import OPTIONS

    with pytest.raises(SystemExit):
        main(["run", "--help"])
    command_line = " ".join(capsys.readouterr().out.split())
    cell = {a.option_strings[0]: a for a in PipelineMagics.pipeline.parser._actions if a.option_strings}
    for name in ("mode", "var", "dry_run", "metrics", "timeout", "lineage"):
        (flag,), settings = OPTIONS[name]
        assert cell[flag].help == settings["help"] and settings["help"] in command_line, name
