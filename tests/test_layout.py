"""The package's two layers: the library imports nothing of the study, nor what only the study needs."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

LIBRARY = [
    "lora_lib",
    "lora_lib.lora",
    "lora_lib.adapters",
    "lora_lib.registry",
    "lora_lib.methods",
    "lora_lib.merging",
    "lora_lib.checkpoint",
    "lora_lib.params",
    "lora_lib.models",
    "lora_lib.analysis",
]
STUDY_ONLY = ("pandas", "datasets", "papermill")


def loaded_after_importing(modules: list[str]) -> list[str]:
    """The modules in ``sys.modules`` after importing ``modules`` in a fresh interpreter."""
    code = f"import json, sys\nimport {', '.join(modules)}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.splitlines()[-1])


def test_the_library_loads_no_study_and_no_pandas_datasets_or_papermill():
    loaded = loaded_after_importing(LIBRARY)
    assert set(LIBRARY) <= set(loaded)
    study = [m for m in loaded if m == "lora_lib.study" or m.startswith("lora_lib.study.")]
    heavy = [m for m in loaded if m.split(".")[0] in STUDY_ONLY]
    assert study == [] and heavy == []


@pytest.mark.slow
def test_the_check_sees_a_study_import():
    """The test above can fail: importing the study does load what the library must not."""
    loaded = loaded_after_importing(["lora_lib.study.record"])
    assert "lora_lib.study.record" in loaded and "pandas" in loaded


def import_graph() -> dict[str, set[str]]:
    """Which of the package's modules each of its modules imports, anywhere in its body
    (imports inside functions included: they hide a cycle, they do not break it)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "lora_lib"
    names = {
        ".".join(("lora_lib", *p.relative_to(root).with_suffix("").parts)).removesuffix(".__init__"): p
        for p in root.rglob("*.py")
    }
    graph = {}
    for name, path in names.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
                module = ".".join([*base, *([node.module] if node.module else [])])
                imported |= {module, *(f"{module}.{alias.name}" for alias in node.names)}
        graph[name] = {m for m in imported if m in names and m != name}
    return graph


def cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of ``graph`` as the list of modules along it, or [] where there is none."""
    state, path = {}, []

    def visit(node):
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = "done"
        path.pop()
        return []

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return []


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert "lora_lib.study.grid" in graph["lora_lib.study.appendix"]  # the graph sees relative imports
    assert cycle(graph) == []


def test_the_cycle_check_finds_a_cycle():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]


def test_no_backtick_fence_in_the_book_carries_a_backtick_in_its_argument():
    """CommonMark ends a backtick fence's info string at a backtick, so a caption with a role
    (``{glue:text}`x` ``) on a ```` fence breaks the page below it: such captions take a colon fence."""
    import re

    book = Path(__file__).resolve().parent.parent / "book"
    broken = [
        f"{page.name}:{number}"
        for page in sorted(book.glob("*.md"))
        for number, line in enumerate(page.read_text().splitlines(), 1)
        if re.match(r"^(`{3,})\{", line) and "`" in line[len(re.match(r"^`+", line).group(0)) :]
    ]
    assert not broken, f"backtick fences whose argument holds a backtick: {broken}"


def test_every_label_of_the_book_is_unique_and_every_glue_key_is_glued_once_per_page():
    """Sphinx warns on a label defined twice across pages and myst-nb on a key glued twice in a
    page, and the book builds with -W: caught here in a second instead of after the build."""
    import re
    from collections import Counter

    book = Path(__file__).resolve().parent.parent / "book"
    labels, glued_twice = Counter(), []
    for page in sorted(book.glob("*.md")):
        text = page.read_text()
        labels.update(re.findall(r"^:name: (\S+)", text, re.M) + re.findall(r"^\((\S+)\)=$", text, re.M))
        keys = Counter(re.findall(r"""^\s*glue\(\s*["']([\w-]+)["']""", text, re.M))
        glued_twice += [f"{page.name}: {key}" for key, n in keys.items() if n > 1]
    assert not [label for label, n in labels.items() if n > 1], labels.most_common(3)
    assert not glued_twice, glued_twice


def test_every_reference_to_a_chapter_is_numbered_by_the_toolchain():
    """A typed "chapter 5" goes wrong when chapters move (the PDF once numbered them off by one);
    {numref}`chapter %s <label>` is numbered by Sphinx, in the HTML and the PDF alike."""
    import re

    book = Path(__file__).resolve().parent.parent / "book"
    typed = [
        f"{page.name}:{number}: {line.strip()[:80]}"
        for page in sorted(book.glob("*.md"))
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1)
        if re.search(r"\b[Cc]hapter \d", re.sub(r"\{numref\}`[^`]*`", "", line))
    ]
    assert not typed, "chapter numbers typed by hand:\n" + "\n".join(typed)
