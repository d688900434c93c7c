"""The built book as a reader sees it: every chapter is there, and in a real browser every
figure shows, every formula is typeset, every table is a table, every figure has a caption, and
every page links the PDF.

The book is built before the tests run (README's test command, and CI, do so), into
`_build/html`; `BOOK_BUILD_DIR` points the tests at another `_build` folder (for example the
one that `jupyter-book build book --path-output DIR` writes, `DIR/_build`).

The browser is headless Chromium from the system's packages (Debian's `chromium` and
`chromium-driver`; `CHROME_BIN` and `CHROMEDRIVER` name other paths), driven by Selenium
through that chromedriver: nothing downloads a browser or a driver.

Outside CI these tests skip until the book is built, or where the browser is missing; in CI
(`CI` set) a missing build or browser is a failure.
"""

import os
import re
import shutil
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml
from conftest import unavailable

pytestmark = pytest.mark.book  # reads the built book: CI's last lane, after the build

REPO = Path(__file__).resolve().parent.parent
# The repository the book is published from, set once in _config.yml.
REPOSITORY = yaml.safe_load((REPO / "_config.yml").read_text())["repository"]["url"]
BUILD = Path(os.environ.get("BOOK_BUILD_DIR", REPO / "_build"))
HTML = BUILD / "html"
PAGES = [
    "intro",
    "01_why_low_rank",
    "02_lora_layer",
    "03_into_bert",
    "04_adapters",
    "05_experiments",
    "06_given_time",
    "08_how_run",
    "07_analysis",
    "reproduce",
    "train",
    "appendix",
    "bibliography",
]
BUILD_COMMAND = "jupyter-book build book -W -n --keep-going"


@pytest.fixture(scope="module")
def pages():
    if not (HTML / "intro.html").is_file():
        unavailable(f"the book is not built: {BUILD_COMMAND}")
    return {
        name: (HTML / f"{name}.html").read_text(encoding="utf-8") for name in PAGES if (HTML / f"{name}.html").is_file()
    }


def test_every_chapter_is_built(pages):
    assert sorted(pages) == sorted(PAGES)
    assert "LoRA from scratch" in pages["intro"]


def test_every_figure_the_pages_show_exists(pages):
    images = 0
    for page in HTML.rglob("*.html"):
        for src in re.findall(r'<img[^>]+src="([^"]+)"', page.read_text(encoding="utf-8")):
            if src.startswith(("http:", "https:", "data:")):
                continue
            images += 1
            assert (page.parent / src).is_file(), f"{page.relative_to(HTML)} shows {src}, which is not in the build"
    assert images >= 2  # at least the rank experiment of chapter 2 and the layer diagram of chapter 4


def test_no_executed_cell_shows_an_error(pages):
    for name, html in pages.items():
        assert "output traceback" not in html, f"a cell of {name} failed when the book was built"
    assert not list(HTML.rglob("*.err.log")), "the build saved the traceback of a failed notebook"


def test_the_study_chapters_say_how_many_runs_they_rest_on(pages):
    from lora_lib.study.record import REPORTED, load_records

    grid = len(load_records(REPO / REPORTED, eval_split="validation"))
    search = len(load_records(REPO / "executed" / "tuning"))
    results, protocol = (
        re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", pages[name])) for name in ("05_experiments", "08_how_run")
    )
    assert f"{grid} runs" in results
    assert f"{grid} runs" in protocol and f"{search} tuning runs" in protocol


def test_the_library_code_is_included_not_retyped(pages):
    source = (REPO / "lora_lib" / "lora.py").read_text()
    forward = re.search(r"    def forward\(self, x: torch.Tensor\) -> torch.Tensor:\n(.*?)\n\n", source, re.S).group(1)
    text = (
        re.sub(r"<[^>]+>", "", pages["02_lora_layer"]).replace("&gt;", ">").replace("&lt;", "<").replace("&quot;", '"')
    )
    assert forward.strip().splitlines()[-1].strip() in text


