"""The third grid's rates follow from the records that chose them: the rate check's two
configurations, every other one moving as LoRA r=8 moved, the successors from their stage 1."""

from pathlib import Path

import pytest
from test_curves import curve_record

from lora_lib.study import long_schedule
from lora_lib.study.config import RunConfig
from lora_lib.study.grid import expand
from lora_lib.study.record import load_records
from lora_lib.study.successors import best_rates

ROOT = Path(__file__).resolve().parent.parent


def test_every_run_of_the_third_grid_takes_the_rate_its_records_give():
    checked = long_schedule.checked_rates(load_records(ROOT / "executed/v3/rates"))
    successors = best_rates(load_records(ROOT / "executed/v3/tuning"), load_records(ROOT / "executed/tuning"))
    runs = expand(ROOT / "studies/v3/experiments.yml").runs
    assert len(runs) == 48
    for run in runs:
        config = RunConfig.from_parameters(**run.parameters)
        rate = long_schedule.grid_rate(config.method, config.hparams, checked, successors, config.loraplus_ratio)
        assert config.lr == pytest.approx(rate, rel=1e-9), run.run_id


def check(full_scores, lora_scores):
    """A made-up rate check: held-out accuracies at the selected points of full fine-tuning at
    (3e-5, 6e-5) and LoRA r=8 at (5e-4, 1e-3)."""
    runs = [
        curve_record(f"full_{lr}", [80, score], lr=lr, method="full", rank=None)
        for lr, score in zip((3e-5, 6e-5), full_scores)
    ]
    runs += [curve_record(f"lora_{lr}", [80, score], lr=lr) for lr, score in zip((5e-4, 1e-3), lora_scores)]
    return long_schedule.checked_rates(runs)


def test_a_tie_keeps_the_second_studys_rate_and_the_others_move_as_lora_moved():
    kept = check((88, 88), (87, 87))
    assert kept == {"full": (6e-5, 6e-5), "lora": (1e-3, 1e-3)}
    assert long_schedule.grid_rate("houlsby", {}, kept, {}) == pytest.approx(2e-3)  # unmoved
    lowered = check((89, 88), (88, 87))
    assert long_schedule.grid_rate("full", {}, lowered, {}) == 3e-5
    assert long_schedule.grid_rate("houlsby", {}, lowered, {}) == pytest.approx(1e-3)
    every_linear = {"rank": 4, "targets": "query,key,value,output.dense,intermediate.dense"}
    assert long_schedule.grid_rate("lora", every_linear, lowered, {}) == pytest.approx(5e-4)  # r=2's, halved


def test_the_successors_scale_their_stage_one_best_and_the_rank_series_keeps_one_rate_per_method():
    lowered = check((89, 88), (88, 87))  # LoRA r=8: 1e-3 -> 5e-4
    successors = {"rsLoRA r=8": (1e-3, 2e-3), "DoRA r=8": (2e-3, 2e-3)}
    assert long_schedule.grid_rate("lora", {"rank": 8, "use_rslora": True}, lowered, successors) == 2.5e-4
    assert long_schedule.grid_rate("lora", {"rank": 64, "use_rslora": True}, lowered, successors) == 2.5e-4
    assert long_schedule.grid_rate("dora", {"rank": 8}, lowered, successors) == 5e-4
    assert long_schedule.grid_rate("lora", {"rank": 64}, lowered, successors) == 5e-4  # LoRA r=8's
    with pytest.raises(ValueError, match="PiSSA r=8"):
        long_schedule.grid_rate("pissa", {"rank": 8}, lowered, successors)


def test_a_rate_check_without_lora_is_refused_with_the_command_that_runs_it():
    full = [curve_record("full", [80, 88], lr=6e-5, method="full", rank=None)]
    with pytest.raises(ValueError, match="studies/v3/search.yml"):
        long_schedule.checked_rates(full)


def test_the_grid_table_has_a_row_per_configuration_with_its_seeds_and_lengths():
    checked = long_schedule.checked_rates(load_records(ROOT / "executed/v3/rates"))
    successors = best_rates(load_records(ROOT / "executed/v3/tuning"), load_records(ROOT / "executed/tuning"))
    table = long_schedule.grid_table(ROOT / "studies/v3/experiments.yml", checked, successors)
    runs = expand(ROOT / "studies/v3/experiments.yml").runs
    assert table["seeds"].sum() == len(runs) and len(table) == 14
    assert (table["rate in the file"] == table["rate by the rule"]).all()
    assert table.loc["Full fine-tuning", "epochs"] == "8, 4" and table.loc["DoRA r=8", "epochs"] == "4"


def test_the_grid_file_trains_each_configurations_other_seeds_as_long_as_its_seed_0_decided():
    """Seed 0's fourth epoch decides how long the other seeds train; the grid file must say so
    before they run (a record of seed 0 that changes the decision makes this fail until it does)."""
    from lora_lib.study import long_runs
    from lora_lib.study.curves import configuration_label

    decided = long_runs.schedule_table(load_records(ROOT / "executed/v3"))["other seeds train"]
    planned: dict[str, set] = {}
    for run in expand(ROOT / "studies/v3/experiments.yml").runs:
        config = RunConfig.from_parameters(**run.parameters)
        if config.seed != 0:
            planned.setdefault(configuration_label(config), set()).add(config.epochs)
    assert len(decided) >= 1
    for label, epochs in decided.items():
        assert planned[label] == {epochs}, label
