"""The notebook through papermill, the sweep over a small grid, and the report on its records."""

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import jupytext
import nbformat
import pytest
from conftest import make_record

from lora_lib.study import report, runner, sweep
from lora_lib.study.aggregate import summarize
from lora_lib.study.record import load_record, load_records, load_results
from lora_lib.study.render import ACCURACY_AGAINST
from lora_lib.study.stats import t_interval

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "book" / "train.ipynb"
TINY = {"model_name": "tiny-random", "max_steps": 3, "batch_size": 16, "max_train_samples": 64, "logging_steps": 1}
OFFLINE = {**os.environ, "HF_HUB_OFFLINE": "1"}


def make_checkout(folder: Path) -> Path:
    """A folder laid out as the repository is for papermill and the sweep: the training notebook
    at book/train.ipynb, where a grid file beside book/ finds it. The package itself is installed."""
    (folder / "book").mkdir(parents=True, exist_ok=True)
    shutil.copy(NOTEBOOK, folder / "book" / "train.ipynb")
    return folder


def write_grid(folder: Path, runs: list, seeds=(0,), **keys) -> Path:
    make_checkout(folder)
    grid = {"output_dir": "executed", "seeds": list(seeds), "defaults": TINY, "runs": runs, **keys}
    (folder / "experiments.yml").write_text(json.dumps(grid))  # JSON is YAML
    return folder / "experiments.yml"


def cells(notebook):
    return [(c.cell_type, c.source.strip(), c.metadata.get("tags", [])) for c in notebook.cells]


def test_notebook_pair_is_in_sync():
    markdown = jupytext.read(REPO / "book" / "train.md")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert cells(markdown) == cells(notebook), (
        "book/train.md and book/train.ipynb differ: run jupytext --sync book/train.md"
    )
    assert any("parameters" in tags for _, _, tags in cells(notebook))


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    return make_checkout(tmp_path_factory.mktemp("checkout"))


def papermill(cwd, notebook, out, *params):
    args = [sys.executable, "-m", "papermill", notebook, out, "--no-progress-bar"]
    for key, value in params:
        args += ["-p", key, str(value)]
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=OFFLINE)


def tiny_params(**extra):
    return [(k, v) for k, v in {**TINY, **extra}.items()]


@pytest.mark.slow
def test_papermill_writes_where_it_runs(sst2_dir, checkout):
    (checkout / "runs").mkdir()  # papermill writes its output notebook only into a folder that exists
    done = papermill(
        checkout, "book/train.ipynb", "runs/lora_r4_s0.ipynb", ("method", "lora"), ("rank", 4), *tiny_params()
    )
    assert done.returncode == 0, done.stderr[-2000:]
    # The default output_dir, runs/, is relative to where the kernel runs: here, where papermill ran.
    record = load_record(checkout / "runs" / "lora_r4_s0.json")
    assert record.config.hparams["rank"] == 4 and record.cost.train_steps == 3
    assert record.config.output_dir == "runs" and not (checkout / "executed").exists()
    executed = nbformat.read(checkout / "runs" / "lora_r4_s0.ipynb", as_version=4)
    outputs = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "the loss curve is shown"
    assert any("accuracy" in o.get("text", "") for o in outputs)

    inside = papermill(checkout / "book", "train.ipynb", str(checkout / "out.ipynb"), ("rank", 2), *tiny_params())
    assert inside.returncode == 0, inside.stderr[-2000:]
    assert load_record(checkout / "book" / "runs" / "lora_r2_s0.json").config.output_dir == "runs"


@pytest.mark.slow
def test_papermill_never_replaces_a_record_unless_asked(sst2_dir, checkout, tmp_path):
    runs = tmp_path / "runs"
    first = papermill(
        checkout, "book/train.ipynb", str(tmp_path / "1.ipynb"), ("output_dir", runs), *tiny_params(max_steps=1)
    )
    assert first.returncode == 0, first.stderr[-2000:]
    written = (runs / "lora_r8_s0.json").read_bytes()
    again = papermill(
        checkout, "book/train.ipynb", str(tmp_path / "2.ipynb"), ("output_dir", runs), *tiny_params(max_steps=1)
    )
    assert again.returncode != 0 and "RecordExistsError" in again.stderr
    assert (runs / "lora_r8_s0.json").read_bytes() == written
    replaced = papermill(
        checkout,
        "book/train.ipynb",
        str(tmp_path / "3.ipynb"),
        ("output_dir", runs),
        ("overwrite", True),
        *tiny_params(max_steps=2),
    )
    assert replaced.returncode == 0, replaced.stderr[-2000:]
    assert load_record(runs / "lora_r8_s0.json").cost.train_steps == 2