def test_the_training_notebook_installs_from_the_books_repository():
    """The repository's address is set once, in _config.yml; the notebook's install line follows it."""
    install = re.search(r'%pip install --quiet "lora_lib @ git\+([^"]+)"', (REPO / "book" / "train.md").read_text())
    assert install and install.group(1) == REPOSITORY


def test_the_chapters_have_launch_buttons(pages):
    """Binder opens every chapter; Colab, which opens only .ipynb files, is offered for the
    training notebook and never for a MyST Markdown chapter."""
    repository = REPOSITORY.removeprefix("https://github.com/")
    colab = f"https://colab.research.google.com/github/{repository}/blob/main/book/"
    for name in ["01_why_low_rank", "02_lora_layer", "03_into_bert", "04_adapters", "train"]:
        assert f"https://mybinder.org/v2/gh/{repository}/main?urlpath=lab/tree/book/{name}." in pages[name], name
    assert f"{colab}train.ipynb" in pages["train"]
    for name, page in pages.items():
        opened = re.findall(re.escape(colab) + r'[^"]+', page)
        assert all(url.endswith(".ipynb") for url in opened), f"{name} offers Colab a file it cannot open: {opened}"


# --- in the browser ---------------------------------------------------------------------------

# What a reader sees on one page, collected in one pass: the article's text (rendered, and
# without the code cells' and listings' source, which may legitimately hold any characters),
# its images with their size and caption, its tables, its links, and the page's PDF links.
FACTS = """
const article = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
const source = article.cloneNode(true);
source.querySelectorAll('script, style, .cell_input, div[class^="highlight-"]').forEach(e => e.remove());
const visible = e => e.checkVisibility({checkOpacity: true, checkVisibilityCSS: true});
return {
  text: article.innerText,
  first_screen: Array.from(article.querySelectorAll('h1, p, li'))
    .filter(e => e.getBoundingClientRect().top < window.innerHeight && visible(e)).map(e => e.innerText).join(' '),
  text_outside_code: source.textContent,
  images: Array.from(article.querySelectorAll('img')).map(img => {
    const figure = img.closest('figure');
    const caption = figure && figure.querySelector('figcaption');
    return {src: img.getAttribute('src'), natural_width: img.naturalWidth, width: img.getBoundingClientRect().width,
            visible: visible(img), caption: caption ? caption.innerText.trim() : null};
  }),
  tables: Array.from(article.querySelectorAll('table')).map(t => ({
    rows: t.rows.length, caption: t.caption ? t.caption.innerText.trim() : null, id: t.id,
    first_column: Array.from(t.rows).slice(1).map(r => r.cells[0].innerText.trim()),
    cells: Array.from(t.rows).slice(1).map(r => Array.from(r.cells).map(c => c.innerText.trim()))})),
  links: Array.from(article.querySelectorAll('a[href]')).map(a => a.getAttribute('href')),
  formulas: Array.from(article.querySelectorAll('.math')).map(m => ({
    typeset: m.querySelector('mjx-container') !== null, source: m.textContent.trim().slice(0, 60)})),
  pdf_links: Array.from(document.querySelectorAll('a[href]')).filter(a => /lora-tuning\\.pdf$/.test(a.href))
    .map(a => ({href: a.href, text: a.innerText.trim(), visible: visible(a)})),
};
"""
MYST_MARKUP = re.compile(r"`{3,}\{\w+\}|\{(?:glue|numref|ref)(?::\w+)?\}`|^:name: ", re.M)
RAW_MARKDOWN_TABLE = re.compile(r"\|\s*:?-{3,}:?\s*\|")
STUDY_PAGES = ["02_lora_layer", "05_experiments", "06_given_time", "07_analysis"]  # the pages whose point is a figure


def _browser_paths():
    binary = os.environ.get("CHROME_BIN") or next(
        (path for path in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if path), None
    )
    driver = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver")
    return binary, driver


@pytest.fixture(scope="module")
def browser(pages):
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        unavailable('selenium is not installed: pip install -e ".[test]"')
    binary, driver_path = _browser_paths()
    if not binary or not driver_path:
        unavailable("headless Chromium and its driver are not installed: apt-get install chromium chromium-driver")
    options = Options()
    options.binary_location = binary  # the system's browser: Selenium Manager never downloads one
    for argument in [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
    ]:
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(30)  # MATHJAX_DONE's own deadline is 15 s
    yield driver
    driver.quit()


