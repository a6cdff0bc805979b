"""What an analyst sees in JupyterLab, in a real browser: a real ``jupyter lab`` (tests/services/jupyter.py)
and Debian's Chromium driven by Playwright open notebooks written here, run their cells with the
keyboard and the menus, read the widgets and click their buttons.

A: a streaming pipeline's panel shows rows/s; Cancel stops the query (no query is left active) and the live view
   becomes the run's static result.
B: a long batch cell shows Spark's running stage and tasks; Cancel clicked while it is still executing
   interrupts it; the Delta table is untouched.
   (ipykernel >= 7: the cell awaits the run; ipykernel 6: jupyter-ui-poll pumps the click.)
C: ``--dry-run`` draws the plan as a graph (SVG with Graphviz, else Mermaid).
D: the ``%pipeline vault login`` form logs in; the saved .ipynb holds neither the password nor a token.
E: a ``%%pipeline`` cell's body is highlighted as YAML (the package's prebuilt labextension), a Python cell is not.
F: Tab in a ``%%pipeline`` cell completes methods and settings from the kernel, in JupyterLab's one completer;
   a Python cell keeps Python's.
G: the first tutorial, opened in the server `make lab` starts (every test here uses it), run from the menu in a
   fresh kernel: no stderr box, and the run's time covers the wait with the Spark start shown apart.

Screenshots go to each test's tmp_path; the ones the README shows are also copied to docs/screenshots/.
"""
from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from pipeline_magics import Pipeline
from pipeline_magics.run.pipeline import PlanView
from services.jupyter import CHROMIUM

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK),
                       reason=f"no Chromium at {CHROMIUM}: apt-get install chromium (`make system`)"),
]

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("jupyterlab", reason="jupyterlab is not installed: pip install -e '.[test]'")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install -e '.[test]'")
expect = sync_api.expect

DOCS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
#: the prebuilt labextension as the package ships it (pyproject installs it to share/jupyter/labextensions)
SPARK_START = 180  # seconds: a kernel's first SparkSession on a busy 2-core machine
#: the notebooks' kernel (this venv's python3; another kernelspec name to try the same pages on another kernel)
KERNEL = os.environ.get("PIPELINE_TEST_BROWSER_KERNEL", "python3")
SLOW = "reflect('java.lang.Thread','sleep', CAST(40 AS BIGINT)) IS NULL"  # 40 ms a row

LOAD = "%load_ext pipeline_magics"
SESSION = """\
from pipeline_magics.spark.session import get_session
spark = get_session()  # the notebook's SparkSession: local, with Delta Lake
print("spark", spark.version)"""
ACTIVE = """\
from pyspark.sql import SparkSession
print([q.name for q in SparkSession.getActiveSession().streams.active])"""


# ---------------------------------------------------------------------- fixtures


@pytest.fixture
def lab(jupyter_server):
    """The session's JupyterLab (started once for every browser test)."""
    return jupyter_server


@pytest.fixture
def browser(chromium_browser):
    return chromium_browser


@pytest.fixture
def page(browser, lab, tmp_path):
    """A fresh browser context; afterwards a screenshot of where it ended and every kernel shut down."""
    context = browser.new_context(viewport={"width": 1280, "height": 960})
    p = context.new_page()
    p.set_default_timeout(30_000)
    try:
        yield p
    finally:
        try:
            p.screenshot(path=str(tmp_path / "last.png"), full_page=True)
        except Exception:  # noqa: BLE001 - only for looking at a failure
            pass
        context.close()
        lab.shutdown_kernels()  # each kernel's Spark JVM ends with it


@pytest.fixture
def vault_server(request):
    """The run's Vault, or a skip when none can be started here."""
    try:
        return request.getfixturevalue("vault")
    except Exception as exc:  # noqa: BLE001 - services.ServiceUnavailable (no Docker, no bao)
        if type(exc).__name__ == "ServiceUnavailable":
            pytest.skip(f"no Vault: {exc}")
        raise


# ----------------------------------------------------------------------- helpers


