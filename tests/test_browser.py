"""The notebooks in a real browser: JupyterLab on 127.0.0.1, driven by headless Chromium.

07_explorer is opened in JupyterLab, run with Run > Run All Cells, then edited the way a
reader would: a new sentence is typed into the "Sentence" box and the "Sparsity" slider is
moved with the keyboard. After each change the surviving tokens shown in the ``toplib-kept``
output must change. 01_how_top_works is run the same way on the tiny runs and must show
every figure it draws, decoded, and its formulas typeset. Screenshots go to ``$TOPLIB_ARTIFACTS`` (default ``artifacts/browser``).

Needs Debian's ``chromium`` and ``chromium-driver`` and the ``selenium`` package
(``scripts/install_browser.sh``). Without them the test is skipped, except under ``CI``,
where it fails so that a broken install is noticed. Every wait is bounded; the whole test
ends within ``TEST_BUDGET_S``.
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from toplib.hf.model import resolve_model_path
from toplib.train import finetune, prune
from toplib.train.config import build_train_config
from toplib.viz.notebook import NOTEBOOK_DIR, read_metrics

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
EXPLORER = os.path.join(NOTEBOOK_DIR, "07_explorer.ipynb")
METHOD_NAME = "01_how_top_works"
METHOD = os.path.join(NOTEBOOK_DIR, f"{METHOD_NAME}.ipynb")
FIGURE_CSS = ".jp-OutputArea-output img"
METHOD_TOY_STEPS = 40  # the toy Lagrangian run: enough steps to see the multipliers move
REPO = os.path.dirname(NOTEBOOK_DIR)
ARTIFACTS = os.environ.get("TOPLIB_ARTIFACTS") or os.path.join(REPO, "artifacts", "browser")

TASK = "rotten_tomatoes"
TINY = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64,
            max_position_embeddings=128)
RUN = dict(max_train_samples=48, max_eval_samples=24, batch_size=8, eval_batch_size=12,
           finetune_epochs=1, epochs=1, warmup_epochs=0.5, eval_steps=2, max_seq_length=32,
           reg_learning_rate=0.2, bin_num=4)
# Enough steps and a fast enough multiplier for the student to reach its target (~2 s), so
# the ToP rows of the explorer prune too.
PRUNE = dict(RUN, sparsity=0.5, epochs=4, warmup_epochs=2, reg_learning_rate=0.5)
FIRST_SENTENCE = "A gorgeous, witty and seductive movie."
NEW_SENTENCE = "the plot was painfully boring"  # shares no word with FIRST_SENTENCE
FIRST_SPARSITY = 0.5
SLIDER_PRESSES = 6  # arrow-key steps to the right: the baseline then keeps fewer tokens

TEST_BUDGET_S = 170  # every wait below draws on this; the slow shared CPU needs the margin
SERVER_START_S = 60
KERNEL_SHUTDOWN_S = 20
POLL_S = 0.5
CHROME_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--no-default-browser-check",
                "--disable-extensions", "--no-proxy-server", "--window-size=1400,1100")
# Clean, deterministic JupyterLab: all cells in the DOM (no virtual scrolling), no news or
# update toasts over the page.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false",
                                                    "checkForUpdates": False},
}


class Deadline:
    """Bounded polling against one overall budget, so the test cannot hang."""

    def __init__(self, budget_s: float):
        self.end = time.monotonic() + budget_s

    def wait(self, condition, what: str, timeout_s: float | None = None):
        """Poll ``condition()`` until it returns something truthy; return that value.

        Raises:
            TimeoutError naming ``what`` when the timeout or the overall budget runs out.
        """
        end = min(self.end, time.monotonic() + (timeout_s or float("inf")))
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > end:
                raise TimeoutError(f"timed out waiting for {what}")
            time.sleep(POLL_S)


def _missing_browser() -> str | None:
    """Why the browser test cannot run here, or None."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return f"{path} is missing"
    if importlib.util.find_spec("selenium") is None:
        return "the selenium package is missing"
    return None


