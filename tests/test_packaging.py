"""The two set-ups (pip with pyproject.toml, conda with environment.yml) say the same thing."""

import tomllib
from pathlib import Path

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


def test_torch_is_pinned_to_the_cpu_wheel():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert "torch==2.13.0" in project["dependencies"]