def test_grid_expansion(tmp_path):
    path = write_grid(
        tmp_path,
        [
            {"method": "lora", "rank": [1, 8], "lr": 1e-3},
            {"method": "head"},
            {"method": "lora", "name": "lora_rs", "rank": [8], "use_rslora": True, "lr": 2e-3},
        ],
        seeds=[0, 2],
    )
    grid = sweep.expand(path)
    assert [r.run_id for r in grid.runs] == [
        "lora_r1_s0",
        "lora_r1_s2",
        "lora_r8_s0",
        "lora_r8_s2",
        "head_s0",
        "head_s2",
        "lora_rs_r8_s0",
        "lora_rs_r8_s2",
    ]
    assert grid.runs[2].parameters == {
        **TINY,
        "method": "lora",
        "rank": 8,
        "lr": 1e-3,
        "seed": 0,
        "run_id": "lora_r8_s0",
    }
    assert grid.root == tmp_path and grid.output_dir == tmp_path / "executed"
    assert grid.notebook == tmp_path / "book" / "train.ipynb"


def test_an_entry_runs_its_own_seeds(tmp_path):
    path = write_grid(tmp_path, [{"method": "head"}, {"method": "bitfit", "seeds": [3, 4]}], seeds=[0])
    assert [r.run_id for r in sweep.expand(path).runs] == ["head_s0", "bitfit_s3", "bitfit_s4"]
    with pytest.raises(sweep.GridError) as err:
        sweep.expand(write_grid(tmp_path, [{"method": "head", "seeds": 3}]))
    assert "seeds" in str(err.value)


def test_the_notebook_and_the_outputs_are_found_from_the_grid_file(tmp_path):
    make_checkout(tmp_path)
    (tmp_path / "grids").mkdir()
    path = tmp_path / "grids" / "small.yml"
    path.write_text(json.dumps({"notebook": "../book/train.ipynb", "output_dir": "out", "runs": [{"method": "head"}]}))
    grid = sweep.expand(path)
    assert grid.notebook.resolve() == (tmp_path / "book" / "train.ipynb").resolve()
    assert (grid.root, grid.output_dir) == (tmp_path / "grids", tmp_path / "grids" / "out")
    path.write_text(json.dumps({"runs": [{"method": "head"}]}))  # no book/ beside this grid file
    with pytest.raises(sweep.GridError) as err:
        sweep.expand(path)
    assert "train.ipynb" in str(err.value)


def test_repository_grid_is_the_study():
    ids = {r.run_id for r in sweep.expand(REPO / "studies" / "v2" / "experiments.yml").runs}
    configurations = ["full", "head", "bitfit", "houlsby", "pfeiffer", "ia3"]
    configurations += [f"lora_r{r}" for r in (1, 2, 4, 8, 16, 32, 64)]
    configurations += ["lora_q_r16", "lora_v_r16", "lora_attention_r4", "lora_all_r2"]
    assert ids == {f"{c}_s{s}" for c in configurations for s in range(5)}
    first = {r.run_id for r in sweep.expand(REPO / "studies" / "v1" / "experiments.yml").runs}
    assert len(first) == 39 and first <= {p.stem for p in (REPO / "executed" / "v1").glob("*.json")}


@pytest.mark.parametrize(
    "runs, name",
    [
        ([{"method": "lora", "rank": [8, 8]}], "lora_r8_s0"),  # the same run id twice
        ([{"method": "lora", "learning_rate": 1e-3}], "learning_rate"),  # not a run parameter
        ([{"method": "bitfit", "rank": 8}], "rank"),  # not a hyperparameter of BitFit
        ([{"method": "lora", "lr": -1.0}], "lr"),  # out of range
        ([{"method": "prefix"}], "prefix"),  # not a registered method
        ([{"rank": 8}], "method"),  # no method
    ],
)
def test_bad_grids(tmp_path, runs, name):
    with pytest.raises(sweep.GridError) as err:
        sweep.expand(write_grid(tmp_path, runs))
    assert name in str(err.value)


