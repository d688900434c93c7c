"""The package's two layers: the library imports nothing of the study, nor what only the study needs."""

import json
import subprocess
import sys

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


def test_the_check_sees_a_study_import():
    """The test above can fail: importing the study does load what the library must not."""
    loaded = loaded_after_importing(["lora_lib.study.record"])
    assert "lora_lib.study.record" in loaded and "pandas" in loaded