@pytest.fixture(scope="session")
def browser_available():
    """Skip without Chromium, chromedriver or selenium, but fail in CI (a broken install)."""
    reason = _missing_browser()
    if reason:
        message = f"{reason}: run scripts/install_browser.sh"
        if os.environ.get("CI"):
            pytest.fail(f"CI is set and {message}", pytrace=False)
        pytest.skip(message)


@pytest.fixture(scope="session")
def explorer_runs(tmp_path_factory, browser_available) -> str:
    """A runs folder with a tiny ToP student (``pruned``) and its teacher, trained in seconds.

    The random base model lives outside it, so the explorer offers exactly these two, the
    student first.
    """
    root = tmp_path_factory.mktemp("explorer")
    base, runs = root / "tiny-bert", root / "runs"
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(None))
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=tokenizer.vocab_size, **TINY))
    model.save_pretrained(base)
    tokenizer.save_pretrained(base)
    finetune(TASK, str(runs / "teacher"), model=str(base),
             config=build_train_config(TASK, None, RUN), progress=False)
    prune(TASK, str(runs / "teacher"), str(runs / "pruned"),
          build_train_config(TASK, None, PRUNE), progress=False)
    return str(runs)


def explorer_parameters(runs: str, output_dir: str) -> dict:
    """Values for 07_explorer's ``parameters`` cell."""
    return {"checkpoints_dir": runs, "sentence": FIRST_SENTENCE, "sparsity": FIRST_SPARSITY,
            "output_dir": output_dir}


def prepare_notebook(source: str, root: str, parameters: dict) -> str:
    """Copy ``source`` into ``root`` with ``parameters`` injected (not executed); its name."""
    import papermill

    unknown = set(parameters) - set(papermill.inspect_notebook(source))
    assert not unknown, f"{source} has no parameters {sorted(unknown)}"
    name = os.path.basename(source)
    papermill.execute_notebook(source, os.path.join(root, name), parameters=parameters,
                               prepare_only=True, kernel_name="python3", progress_bar=False)
    return name


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _api(base_url: str, token: str, path: str, method: str = "GET", timeout_s: float = 5):
    """``method`` on ``base_url/api/<path>``: the JSON answer ({} if none), or None while the
    server is not answering."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy
    request = urllib.request.Request(f"{base_url}/api/{path}", method=method,
                                     headers={"Authorization": f"token {token}"})
    try:
        with opener.open(request, timeout=timeout_s) as response:
            body = response.read()
    except OSError:
        return None
    return json.loads(body) if body else {}


def _write_lab_settings(settings_dir: str) -> None:
    for plugin, values in LAB_SETTINGS.items():
        path = os.path.join(settings_dir, f"{plugin}.jupyterlab-settings")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            json.dump(values, f)


class LabServer:
    """``jupyter lab`` on 127.0.0.1 with a random token, isolated from the user's settings."""

    def __init__(self, root: str, state_dir: str):
        self.root, self.token = root, secrets.token_hex(16)
        self.base_url = f"http://127.0.0.1:{_free_port()}"
        self.log_path = os.path.join(state_dir, "jupyter-lab.log")
        env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
                   JUPYTER_CONFIG_DIR=os.path.join(state_dir, "config"),
                   JUPYTER_RUNTIME_DIR=os.path.join(state_dir, "runtime"),
                   JUPYTERLAB_SETTINGS_DIR=os.path.join(state_dir, "settings"),
                   JUPYTERLAB_WORKSPACES_DIR=os.path.join(state_dir, "workspaces"))
        _write_lab_settings(env["JUPYTERLAB_SETTINGS_DIR"])
        port = self.base_url.rsplit(":", 1)[1]
        command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1",
                   f"--port={port}", "--port-retries=0", f"--ServerApp.token={self.token}",
                   f"--ServerApp.root_dir={root}", "--allow-root",
                   "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
        self._log = open(self.log_path, "w")
        # Own process group, so that teardown can signal the server and nothing else.
        self.process = subprocess.Popen(command, cwd=root, env=env, stdout=self._log,
                                        stderr=subprocess.STDOUT, start_new_session=True)

    def api(self, path: str, method: str = "GET", timeout_s: float = 5):
        return _api(self.base_url, self.token, path, method, timeout_s)

    def wait_ready(self, deadline: Deadline) -> None:
        def ready():
            if self.process.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {self.process.returncode}:\n"
                                   f"{self.log_tail()}")
            return self.api("status") is not None
        deadline.wait(ready, "jupyter lab to answer /api/status", SERVER_START_S)

    def url(self, notebook: str) -> str:
        return f"{self.base_url}/lab/tree/{notebook}?token={self.token}"

    def log_tail(self, chars: int = 4000) -> str:
        self._log.flush()
        with open(self.log_path) as f:
            return f.read()[-chars:]

    def stop(self) -> None:
        """Shut the kernels down (they run in sessions of their own), then the server."""
        if self.process.poll() is None:
            for kernel in self.api("kernels") or []:
                self.api(f"kernels/{kernel['id']}", "DELETE", KERNEL_SHUTDOWN_S)
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=15)
        self._log.close()