@pytest.mark.parametrize(
    "entry, run_id, field",
    [
        ({"method": "lora", "rank": 0}, "lora_r0_s0", "rank"),  # applied to the model: no rank-0 update
        ({"method": "lora", "name": "typo", "targets": "quary", "lr": 1e-3}, "typo_s0", "quary"),  # no such layer
        ({"method": "lora", "rank": 64}, "lora_r64_s0", "rank"),  # the tiny model is 32 wide
        ({"method": "houlsby", "reduction_factor": 0, "lr": 1e-3}, "houlsby_s0", "reduction_factor"),
    ],
)
def test_a_bad_value_fails_the_sweep_before_its_first_run_naming_the_run_and_the_field(
    tmp_path, monkeypatch, capsys, entry, run_id, field
):
    path = write_grid(tmp_path, [{"method": "head"}, entry])  # the good run comes first, and never starts
    monkeypatch.setattr(sweep, "execute", lambda *args, **kwargs: pytest.fail("a run started"))
    with pytest.raises(SystemExit) as stop:
        sweep.main([str(path)])
    message = capsys.readouterr().err
    assert stop.value.code == 2 and run_id in message and field in message


def test_a_grid_key_the_sweep_does_not_know(tmp_path):
    with pytest.raises(sweep.GridError) as err:
        sweep.expand(write_grid(tmp_path, [{"method": "head"}], seed=[0]))
    assert "seed" in str(err.value)


@pytest.fixture(scope="module")
def swept(tmp_path_factory, sst2_dir):
    """A sweep over a small grid (two methods, two seeds, and one run that fails) with two jobs."""
    folder = tmp_path_factory.mktemp("grid")
    # The broken run is a valid configuration that fails as it runs: its data is nowhere.
    path = write_grid(
        folder,
        [
            {"method": "lora", "rank": 2, "lr": 1e-3},
            {"method": "bitfit", "lr": 1e-3},
            {"method": "head", "name": "broken", "data_dir": "no-such-folder"},
        ],
        seeds=[0, 1],
    )
    out = subprocess.run(
        [sys.executable, "-m", "lora_lib.study.sweep", str(path), "--jobs", "2"],
        capture_output=True,
        text=True,
        env=OFFLINE,
    )
    return path, folder / "executed", out


@pytest.mark.slow
def test_sweep_runs_the_grid_and_reports_failures(swept):
    path, executed, out = swept
    assert out.returncode == 1, out.stdout + out.stderr[-3000:]
    assert "4 done" in out.stdout and "2 failed" in out.stdout
    failures = [line for line in out.stdout.splitlines() if "broken_s0" in line and "FAILED" in line]
    assert len(failures) == 1 and "no-such-folder" in failures[0]
    assert sorted(p.name for p in executed.glob("*.json")) == [
        "bitfit_s0.json",
        "bitfit_s1.json",
        "lora_r2_s0.json",
        "lora_r2_s1.json",
    ]
    assert sorted(p.name for p in executed.glob("*.ipynb")) == [
        "bitfit_s0.ipynb",
        "bitfit_s1.ipynb",
        "lora_r2_s0.ipynb",
        "lora_r2_s1.ipynb",
    ]
    assert sorted(p.name for p in (executed / "failed").iterdir()) == ["broken_s0.ipynb", "broken_s1.ipynb"]
    assert not list(executed.glob(".*"))  # no partial notebook or temporary record left
    # The kernels ran in the grid's folder: the records say where they went relative to it, and no
    # path of this machine lands in a record or an executed notebook.
    assert load_record(executed / "lora_r2_s0.json").config.output_dir == "executed"
    for written in [*executed.glob("*.json"), *executed.glob("*.ipynb")]:
        assert str(path.parent) not in written.read_text(), written.name


@pytest.mark.slow
def test_sweep_again_skips_what_is_done(swept):
    path, executed, _ = swept
    before = {p.name: p.stat().st_mtime_ns for p in executed.glob("*.json")}
    dry = subprocess.run(
        [sys.executable, "-m", "lora_lib.study.sweep", str(path), "--dry-run"], capture_output=True, text=True
    )
    assert dry.returncode == 0 and "2 to run" in dry.stdout and "4 already done" in dry.stdout
    hours = sum(load_record(p).cost.train_seconds for p in executed.glob("*.json")) / 3600
    spent = dry.stdout.splitlines()[-1]
    assert f"already done: {hours:.2f} hours of training (" in spent and "BitFit" in spent and "LoRA" in spent
    assert "broken_s0" in dry.stdout and "lora_r2_s0" not in dry.stdout
    again = subprocess.run(
        [sys.executable, "-m", "lora_lib.study.sweep", str(path), "--only", "lora_*"], capture_output=True, text=True
    )
    assert again.returncode == 0 and "0 done" in again.stdout and "2 skipped" in again.stdout
    assert {p.name: p.stat().st_mtime_ns for p in executed.glob("*.json")} == before


