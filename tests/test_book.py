"""The built book: every chapter is there, every figure it shows exists, no cell failed.

The book is built before the tests run (README's test command, and CI, do so). Elsewhere
these tests skip until `jupyter-book build book` has run.
"""

import os
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HTML = REPO / "_build" / "html"
PAGES = ["intro", "01_why_low_rank", "02_lora_layer", "03_into_bert", "04_adapters", "05_experiments",
         "06_analysis", "reproduce", "train", "appendix", "bibliography"]


@pytest.fixture(scope="module")
def pages():
    if not (HTML / "intro.html").is_file():
        if os.environ.get("CI"):
            pytest.fail("CI builds the book before the tests: jupyter-book build book -W -n --keep-going")
        pytest.skip("build the book first: jupyter-book build book")
    return {name: (HTML / f"{name}.html").read_text(encoding="utf-8") for name in PAGES if (HTML / f"{name}.html").is_file()}


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
    assert re.search(r"\d+ runs of the grid and \d+ runs of the learning-rate search are recorded", pages["05_experiments"])
    assert re.search(r"This chapter is built on \d+ runs of the grid", pages["06_analysis"])


def test_the_library_code_is_included_not_retyped(pages):
    source = (REPO / "lora_lib" / "lora.py").read_text()
    forward = re.search(r"    def forward\(self, x: torch.Tensor\) -> torch.Tensor:\n(.*?)\n\n", source, re.S).group(1)
    text = re.sub(r"<[^>]+>", "", pages["02_lora_layer"]).replace("&gt;", ">").replace("&lt;", "<").replace("&quot;", '"')
    assert forward.strip().splitlines()[-1].strip() in text
