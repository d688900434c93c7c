"""The sweep on a Dask cluster: each run a task, on whichever worker is free.

    lora-sweep studies/v2/experiments.yml --scheduler tcp://HOST:8786

The client (the machine that runs ``lora-sweep``) decides what to run, exactly as the local
mode does (skipping finished runs, rerunning changed ones), and submits one task per run to a
running Dask scheduler. A worker runs the same :func:`lora_lib.study.runner.execute` as the
local mode: papermill, with the worker's own Python, in the grid's folder. So every worker
must see the grid's folder at the same path (a shared file system) and have this package
installed. The run itself writes its record, atomically and once; the client reports each
run as it finishes and, with ``--commit``, commits its files.

A run whose parameters ask for ``device: cuda`` needs a worker with the ``GPU`` resource
(``dask worker ADDRESS --resources GPU=1``). A run whose worker dies is given to another
worker by the scheduler (up to its ``distributed.scheduler.allowed-failures``, 3 by default).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import os
import sys
from collections.abc import Callable

from .grid import Grid, GridError, Run
from .record import record_exists
from .runner import execute

CONNECT_TIMEOUT = 5  # seconds to wait for the scheduler to answer
RETRIES = 2  # reruns of a task that raised (a run that fails is reported, not retried)
GPU = "GPU"  # the worker resource a run on device "cuda" asks for
START_HINT = (
    "start one there with `dask scheduler` (it listens on port 8786) and workers with `dask worker {address}`, "
    "or check the address"
)


class ClusterError(GridError):
    """A scheduler that does not answer, or workers that cannot run the grid."""


def connect(address: str, timeout: float = CONNECT_TIMEOUT):
    """A ``distributed.Client`` on the scheduler at ``address``, or a ClusterError within ``timeout`` seconds."""
    from distributed import Client
    from distributed.comm import parse_address
    from distributed.comm.addressing import parse_host_port

    try:
        scheme, location = parse_address(address)
        if scheme in ("tcp", "tls"):
            parse_host_port(location)
    except ValueError as err:
        raise ClusterError(f"{address!r} is not a scheduler address ({err}); give one like tcp://HOST:8786") from err
    problem = ""
    try:
        return Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError):
        problem = f"no Dask scheduler answers at {address} (waited {timeout:g} s)"
    except Exception as err:  # something answers, but not as a Dask scheduler does
        problem = f"what answers at {address} is not a Dask scheduler ({type(err).__name__}: {err})"
    # The half-made client complains as it is collected; the error below says what went wrong.
    hook, sys.unraisablehook = sys.unraisablehook, lambda _: None
    try:
        gc.collect()
    finally:
        sys.unraisablehook = hook
    raise ClusterError(f"{problem}; {START_HINT.format(address=address)}")


def task_options(run: Run, grid: Grid) -> dict:
    """How ``run`` is submitted: a key of its own (the same for the same run of the same output
    folder, so that two sweeps on one scheduler share the task rather than race), never cached
    as a pure function, retried if it raises, and on a GPU worker if it asks for CUDA."""
    folder = hashlib.sha1(str(grid.output_dir).encode()).hexdigest()[:8]
    options = {"key": f"lora-sweep-{run.run_id}-{folder}", "pure": False, "retries": RETRIES}
    if run.parameters.get("device") == "cuda":
        options["resources"] = {GPU: 1}
    return options


def run_task(run: Run, grid: Grid) -> tuple[str, str, str]:
    """On a worker: run ``run`` as the local mode does; return ``(status, message, worker address)``."""
    from distributed import get_worker

    worker = get_worker()
    if record_exists(grid.output_dir, run.run_id):
        # An earlier attempt wrote it, and then its worker was lost before it could say so.
        return "done", "", worker.address
    return (*execute(run, grid, env=_thread_share(worker.state.nthreads)), worker.address)


def _thread_share(nthreads: int) -> dict:
    """Each of a worker's threads runs one run at a time: a share of the worker's cores each,
    unless the worker was started with its own OMP_NUM_THREADS."""
    if "OMP_NUM_THREADS" in os.environ:
        return {}
    # The cores this process may use (a batch job's share of its node), where the system says.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return {"OMP_NUM_THREADS": str(max(1, cores // max(1, nthreads)))}


def check_worker(grid: Grid) -> str:
    """On a worker: '' if it sees the grid's notebook and can write its output folder, else what is wrong."""
    if not grid.notebook.is_file():
        return f"does not see the training notebook {grid.notebook}"
    if not os.access(grid.output_dir, os.W_OK | os.X_OK):
        return f"cannot write to {grid.output_dir}"
    return ""


def check_workers(client, grid: Grid, runs: list[Run]) -> list[str]:
    """Refuse to submit to workers that could not run the grid; return notes on what the runs will wait for."""
    problems = client.run(check_worker, grid, on_error="return")
    bad = {address: p for address, p in problems.items() if p}
    if bad:
        lines = [
            f"  {address}: {p if isinstance(p, str) else f'{type(p).__name__}: {p}'}" for address, p in bad.items()
        ]
        raise ClusterError(
            "worker(s) that cannot run this grid:\n" + "\n".join(lines) + "\nEvery worker needs this package "
            "installed (`pip install -e .`) and the grid's folder at the same path (a shared file system)"
        )
    workers = client.scheduler_info(n_workers=-1)["workers"]
    notes = []
    if not workers:
        notes.append("the scheduler has no workers yet: the runs wait for some")
    gpu_runs = sum(GPU in task_options(r, grid).get("resources", {}) for r in runs)
    if gpu_runs and not any(w.get("resources", {}).get(GPU) for w in workers.values()):
        notes.append(
            f"{gpu_runs} run(s) ask for a GPU, and no worker has one yet: they wait for a worker "
            f"started with `dask worker ... --resources {GPU}=1`"
        )
    return notes


def run_on_cluster(client, runs: list[Run], grid: Grid, finished: Callable[[Run, str, str, str], None]) -> None:
    """Submit ``runs`` to the cluster and call ``finished(run, status, message, worker)`` as each one ends."""
    from distributed import as_completed
    from distributed.client import FutureCancelledError
    from distributed.scheduler import KilledWorker

    futures = {client.submit(run_task, run, grid, **task_options(run, grid)): run for run in runs}
    for future in as_completed(futures, loop=client.loop):
        run = futures.pop(future)
        try:
            status, message, worker = future.result()
        except KilledWorker as err:
            status, message, worker = "failed", f"every worker that ran it died ({err})", ""
        except FutureCancelledError:
            status, message, worker = "failed", "the scheduler cancelled it (did it restart?)", ""
        except Exception as err:
            status, message, worker = "failed", f"{type(err).__name__}: {err}", ""
        with contextlib.suppress(Exception):
            future.release()
        finished(run, status, message, worker)