@pytest.mark.slow
def test_a_changed_grid_reruns_what_it_changed(swept):
    path, executed, _ = swept
    grid = sweep.expand(path)
    run = next(r for r in grid.runs if r.run_id == "lora_r2_s0")
    assert runner.changed_parameters(run, executed) == ""
    changed = runner.Run(run.run_id, {**run.parameters, "lr": 0.002})
    assert "lr" in runner.changed_parameters(changed, executed)
    stale = sweep.sweep(dataclasses.replace(grid, runs=[changed]), dry_run=True)
    assert stale["would_run"] == ["lora_r2_s0"]


@pytest.mark.slow
def test_a_sweep_refuses_to_start_when_the_kernel_cannot_import_the_package(tmp_path):
    runner.check_kernel_imports(tmp_path)  # installed: the notebooks can import lora_lib from anywhere
    with pytest.raises(sweep.GridError) as err:
        runner.check_kernel_imports(tmp_path, module="no_such_package_here")
    assert "no_such_package_here" in str(err.value)


def test_a_rerun_keeps_the_earlier_files_in_superseded(tmp_path):
    for suffix, text in ((".json", "first"), (".ipynb", "first"), (".safetensors", "first")):
        (tmp_path / f"lora_r8_s0{suffix}").write_text(text)
    (tmp_path / "lora_r8_s1.json").write_text("another run")
    assert runner.supersede("lora_r8_s0", tmp_path) == tmp_path / "superseded"
    assert sorted(p.name for p in (tmp_path / "superseded").iterdir()) == [
        "lora_r8_s0.ipynb",
        "lora_r8_s0.json",
        "lora_r8_s0.safetensors",
    ]
    assert not list(tmp_path.glob("lora_r8_s0.*")) and (tmp_path / "lora_r8_s1.json").read_text() == "another run"
    (tmp_path / "lora_r8_s0.json").write_text("second")
    (tmp_path / "lora_r8_s0.ipynb").write_text("second")
    assert runner.supersede("lora_r8_s0", tmp_path) == tmp_path / "superseded" / "2"
    assert (tmp_path / "superseded" / "lora_r8_s0.json").read_text() == "first"
    assert (tmp_path / "superseded" / "2" / "lora_r8_s0.json").read_text() == "second"


@pytest.mark.slow
def test_report_on_the_sweeps_records(swept, tmp_path):
    _, executed, _ = swept
    written = report.write_report(executed, tmp_path / "report")
    names = sorted(p.name for paths in written.values() for p in paths)
    figures = ["loss_curves", *ACCURACY_AGAINST]
    assert names == sorted(
        [f"{f}.{e}" for f in figures for e in ("png", "svg")] + ["results_table.tex", "results_table.md", "summary.csv"]
    )
    assert all(p.stat().st_size > 1000 for p in written["figures"])
    summary = summarize(load_results(executed))
    assert summary["label"].tolist() == ["BitFit", "LoRA r=2"] and summary["runs"].tolist() == [2, 2]
    table = (tmp_path / "report" / "results_table.md").read_text()
    bitfit = summary.iloc[0]
    low, high = t_interval(bitfit["accuracies"]).low, t_interval(bitfit["accuracies"]).high
    mean, std = bitfit["accuracy_mean"] * 100, bitfit["accuracy_std"] * 100
    assert f"| BitFit | {mean:.2f} ± {std:.2f} | {low:.2f}–{high:.2f} | 2 |" in table
    latex = (tmp_path / "report" / "results_table.tex").read_text()
    assert latex.count(r"\\") == 3 and r"$\pm$" in latex and r"\toprule" in latex