# Resolves once MathJax has typeset the page's formulas, or after 15 s if MathJax never loads
# (then the formulas stay TeX source, which test_every_formula_is_typeset reports).
MATHJAX_DONE = """
const done = arguments[arguments.length - 1];
if (!document.querySelector('.math')) return done(true);
const deadline = Date.now() + 15000;
(function poll() {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) MathJax.startup.promise.then(() => done(true));
  else if (Date.now() > deadline) done(false);
  else setTimeout(poll, 100);
})();
"""


def open_page(browser, path: Path):
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(path.as_uri())
    WebDriverWait(browser, 30).until(
        lambda d: d.execute_script(
            "return document.readyState === 'complete' && Array.from(document.images).every(i => i.complete)"
        )
    )
    browser.execute_async_script(MATHJAX_DONE)


@pytest.fixture(scope="module")
def seen(browser):
    """Each chapter page opened once, and what a reader sees on it."""
    facts = {}
    for name in PAGES:
        open_page(browser, HTML / f"{name}.html")
        facts[name] = browser.execute_script(FACTS)
    return facts


@pytest.mark.parametrize("name", PAGES)
def test_no_figure_or_table_shows_as_text(seen, name):
    page = seen[name]
    assert "<Figure size" not in page["text"], f"{name} prints a matplotlib figure's repr instead of showing it"
    assert "IPython.core.display" not in page["text"], f"{name} prints a display object's repr"
    raw = RAW_MARKDOWN_TABLE.search(page["text_outside_code"])
    assert not raw, (
        f"{name} shows a Markdown table as text: ...{page['text_outside_code'][raw.start() - 80 : raw.end()]}"
    )


@pytest.mark.parametrize("name", PAGES)
def test_no_myst_markup_shows_as_text(seen, name):
    # a directive the parser did not take (a backtick in a fence's title ends it) prints as text
    markup = MYST_MARKUP.search(seen[name]["text_outside_code"])
    assert not markup, f"{name} shows MyST markup as text: ...{markup.group(0)}..."


@pytest.mark.parametrize("name", PAGES)
def test_every_formula_is_typeset(seen, name):
    raw = [formula["source"] for formula in seen[name]["formulas"] if not formula["typeset"]]
    assert not raw, (
        f"{name} shows {len(raw)} formulas as TeX source, such as {raw[0]!r}: MathJax did not load "
        "(the book serves its own copy, through the sphinx-mathjax-offline extension in _config.yml)"
    )


@pytest.mark.parametrize("name", PAGES)
def test_every_image_shows_in_a_captioned_figure(seen, name):
    for image in seen[name]["images"]:
        assert image["natural_width"] > 0, f"{name}: {image['src']} did not load"
        assert image["visible"] and image["width"] > 0, f"{name}: {image['src']} is not visible"
        assert image["caption"], f"{name}: {image['src']} is not in a figure with a caption"


@pytest.mark.parametrize("name", PAGES)
def test_every_table_is_a_table(seen, name):
    for table in seen[name]["tables"]:
        assert table["rows"] >= 2, f"{name} has a table without rows"


@pytest.mark.parametrize("name", ["01_why_low_rank", "03_into_bert", "04_adapters"])
def test_the_tables_of_chapters_1_to_4_are_numbered_and_captioned(seen, name):
    tables = seen[name]["tables"]
    assert tables, f"{name} shows no table"
    for table in tables:
        assert table["caption"] and re.match(r"Table \d", table["caption"]), (
            f"{name}: a table without a number or caption"
        )


@pytest.mark.parametrize("name", STUDY_PAGES)
def test_the_chapters_about_results_show_their_figures(seen, name):
    shown = [image for image in seen[name]["images"] if image["natural_width"] > 0 and image["visible"]]
    assert shown, f"{name} shows no figure"
    assert all(re.match(r"Fig\. \d", image["caption"] or "") for image in shown), f"{name}: a figure without a number"