def wait_until(page: Any, check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Polls ``check`` until it returns something true; fails with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        page.wait_for_timeout(250)


class Notebook:
    """A notebook written into the server's root, opened in the page, and its cells."""

    def __init__(self, page: Any, lab: Any, name: str, cells: list[str] | None) -> None:
        """``cells`` None: the notebook already in the server's root under ``name``."""
        self.page, self.lab, self.name = page, lab, name
        self.path = Path(lab.root_dir) / name
        if cells is None:
            self.count = len(nbformat.read(str(self.path), as_version=4).cells)
            return
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": KERNEL, "language": "python"}
        nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
        nbformat.write(nb, str(self.path))
        self.count = len(cells)

    def open(self) -> "Notebook":
        """Opens the notebook (its own workspace, so no other tab is restored) and waits for an idle kernel."""
        workspace = re.sub(r"\W", "-", self.path.stem)
        self.page.goto(f"{self.lab.url}/lab/workspaces/{workspace}/tree/{self.name}?token={self.lab.token}")
        expect(self.cells()).to_have_count(self.count, timeout=90_000)
        self.wait_idle(90)
        return self

    def cells(self) -> Any:
        return self.page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell")

    def cell(self, index: int) -> Any:
        return self.cells().nth(index)

    def prompt(self, index: int) -> str:
        return self.cell(index).locator(".jp-InputArea-prompt").inner_text().strip()

    def output(self, index: int) -> str:
        area = self.cell(index).locator(".jp-OutputArea")
        return area.inner_text() if area.count() else ""

    def wait_idle(self, timeout: float = 60) -> None:
        expect(self.page.locator("#jp-main-statusbar").get_by_text(re.compile(r"\|\s*Idle"))).to_be_visible(
            timeout=timeout * 1000)

    def wait_done(self, index: int, timeout: float, after: str | None = None) -> str:
        """Waits until cell ``index`` shows an execution count (other than ``after``); returns its output."""
        wait_until(self.page, lambda: re.fullmatch(r"\[\d+\]:", p := self.prompt(index)) and p != after,
                   timeout, f"cell {index} to finish (prompt {self.prompt(index)!r})")
        return self.output(index)

    def run_all(self) -> None:
        """Run ▸ Run All Cells, as from the menu bar."""
        self.page.get_by_role("menuitem", name="Run", exact=True).click()
        self.page.get_by_role("menuitem", name=re.compile(r"^Run All Cells")).click()

    def run_cell(self, index: int, timeout: float = 60) -> str:
        """Clicks into cell ``index``, presses Shift+Enter and returns its output once it has run."""
        before = self.prompt(index)
        self.cell(index).locator(".jp-InputArea-editor").click()
        self.page.keyboard.press("Shift+Enter")
        return self.wait_done(index, timeout, after=before)

    def save(self) -> None:
        """Ctrl+S in the notebook; waits until the tab shows no unsaved changes."""
        self.cell(0).locator(".jp-InputPrompt").click()  # command mode, notebook focused
        self.page.keyboard.press("Control+s")
        tab = self.page.locator(".lm-TabBar-tab", has_text=self.name)
        expect(tab).not_to_have_class(re.compile(r"jp-mod-dirty"), timeout=30_000)


def screenshot(target: Any, tmp_path: Path, name: str, docs: bool = False) -> Path:
    """Saves a screenshot of a page or an element to tmp_path (and to docs/screenshots/ when ``docs``)."""
    path = tmp_path / name
    target.screenshot(path=str(path))
    assert path.stat().st_size > 1000, f"{name} is empty"
    if docs:
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS / name)
    return path


def processed_rate(figures: Any) -> float:
    """The 'processed N rows/s' figure of a query panel (0.0 until a batch reported)."""
    if not figures.count():
        return 0.0
    match = re.search(r"processed ([\d,]+(?:\.\d+)?) rows/s", figures.first.inner_text())
    return float(match.group(1).replace(",", "")) if match else 0.0


# ------------------------------------------------------------------------- tests