@pytest.mark.slow
def test_report_cli_on_an_empty_folder(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "lora_lib.study.report", str(tmp_path / "empty"), "--out", str(tmp_path / "r")],
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0 and "empty" in out.stderr and not (tmp_path / "r").exists()
    (tmp_path / "empty").mkdir()
    out = subprocess.run(
        [sys.executable, "-m", "lora_lib.study.report", str(tmp_path / "empty"), "--out", str(tmp_path / "r")],
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0 and "empty" in out.stderr and not (tmp_path / "r").exists()


@pytest.mark.slow
def test_stopped_sweep_resumes_without_redoing_runs(sst2_dir, tmp_path):
    path = write_grid(tmp_path, [{"method": "lora", "rank": 2, "lr": 1e-3}], seeds=[0, 1, 2])
    executed = tmp_path / "executed"
    command = [sys.executable, "-m", "lora_lib.study.sweep", str(path)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=OFFLINE)
    deadline = time.monotonic() + 300
    while not list(executed.glob("*.json")) and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)  # the hardest stop: no clean-up code runs
    process.wait()
    time.sleep(3)  # an orphaned run, if any, would write its record now
    first = {p.name: p.stat().st_mtime_ns for p in executed.glob("*.json")}
    assert 1 <= len(first) < 3
    resumed = subprocess.run(command, capture_output=True, text=True, env=OFFLINE)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"{3 - len(first)} done" in resumed.stdout and f"{len(first)} skipped" in resumed.stdout
    assert sorted(p.name for p in executed.glob("*.json")) == ["lora_r2_s0.json", "lora_r2_s1.json", "lora_r2_s2.json"]
    assert all(executed.joinpath(name).stat().st_mtime_ns == t for name, t in first.items())


@pytest.mark.slow
def test_commit_each_finished_run(swept, tmp_path):
    _, executed, _ = swept
    repo = tmp_path / "repo"
    shutil.copytree(executed, repo / "executed", ignore=shutil.ignore_patterns("failed"))
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    for key, value in [("user.name", "test"), ("user.email", "test@example.com")]:
        subprocess.run(["git", "-C", str(repo), "config", key, value], check=True)
    runner.commit_run("lora_r2_s0", repo / "executed")
    log = subprocess.run(
        ["git", "-C", str(repo), "log", "--name-only", "--format=%s"], capture_output=True, text=True
    ).stdout
    assert log.split() == [
        "Record",
        "run",
        "lora_r2_s0",
        "executed/lora_r2_s0.ipynb",
        "executed/lora_r2_s0.json",
        "executed/lora_r2_s0.safetensors",
    ]


def test_a_commit_waits_out_a_locked_index(tmp_path, monkeypatch):
    repo, executed = tmp_path, tmp_path / "executed"
    executed.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    for key, value in [("user.name", "test"), ("user.email", "test@example.com")]:
        subprocess.run(["git", "-C", str(repo), "config", key, value], check=True)
    (executed / "head_s0.json").write_text("{}")
    lock = repo / ".git" / "index.lock"  # another git process is committing
    lock.touch()
    monkeypatch.setattr(runner, "GIT_RETRY_SECONDS", 0.5)
    threading.Timer(1.0, lock.unlink).start()
    runner.commit_run("head_s0", executed)
    log = subprocess.run(["git", "-C", str(repo), "log", "--format=%s"], capture_output=True, text=True).stdout
    assert log.split() == ["Record", "run", "head_s0"]
    (executed / "head_s1.json").write_text("{}")
    lock.touch()  # and this time it stays
    monkeypatch.setattr(runner, "GIT_RETRY_SECONDS", 0.01)
    with pytest.raises(subprocess.CalledProcessError) as err:
        runner.commit_run("head_s1", executed)
    assert "index.lock" in err.value.stderr


@pytest.mark.slow
def test_readme_results_section_is_generated(swept, tmp_path):
    _, executed, _ = swept
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n## Results\n\n{report.README_START}\nold\n{report.README_END}\n\n## After\n")
    report.update_readme(readme, report.results_of(load_records(executed)))
    text = readme.read_text()
    assert "old" not in text and text.startswith("# x\n\n## Results\n\n")
    assert text.endswith(f"{report.README_END}\n\n## After\n")
    assert "| BitFit |" in text and "| LoRA r=2 |" in text
    # two seeds a configuration: the findings name them as not yet results
    assert "BitFit (2 of 3)" in text and "LoRA r=2 (2 of 3)" in text
    written = report.write_report(executed, tmp_path / "report", readme=readme)
    assert written["readme"] == [readme] and "| BitFit |" in readme.read_text()
    assert "(report/accuracy_vs_params.png)" in readme.read_text()  # relative to the README
    source = Path(os.path.relpath(executed, tmp_path)).as_posix()  # and so is the command that wrote it
    assert f"generated from `{source}/` by `lora-report {source} --out report --readme README.md`" in readme.read_text()
    readme.write_text("no markers")
    with pytest.raises(ValueError) as err:
        report.update_readme(readme, report.results_of(load_records(executed)))
    assert "README.md" in str(err.value)
    assert readme.read_text() == "no markers"