def test_the_landing_page_shows_the_headline_numbers_and_a_figure(seen):
    intro = seen["intro"]
    assert any(image["natural_width"] > 0 and image["visible"] for image in intro["images"]), (
        "the landing page shows no figure"
    )
    assert re.search(r"\d+\.\d+\s?%", intro["text"]), "the landing page states no result (a percentage like 91.3%)"


def test_the_landing_pages_first_screen_says_how_close_lora_comes_and_at_what_cost(seen):
    import os

    from lora_lib.study import aggregate, headline, paired
    from lora_lib.study.record import REPORTED, load_records, results_table

    records = load_records(REPO / REPORTED, eval_split="validation")
    primary = next(r for r in records if aggregate.config_label(r.method, r.config.hparams) == headline.PRIMARY)
    stored = {headline.PRIMARY: os.path.getsize(REPO / REPORTED / f"{primary.run_id}.safetensors")}
    numbers = headline.headline(paired.against_reference(records), aggregate.summarize(results_table(records)), stored)
    screen = re.sub(r"\s+", " ", seen["intro"]["first_screen"])
    for key in ("primary_gap", "closest_gap", "time_ratio", "stored_ratio"):
        assert numbers[key] in screen, f"the landing page's first screen lacks {key}: {numbers[key]!r}"
    # the project's own measures do not structure the first screen
    assert not re.search(r"\btarget\b|not resolved", screen), screen


def test_the_landing_page_says_the_third_studys_answer_once_it_has_its_seeds(seen):
    from lora_lib.study import long_runs
    from lora_lib.study.record import load_records

    timed = [r for r in load_records(REPO / "executed" / "v3") if r.curve and long_runs.question_of(r.config) == "time"]
    answer = long_runs.answer(long_runs.selected_table(timed), long_runs.equal_compute(timed))
    said = long_runs.answer_said(answer)
    text = re.sub(r"\s+", " ", seen["intro"]["text"])
    if said:
        assert re.sub(r"\s+", " ", said) in text
    else:  # too few seeds: the page says the study is under way and states none of its numbers
        assert answer.empty or answer.loc["given time", "side"] == "too few seeds"
        assert "06_given_time" in " ".join(seen["intro"]["links"])


def test_how_the_study_was_run_judges_the_third_studys_targets(seen):
    from lora_lib.study import long_runs
    from lora_lib.study.record import load_records

    timed = [r for r in load_records(REPO / "executed" / "v3") if r.curve and long_runs.question_of(r.config) == "time"]
    judged = long_runs.judge_targets(long_runs.selected_table(timed), long_runs.equal_compute(timed))
    table = {t["id"]: t for t in seen["08_how_run"]["tables"]}["tbl-v3-targets"]
    assert table["first_column"] == list(judged.index)
    assert [row[3] for row in table["cells"]] == judged["verdict"].tolist()  # target, configuration, estimate, verdict


def test_the_given_time_chapter_shows_each_finished_configuration_of_the_third_grid(seen):
    from lora_lib.study import long_runs
    from lora_lib.study.record import load_records

    records = [r for r in load_records(REPO / "executed" / "v3") if r.curve]
    timed = [r for r in records if long_runs.question_of(r.config) == "time"]
    tables = {table["id"]: table for table in seen["06_given_time"]["tables"]}
    assert tables["tbl-given-time-selected"]["first_column"] == list(long_runs.configurations(timed))
    counted = long_runs.counted_runs(timed)  # equal compute counts the runs that had the machine
    assert tables["tbl-given-time-equal"]["first_column"] == list(long_runs.configurations(counted))
    assert re.match(r"Table \d", tables["tbl-given-time-selected"]["caption"])
    grid = REPO / "studies" / "v3" / "experiments.yml"  # every planned successor and series has a row, run or not
    assert sorted(tables["tbl-given-time-successors"]["first_column"]) == sorted(long_runs.planned(grid)["successors"])
    assert tables["tbl-given-time-ranks"]["first_column"] == long_runs.rank_plan(grid)[0]
    shown = [image for image in seen["06_given_time"]["images"] if image["visible"] and image["natural_width"] > 0]
    assert len(shown) == 2  # accuracy against epochs and against minutes


