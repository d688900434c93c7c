"""The experiment grid: expand ``experiments.yml`` into runs and execute them with papermill.

    lora-sweep experiments.yml [--dry-run] [--only PATTERN] [--jobs N | --scheduler ADDRESS] [--commit]
                               [--start-within MINUTES]

Each run goes through the training notebook (``book/train.ipynb`` beside the grid file, or
the grid's ``notebook``) into ``<output_dir>/<run_id>.ipynb`` and writes
its record there. A run whose valid record exists is skipped (unless the grid has changed
its parameters since, which reruns it, says why, and keeps the earlier files in
``superseded/``), so a sweep that was stopped
(at any moment: records are written atomically, last) finishes when started again, with
no run done twice. A failed run is reported, its notebook kept under ``failed/``, and the
sweep goes on; the exit status is 1 if any run failed. With ``--start-within MINUTES`` a
sweep on this machine starts no run after that many minutes and stops once the runs in progress
finish, so that a machine that must be free at a known time loses no run halfway.

With ``--scheduler tcp://HOST:8786`` the runs go, one task each, to a running Dask cluster
instead of this machine's processes (``lora_lib.study.cluster``); everything else is the same.

The grid file::

    output_dir: executed          # relative to the grid file's folder
    seeds: [0, 1, 2]
    defaults: {epochs: 2, batch_size: 32}   # run parameters (RunConfig.parameters()) shared by every run
    runs:
      - {method: full, lr: 5.0e-5}
      - {method: lora, rank: [1, 2, 4, 8], lr: 1.0e-3}   # a list expands into one run each

Run ids are the method, ``_r<rank>`` wherever a rank is given, ``_<key><value>`` for any
other key given as a list, and ``_s<seed>``: ``lora_r8_s0``. An entry may set ``name`` to use instead
of the method in its ids, and ``seeds`` to run other seeds than the file's.
"""

from __future__ import annotations

import argparse
import fnmatch
import itertools
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml
from tqdm.auto import tqdm

from lora_lib.files import current_umask

from .aggregate import label_of
from .config import RunConfig
from .record import Record, load_record, record_exists

NOTEBOOK = Path("book") / "train.ipynb"  # relative to the grid file's folder, unless the grid names one
GRID_KEYS = {"output_dir", "seeds", "defaults", "runs", "notebook"}
ID_PREFIX = {"rank": "r"}
SUPERSEDED = "superseded"  # where a run's earlier files go when a changed grid reruns it
# A run whose kernel never started is started again, up to this many times in all.
KERNEL_START_FAILURE = "Kernel died before replying to kernel_info"
KERNEL_START_ATTEMPTS = 3
# A commit that finds the index locked by another git process tries again this often, this far apart.
GIT_ATTEMPTS = 5
GIT_RETRY_SECONDS = 3


class GridError(ValueError):
    """An experiments file that cannot be expanded into runs."""


@dataclass(frozen=True)
class Run:
    run_id: str
    parameters: dict


@dataclass(frozen=True)
class Grid:
    runs: list[Run]
    output_dir: Path
    notebook: Path
    root: Path  # the grid file's folder: relative paths start there, and the kernels run there


