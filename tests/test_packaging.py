"""The set-ups (pip with pyproject.toml, conda with environment.yml) and CI say the same thing as the README."""

import re
from pathlib import Path

import tomllib
import yaml
from packaging.specifiers import SpecifierSet

REPO = Path(__file__).resolve().parent.parent


def test_environment_installs_this_repository_with_its_extras():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    assert python.split("=", 1)[1] + ".0" in SpecifierSet(project["requires-python"])
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pip == ["-e .[test,book]"]
    assert set(project["optional-dependencies"]) == {"test", "book"}


def test_torch_is_pinned_and_ci_installs_that_version_from_the_cpu_index():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    [pin] = [d for d in project["dependencies"] if d.startswith("torch")]
    assert re.fullmatch(r"torch==[\d.]+", pin)
    workflow = (REPO / ".github" / "workflows" / "book.yml").read_text()
    assert f"pip install {pin} --index-url https://download.pytorch.org/whl/cpu" in workflow


def readme_test_command() -> str:
    """The command in the code block after the README's paragraph on what CI runs."""
    readme = (REPO / "README.md").read_text()
    after = readme[readme.index("what CI runs") :]
    return re.search(r"```bash\n(.+?)\n```", after, re.S).group(1).strip()


def test_ci_runs_the_readmes_test_command():
    command = readme_test_command()
    assert "pytest" in command
    for ci in (REPO / ".ci" / "run", REPO / ".github" / "workflows" / "book.yml"):
        assert command in ci.read_text(), ci.name
