"""The experiment grid: expand ``experiments.yml`` into runs and execute them with papermill.

    lora-sweep studies/v2/experiments.yml [--dry-run] [--only PATTERN] [--jobs N | --scheduler ADDRESS] [--commit]
                               [--start-within MINUTES]

Each run goes through the training notebook (``book/train.ipynb`` under the grid's root, or
the grid's ``notebook``) into ``<output_dir>/<run_id>.ipynb`` and writes
its record there. A run whose valid record exists is skipped (unless the grid has changed
its parameters since, which reruns it, says why, and keeps the earlier files in
``superseded/``), so a sweep that was stopped
(at any moment: records are written atomically, last) finishes when started again, with
no run done twice. A failed run is reported, its notebook kept under ``failed/``, and the
sweep goes on; the exit status is 1 if any run failed. With ``--start-within MINUTES`` a
sweep on this machine starts no run after that many minutes and stops once the runs in progress
finish, so that a machine that must be free at a known time loses no run halfway.
A sweep whose runs ask for bf16 on a machine without fast bf16 refuses before its first run:
torch would emulate it, tens of times slower than fp32.

With ``--scheduler tcp://HOST:8786`` the runs go, one task each, to a running Dask cluster
instead of this machine's processes (``lora_lib.study.cluster``); everything else is the same.

The grid file's format is ``lora_lib.study.grid``'s; one run's execution is ``lora_lib.study.runner``'s.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm.auto import tqdm

from .aggregate import label_of
from .grid import Grid, GridError, Run, expand
from .record import Record, load_record, record_exists
from .runner import changed_parameters, check_kernel_imports, commit_run, execute, supersede

__all__ = ["GridError", "expand", "main", "spent_hours", "sweep", "training_time"]


def training_time(records: list[Record]) -> str:
    """What finished runs cost, as a phrase: their training hours in all, and each method's mean
    minutes a run (what the rest of a grid will take, and how a grid's budget was spent)."""
    minutes: dict[str, list[float]] = {}
    for record in records:
        minutes.setdefault(record.method, []).append(record.cost.train_seconds / 60)
    each = "; ".join(f"{label_of(method)} {sum(m) / len(m):.1f} min a run" for method, m in minutes.items())
    return f"{sum(sum(m) for m in minutes.values()) / 60:.2f} hours of training ({each})"


def spent_hours(records: list[Record]) -> float:
    """The hours finished runs took to train and evaluate (their records' ``train_seconds`` and
    ``eval_seconds``; loading the model and data is not recorded): what a grid's ``budget_hours``
    is set against."""
    return sum(r.cost.train_seconds + (r.cost.model_extra or {}).get("eval_seconds", 0.0) for r in records) / 3600


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


def check_precision(todo: list[Run]) -> None:
    """Refuse, before any run starts, runs that ask for bf16 on a machine where it is not fast
    (``GridError`` naming them): on a CPU without AVX-512 BF16 or AMX, torch emulates it tens of
    times slower than fp32, and a timed grid must not change its precision halfway."""
    asking = [r.run_id for r in todo if r.parameters.get("precision") == "bf16"]
    if not asking:
        return
    from .machine import bf16_supported, cpu_model, resolve_device

    devices = {resolve_device(r.parameters.get("device", "auto")) for r in todo if r.run_id in asking}
    slow = sorted(d for d in devices if not bf16_supported(d))
    if slow:
        where = "this machine's GPU" if slow == ["cuda"] else f"this CPU ({cpu_model()})"
        raise GridError(
            f"{len(asking)} run(s) ask for precision 'bf16' ({', '.join(asking[:3])}{', ...' * (len(asking) > 3)}), "
            f"but {where} has no fast bf16: run the sweep on a CPU with AVX-512 BF16 or AMX, or a GPU with bf16, "
            "or set precision: fp32 in the grid file (which changes the study's protocol)"
        )


def check_data(todo: list[Run]) -> None:
    """Refuse, before any run starts, a sweep whose runs would all fail to find SST-2: those that
    name no ``data_dir`` read ``$SST2_DIR``, else the Hub, and so fail alike (``GridError``). A run
    with a folder of its own fails, if it does, as a run."""
    if not any(r.parameters.get("data_dir") is None for r in todo):
        return
    from .data import DataError, load_sst2

    try:
        load_sst2()
    except DataError as err:
        raise GridError(f"no run can load SST-2, so none was started: {err}") from err


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
    if todo and not scheduler:
        check_precision(todo)  # before anything moves, as a cluster's address is checked below
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
                check_data(todo)
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
    from .cluster import check_workers, run_on_cluster  # needs the cluster extra (distributed)

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
        if grid.budget_hours is not None:  # every finished run of the grid, whatever --only selected
            every = [r.run_id for r in grid.runs if record_exists(grid.output_dir, r.run_id)]
            spent_all = spent_hours([load_record(grid.output_dir / f"{run_id}.json") for run_id in every])
            spent += (
                f"; its {len(every)} finished runs took {spent_all:.2f} of the {grid.budget_hours:g} hours budgeted"
            )
            spent += ", evaluation included"
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
    sys.exit(main())
