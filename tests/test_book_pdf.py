"""The book's PDF as a reader gets it: short enough to read, and no notebook junk on its pages.

The PDF is built before the tests run (`jupyter-book build book --builder pdflatex`; CI
builds it first), into `_build/latex/lora-tuning.pdf`; `BOOK_BUILD_DIR` points the tests at
another `_build` folder. It is read with poppler's `pdfinfo` and `pdftotext`. Outside CI the
tests skip until the PDF is built or where poppler-utils is missing; in CI (`CI` set) either
is a failure.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import unavailable

pytestmark = pytest.mark.book  # reads the built book: CI's last lane, after the build

REPO = Path(__file__).resolve().parent.parent
BUILD = Path(os.environ.get("BOOK_BUILD_DIR", REPO / "_build"))
PDF = BUILD / "latex" / "lora-tuning.pdf"
# 71 pages before the second look, the rank series, the in-book fine-tune and the successors' search
# were added; the appendix's index of every run is about 12 of them.
MAX_PAGES = 85
# What a notebook leaves on a page when an output has no form fit for print.
JUNK = ["<Figure size", "IPython.core.display", "Loading weights"]


@pytest.fixture(scope="module")
def pdf():
    if not shutil.which("pdftotext") or not shutil.which("pdfinfo"):
        unavailable("poppler-utils is not installed: apt-get install poppler-utils")
    if not PDF.is_file():
        unavailable('the PDF is not built: jupyter-book build book --builder pdflatex --toc "$PWD/book/_toc_pdf.yml"')
    return PDF


@pytest.fixture(scope="module")
def text(pdf):
    return subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout


def test_the_pdf_is_short_enough_to_read(pdf):
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    pages = int(re.search(r"^Pages:\s+(\d+)", info, re.M).group(1))
    assert pages <= MAX_PAGES, f"the PDF has {pages} pages; the book should fit in {MAX_PAGES}"


@pytest.mark.parametrize("junk", JUNK)
def test_no_page_shows_notebook_junk(text, junk):
    count = text.count(junk)
    where = text.find(junk)
    assert not count, f"the PDF shows {junk!r} {count} times, first: ...{text[max(where - 200, 0) : where + 100]}..."


def test_the_chapters_figures_and_tables_are_numbered(text):
    """The captions the HTML shows reach the PDF too."""
    assert re.search(r"Fig\. [\d.]+: \w", text), "no numbered, captioned figure in the PDF"
    assert re.search(r"Table [\d.]+: \w", text), "no numbered, captioned table in the PDF"