def test_streaming_panel_shows_rates_and_cancel_stops_the_query(lab, page, tmp_path):
    nb = Notebook(page, lab, "streaming.ipynb", [LOAD, SESSION, """\
%%pipeline rate_demo
mode: streaming
steps:
  - type: extract
    method: fromRate
    name: ticks
    config: {rowsPerSecond: 50}
  - type: load
    method: toMemory
    config: {queryName: rate_rows, trigger: {processingTime: "1 second"}}""", ACTIVE]).open()
    nb.run_all()
    cell = nb.cell(2)
    figures = cell.locator(".widget-html-content", has_text="rows/s")
    rate = wait_until(page, lambda: processed_rate(figures), SPARK_START, "the query panel to show processed rows/s > 0")
    assert rate > 0
    # the cell returned while the query runs; the next cell saw it active
    assert nb.wait_done(3, 60).strip() == "['rate_rows']"
    status = cell.locator(".pipeline-status")
    expect(status).to_have_text("running")
    cell.scroll_into_view_if_needed()
    screenshot(cell, tmp_path, "streaming-widget.png", docs=True)
    screenshot(page, tmp_path, "streaming-page.png")

    cell.get_by_role("button", name="Cancel").click()
    # its query over, the run's live view becomes its static result: the state, the step table, no buttons
    expect(cell.locator(".pipeline-result .pipeline-status")).to_have_text("cancelled", timeout=60_000)
    expect(cell.locator(".pipeline-result tr", has_text="load.toMemory")).to_contain_text("cancelled")
    expect(cell.locator(".jp-OutputArea").get_by_role("button")).to_have_count(0)
    assert "VBox(" not in nb.output(2)
    assert nb.run_cell(3).strip() == "[]"  # no query left running in the kernel
    cell.scroll_into_view_if_needed()
    screenshot(cell, tmp_path, "cancelled.png", docs=True)
    screenshot(page, tmp_path, "cancelled-page.png")


def test_cancel_during_a_running_batch_cell_leaves_delta_unchanged(lab, page, tmp_path):
    table = Path(lab.root_dir) / "lake" / "events"
    state = f"""\
from pyspark.sql import SparkSession
s = SparkSession.getActiveSession()
version = s.sql("DESCRIBE HISTORY delta.`{table}`").agg({{"version": "max"}}).first()[0]
print(f"version {{version}}, rows {{s.read.format('delta').load('{table}').count()}}")"""
    nb = Notebook(page, lab, "batch.ipynb", [
        LOAD,
        f"{SESSION}\nspark.range(5).write.format('delta').save('{table}')\n{state}",
        f"""\
%%pipeline slow_append
steps:
  - {{type: extract, method: fromDelta, name: events, config: {{path: "{table}"}}}}
  - {{type: transform, method: sql, config: {{query: "SELECT id FROM range(0, 3000) WHERE {SLOW}"}}}}
  - {{type: load, method: toDelta, config: {{path: "{table}", mode: append}}}}""",
        state]).open()
    nb.run_all()
    before = nb.wait_done(1, SPARK_START)
    assert before.strip().endswith("version 0, rows 5"), before
    cell = nb.cell(2)
    expect(cell.locator("tr", has_text="load.toDelta")).to_contain_text("running", timeout=60_000)
    # Spark's stage and tasks of the running step, from the status tracker
    expect(cell.locator(".pipeline-stages")).to_contain_text(re.compile(r"Spark: 1 stage running · \d+/\d+ tasks"),
                                                             timeout=15_000)
    screenshot(cell, tmp_path, "batch-stages.png", docs=True)
    assert nb.prompt(2) == "[*]:", "the pipeline cell should still be executing"
    clicked = time.monotonic()
    cell.get_by_role("button", name="Cancel").click()
    # the click is handled by the kernel while the cell still runs: the button says so at once, or the
    # run is already over (a cancel can finish within a second) and its result says cancelled
    handled = cell.get_by_role("button", name=re.compile(r"Cancelling|cancelled")).or_(
        cell.locator(".pipeline-result .pipeline-status", has_text="cancelled"))
    expect(handled.first, "the Cancel click was not handled while the cell ran").to_be_visible(timeout=15_000)
    # the run over, its live view is its static result: the state and the step table, no Cancel
    expect(cell.locator(".pipeline-result .pipeline-status")).to_have_text("cancelled", timeout=60_000)
    expect(cell.locator(".jp-OutputArea").get_by_role("button")).to_have_count(0)
    output = nb.wait_done(2, 60)
    took = time.monotonic() - clicked
    assert took < 30, f"cancelling took {took:.0f}s"  # the job alone needs a minute or more
    assert "PipelineCancelledError" in output and "Traceback" not in output, output
    expect(cell.locator("tr", has_text="load.toDelta")).to_contain_text("cancelled")
    cell.scroll_into_view_if_needed()
    screenshot(cell, tmp_path, "batch-cancelled.png")
    after = nb.run_cell(3)
    assert after.strip() == "version 0, rows 5", after  # no commit, no rows


