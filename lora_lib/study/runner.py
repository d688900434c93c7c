"""One run of a grid, executed: papermill on the training notebook, and what is done with its files.

``execute`` runs one notebook into ``<output_dir>/<run_id>.ipynb``, where the run writes its
record (atomically, last). A run whose valid record exists is skipped by the sweep unless the
grid changed its parameters since (``changed_parameters``), which reruns it and keeps the
earlier files in ``superseded/`` (``supersede``); ``commit_run`` commits a finished run's files.
The local sweep and the Dask workers (``lora_lib.study.cluster``) both run runs through here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from lora_lib.files import current_umask

from .appendix import retitle_after_run
from .grid import Grid, GridError, Run
from .record import record_exists

SUPERSEDED = "superseded"  # where a run's earlier files go when a changed grid reruns it
# A run whose kernel never started is started again, up to this many times in all.
KERNEL_START_FAILURE = "Kernel died before replying to kernel_info"
KERNEL_START_ATTEMPTS = 3
# A commit that finds the index locked by another git process tries again this often, this far apart.
GIT_ATTEMPTS = 5
GIT_RETRY_SECONDS = 3


def execute(run: Run, grid: Grid, env: dict | None = None) -> tuple[str, str]:
    """Run one notebook through papermill; return ``(status, message)``.

    The executed notebook is written beside the record only once the run succeeded; a failed
    one goes to ``<output_dir>/failed/`` for reading, and a stopped one is left as a hidden
    ``.partial`` file that the next attempt overwrites.
    """
    out = grid.output_dir
    partial = out / f".{run.run_id}.ipynb.partial"
    # Paths relative to the grid's folder, where the kernel runs, so that no path of this machine
    # lands in the records or in the executed notebooks' metadata.
    root = grid.root
    parameters = {**run.parameters, "output_dir": _relative(out, root)}
    command = [
        sys.executable,
        "-m",
        "lora_lib.study.parent_guard",
        str(os.getpid()),
        sys.executable,
        "-m",
        "papermill",
        _relative(grid.notebook, root),
        _relative(partial, root),
        "--no-progress-bar",
        "--cwd",
        ".",
        "-y",
        yaml.safe_dump(parameters),
    ]
    for _ in range(KERNEL_START_ATTEMPTS):
        result = subprocess.run(
            command,
            cwd=root,
            text=True,
            capture_output=True,
            env={**os.environ, **(env or {})},
        )
        # A kernel that never came up ran nothing: on a busy machine, or with several starting at
        # once, that happens now and then, and a second start is what a person would try.
        if result.returncode == 0 or KERNEL_START_FAILURE not in (result.stderr or ""):
            break
    if result.returncode == 0 and record_exists(out, run.run_id):
        retitle_after_run(partial, out / f"{run.run_id}.json")  # the run's page gets its own title
        os.chmod(partial, 0o666 & ~current_umask())  # readable by whoever reads the records, as the umask says
        partial.replace(out / f"{run.run_id}.ipynb")
        return "done", ""
    failed = out / "failed"
    failed.mkdir(exist_ok=True)
    if partial.exists():
        partial.replace(failed / f"{run.run_id}.ipynb")
    lines = [line for line in (result.stderr or "").strip().splitlines() if line.strip()]
    return "failed", lines[-1] if lines else f"papermill exited with {result.returncode} and wrote no record"


def check_kernel_imports(cwd: Path, module: str = "lora_lib") -> None:
    """Refuse to start a sweep whose notebooks could not import ``module`` from ``cwd`` (where
    their kernel runs): otherwise every run fails the same way, one after the other.
    papermill's kernel runs ``sys.executable``, so that is the interpreter asked."""
    result = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=cwd, capture_output=True, text=True)
    if result.returncode:
        raise GridError(
            f"the notebooks' kernel cannot import {module} from {cwd.name}/ (it is not installed in "
            f"{Path(sys.executable).name}'s environment): run `pip install -e .` in the repository root"
        )


def _relative(path: Path, root: Path) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def changed_parameters(run: Run, folder: Path) -> str:
    """How the grid's parameters for ``run`` differ from those its executed notebook ran with
    ('' where they agree, or where there is no executed notebook to compare with)."""
    import nbformat

    path = folder / f"{run.run_id}.ipynb"
    if not path.is_file():
        return ""
    ran = nbformat.read(path, as_version=4).metadata.get("papermill", {}).get("parameters", {})
    keys = sorted((set(ran) | set(run.parameters)) - {"output_dir"})
    return ", ".join(
        f"{k}: {ran.get(k)!r} -> {run.parameters.get(k)!r}" for k in keys if ran.get(k) != run.parameters.get(k)
    )


def supersede(run_id: str, folder: Path) -> Path:
    """Move a run's files (record, notebook, adapter) into ``superseded/`` before it is run again,
    so that a result the grid no longer asks for is kept rather than overwritten. A second
    superseded version goes to ``superseded/2/``, and so on. Returns the folder it went to."""
    target, version = folder / SUPERSEDED, 1
    while (target / f"{run_id}.json").exists() or (target / f"{run_id}.ipynb").exists():
        version += 1
        target = folder / SUPERSEDED / str(version)
    target.mkdir(parents=True, exist_ok=True)
    for path in folder.glob(f"{run_id}.*"):
        path.replace(target / path.name)
    return target


def commit_run(run_id: str, folder: Path) -> None:
    """Commit a finished run's files (record, executed notebook, adapter) to the git checkout,
    with whatever earlier version of it went to ``superseded/``."""
    files = [str(p) for p in sorted(folder.glob(f"{run_id}.*"))]
    files += [str(p) for p in sorted((folder / SUPERSEDED).rglob(f"{run_id}.*"))]
    for command in (["git", "add", "--", *files], ["git", "commit", "-q", "-m", f"Record run {run_id}", "--", *files]):
        _git(command, folder)


def _git(command: list[str], folder: Path, attempts: int = GIT_ATTEMPTS) -> None:
    """Run a git command, waiting out another git process's lock on the index (someone
    committing by hand while a long sweep runs) before giving up."""
    for attempt in range(1, attempts + 1):
        try:
            subprocess.run(command, cwd=folder, check=True, capture_output=True, text=True)
            return
        except subprocess.CalledProcessError as err:
            if "index.lock" not in (err.stderr or "") or attempt == attempts:
                raise
            time.sleep(GIT_RETRY_SECONDS)