def start_chromium(profile_dir: str, log_path: str):
    """Headless Chromium from Debian's package; Selenium Manager is never asked for a driver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROME_FLAGS + (f"--user-data-dir={profile_dir}",):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER, log_output=log_path), options=options)


# --- what the test does in the page -------------------------------------------------------


def _find(driver, css: str) -> list:
    from selenium.webdriver.common.by import By
    return driver.find_elements(By.CSS_SELECTOR, css)


def _read(driver, css: str, attribute: str = "textContent") -> list[str]:
    """``attribute`` of every element matching ``css``, read in one step in the page: the
    widgets re-render their output while the kernel updates it, so element handles held in
    Python go stale between calls."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0]),"
        " e => e.getAttribute(arguments[1]) ?? e[arguments[1]] ?? '')", css, attribute)


def _kernel_idle(lab: LabServer):
    kernels = lab.api("kernels") or []
    return bool(kernels) and all(k.get("execution_state") == "idle" for k in kernels)


def run_all_cells(driver, deadline: Deadline) -> None:
    """Run > Run All Cells from JupyterLab's menu bar."""
    menu = deadline.wait(lambda: [m for m in _find(driver, "#jp-MainMenu .lm-MenuBar-item")
                                  if m.text.strip() == "Run"], "the Run menu")[0]
    menu.click()
    item = deadline.wait(lambda: [i for i in _find(driver, ".lm-Menu .lm-Menu-item")
                                  if i.text.strip() == "Run All Cells"],
                         "Run All Cells in the Run menu", 10)[0]
    item.click()


def _cells_done(driver):
    """All code cells have an execution count (none pending ``[ ]``/``[*]``)."""
    prompts = [p.strip() for p in _read(driver, ".jp-CodeCell .jp-InputPrompt")]
    return bool(prompts) and all(p[1:-2].isdigit() for p in prompts if p)


def output_errors(driver) -> list[str]:
    errors = [t for t in _read(driver, ".jp-OutputArea-output") if "Traceback" in t]
    return errors + _read(driver, ".toplib-kept .toplib-error")


def kept_display(driver) -> str:
    """Text of the explorer's output (prediction and surviving tokens per layer)."""
    return "\n".join(_read(driver, ".toplib-kept", "innerText")).strip()


def kept_tokens_shown(driver) -> set[str]:
    """The tokens shown as kept anywhere in the explorer's output."""
    return {t.strip() for t in _read(driver, ".toplib-kept .toplib-token-kept")}


def kept_counts(driver, table: str = "baseline") -> list[str]:
    """Kept-token counts per layer shown in the ``top`` or the ``baseline`` rows."""
    return _read(driver, f".toplib-kept .toplib-{table} .toplib-layer", "data-kept")


def first_layer_tokens(driver, table: str) -> list[str]:
    """The tokens entering layer 0 in the ``top`` or ``baseline`` rows: the whole input."""
    return [t.strip() for t in _read(
        driver, f'.toplib-kept .toplib-{table} .toplib-layer[data-layer="0"] .toplib-token')]


