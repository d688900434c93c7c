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
# What a notebook leaves on a page when an output has no form fit for print, or a hidden cell shows its plumbing.
JUNK = ["<Figure size", "IPython.core.display", "Loading weights", "Tokenizing", "glue("]
# The least room, in points, between a page's text and its footer (the LaTeX layout leaves about 30).
FOOTER_GAP = 12


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


def _pages(pdf):
    """Every page's text lines, each ``(top, bottom, text)`` in points from the top, from ``pdftotext -bbox-layout``."""
    import xml.etree.ElementTree as ET

    xhtml = subprocess.run(["pdftotext", "-bbox-layout", str(pdf), "-"], capture_output=True, text=True, check=True)
    root = ET.fromstring(xhtml.stdout)
    ns = {"x": "http://www.w3.org/1999/xhtml"}
    pages = []
    for page in root.iter(f"{{{ns['x']}}}page"):
        lines = []
        for line in page.iter(f"{{{ns['x']}}}line"):
            words = " ".join(w.text or "" for w in line.iter(f"{{{ns['x']}}}word"))
            lines.append((float(line.get("yMin")), float(line.get("yMax")), words))
        pages.append(lines)
    return pages


def test_no_page_runs_past_its_text_block_into_the_footer(pdf):
    """A table too tall for its page ran over the footer and lost its last row. The footer is
    each page's lowest band of text (the section's name and the page number); the text above it
    must end at least FOOTER_GAP points higher."""
    problems = []
    for number, lines in enumerate(_pages(pdf), start=1):
        if not lines:
            continue
        bottom = max(line[0] for line in lines)
        footer = [line for line in lines if line[0] >= bottom - 2]
        if not any(re.fullmatch(r"[\divxlc]+", word) for line in footer for word in line[2].split()):
            problems.append(
                f"page {number}: its lowest text is not a footer with the page number: {footer[0][2][:60]!r}"
            )
            continue
        top_of_footer = min(line[0] for line in footer)
        body = [line for line in lines if line not in footer]
        lowest = max((line[1] for line in body), default=0)
        if lowest > top_of_footer - FOOTER_GAP:
            last = max(body, key=lambda line: line[1])[2][:60]
            problems.append(f"page {number}: text ends {top_of_footer - lowest:.0f} pt above the footer: {last!r}")
    assert not problems, "\n".join(problems)


def _contents(text):
    """The PDF's table of contents: its lines from "CONTENTS" up to the first page of the book."""
    start = text.index("CONTENTS")
    return text[start : text.index("\f", text.index("Bibliography", start))].replace("\f", "\n")


def test_the_introduction_is_unnumbered_and_the_first_chapter_is_why_low_rank(text):
    contents = _contents(text)
    chapters = re.findall(r"^(\d+) +(\S.*?) {2,}\d+$", contents, re.M)
    assert chapters[0] == ("1", "Why low rank"), chapters[:3]
    assert [int(n) for n, _ in chapters] == list(range(1, len(chapters) + 1))
    # the parts of the HTML's table of contents, as parts
    parts = re.findall(r"^([IVX]+) +(\S.*?) {2,}\d+$", contents, re.M)
    assert [title for _, title in parts] == ["Building LoRA", "The study", "Reference"]
    assert "LoRA from scratch" not in [title for _, title in chapters]


def test_the_pdf_has_one_bibliography(text):
    contents = _contents(text)
    assert re.findall(r"^(?:\d+ +)?Bibliography {2,}\d+$", contents, re.M) == [
        next(line for line in contents.splitlines() if line.startswith("Bibliography"))
    ]
    assert len(re.findall(r"^\[1\] ", text, re.M)) == 1  # its first entry, once