def expand(path: str | Path) -> Grid:
    """Read an experiments file and expand it into runs with stable, unique ids."""
    path = Path(path)
    if not path.is_file():
        raise GridError(f"no experiments file at {path}")
    spec = yaml.safe_load(path.read_text())
    if not isinstance(spec, dict) or "runs" not in spec:
        raise GridError(f"{path}: expected a mapping with a 'runs' list (see lora_lib.sweep's docstring)")
    unknown = sorted(set(spec) - GRID_KEYS)
    if unknown:
        raise GridError(f"{path}: unknown key(s) {', '.join(unknown)}; the grid takes {', '.join(sorted(GRID_KEYS))}")
    seeds = spec.get("seeds", [0])
    defaults = spec.get("defaults") or {}
    runs: dict[str, Run] = {}
    for number, entry in enumerate(spec["runs"], start=1):
        if not isinstance(entry, dict) or "method" not in entry:
            raise GridError(f"{path}: run entry {number} needs a 'method', got {entry!r}")
        entry = dict(entry)
        name = entry.pop("name", entry["method"])
        entry_seeds = entry.pop("seeds", seeds)
        if not isinstance(entry_seeds, list) or not all(isinstance(s, int) for s in entry_seeds):
            raise GridError(f"{path}: run entry {number}'s seeds must be a list of integers, got {entry_seeds!r}")
        varying = [k for k, v in entry.items() if isinstance(v, list)]
        for values in itertools.product(*(entry[k] for k in varying)):
            chosen = dict(zip(varying, values))
            named = {k: v for k, v in {**entry, **chosen}.items() if k in ID_PREFIX or k in chosen}
            suffix = "".join(f"_{ID_PREFIX.get(k, k)}{v}" for k, v in named.items())
            for seed in entry_seeds:
                run_id = f"{name}{suffix}_s{seed}"
                if run_id in runs:
                    raise GridError(f"{path}: run id {run_id} comes out twice; give one of the entries a 'name'")
                params = {**defaults, **entry, **chosen, "seed": seed, "run_id": run_id}
                runs[run_id] = Run(run_id, params)
    root = path.resolve().parent
    notebook = root / spec.get("notebook", NOTEBOOK)
    if not notebook.is_file():
        raise GridError(
            f"{path}: the training notebook {notebook} does not exist; set 'notebook' in the grid file "
            "to its path (relative to the grid file), or run jupytext --sync book/train.md"
        )
    # Every run is checked as a RunConfig now, so that a typo fails here and not hours later.
    for run in runs.values():
        try:
            RunConfig.from_parameters(**run.parameters)
        except (TypeError, ValueError) as err:
            raise GridError(f"{path}: run {run.run_id}: {err}") from err
    return Grid(
        runs=list(runs.values()), output_dir=root / spec.get("output_dir", "executed"), notebook=notebook, root=root
    )


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
            preexec_fn=_stop_with_parent,
        )
        # A kernel that never came up ran nothing: on a busy machine, or with several starting at
        # once, that happens now and then, and a second start is what a person would try.
        if result.returncode == 0 or KERNEL_START_FAILURE not in (result.stderr or ""):
            break
    if result.returncode == 0 and record_exists(out, run.run_id):
        from .appendix import retitle_after_run  # the run's page gets its own title, not the template's

        retitle_after_run(partial, out / f"{run.run_id}.json")
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