def baseline_title(driver) -> str:
    return " ".join(_read(driver, ".toplib-kept .toplib-baseline-title"))


def type_sentence(driver, sentence: str) -> None:
    """Replace the text of the "Sentence" box, as a reader would, and press Enter."""
    from selenium.webdriver.common.keys import Keys
    box = [b for b in _find(driver, ".widget-text") if "Sentence" in b.text]
    assert box, "no ipywidgets Text labelled 'Sentence' on the page"
    field = box[0].find_element("css selector", "input")
    field.click()
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(sentence + Keys.ENTER)


def move_slider(driver, presses: int) -> str:
    """Move the "Sparsity" slider ``presses`` steps right with the keyboard; its new readout."""
    from selenium.webdriver.common.keys import Keys
    sliders = [s for s in _find(driver, ".widget-slider") if "Sparsity" in s.text]
    assert sliders, "no ipywidgets slider labelled 'Sparsity' on the page"
    handle = sliders[0].find_element("css selector", ".noUi-handle")
    handle.click()
    for _ in range(presses):
        handle.send_keys(Keys.ARROW_RIGHT)
    return sliders[0].find_element("css selector", ".widget-readout").text.strip()


def screenshot(driver, name: str, notebook: str = "07_explorer", css: str = ".toplib-kept") -> str:
    """Save the page, the first ``css`` output (the explorer's) scrolled into view, under
    ARTIFACTS as ``<notebook>-<name>.png``."""
    outputs = _find(driver, css)
    if outputs:
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", outputs[0])
    os.makedirs(ARTIFACTS, exist_ok=True)
    path = os.path.join(ARTIFACTS, f"{notebook}-{name}.png")
    driver.save_screenshot(path)
    print(f"screenshot: {path}")
    return path


@contextlib.contextmanager
def open_in_lab(tmp_path, source: str, parameters: dict):
    """(driver, lab, deadline): ``source`` prepared with ``parameters`` and open in JupyterLab."""
    deadline = Deadline(TEST_BUDGET_S)
    root, state = tmp_path / "lab", tmp_path / "state"
    root.mkdir(), state.mkdir()
    name = prepare_notebook(source, str(root), parameters)
    lab = LabServer(str(root), str(state))
    driver = None
    try:
        lab.wait_ready(deadline)
        driver = start_chromium(str(state / "chromium-profile"), str(state / "chromedriver.log"))
        driver.get(lab.url(name))
        yield driver, lab, deadline
    except BaseException:
        print(f"--- jupyter lab log ---\n{lab.log_tail()}")
        raise
    finally:
        if driver is not None:
            driver.quit()
        lab.stop()
        shutil.rmtree(state / "chromium-profile", ignore_errors=True)


@pytest.fixture
def lab_page(tmp_path, explorer_runs):
    """(driver, lab, deadline, output_dir): the prepared 07_explorer open in JupyterLab."""
    output_dir = str(tmp_path / "explorer-out")
    with open_in_lab(tmp_path, EXPLORER, explorer_parameters(explorer_runs, output_dir)) as page:
        yield (*page, output_dir)


def run_notebook_in_lab(driver, lab: LabServer, deadline: Deadline) -> None:
    """Wait for the notebook and its kernel, then Run All Cells and wait until all ran."""
    deadline.wait(lambda: _find(driver, ".jp-Notebook .jp-CodeCell"), "the notebook to open", 90)
    deadline.wait(lambda: _kernel_idle(lab), "the kernel to start and be idle", 60)
    run_all_cells(driver, deadline)
    _wait_updated(driver, lab, deadline, lambda: _cells_done(driver), "all cells to run")


def _wait_updated(driver, lab: LabServer, deadline: Deadline, shown, what: str) -> None:
    """Wait until ``shown()`` (or an error is shown) and the kernel has finished updating."""
    deadline.wait(lambda: shown() and _kernel_idle(lab) or output_errors(driver), what, 60)
    assert not output_errors(driver), output_errors(driver)


