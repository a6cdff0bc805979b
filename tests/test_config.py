"""Settings in one place: every PIPELINE_* variable is read through pipeline_magics.config, each is a
traitlet of the magics class (``%config PipelineMagics.<name> = ...`` beats the variable for the kernel),
and the table in docs/settings.md lists them all."""
from __future__ import annotations

import os
import re
import warnings

import pytest

from pipeline_magics import CredentialError, config
from pipeline_magics.secrets.credentials import SecurityPolicy
from pipeline_magics.notebook.magic import PipelineMagics

PACKAGE = os.path.join(os.path.dirname(__file__), os.pardir, "pipeline_magics")
README = os.path.join(os.path.dirname(__file__), os.pardir, "docs", "settings.md")

PLAINTEXT_SPEC = """
name: cfg_plaintext
steps:
  - type: extract
    method: fromPostgres
    name: orders
    config: {host: 127.0.0.1, database: shop, table: public.orders, user: analyst, password: Plain-Text-Pa55}
  - type: load
    method: display
"""


@pytest.fixture(autouse=True)
def _policy_from_nothing(monkeypatch):
    for setting in config.SETTINGS:
        if setting.name in ("security_policy", "vault_only", "allow_plaintext", "audit_credentials", "audit_log"):
            monkeypatch.delenv(setting.variable, raising=False)


def test_config_policy_strict_refuses_a_plaintext_password_in_the_kernel(ip):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the default policy warns about the plaintext password
        assert ip.run_cell_magic("pipeline", "--dry-run", PLAINTEXT_SPEC) is not None
    ip.run_line_magic("config", "PipelineMagics.security_policy = 'strict'")
    try:
        assert config.value("security_policy") == "strict" and "PIPELINE_SECURITY_POLICY" not in os.environ
        with pytest.raises(CredentialError) as info:
            ip.run_cell_magic("pipeline", "--dry-run", PLAINTEXT_SPEC)
        assert info.value.code == "POLICY_REFUSED" and "strict" in str(info.value)
        assert "Plain-Text-Pa55" not in str(info.value)
    finally:
        ip.run_line_magic("config", "PipelineMagics.security_policy = None")
    assert config.value("security_policy") == "default"


def test_a_traitlet_beats_its_variable_and_none_goes_back_to_it(monkeypatch):
    monkeypatch.setenv("PIPELINE_SECURITY_POLICY", "permissive")
    monkeypatch.setenv("PIPELINE_ALLOW_PLAINTEXT", "true")
    magics = PipelineMagics()
    assert SecurityPolicy.from_env().name == "permissive"
    magics.security_policy, magics.allow_plaintext = "strict", False
    try:
        policy = SecurityPolicy.from_env()
        assert (policy.name, policy.vault_only, policy.allow_plaintext) == ("strict", True, False)
        assert config.environ()["PIPELINE_ALLOW_PLAINTEXT"] == "false"
    finally:
        magics.security_policy = magics.allow_plaintext = None
    assert SecurityPolicy.from_env().name == "permissive" and config.value("allow_plaintext") == "true"


def test_every_setting_is_a_configurable_traitlet():
    traits = PipelineMagics.class_traits(config=True)
    assert {s.name for s in config.SETTINGS} <= set(traits)
    assert all(s.variable in traits[s.name].help for s in config.SETTINGS)


def test_no_module_but_config_reads_a_pipeline_variable():
    found = set()
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if not name.endswith(".py"):
                continue
            text = open(os.path.join(folder, name), encoding="utf-8").read()
            if name != "config.py":
                assert not re.search(r"environ(?:\.get)?[(\[]\s*['\"]PIPELINE_", text), name
            found |= set(re.findall(r"PIPELINE_[A-Z_]+", text))
    variables = {s.variable for s in config.SETTINGS}
    assert found - {"PIPELINE_ERROR"} <= variables  # (an error code, not a variable)
    assert len(variables) == len(config.SETTINGS) == 20


def test_the_readme_table_is_the_settings_table():
    text = open(README, encoding="utf-8").read()
    assert config.table() in text
    assert config.value("graph", env={}) == "auto" and config.value("graph", env={"PIPELINE_GRAPH": "text"}) == "text"


def test_the_environment_is_read_in_config_only():
    """Every environment read is config.py's; only credential references (env:) read a variable they name."""
    package = os.path.join(os.path.dirname(config.__file__))
    readers = set()
    for folder, _, files in os.walk(package):
        for name in files:
            path = os.path.join(folder, name)
            if name.endswith(".py") and os.path.relpath(path, package) != "config.py":
                with open(path, encoding="utf-8") as fh:
                    text = fh.read()
                if "os.environ" in text or "os.getenv" in text:
                    readers.add(os.path.relpath(path, package))
    # credentials.py and codegen.py resolve {env: NAME} references; vault.py reads the variable a login names
    assert readers <= {"secrets/credentials.py", "sdp/codegen.py", "secrets/vault.py"}, readers
    assert config.outside("JAVA_HOME", {"JAVA_HOME": ""}) is None and config.outside("PATH", {"PATH": "/bin"}) == "/bin"