def _stop_with_parent() -> None:
    """Ask Linux to stop papermill (and so its kernel) if the sweep itself is killed, so a
    restarted sweep never races an orphaned run."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


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


def training_time(records: list[Record]) -> str:
    """What finished runs cost, as a phrase: their training hours in all, and each method's mean
    minutes a run (what the rest of a grid will take, and how a grid's budget was spent)."""
    minutes: dict[str, list[float]] = {}
    for record in records:
        minutes.setdefault(record.method, []).append(record.cost.train_seconds / 60)
    each = "; ".join(f"{label_of(method)} {sum(m) / len(m):.1f} min a run" for method, m in minutes.items())
    return f"{sum(sum(m) for m in minutes.values()) / 60:.2f} hours of training ({each})"


def check_options(jobs: int, scheduler: str | None, start_within: float | None) -> None:
    """Refuse options that make no sense, or no sense together, naming them (``ValueError``)."""
    if jobs < 1:
        raise ValueError("jobs (--jobs) must be at least 1")
    if start_within is not None and start_within < 0:
        raise ValueError("start_within (--start-within) must be a number of minutes, 0 or more")
    if scheduler and start_within is not None:
        raise ValueError("start_within (--start-within) is for runs on this machine; a cluster takes every run at once")
    if scheduler and jobs != 1:
        raise ValueError(
            "jobs (--jobs) is for runs on this machine; on a cluster, the workers' threads say how many run at once"
        )


def sweep(
    grid: Grid,
    only: list[str] | None = None,
    jobs: int = 1,
    dry_run: bool = False,
    commit: bool = False,
    scheduler: str | None = None,
    start_within: float | None = None,
) -> dict[str, list]:
    """Run every run of ``grid`` that matches ``only`` and has no valid record yet.

    With ``commit``, each finished run's files are committed to git as soon as it finishes,
    so that a long sweep loses at most the runs in progress if its machine goes away. With
    ``scheduler`` (a Dask scheduler's address), the runs are tasks on that cluster, and
    ``summary["workers"]`` says which worker ran each. With ``start_within`` (minutes, on this
    machine only), no run starts after that long: ``summary["not started"]`` lists those left.
    """
    check_options(jobs, scheduler, start_within)
    selected = [r for r in grid.runs if not only or any(fnmatch.fnmatch(r.run_id, p) for p in only)]
    todo, stale = [], {}
    for r in selected:
        if not record_exists(grid.output_dir, r.run_id):
            todo.append(r)
        elif changed := changed_parameters(r, grid.output_dir):
            stale[r.run_id] = changed
            todo.append(r)
    summary = {"done": [], "skipped": [r.run_id for r in selected if r not in todo], "failed": [], "not started": []}
    if scheduler:
        summary["workers"] = {}
    if dry_run:
        for run_id, changed in stale.items():
            print(f"{run_id}: the grid changed since it ran ({changed}); running it again")
        for r in todo:
            print(r.run_id, " ".join(f"{k}={v}" for k, v in r.parameters.items() if k != "run_id"))
        summary["would_run"] = [r.run_id for r in todo]
        return summary
    client = None
    if scheduler and todo:
        from .cluster import connect

        client = connect(scheduler)  # before anything moves: an address that does not answer changes nothing
    try:
        for run_id, changed in stale.items():
            print(
                f"{run_id}: the grid changed since it ran ({changed}); running it again, its earlier files "
                f"moved to {supersede(run_id, grid.output_dir)}"
            )
        grid.output_dir.mkdir(parents=True, exist_ok=True)
        if client is not None:
            _on_cluster(client, todo, grid, summary, commit)
        elif not scheduler:
            if todo:
                check_kernel_imports(grid.root)
            deadline = None if start_within is None else time.monotonic() + 60 * start_within
            _on_this_machine(todo, grid, summary, commit, jobs, deadline)
    finally:
        if client is not None:
            client.close()
    return summary


def _reporter(summary: dict, commit: bool, folder: Path, bar: tqdm):
    """What is done as each run ends, wherever it ran: count it, say if it failed, commit it if asked."""

    def finished(run: Run, status: str, message: str, where: str = "") -> None:
        summary[status].append(run.run_id)
        on = f" on {where}" if where else ""
        if status == "failed":
            bar.write(f"FAILED {run.run_id}{on}: {message}")
        else:
            if where:
                bar.write(f"done {run.run_id}{on}")
            if commit:
                try:
                    commit_run(run.run_id, folder)
                except subprocess.CalledProcessError as err:  # e.g. a busy index: the files stay
                    bar.write(
                        f"could not commit {run.run_id} ({err.stderr.strip() if err.stderr else err}); "
                        "its files are in place, commit them by hand"
                    )
        bar.update()

    return finished


def _on_this_machine(
    todo: list[Run], grid: Grid, summary: dict, commit: bool, jobs: int, deadline: float | None = None
) -> None:
    devices = _free_slots(jobs)
    lock = threading.Lock()
    with tqdm(total=len(todo), desc="runs", unit="run") as bar:
        finished = _reporter(summary, commit, grid.output_dir, bar)

        def one(run: Run):
            with lock:
                if deadline is not None and time.monotonic() >= deadline:
                    summary["not started"].append(run.run_id)
                    return
                slot = devices.pop()
            try:
                status, message = execute(run, grid, env=slot)
            finally:
                with lock:
                    devices.append(slot)
            with lock:
                finished(run, status, message)

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            list(pool.map(one, todo))


def _on_cluster(client, todo: list[Run], grid: Grid, summary: dict, commit: bool) -> None:
    from .cluster import check_workers, run_on_cluster

    for note in check_workers(client, grid, todo):
        print(f"note: {note}")
    with tqdm(total=len(todo), desc=f"runs on {client.scheduler.address}", unit="run") as bar:
        report = _reporter(summary, commit, grid.output_dir, bar)

        def finished(run: Run, status: str, message: str, where: str) -> None:
            if where:
                summary["workers"][run.run_id] = where
            report(run, status, message, where)

        run_on_cluster(client, todo, grid, finished)


def _free_slots(jobs: int) -> list[dict]:
    """One environment per parallel job: a GPU each where there are several, else a share of the cores."""
    try:
        import torch

        gpus = torch.cuda.device_count()
    except ImportError:
        gpus = 0
    if gpus >= jobs > 1:
        return [{"CUDA_VISIBLE_DEVICES": str(i)} for i in range(jobs)]
    threads = str(max(1, (os.cpu_count() or 1) // jobs))
    return [{"OMP_NUM_THREADS": threads} for _ in range(jobs)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lora-sweep", description="Run the experiment grid through papermill.")
    parser.add_argument("experiments", help="the grid file, e.g. experiments.yml")
    parser.add_argument(
        "--only", action="append", metavar="PATTERN", help="run ids to run, as shell patterns (lora_r8_*); repeatable"
    )
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (one GPU each where there are enough)")
    parser.add_argument("--dry-run", action="store_true", help="list what would run, and run nothing")
    parser.add_argument("--commit", action="store_true", help="git-commit each run's files as soon as it finishes")
    parser.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run each run as a task on the Dask cluster whose scheduler is at ADDRESS "
        "(tcp://HOST:8786); its workers must see this folder at the same path",
    )
    parser.add_argument(
        "--start-within",
        type=float,
        metavar="MINUTES",
        help="start no run after MINUTES from now; the runs in progress then finish, and a later "
        "sweep takes up the rest (this machine only)",
    )
    args = parser.parse_args(argv)
    try:
        check_options(args.jobs, args.scheduler, args.start_within)
    except ValueError as err:
        parser.error(str(err))
    try:
        grid = expand(args.experiments)
    except GridError as err:
        parser.error(str(err))
    try:
        summary = sweep(
            grid,
            only=args.only,
            jobs=args.jobs,
            dry_run=args.dry_run,
            commit=args.commit,
            scheduler=args.scheduler,
            start_within=args.start_within,
        )
    except GridError as err:
        parser.exit(2, f"lora-sweep: error: {err}\n")
    if args.dry_run:
        done = [load_record(grid.output_dir / f"{run_id}.json") for run_id in summary["skipped"]]
        spent = f": {training_time(done)}" if done else ""
        print(f"{len(summary['would_run'])} to run, {len(summary['skipped'])} already done{spent}")
        return 0
    done, skipped, failed = (len(summary[k]) for k in ("done", "skipped", "failed"))
    print(f"{done} done, {skipped} skipped (already done), {failed} failed")
    if summary["not started"]:
        print(f"{len(summary['not started'])} not started (--start-within): run the sweep again to take them up")
    for run_id in summary["failed"]:
        notebook = grid.output_dir / "failed" / f"{run_id}.ipynb"
        print(f"  failed: {run_id} ({f'notebook in {notebook}' if notebook.is_file() else 'no notebook'})")
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    # As `python -m lora_lib.study.sweep`, run the package's own module rather than this __main__
    # copy: the runs sent to Dask workers and the errors raised in lora_lib.study.cluster are that
    # module's classes.
    from lora_lib.study.sweep import main as package_main

    sys.exit(package_main())
