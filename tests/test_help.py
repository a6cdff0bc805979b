"""Help built from the code: the method registry, the settings models, the magic's docstring; editor schema."""
from __future__ import annotations

import glob
import json
import os

import pytest
import yaml
from IPython.core.error import UsageError

from pipeline_magics.notebook import help as helptext
from pipeline_magics.secrets.credentials import placeholders
from pipeline_magics.methods import METHODS
from pipeline_magics.spec.schema import SCHEMA_FILE
from pipeline_magics.spec.model import _Loader, parse_spec

ROOT = os.path.join(os.path.dirname(__file__), os.pardir)


def test_overview_lists_every_method_by_type_with_its_summary():
    text = helptext.overview({"explain": "Draws the pipeline.", "list": ""})
    for (type_, name), method in METHODS.items():
        section = text.split(f"{type_} methods:")[1]
        assert f"  {name} " in section.split(" methods:")[0] and method.summary in text
    assert "  explain  Draws the pipeline." in text and "also: list" in text
    assert "fromPostgres  Reads a PostgreSQL table or query over JDBC.  [batch only]" in text


@pytest.mark.parametrize("key", sorted(METHODS), ids=lambda k: f"{k[0]}.{k[1]}")
def test_every_method_shows_every_setting_with_type_and_default(key):
    method = METHODS[key]
    info = helptext.method_help(key[1])
    text, page = info.text(), info._repr_html_()
    assert text.startswith(f"{key[1]} ({key[0]}): {method.summary}")
    names = {s.name for s in info.settings}
    for attr, field in method.config.model_fields.items():
        name = field.alias or attr
        assert name in names and f"<code>{name}</code>" in page
        row = next(s for s in info.settings if s.name == name)
        line = next(line for line in text.splitlines() if line.strip().startswith(name + " "))
        assert row.type and row.type in line
        if field.is_required():
            assert row.required and "required" in line
        elif field.get_default(call_default_factory=True) is not None:
            assert f"default {row.default}" in line
        assert row.secret == (helptext.is_secret_key(name) or "SecretStr" in str(field.annotation))
        assert ("secret" in line.split(" — ")[0]) == row.secret


@pytest.mark.parametrize("key", sorted(METHODS), ids=lambda k: f"{k[0]}.{k[1]}")
def test_every_example_is_a_valid_step(key):
    method = METHODS[key]
    example = helptext.method_help(key[1]).example
    spec = parse_spec("steps:\n" + "\n".join("  " + line for line in example.splitlines()))
    step = spec.steps[0]
    assert (step.type, step.method) == key
    method.config.model_validate(placeholders(step.config))


def test_fromPostgres_settings_types_defaults_secrets():
    info = helptext.method_help("fromPostgres")
    rows = {s.name: s for s in info.settings}
    assert rows["password"].secret and rows["password"].type == "str"
    assert not rows["user"].secret
    assert rows["port"].default == "5432" and rows["port"].type == "int"
    assert rows["lowerBound"].type == "int or str"
    assert "partitionColumn" in rows and "fetchSize" in rows
    assert "password: vault:secret/pg#password" in info.example and info.usage.startswith("batch mode")


def test_types_literals_nested_models_and_streaming_settings():
    rows = {s.name: s for s in helptext.method_help("toDelta").settings}
    assert rows["mode"].type == "one of append|overwrite|merge|scd1|scd2|error|errorifexists|ignore"
    assert rows["mode"].default == '"append"'
    assert rows["trigger.processingTime"].type == "str"  # a nested model adds its own rows
    assert rows["checkpointLocation"].description.endswith("(streaming only)")
    assert not rows["queryName"].description.endswith("(streaming only)")
    assert helptext.method_help("join").settings[1].type == "str or list of str"
    assert helptext.method_help("renameColumns").settings[0].type == "mapping of str to str"


def test_unknown_method_suggests_the_closest():
    with pytest.raises(KeyError, match="did you mean 'fromCsv'"):
        helptext.method_help("fromCvs")
    assert helptext.method_help("load.toCsv").method.name == "toCsv"


def test_help_magic(ip, capsys):
    ip.run_line_magic("pipeline", "help")
    out = capsys.readouterr().out
    assert all(name in out for _, name in METHODS) and "explain" in out
    ip.run_line_magic("pipeline", "help fromPostgres")
    out = capsys.readouterr().out
    assert "password" in out and "secret" in out and "partitionColumn" in out and "default 5432" in out
    ip.run_line_magic("pipeline", "help load")
    out = capsys.readouterr().out
    assert "toDelta" in out and "fromCsv" not in out
    ip.run_line_magic("pipeline", "help explain")
    assert "Draws the pipeline" in capsys.readouterr().out
    with pytest.raises(UsageError, match="did you mean 'toDelta'"):
        ip.run_line_magic("pipeline", "help toDelt")


def test_subcommand_help_and_completion_come_from_the_table(ip, capsys):
    """Each subcommand's help line, usage, options and Tab completion are read from its entry in the table."""
    from pipeline_magics.notebook.commands import COMMANDS, complete

    ip.run_line_magic("pipeline", "help")
    overview = capsys.readouterr().out
    for name, command in COMMANDS.items():
        assert f"  {name:<10}  {command.help}" in overview
        ip.run_line_magic("pipeline", f"help {name}")
        out = capsys.readouterr().out
        assert out.startswith(f"%pipeline {name}: {command.help}")
        flags = [a.option_strings[0] for a in command.parser._actions if a.option_strings]
        assert all(flag in out for flag in flags), name
        if command.parser._actions:
            assert f"usage: %pipeline {name}" in out
        assert complete(f"%pipeline {name} --") == sorted(flags), name
    with pytest.raises(UsageError, match=r"(?s)invalid int value: 'x'.*usage: %pipeline history \[--last N\]"):
        ip.run_line_magic("pipeline", "history --last x")
    with pytest.raises(UsageError, match="unrecognized arguments: --spork"):
        ip.run_line_magic("pipeline", "doctor --spork")


def test_magic_docstring_is_the_question_mark_help(ip):
    from pipeline_magics.notebook.magic import PipelineMagics

    text = ip.object_inspect_text("%pipeline")
    options = [s for a in PipelineMagics.pipeline.parser._actions for s in a.option_strings if s != "-h"]
    assert options and all(option in text for option in options)
    assert "Runs a YAML pipeline spec" in text
    assert ip.object_inspect_text("%%pipeline") == text


# ------------------------------------------------------------- editor schema


def test_example_specs_name_the_shipped_schema_and_validate_against_it():
    jsonschema = pytest.importorskip("jsonschema")
    with open(SCHEMA_FILE, encoding="utf-8") as fh:
        schema = json.load(fh)
    specs = glob.glob(os.path.join(ROOT, "examples", "**", "*.y*ml"), recursive=True)
    assert specs
    for path in specs:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        modeline = text.splitlines()[0]
        assert modeline.startswith("# yaml-language-server: $schema="), path
        target = os.path.normpath(os.path.join(os.path.dirname(path), modeline.split("=", 1)[1].strip()))
        assert os.path.samefile(target, SCHEMA_FILE), path
        jsonschema.validate(yaml.load(text, Loader=_Loader), schema)  # YAML 1.2 booleans, as the spec parser