@pytest.mark.parametrize("failures, calls", [(1, 2), (5, runner.KERNEL_START_ATTEMPTS)])
def test_a_run_whose_kernel_never_started_is_started_again(tmp_path, monkeypatch, failures, calls):
    grid = sweep.expand(write_grid(tmp_path / "grid", [{"method": "bitfit"}]))
    grid.output_dir.mkdir()
    attempts = []

    def fake_papermill(command, **kwargs):
        attempts.append(command)
        if len(attempts) <= failures:
            return subprocess.CompletedProcess(command, 1, "", f"RuntimeError: {runner.KERNEL_START_FAILURE}")
        return subprocess.CompletedProcess(command, 1, "", "ValueError: a failure of the run itself")

    monkeypatch.setattr(runner.subprocess, "run", fake_papermill)
    status, message = runner.execute(grid.runs[0], grid)
    assert len(attempts) == calls and status == "failed"
    # a failure of the run itself is never retried, and is what the sweep reports
    assert ("a failure of the run itself" in message) == (failures < calls)


def test_a_sweep_given_minutes_starts_no_run_after_them(tmp_path, monkeypatch):
    grid = sweep.expand(write_grid(tmp_path / "grid", [{"method": "bitfit"}], seeds=[0, 1, 2, 3]))
    clock = {"now": 0.0}
    started = []

    def ten_minute_run(run, grid, env=None):
        started.append(run.run_id)
        clock["now"] += 600
        return "done", ""

    monkeypatch.setattr(sweep.time, "monotonic", lambda: clock["now"])
    monkeypatch.setattr(sweep, "execute", ten_minute_run)
    monkeypatch.setattr(sweep, "check_kernel_imports", lambda root: None)
    monkeypatch.setattr(sweep, "check_data", lambda todo: None)
    summary = sweep.sweep(grid, start_within=15)  # runs start at minutes 0 and 10; the one at 20 waits
    assert started == ["bitfit_s0", "bitfit_s1"] == summary["done"]
    assert summary["not started"] == ["bitfit_s2", "bitfit_s3"]
    with pytest.raises(ValueError, match="start_within"):
        sweep.sweep(grid, start_within=15, scheduler="tcp://127.0.0.1:1")


def test_a_sweep_that_cannot_find_sst2_starts_no_run_and_names_sst2_dir(tmp_path, monkeypatch):
    grid = sweep.expand(write_grid(tmp_path / "grid", [{"method": "bitfit"}], seeds=[0, 1]))
    monkeypatch.setenv("SST2_DIR", str(tmp_path / "nowhere"))
    monkeypatch.setattr(sweep, "execute", lambda *args, **kwargs: pytest.fail("a run started"))
    with pytest.raises(sweep.GridError) as err:
        sweep.sweep(grid)
    assert "SST2_DIR" in str(err.value) and "nowhere" in str(err.value)
    assert not list((tmp_path / "grid").rglob("*.json"))
    # runs that each name a folder of their own fail, if they do, one by one
    own = sweep.expand(write_grid(tmp_path / "own", [{"method": "bitfit", "data_dir": "elsewhere"}], seeds=[0]))
    sweep.check_data(own.runs)


def test_training_time_sums_the_hours_and_averages_each_method():
    records = [
        make_record("lora_r8_s0", seconds=540.0),
        make_record("lora_r8_s1", seed=1, seconds=660.0),
        make_record("full_s0", method="full", rank=None, seconds=900.0),
    ]
    assert (
        sweep.training_time(records) == "0.58 hours of training (LoRA 10.0 min a run; Full fine-tuning 15.0 min a run)"
    )


def test_spent_hours_adds_each_runs_evaluation_to_its_training():
    evaluated = make_record("lora_r8_s0", seconds=540.0)
    evaluated.cost.eval_seconds = 180.0  # as train.py writes it: a field the schema does not name
    older = make_record("full_s0", method="full", rank=None, seconds=900.0)  # a record without the field
    assert sweep.spent_hours([evaluated, older]) == pytest.approx((540 + 180 + 900) / 3600)
    assert sweep.spent_hours([]) == 0