def test_the_quickstart_tutorial_in_make_lab_reads_well_from_its_first_cell(lab, page, tmp_path):
    """The first tutorial as `make lab` opens it (the session's server), run from the menu in a fresh
    kernel: the pipeline cell shows no stderr box (the JVM's start-up lines go to its log) and its step
    table's time covers the wait, the Spark start shown apart."""
    examples = Path(__file__).resolve().parent.parent / "examples"
    shutil.copy(examples / "01-quickstart.ipynb", Path(lab.root_dir) / "quickstart.ipynb")
    shutil.copytree(examples / "data", Path(lab.root_dir) / "data", dirs_exist_ok=True)
    nb = Notebook(page, lab, "quickstart.ipynb", None).open()
    code = [i for i in range(nb.count) if nb.cell(i).get_attribute("class").find("jp-CodeCell") >= 0]
    pipeline = next(i for i in code if nb.cell(i).locator(".jp-InputArea-editor").inner_text().startswith("%%pipeline"))
    started = time.monotonic()
    nb.run_all()
    expect(nb.cell(pipeline).get_by_text("starting Spark…")).to_be_visible(timeout=15_000)
    output = nb.wait_done(pipeline, SPARK_START)
    waited = time.monotonic() - started
    cell = nb.cell(pipeline)
    assert cell.locator("[data-mime-type='application/vnd.jupyter.stderr']").count() == 0, output
    header = re.search(r"revenue_daily: done in ([\d.]+)s \(Spark start ([\d.]+)s\)", output)
    assert header, output
    took, spark_start = float(header.group(1)), float(header.group(2))
    # the cells before it (an import of pandas) and the page's polling are all the run does not count
    assert 0 < spark_start < took <= waited and took >= waited - 5, (took, spark_start, waited)
    expect(cell.locator(".pipeline-result tr", has_text="load.toDelta")).to_contain_text("done")
    screenshot(cell, tmp_path, "quickstart-first-cell.png")


def test_dry_run_draws_the_graph(lab, page, tmp_path):
    data = "data"  # nothing is read in a dry run
    spec = f"""\
steps:
  - {{type: extract, method: fromCsv, name: orders, config: {{path: "{data}/orders.csv", header: true, inferSchema: true}}}}
  - {{type: extract, method: fromCsv, name: customers, config: {{path: "{data}/customers.csv", header: true}}}}
  - {{type: transform, method: join, name: enriched, input: orders, config: {{right: customers, on: [customer_id], how: left}}}}
  - type: transform
    method: expect
    name: checked
    config: {{condition: "amount > 0", onFail: drop}}
  - type: transform
    method: sql
    name: by_segment
    config: {{query: "SELECT segment, count(*) AS orders, round(sum(amount), 2) AS revenue FROM checked GROUP BY segment"}}
  - {{type: load, method: toDelta, config: {{path: /tmp/lake/by_segment, mode: overwrite}}}}"""
    nb = Notebook(page, lab, "explain.ipynb", [LOAD, "%%pipeline --dry-run orders_by_segment\n" + spec]).open()
    nb.run_all()
    output = nb.wait_done(1, 60)
    assert "dry run" in output, output
    out = nb.cell(1).locator(".jp-OutputArea-output")
    graph = out.locator(".pipeline-graph img, .jp-RenderedMermaid svg, svg[id^='mermaid']").first
    expect(graph).to_be_visible(timeout=30_000)
    text = graph.get_attribute("alt") or graph.inner_html()  # Graphviz's picture is an <img>, its alt the text
    for name in ("orders", "customers", "enriched", "by_segment"):
        assert name in text, f"{name} missing from the graph"
    screenshot(graph, tmp_path, "explain-graph.png", docs=True)

    # the same output stored in a notebook opened fresh, untrusted (JupyterLab sanitizes its HTML): still a picture
    stored = Notebook(page, lab, "untrusted.ipynb", ["%%pipeline --dry-run orders_by_segment\n" + spec])
    saved = nbformat.read(str(stored.path), as_version=4)
    saved.cells[0].execution_count = 1
    saved.cells[0].outputs = [nbformat.v4.new_output(
        "display_data", data=PlanView(Pipeline.from_yaml(spec, name="orders_by_segment"))._repr_mimebundle_())]
    nbformat.write(saved, str(stored.path))  # written here, never signed: JupyterLab opens it untrusted
    stored.open()
    picture = stored.cell(0).locator(".jp-OutputArea-output .pipeline-graph img")
    expect(picture).to_be_visible(timeout=30_000)
    assert picture.evaluate("img => img.naturalWidth") > 100, "the stored picture did not load"