def test_the_given_time_chapter_says_each_comparison_as_its_interval_allows(seen):
    from lora_lib.study import long_runs
    from lora_lib.study.record import load_records

    records = [r for r in load_records(REPO / "executed" / "v3") if r.curve]
    timed = [r for r in records if long_runs.question_of(r.config) == "time"]
    text = re.sub(r"\s+", " ", seen["06_given_time"]["text"])
    equal = long_runs.budgets_said(long_runs.equal_compute(timed))
    assert equal, "no configuration has an interval at any budget yet"
    sooner = long_runs.budgets_said(long_runs.successors_table(records), "epochs", long_runs.SUCCESSOR_REFERENCE)
    ranks = long_runs.ranks_said(
        long_runs.rank_table(records), long_runs.rank_plan(REPO / "studies/v3/experiments.yml")[1]
    )
    for label, line in {**equal, **sooner, **ranks}.items():
        assert f"{label}: {line}." in text, label


def test_the_appendix_links_resolve(seen):
    local = [href for href in seen["appendix"]["links"] if not urlsplit(href).scheme and not href.startswith("#")]
    assert local, "the appendix links to no page"
    for href in local:
        target = (HTML / unquote(urlsplit(href).path)).resolve()
        assert target.is_file(), f"the appendix links to {href}, which is not in the build"


def test_every_page_links_the_pdf(browser, seen):
    """The footer's link and the header's download menu lead to the PDF at the site's root, from a nested page too."""
    pdf = (HTML / "lora-tuning.pdf").as_uri()
    nested = sorted((HTML / "executed").glob("*.html"))[:1]
    for name in PAGES:
        links = seen[name]["pdf_links"]
        assert any(link["href"] == pdf and "PDF" in link["text"] and link["visible"] for link in links), name
        assert len([link for link in links if link["href"] == pdf]) >= 2, (
            f"{name}: the header's download menu lacks the PDF"
        )
    for path in nested:
        open_page(browser, path)
        links = browser.execute_script(FACTS)["pdf_links"]
        assert any(link["href"] == pdf for link in links), f"{path.relative_to(HTML)} does not link {pdf}"
    if os.environ.get("CI"):  # CI, like the workflow that publishes the book, puts the PDF there
        assert (HTML / "lora-tuning.pdf").is_file(), "the pages link lora-tuning.pdf, which is not beside them"


def test_the_rank_slider_works_without_a_kernel(browser):
    """Chapter 2's slider: a click on rank 1 shows rank 1's curve and its error, with no kernel running."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    open_page(browser, HTML / "02_lora_layer.html")
    graph = browser.find_element(By.CSS_SELECTOR, ".plotly-graph-div")
    WebDriverWait(browser, 20).until(lambda d: graph.find_elements(By.CSS_SELECTOR, ".slider-label-group"))
    title = graph.find_element(By.CSS_SELECTOR, ".gtitle")
    assert title.text.startswith("rank r = 4")
    labels = {label.text.strip(): label for label in graph.find_elements(By.CSS_SELECTOR, ".slider-label-group")}
    assert [str(rank) for rank in range(1, 17)] == sorted(labels, key=int)
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", graph)
    rail = graph.find_element(By.CSS_SELECTOR, ".slider-rail-touch-rect")
    # Click the rail above the label "1", as a reader would.
    offset = labels["1"].rect["x"] + labels["1"].rect["width"] / 2 - (rail.rect["x"] + rail.rect["width"] / 2)
    ActionChains(browser).move_to_element_with_offset(rail, int(offset), 0).click().perform()
    WebDriverWait(browser, 10).until(
        lambda d: graph.find_element(By.CSS_SELECTOR, ".gtitle").text.startswith("rank r = 1:")
    )
    # The grey background traces have no name; of the named ones, only rank 1's is shown.
    shown = browser.execute_script(
        "return arguments[0].data.filter(t => t.name && t.visible === true).map(t => t.name)", graph
    )
    assert shown == ["r = 1"]