def test_a_grid_states_its_budget_and_the_dry_run_sets_the_finished_runs_against_it(tmp_path, capsys, monkeypatch):
    path = write_grid(tmp_path / "grid", [{"method": "bitfit"}], seeds=[0, 1], budget_hours=2.5)
    grid = sweep.expand(path)
    assert grid.budget_hours == 2.5
    assert sweep.expand(write_grid(tmp_path / "plain", [{"method": "bitfit"}])).budget_hours is None
    done = make_record("bitfit_s0", method="bitfit", rank=None, seconds=5400.0)
    done.cost.eval_seconds = 1800.0
    monkeypatch.setattr(sweep, "record_exists", lambda folder, run_id: run_id == "bitfit_s0")
    monkeypatch.setattr(sweep, "changed_parameters", lambda run, folder: {})
    monkeypatch.setattr(sweep, "load_record", lambda file: done)
    assert sweep.main([str(path), "--dry-run"]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert "1 to run, 1 already done" in last and "2.00 of the 2.5 hours budgeted" in last
    # the budget counts every finished run of the grid, not only those --only selects
    assert sweep.main([str(path), "--dry-run", "--only", "bitfit_s1"]) == 0
    assert "2.00 of the 2.5 hours budgeted" in capsys.readouterr().out.splitlines()[-1]


@pytest.mark.parametrize("budget", [0, -3, "ten", True, ".nan", ".inf"])
def test_a_budget_that_is_not_a_positive_number_of_hours_is_refused_by_name(tmp_path, budget):
    path = write_grid(tmp_path / "grid", [{"method": "bitfit"}], budget_hours="BUDGET")
    path.write_text(
        path.read_text().replace('"BUDGET"', json.dumps(budget) if not str(budget).startswith(".") else budget)
    )
    with pytest.raises(sweep.GridError, match="budget_hours"):
        sweep.expand(path)


def test_the_cli_refuses_minutes_it_cannot_keep(tmp_path, capsys):
    path = write_grid(tmp_path / "grid", [{"method": "bitfit"}])
    for argv in (["--start-within", "-5"], ["--start-within", "30", "--scheduler", "tcp://127.0.0.1:1"]):
        with pytest.raises(SystemExit) as stop:
            sweep.main([str(path), *argv])
        assert stop.value.code == 2 and "--start-within" in capsys.readouterr().err


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the guard is Linux's PR_SET_PDEATHSIG")
@pytest.mark.slow
def test_a_guarded_run_dies_with_the_process_that_started_it_even_on_sigkill():
    starter = (
        "import os, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-m', 'lora_lib.study.parent_guard', str(os.getpid()), "
        "'sleep', '60'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", starter], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    deadline = time.monotonic() + 20
    while b"sleep" not in Path(f"/proc/{child}/cmdline").read_bytes() and time.monotonic() < deadline:
        time.sleep(0.05)  # until the guard has become the program
    assert _alive(child)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


@pytest.mark.parametrize("fast", [False, True])
def test_a_bf16_grid_is_refused_before_its_first_run_on_a_cpu_without_fast_bf16(tmp_path, monkeypatch, capsys, fast):
    from lora_lib.study import machine

    path = write_grid(tmp_path, [{"method": "bitfit", "precision": "bf16", "device": "cpu"}], seeds=[0, 1])
    started = []
    monkeypatch.setattr(machine, "bf16_supported", lambda device: fast)
    monkeypatch.setattr(sweep, "check_kernel_imports", lambda root: None)
    monkeypatch.setattr(sweep, "check_data", lambda todo: None)
    monkeypatch.setattr(sweep, "execute", lambda run, grid, env=None: started.append(run.run_id) or ("done", ""))
    monkeypatch.setattr(sweep, "commit_run", lambda *args, **kwargs: None)
    if fast:
        assert sweep.main([str(path)]) == 0 and started == ["bitfit_s0", "bitfit_s1"]
        return
    with pytest.raises(SystemExit) as stop:
        sweep.main([str(path)])
    message = capsys.readouterr().err
    assert stop.value.code == 2 and started == []
    assert "bf16" in message and "precision" in message and "bitfit_s0" in message