@pytest.mark.vault
def test_vault_login_form_keeps_secrets_out_of_the_saved_notebook(lab, page, tmp_path, vault_server):
    token_file = tmp_path / "kernel-token"
    nb = Notebook(page, lab, "vault.ipynb", [LOAD, "%pipeline vault login", f"""\
from pathlib import Path
from pipeline_magics.secrets import vault
Path({str(token_file)!r}).write_text(vault.SESSION.token or "")  # for the test to look for; not shown
print("logged in:", bool(vault.SESSION.token))"""]).open()
    nb.run_cell(0)
    nb.run_cell(1)
    form = nb.cell(1).locator(".jp-Cell-outputArea")
    address = form.locator(".widget-text", has_text="Address").locator("input")
    expect(address).to_be_visible(timeout=30_000)
    address.fill(vault_server.addr)
    form.locator(".widget-dropdown select").select_option(label="Username & password")
    username = form.locator(".widget-text", has_text="Username").locator("input")
    password = form.locator(".widget-text", has_text="Password").locator("input[type=password]")
    expect(password).to_be_visible()
    username.fill(vault_server.user)
    password.fill(vault_server.user_password)
    form.get_by_role("button", name="Login").click()
    expect(form).to_contain_text(f"logged in as userpass-{vault_server.user}", timeout=30_000)
    expect(password).to_have_value("")  # emptied in the kernel, and so in the page
    screenshot(nb.cell(1), tmp_path, "vault-login.png", docs=True)
    assert nb.run_cell(2).strip() == "logged in: True"
    token = token_file.read_text()
    assert len(token) > 10

    nb.save()
    saved = nb.path.read_text()
    assert "application/vnd.jupyter.widget-state+json" in saved  # the widget state was saved ...
    assert f"userpass-{vault_server.user}" in saved
    for name, secret in (("password", vault_server.user_password), ("kernel token", token),
                         ("root token", vault_server.root_token)):
        assert secret not in saved, f"the {name} is in the saved notebook"  # ... without any secret


