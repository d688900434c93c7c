"""The sweep on a real Dask cluster: a scheduler and two worker processes on 127.0.0.1, started
as a user starts them (`dask scheduler`, `dask worker`), and the tiny model's runs on them."""

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_sweep_and_report import write_grid

from lora_lib.study import cluster, sweep
from lora_lib.study.record import load_record

WORKERS = ("w1", "w2")
WORKER_UMASK = 0o002  # not the usual 022, so that a file written with the umask's mode is told apart
SWEEP = [sys.executable, "-m", "lora_lib.study.sweep"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclasses.dataclass
class Cluster:
    address: str
    client: object  # distributed.Client: the test's own view of the cluster
    processes: dict  # name -> Popen, each the leader of its own process group
    logs: Path

    def worker_names(self) -> dict:
        """Worker address -> the name it was started with."""
        return {a: w["name"] for a, w in self.client.scheduler_info(n_workers=-1)["workers"].items()}

    def log_tail(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted(self.logs.glob("*.log")))


@pytest.fixture
def dask_cluster(tmp_path_factory, sst2_dir):
    """A scheduler and two one-thread workers (with a nanny each, as by default), torn down after
    the test whatever happens: each process group is terminated, then killed if it lingers."""
    from distributed import Client

    logs = tmp_path_factory.mktemp("dask")
    address = f"tcp://127.0.0.1:{free_port()}"
    # One thread a run: two runs share this machine's cores with whatever else runs on it.
    env = {**os.environ, "SST2_DIR": sst2_dir, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    processes, client = {}, None

    def start(name, *args):
        with open(logs / f"{name}.log", "w") as log:
            processes[name] = subprocess.Popen(
                [sys.executable, "-m", "dask", *args],
                cwd=logs,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: a kill reaches the nanny, the worker, papermill
                umask=WORKER_UMASK,
            )

    try:
        start("scheduler", "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1], "--no-dashboard")
        for name in WORKERS:
            start(name, "worker", address, "--name", name, "--nworkers", "1", "--nthreads", "1", "--host",
                  "127.0.0.1", "--no-dashboard", "--local-directory", str(logs / name))  # fmt: skip
        client = Client(address, timeout=60, set_as_default=False)
        client.wait_for_workers(len(WORKERS), timeout=120)
        yield Cluster(address, client, processes, logs)
    finally:
        if client is not None:
            client.close()
        for name in [*WORKERS, "scheduler"]:
            if name in processes and processes[name].poll() is None:
                os.killpg(processes[name].pid, signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)


def assert_clean(executed: Path, run_ids) -> None:
    """One valid record a run, nothing half-written: every record loads, and no partial notebook
    or temporary file is left (only failed/ may keep a notebook)."""
    assert sorted(p.name for p in executed.glob("*.json")) == sorted(f"{r}.json" for r in run_ids)
    for run_id in run_ids:
        assert load_record(executed / f"{run_id}.json").run_id == run_id
    assert not list(executed.glob(".*")), "a partial notebook or a temporary file is left"
    assert not [p for p in executed.rglob("*.partial") if "failed" not in p.relative_to(executed).parts]


def sweep_again(path: Path, address: str, runs: int) -> None:
    again = subprocess.run([*SWEEP, str(path), "--scheduler", address], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr[-3000:]
    assert f"0 done, {runs} skipped" in again.stdout


@pytest.mark.slow
def test_runs_spread_over_both_workers_once_each(dask_cluster, tmp_path):
    path = write_grid(tmp_path, [{"method": "lora", "rank": [2, 4], "lr": 1e-3}, {"method": "bitfit"}], seeds=[0, 1])
    grid = sweep.expand(path)
    ids = [r.run_id for r in grid.runs]
    assert len(ids) == 6
    executed = tmp_path / "executed"
    executed.mkdir()

    # Before anything is submitted, the workers are asked whether they could run the grid.
    assert cluster.check_workers(dask_cluster.client, grid, grid.runs) == []
    elsewhere = dataclasses.replace(grid, notebook=tmp_path / "not" / "shared.ipynb")
    with pytest.raises(cluster.ClusterError) as err:
        cluster.check_workers(dask_cluster.client, elsewhere, grid.runs)
    assert all(a in str(err.value) for a in dask_cluster.worker_names()) and "shared file system" in str(err.value)
    on_gpu = [sweep.Run("gpu_s0", {**grid.runs[0].parameters, "device": "cuda"})]
    (note,) = cluster.check_workers(dask_cluster.client, grid, on_gpu)
    assert "GPU=1" in note  # no worker here has a GPU: the run would wait, and the sweep says so

    summary = sweep.sweep(grid, scheduler=dask_cluster.address)
    assert sorted(summary["done"]) == sorted(ids) and not summary["failed"], dask_cluster.log_tail()
    assert sorted(summary["workers"]) == sorted(ids)
    assert set(summary["workers"].values()) == set(dask_cluster.worker_names()), "the runs spread over both workers"
    assert_clean(executed, ids)
    # What other users must read has the mode the workers' umask gives (papermill's notebook
    # included), not a temporary file's 0600.
    written = [*executed.glob("*.json"), *executed.glob("*.ipynb"), *executed.glob("*.safetensors")]
    assert len(written) == 6 * 3
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in written}
    assert set(modes.values()) == {oct(0o666 & ~WORKER_UMASK)}, modes
    # The kernels ran in the grid's folder on the workers too: no path of this machine in a record.
    assert load_record(executed / "bitfit_s0.json").config.output_dir == "executed"

    before = {p.name: p.stat().st_mtime_ns for p in executed.iterdir()}
    sweep_again(path, dask_cluster.address, 6)
    assert {p.name: p.stat().st_mtime_ns for p in executed.iterdir()} == before


@pytest.mark.slow
def test_a_run_whose_worker_is_killed_is_rerun_once_elsewhere(dask_cluster, tmp_path):
    # Long enough that a run is surely in progress when its worker is killed.
    path = write_grid(tmp_path, [{"method": "lora", "rank": 2, "lr": 1e-3, "max_steps": 40}], seeds=[0, 1, 2, 3])
    ids = [r.run_id for r in sweep.expand(path).runs]
    executed = tmp_path / "executed"
    out, err = tmp_path / "sweep.out", tmp_path / "sweep.err"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        process = subprocess.Popen(
            [*SWEEP, str(path), "--scheduler", dask_cluster.address], stdout=stdout, stderr=stderr
        )
    try:
        deadline = time.monotonic() + 300
        while not list(executed.glob("*.json")):
            assert time.monotonic() < deadline and process.poll() is None, err.read_text()[-3000:]
            time.sleep(0.5)
        # Kill a worker in the middle of a run that started after the first record appeared.
        started_before = {r for r in ids if (executed / f".{r}.ipynb.partial").exists()}
        victim = None
        while victim is None:
            assert time.monotonic() < deadline and process.poll() is None, err.read_text()[-3000:]
            for address, keys in dask_cluster.client.processing().items():
                for key in keys:
                    run_id = next((r for r in ids if key.startswith(f"lora-sweep-{r}-")), None)
                    if (
                        run_id not in started_before
                        and (executed / f".{run_id}.ipynb.partial").exists()
                        and not (executed / f"{run_id}.json").exists()
                    ):
                        victim, victim_address = run_id, address
            time.sleep(0.2)
        names = dask_cluster.worker_names()
        name, (survivor,) = names[victim_address], set(names) - {victim_address}
        os.killpg(dask_cluster.processes[name].pid, signal.SIGKILL)  # the worker, its nanny, its papermill
        killed_at = time.time()
        process.wait(timeout=600)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = out.read_text()
    assert process.returncode == 0, output + err.read_text()[-3000:]
    assert "4 done, 0 skipped (already done), 0 failed" in output
    assert dask_cluster.processes[name].poll() is not None
    # The killed run went to the other worker and finished there, once.
    assert [line for line in output.splitlines() if line.startswith(f"done {victim} ")] == [
        f"done {victim} on {survivor}"
    ]
    assert_clean(executed, ids)
    assert (executed / f"{victim}.json").stat().st_mtime > killed_at  # run again, not finished by the dead worker
    assert not (executed / "failed").exists()
    sweep_again(path, dask_cluster.address, 4)


@pytest.mark.slow
def test_a_scheduler_that_does_not_answer(tmp_path):
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    start = time.monotonic()
    with pytest.raises(cluster.ClusterError) as err:
        cluster.connect(address, timeout=2)
    assert time.monotonic() - start < 8
    assert address in str(err.value) and "dask scheduler" in str(err.value)

    path = write_grid(tmp_path, [{"method": "head"}])
    start = time.monotonic()
    out = subprocess.run([*SWEEP, str(path), "--scheduler", address], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert address in out.stderr and "dask scheduler" in out.stderr
    assert time.monotonic() - start < cluster.CONNECT_TIMEOUT + 30  # the interpreter's start-up included
    assert not (tmp_path / "executed").exists()  # nothing was run or moved


def test_a_scheduler_address_that_is_not_one():
    with pytest.raises(cluster.ClusterError) as err:
        cluster.connect("localhost:abc", timeout=2)
    assert "localhost:abc" in str(err.value) and "tcp://HOST:8786" in str(err.value)


@pytest.mark.slow
def test_jobs_are_for_this_machine_only(tmp_path):
    path = write_grid(tmp_path, [{"method": "head"}])
    out = subprocess.run(
        [*SWEEP, str(path), "--scheduler", "tcp://127.0.0.1:8786", "--jobs", "2"], capture_output=True, text=True
    )
    assert out.returncode == 2 and "--jobs" in out.stderr


def test_each_run_is_one_task_and_a_cuda_run_asks_for_a_gpu(tmp_path):
    grid = sweep.expand(write_grid(tmp_path, [{"method": "lora", "rank": [2, 4]}], seeds=[0, 1]))
    options = [cluster.task_options(r, grid) for r in grid.runs]
    assert len({o["key"] for o in options}) == 4 and all(o["pure"] is False and o["retries"] for o in options)
    assert all(r.run_id in o["key"] for r, o in zip(grid.runs, options))
    assert not any("resources" in o for o in options)
    # The same run in another output folder is another task, not one Dask would share.
    elsewhere = dataclasses.replace(grid, output_dir=tmp_path / "other")
    assert cluster.task_options(grid.runs[0], elsewhere)["key"] != options[0]["key"]
    on_gpu = sweep.Run("lora_r2_s0", {**grid.runs[0].parameters, "device": "cuda"})
    assert cluster.task_options(on_gpu, grid)["resources"] == {"GPU": 1}
