"""Tab completion for %pipeline and %%pipeline: subcommands, pipeline names, methods, files, options."""
from __future__ import annotations

import subprocess
import sys


from pipeline_magics.notebook.commands import COMMANDS, complete
from pipeline_magics.notebook.magic import PipelineMagics

OPTIONS = [s for a in PipelineMagics.pipeline.parser._actions for s in a.option_strings if s != "-h"]


def c(line: str, **kw) -> list[str]:
    return complete(line, pipelines=kw.pop("pipelines", ["orders_daily", "clicks"]), **kw)


def test_subcommands():
    assert c("%pipeline ") == sorted(COMMANDS)
    assert c("%pipeline st") == ["status", "stop"]
    assert c("pipeline la") == ["last-error"]  # automagic, without the %
    assert c("%pipeline") == []  # still typing the magic's name


def test_pipeline_names():
    assert c("%pipeline status ") == ["clicks", "orders_daily"]
    assert c("%pipeline stop ") == ["--all", "clicks", "orders_daily"]
    assert c("%pipeline metrics or") == ["orders_daily"]
    assert c("%pipeline metrics orders_daily --format ") == ["json", "prometheus", "text"]
    assert c("%pipeline metrics orders_daily ") == ["--format"]


def test_vault_and_audit_words():
    assert c("%pipeline vault lo") == ["login", "logout"]
    assert c("%pipeline audit --json ") == ["--last", "--pipeline"]
    assert c("%pipeline audit --pipeline ") == ["clicks", "orders_daily"]


def test_methods_and_step_types_after_help():
    assert c("%pipeline help fromP") == ["fromParquet", "fromPostgres"]
    assert "load" in c("%pipeline help ") and "toDelta" in c("%pipeline help ")


def test_spec_files(tmp_path):
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "daily.yaml").write_text("steps: []\n")
    (tmp_path / "specs" / "notes.txt").write_text("")
    (tmp_path / "spark.yml").write_text("steps: []\n")
    assert c("%pipeline run ", cwd=str(tmp_path)) == ["spark.yml", "specs/"]
    assert c("%pipeline run specs/", cwd=str(tmp_path)) == ["specs/daily.yaml"]
    assert c("%pipeline explain s", cwd=str(tmp_path), pipelines=["sales"]) == ["sales", "spark.yml", "specs/"]
    assert c("%pipeline run spark.yml --d", cwd=str(tmp_path)) == ["--diff", "--dry-run"]


def test_cell_magic_options():
    assert c("%%pipeline orders --") == sorted(OPTIONS)
    assert c("%%pipeline --mode ") == ["batch", "streaming"]
    assert c("%%pipeline --metrics pro") == ["prometheus:"]


def test_ipython_completer_uses_the_hook(ip):
    magics = ip.magics_manager.registry["PipelineMagics"]
    magics.pipelines.setdefault("completion_demo", None)
    try:
        def matches(line: str) -> list[str]:
            from IPython.core.completer import provisionalcompleter

            with provisionalcompleter():  # the API Jupyter's kernel uses
                return sorted({c.text for c in ip.Completer.completions(line, len(line))})

        assert matches("%pipeline sta") == ["status"]
        assert "completion_demo" in matches("%pipeline stop comp")
        assert matches("%pipeline help toDe") == ["toDelta"]
        assert "--dry-run" in matches("%%pipeline --dr")
    finally:
        magics.pipelines.pop("completion_demo", None)


def test_loading_the_extension_starts_no_spark():
    code = ("import sys\nfrom IPython.testing.globalipapp import start_ipython\nip = start_ipython()\n"
            "ip.run_line_magic('load_ext', 'pipeline_magics')\n"
            "assert ip.Completer.complete(line_buffer='%pipeline he', cursor_pos=12)[1] == ['help']\n"
            "spark = sys.modules.get('pyspark')\n"
            "print(spark is not None and spark.SparkContext._active_spark_context is not None)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


CELL = "\n".join([
    "%%pipeline orders_daily",
    "steps:",
    "  - type: extract",
    "    method: fromCsv",
    "    name: orders",
    "    config:",
    "      path: data/orders.csv",
    "      hea",
    "  - {type: load, method: toDelta, config: {path: /tmp/lake/o, mo",
    "  - type: transform",
    "    method: ",
    "  - ty"])


def at(cell: str, line: int, column: int | None = None) -> int:
    """The offset of ``line`` (its end, or ``column``) in ``cell``."""
    lines = cell.split("\n")
    return sum(len(x) + 1 for x in lines[:line]) + (len(lines[line]) if column is None else column)


def test_spec_completions_in_a_cells_yaml(ip):
    """Methods after `method:` (of the step's type), settings under `config:` (block or flow style), step
    keys, through IPython's completer as the kernel calls it (the whole cell), with no Python names there."""
    from IPython.core.completer import provisionalcompleter

    def matches(cell: str, offset: int) -> list[str]:
        with provisionalcompleter():
            return sorted({c.text for c in ip.Completer.completions(cell, offset)})

    assert matches(CELL, at(CELL, 3, len("    method: fromC"))) == ["fromCsv"]
    transforms = matches(CELL, at(CELL, 10))
    assert "filterRows" in transforms and "aggregate" in transforms and "toDelta" not in transforms
    assert "fromCsv" not in transforms and "print" not in transforms
    assert matches(CELL, at(CELL, 7)) == ["header"]
    assert matches(CELL, at(CELL, 8)) == ["mode"]  # toDelta's, in a flow mapping
    assert matches(CELL, at(CELL, 11)) == ["type"]
    magic_line = "%%pipeline orders --dr\n" + CELL.split("\n", 1)[1]
    assert matches(magic_line, len("%%pipeline orders --dr")) == ["--dry-run"]  # the magic's line: its options
    assert "print" in matches("pri", 3)  # other cells keep Python's completions


def test_a_kernel_completes_a_cells_yaml():
    """A real kernel answers a complete_request (what JupyterLab, Notebook 7 and VS Code send on Tab)."""
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3")
    try:
        kc.execute_interactive("%load_ext pipeline_magics", timeout=60)
        reply = kc.complete(CELL, at(CELL, 10), reply=True, timeout=60)["content"]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    assert reply["status"] == "ok" and "filterRows" in reply["matches"] and "toDelta" not in reply["matches"]
    assert CELL[reply["cursor_start"]:reply["cursor_end"]] == ""