def test_pipeline_cell_body_is_highlighted_as_yaml(lab, page, tmp_path):
    body = """\
steps:
  - type: extract
    method: fromCsv
    name: orders
    config:
      path: data/orders.csv
      header: true
  - type: load
    method: toDelta
    config: {path: lake/orders, mode: overwrite}  # replaces the table"""
    keys = {"steps", "type", "method", "name", "config", "path", "header", "mode"}
    nb = Notebook(page, lab, "yaml.ipynb", [f"%%pipeline orders --dry-run\n{body}", f"x = 1\n{body}"]).open()
    yaml_cell, python_cell = (nb.cell(i).locator(".cm-content") for i in (0, 1))
    expect(yaml_cell).to_have_attribute("data-language", "pipeline-yaml", timeout=30_000)
    expect(python_cell).to_have_attribute("data-language", "python")

    def tokens(content: Any, kind: str) -> list[str]:
        return [t.strip() for t in content.locator(f".tok-{kind}").all_inner_texts()]

    assert set(tokens(yaml_cell, "atom")) == keys  # YAML keys, each one
    assert tokens(yaml_cell, "keyword")[:1] == ["%%pipeline"]
    assert "true" in tokens(yaml_cell, "keyword")  # a YAML boolean
    assert tokens(yaml_cell, "comment") == ["# replaces the table"]
    # the theme colours YAML keys unlike plain text
    key = yaml_cell.locator(".tok-atom", has_text="method").first
    plain = yaml_cell.locator(".cm-line").nth(2)  # "    method: fromCsv": the line's own colour
    assert key.evaluate("e => getComputedStyle(e).color") != plain.evaluate("e => getComputedStyle(e).color")
    assert python_cell.locator("[class*='tok-']").count() == 0  # the same text in a Python cell: Python's tokens
    nb.cell(0).scroll_into_view_if_needed()
    screenshot(nb.cell(0), tmp_path, "yaml-cell.png", docs=True)

    # the language follows edits: the magic typed into the Python cell turns it into YAML ...
    python_cell.click()
    page.keyboard.press("Control+Home")
    page.keyboard.type("%%pipeline typed")
    page.keyboard.press("Enter")
    expect(python_cell).to_have_attribute("data-language", "pipeline-yaml")
    expect(python_cell.locator(".tok-atom", has_text="steps")).to_have_count(1)
    page.keyboard.press("Control+Home")
    page.keyboard.press("Shift+ArrowDown")
    page.keyboard.press("Delete")  # and removed, back to Python
    expect(python_cell).to_have_attribute("data-language", "python")
    expect(python_cell.locator("[class*='tok-']")).to_have_count(0)


def test_tab_in_a_pipeline_cell_completes_methods_and_settings_from_the_kernel(lab, page, tmp_path):
    body = "steps:\n  - type: extract\n    method: "
    # jedi's first completion in a new environment builds its cache for minutes: IPython's own matchers answer
    nb = Notebook(page, lab, "completion.ipynb", [f"{LOAD}\n%config IPCompleter.use_jedi = False",
                                                  f"%%pipeline orders --dry-run\n{body}", "isinst"]).open()
    yaml_cell, python_cell = (nb.cell(i).locator(".cm-content") for i in (1, 2))
    expect(yaml_cell).to_have_attribute("data-language", "pipeline-yaml", timeout=30_000)
    nb.run_cell(0)
    completer = page.locator(".jp-Completer")
    items = completer.locator(".jp-Completer-item .jp-Completer-match")

    # Tab after `method: ` of an extract step: the extract methods only, in JupyterLab's completer alone
    yaml_cell.click()
    page.keyboard.press("Control+End")
    page.keyboard.press("Tab")
    expect(completer).to_contain_text("fromCsv", timeout=60_000)
    methods = items.all_inner_texts()
    assert {"fromCsv", "fromDelta", "fromKafka"} <= set(methods), methods
    assert not {"toDelta", "filterRows", "isinstance"} & set(methods), methods
    expect(page.locator(".cm-tooltip-autocomplete")).to_have_count(0)  # one popup, not two
    screenshot(page.locator(".jp-NotebookPanel"), tmp_path, "completion.png")
    page.keyboard.type("fromCs")  # typing narrows the list; Enter takes the choice
    expect(items).to_have_text(["fromCsv"])
    page.keyboard.press("Enter")
    expect(yaml_cell.locator(".cm-line").nth(3)).to_have_text("    method: fromCsv")

    # a key typed under the step's config: fromCsv's setting
    page.keyboard.press("Enter")
    page.keyboard.type("config:")
    page.keyboard.press("Enter")
    page.keyboard.type("  hea")
    page.keyboard.press("Tab")
    # the kernel's answer first (JupyterLab's own context provider adds the cell's words after it)
    expect(items.first).to_have_text("header", timeout=30_000)
    page.keyboard.press("Enter")
    expect(yaml_cell.locator(".cm-line").nth(5)).to_have_text("      header")

    # a Python cell keeps Python's completions
    python_cell.click()
    page.keyboard.press("Control+End")
    page.keyboard.press("Tab")
    expect(completer).to_contain_text("isinstance", timeout=60_000)
    page.keyboard.press("Enter")
    expect(python_cell).to_have_text("isinstance")