def test_explorer_updates_surviving_tokens_in_the_browser(lab_page):
    driver, lab, deadline, output_dir = lab_page
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(None))
    new_tokens = tokenizer.convert_ids_to_tokens(tokenizer(NEW_SENTENCE).input_ids)
    try:
        run_notebook_in_lab(driver, lab, deadline)
        assert read_metrics(output_dir)["num_checkpoints"] == 2  # the last cell ran too
        before = deadline.wait(lambda: kept_tokens_shown(driver) and kept_display(driver),
                               "the explorer to show surviving tokens", 30)
        tokens_before, counts_before = kept_tokens_shown(driver), kept_counts(driver)
        assert "gorgeous" in tokens_before and counts_before, before
        screenshot(driver, "before")

        type_sentence(driver, NEW_SENTENCE)  # the tokenizer's tokens must enter layer 0
        _wait_updated(driver, lab, deadline,
                      lambda: all(first_layer_tokens(driver, table) == new_tokens
                                  for table in ("top", "baseline")),
                      f"the tokens {new_tokens} of the new sentence to be shown")
        screenshot(driver, "after-sentence")
        after, tokens_after = kept_display(driver), kept_tokens_shown(driver)
        assert after != before and tokens_after != tokens_before
        assert tokens_after <= set(new_tokens) and not tokens_before & set(NEW_SENTENCE.split())
        counts_typed = kept_counts(driver)

        readout = move_slider(driver, SLIDER_PRESSES)
        assert float(readout) > FIRST_SPARSITY, readout
        _wait_updated(driver, lab, deadline,
                      lambda: f"sparsity {readout}" in baseline_title(driver),
                      f"the baseline to be redrawn at sparsity {readout}")
        screenshot(driver, "after-slider")
        counts_moved = kept_counts(driver)
        assert sum(map(int, counts_moved)) < sum(map(int, counts_typed)), \
            (counts_typed, counts_moved)
        assert first_layer_tokens(driver, "baseline") == new_tokens
    except BaseException:
        screenshot(driver, "failure")
        print(f"--- jupyter lab log ---\n{lab.log_tail()}")
        raise


def rendered_figures(driver) -> list[list[int]]:
    """(width, height) of every image the notebook's outputs show, as the browser decoded it."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0]),"
        " i => [i.naturalWidth, i.naturalHeight])", FIGURE_CSS)


def figure_cells(source: str) -> int:
    """How many code cells of ``source`` draw a figure (call a ``plot_*`` function)."""
    import nbformat
    return sum(c.cell_type == "code" and "plots.plot_" in c.source
               for c in nbformat.read(source, as_version=4).cells)


def test_method_notebook_renders_its_figures_in_the_browser(tmp_path, explorer_runs):
    import papermill
    output_dir = str(tmp_path / "method-out")
    parameters = {"teacher_dir": os.path.join(explorer_runs, "teacher"),
                  "top_dir": os.path.join(explorer_runs, "pruned"), "output_dir": output_dir,
                  "figures_dir": str(tmp_path / "figures"), "toy_steps": METHOD_TOY_STEPS}
    parameters = {k: v for k, v in parameters.items() if k in papermill.inspect_notebook(METHOD)}
    with open_in_lab(tmp_path, METHOD, parameters) as (driver, lab, deadline):
        try:
            run_notebook_in_lab(driver, lab, deadline)
            assert read_metrics(output_dir)["notebook"] == METHOD_NAME  # the last cell ran
            figures = rendered_figures(driver)
            assert len(figures) >= figure_cells(METHOD) >= 5, figures
            assert all(w > 100 and h > 100 for w, h in figures), figures  # decoded, not broken
            markdown = " ".join(_read(driver, ".jp-MarkdownOutput", "innerText"))
            assert "How to read it." in markdown and "Try this" in markdown
            assert _find(driver, ".jp-MarkdownOutput mjx-container, .jp-MarkdownOutput .MathJax"), \
                "no formula was typeset"
            screenshot(driver, "figures", METHOD_NAME, FIGURE_CSS)
        except BaseException:
            screenshot(driver, "failure", METHOD_NAME, FIGURE_CSS)
            raise
