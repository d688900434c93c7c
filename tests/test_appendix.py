"""The appendix: the index of every run, and run pages titled by their run."""

import json
import subprocess
from pathlib import Path

import nbformat
import pytest
from conftest import make_record

from lora_lib.study import grid as grid_module
from lora_lib.study import runner
from lora_lib.study.appendix import (
    IndexTable,
    format_lr,
    grid_progress,
    heading,
    hyperparameter_text,
    retitle_folder,
    retitle_notebook,
    run_index,
    run_title,
)
from lora_lib.study.record import load_record, save_record

REPO = Path(__file__).resolve().parent.parent
EXECUTED = REPO / "executed"


def _record(run_id, method="lora", seed=0, lr=2e-3, accuracy=0.87, seconds=600.0, settings=None, **hparams):
    return make_record(
        run_id,
        method=method,
        seed=seed,
        lr=lr,
        accuracy=accuracy,
        seconds=seconds,
        hparams=hparams,
        **(settings or {}),
    )


def _executed_notebook(path, run_id):
    """An executed notebook as papermill leaves it: the template's title and prose, its
    default parameters, the injected ones, and outputs."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["papermill"] = {"parameters": {"method": "lora", "rank": 8, "run_id": run_id}, "duration": 1.0}
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Training one configuration\n\nThe template's prose."),
        nbformat.v4.new_code_cell("method = 'lora'", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("# Parameters\nrank = 8", metadata={"tags": ["injected-parameters"]}),
        nbformat.v4.new_markdown_cell("The result:"),
        nbformat.v4.new_code_cell(
            "print(1)", execution_count=3, outputs=[nbformat.v4.new_output("stream", name="stdout", text="1\n")]
        ),
    ]
    path.write_text(nbformat.writes(nb), encoding="utf-8")
    return nb


@pytest.mark.parametrize(
    "lr, text", [(2e-3, "2e-3"), (1.2e-4, "1.2e-4"), (3e-5, "3e-5"), (0.1, "1e-1"), (0.015, "1.5e-2"), (5.0e-4, "5e-4")]
)
def test_learning_rates_are_in_scientific_notation(lr, text):
    assert format_lr(lr) == text


def test_only_hyperparameters_off_their_defaults_are_named():
    assert hyperparameter_text(_record("lora_r8_s0", rank=8)) == ""  # the rank is in the label
    assert hyperparameter_text(_record("a_s0", rank=1, alpha=2)) == "alpha=2"
    # the targets are in the label too: the index's method column names them
    pooler = _record("b_s0", rank=8, alpha=2, targets=["query", "value", "pooler.dense"])
    assert hyperparameter_text(pooler) == "alpha=2"
    assert run_title(pooler).startswith("b_s0: LoRA r=8 + pooler.dense, ")
    assert hyperparameter_text(_record("houlsby_s0", method="houlsby", reduction_factor=16)) == ""
    # the run's other settings too, where they differ from RunConfig's defaults, but not those with a column
    assert (
        hyperparameter_text(_record("c_s0", rank=8, alpha=2, settings={"batch_size": 16})) == "alpha=2; batch_size=16"
    )
    assert hyperparameter_text(_record("d_s0", settings={"epochs": 2.0, "max_train_samples": 100})) == ""


def test_a_run_title_names_the_run_the_method_the_rate_and_the_seed():
    assert run_title(_record("lora_r8_s1", rank=8, seed=1)) == "lora_r8_s1: LoRA r=8, lr 2e-3, seed 1"
    assert run_title(_record("full_s0", method="full", lr=1.2e-4)) == "full_s0: Full fine-tuning, lr 1.2e-4, seed 0"


@pytest.fixture
def runs(tmp_path):
    folder = tmp_path / "executed"
    save_record(_record("lora_r8_s1", rank=8, seed=1, accuracy=0.8812), folder)
    save_record(_record("lora_r8_s0", rank=8, seed=0), folder)
    save_record(_record("full_s0", method="full", lr=1.2e-4, seconds=900.0), folder)
    save_record(_record("lora_r8_lr0.004_s0", rank=8, lr=4e-3), folder / "tuning")
    save_record(_record("lora_r1_s0", rank=1, lr=4e-3), folder / "superseded")
    save_record(_record("lora_r1_s0", rank=1, lr=8e-3), folder / "superseded" / "2")
    save_record(_record("head_s0", method="head", lr=1e-2), folder / "v1")
    save_record(_record("head_s0", method="head", lr=3e-3), folder / "v1" / "superseded")
    (folder / "failed").mkdir()  # a failed run's notebook, never a record
    return folder


def test_the_index_has_every_run_in_its_set_and_order(runs):
    index = run_index(runs)
    assert index["run"].tolist() == [
        "full_s0",
        "lora_r8_s0",
        "lora_r8_s1",
        "lora_r8_lr0.004_s0",
        "head_s0",
        "head_s0",
        "lora_r1_s0",
        "lora_r1_s0",
    ]
    assert index["set"].tolist() == ["grid"] * 3 + ["tuning", "v1"] + ["superseded"] * 3
    assert index["page"].tolist()[-5:] == [
        "executed/tuning/lora_r8_lr0.004_s0",
        "executed/v1/head_s0",
        "executed/v1/superseded/head_s0",
        "executed/superseded/lora_r1_s0",
        "executed/superseded/2/lora_r1_s0",
    ]
    first, last = index.iloc[0], index.iloc[2]
    assert (first["method"], first["lr"], first["time (min)"]) == ("Full fine-tuning", "1.2e-4", 15.0)
    assert (last["method"], last["seed"], last["accuracy (%)"]) == ("LoRA r=8", 1, 88.12)


def test_the_grid_says_how_far_it_has_got(runs, tmp_path):
    grid = tmp_path / "experiments.yml"
    grid.write_text('{"runs": [{"method": "full", "lr": 1.2e-4}, {"method": "lora", "rank": 8}], "seeds": [0, 1, 2]}')
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "train.ipynb").write_text("{}")
    index = run_index(runs)
    assert grid_progress(grid, index).startswith("3 of the 6 runs of `experiments.yml` have finished")
    grid.write_text('{"runs": [{"method": "full", "lr": 1.2e-4}, {"method": "lora", "rank": 8}], "seeds": [0]}')
    progress = grid_progress(grid, index)
    assert progress.startswith("All 2 runs") and "lora_r8_s1" in progress


def test_the_third_studys_rate_check_and_grid_are_sets_of_their_own(runs, tmp_path):
    save_record(_record("long_full_lr3e-05_s100", method="full", lr=3e-5, seed=100), runs / "v3" / "rates")
    save_record(_record("full_s0", method="full", lr=3e-5), runs / "v3")
    save_record(_record("search_dora_r8_lr0.001_s0", method="dora", rank=8, lr=1e-3), runs / "v3" / "tuning")
    index = run_index(runs).set_index("page")
    assert index.loc["executed/v3/rates/long_full_lr3e-05_s100", "set"] == "next rate check"
    assert index.loc["executed/v3/full_s0", "set"] == "next grid"
    assert index.loc["executed/v3/tuning/search_dora_r8_lr0.001_s0", "set"] == "next tuning"
    assert index.loc["executed/full_s0", "set"] == "grid"
    grid = tmp_path / "experiments.yml"
    grid.write_text('{"runs": [{"method": "full", "lr": 3e-5}], "seeds": [0, 1]}')
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "train.ipynb").write_text("{}")
    assert grid_progress(grid, index.reset_index(), "next grid").startswith("1 of the 2 runs")


def test_an_empty_folder_has_no_index(tmp_path):
    (tmp_path / "executed").mkdir()
    with pytest.raises(ValueError, match="executed"):
        run_index(tmp_path / "executed")


def test_the_index_links_each_run_in_html_and_is_a_plain_table_for_the_pdf(runs):
    index = run_index(runs)
    table = IndexTable(index, prefix="../")
    page = table._repr_html_()
    assert page.count("</tr>") == len(index) + 1  # the header and one row per run
    assert '<a href="../executed/tuning/lora_r8_lr0.004_s0.html">lora_r8_lr0.004_s0</a>' in page
    assert "page" not in page.split("</thead>")[0]
    assert ">87.00</span></td>" in page and ">15.0</span></td>" in page  # fixed decimals, never broken
    markdown = [line for line in table._repr_markdown_().splitlines() if line.startswith("|")]
    assert len(markdown) == len(index) + 2 and set(markdown[1]) <= set("|-:")
    assert "](" not in "".join(markdown) and "lora\\_r8\\_s0" in markdown[3]
    colspec = table.latex_colspec()  # one width per shown column, for the PDF's long tables
    assert (
        colspec.count("\\X") == len(table.shown().columns)
        and f"{{tabularcolumns}} {colspec}" in table._repr_markdown_()
    )


def test_what_every_shown_run_shares_is_said_once_above_the_table(runs):
    table = IndexTable.of_set(run_index(runs), "grid")
    assert table.common() == {
        "set": "grid",
        "hyperparameters": "defaults",
        "training": "1.5 epochs",  # RunConfig's default: the study's schedule
        "scored on": "validation",
    }
    assert table.shown().columns.tolist() == ["run", "method", "lr", "seed", "accuracy (%)", "time (min)"]
    line = table._repr_markdown_().splitlines()[0]
    assert line.startswith("Common to every run below:") and "1.5 epochs" in line and "grid" not in line
    assert "<p>Common to every run below:" in table._repr_html_()
    single = IndexTable.of_set(run_index(runs), "tuning")
    assert single.common() == {} and "seed" in single.shown().columns  # one run: nothing to factor out
    with pytest.raises(ValueError):
        IndexTable.of_set(run_index(runs), "nothing")


def test_runs_scored_on_different_slices_get_their_own_tables(runs):
    save_record(_record("heads_s0", settings={"eval_split": "sentences", "holdout_size": 1000}), runs / "tuning")
    tables = IndexTable.by_split(run_index(runs), "tuning")
    assert [t.common().get("scored on") for t in tables] == [None, None]  # one run each: nothing factored out
    assert sorted(t.frame["scored on"].iloc[0] for t in tables) == ["sentences (1,000)", "validation"]
    markdown = tables[0]._repr_markdown_()
    assert markdown.index("\\begingroup\\small") < markdown.index("| run") < markdown.index("\\endgroup")


def test_retitling_changes_the_heading_and_nothing_papermill_wrote(tmp_path):
    path = tmp_path / "lora_r8_s0.ipynb"
    before = _executed_notebook(path, "lora_r8_s0")
    record = _record("lora_r8_s0", rank=8)
    assert retitle_notebook(path, record)
    after = nbformat.read(path, as_version=4)
    nbformat.validate(after)
    assert after.cells[0].source.startswith("# lora_r8_s0: LoRA r=8, lr 2e-3, seed 0\n")
    assert "template's prose" not in after.cells[0].source and "(/train.md)" in after.cells[0].source
    assert after.metadata["papermill"] == before.metadata["papermill"]
    assert [(c.source, c.get("outputs")) for c in after.cells[1:]] == [
        (c.source, c.get("outputs")) for c in before.cells[1:]
    ]
    assert "remove-cell" in after.cells[1].metadata["tags"] and after.metadata["nosearch"] is True
    assert after.cells[2].metadata["tags"] == ["injected-parameters"]  # what the run set stays in sight
    text = path.read_text()
    assert not retitle_notebook(path, record) and path.read_text() == text  # idempotent


def test_retitling_a_folder_titles_each_notebook_by_its_own_record(runs):
    for sub, run_id in [("", "lora_r8_s0"), ("tuning", "lora_r8_lr0.004_s0"), ("superseded/2", "lora_r1_s0")]:
        _executed_notebook(runs / sub / f"{run_id}.ipynb", run_id)
    changed = retitle_folder(runs)
    assert len(changed) == 3
    title = nbformat.read(runs / "superseded" / "2" / "lora_r1_s0.ipynb", as_version=4).cells[0].source
    assert title.startswith("# lora_r1_s0: LoRA r=1, lr 8e-3, seed 0")
    assert retitle_folder(runs) == []


def test_the_sweep_titles_a_finished_run_before_moving_it_into_place(tmp_path, monkeypatch):
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "train.ipynb").write_text(nbformat.writes(nbformat.v4.new_notebook()))
    grid = grid_module.Grid(
        runs=[], output_dir=tmp_path / "executed", notebook=tmp_path / "book" / "train.ipynb", root=tmp_path
    )
    run = grid_module.Run("lora_r8_s0", {"method": "lora", "rank": 8, "run_id": "lora_r8_s0"})

    def papermill(command, **kwargs):  # what a successful papermill run leaves: the partial notebook and a record
        [partial] = [arg for arg in command if arg.endswith(".partial")]
        _executed_notebook(tmp_path / partial, "lora_r8_s0")
        save_record(_record("lora_r8_s0", rank=8), grid.output_dir)
        return subprocess.CompletedProcess(command, 0, "", "")

    grid.output_dir.mkdir()
    monkeypatch.setattr(runner.subprocess, "run", papermill)
    assert runner.execute(run, grid) == ("done", "")
    notebook = nbformat.read(grid.output_dir / "lora_r8_s0.ipynb", as_version=4)
    assert notebook.cells[0].source.startswith("# lora_r8_s0: LoRA r=8")
    assert not list(grid.output_dir.glob(".*.partial"))


def test_every_executed_notebook_of_the_study_is_titled_by_its_run():
    notebooks = sorted(EXECUTED.rglob("*.ipynb"))
    notebooks = [p for p in notebooks if "failed" not in p.relative_to(EXECUTED).parts]
    assert len(notebooks) >= 98
    for path in notebooks:
        record = load_record(path.with_suffix(".json"))
        notebook = json.loads(path.read_text())
        first = next(c for c in notebook["cells"] if c["cell_type"] == "markdown")
        assert "".join(first["source"]) == heading(record), path.name
        assert notebook["metadata"]["papermill"]["parameters"]["run_id"] == record.run_id
