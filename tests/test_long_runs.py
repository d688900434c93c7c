"""The third study's grid read for its questions: the selected checkpoints, equal compute, the
runs cut to a common length, the slowed runs, on made-up curves (1,000 sentences, every label 1,
so that a point's accuracy is the share of sentences it calls positive)."""

import numpy as np
import pandas as pd
import pytest
from test_curves import curve_record

from lora_lib.study import long_runs, render
from lora_lib.study.curves import CurveError, first_epochs, slowed
from lora_lib.study.stats import Interval

LABELS = np.ones(1000, dtype=int)


def run(run_id, clean, validation=None, seed=0, method="lora", **config):
    rank = None if method == "full" else 8
    return curve_record(
        run_id, clean, validation, seed=seed, method=method, rank=rank, lr_schedule="constant", **config
    )


def test_a_longer_constant_rate_run_is_cut_to_the_shorter_run_it_repeats():
    record = run("a", [80, 81, 82, 83, 84, 85, 86, 87])
    cut = first_epochs(record, 1)
    assert [p.epoch for p in cut.curve] == [0.25, 0.5, 0.75, 1.0] and cut.curve == record.curve[:4]
    assert len(record.curve) == 8  # the record itself is left whole
    with pytest.raises(CurveError, match="fewer than 3"):
        first_epochs(record, 3)
    decaying = curve_record("b", [80] * 8, lr_schedule="linear")
    with pytest.raises(CurveError, match="decays"):
        first_epochs(decaying, 1)


def test_a_run_well_below_its_configurations_median_speed_is_slowed():
    runs = [run(f"lora_s{s}", [80] * 4, seed=s, speed=speed) for s, speed in enumerate([100.0, 95.0, 85.0])]
    assert slowed(runs) == {"lora_s2"}  # 85 < 0.9 x 95
    assert slowed(runs[:2]) == set()  # two runs have no median to judge by


def test_the_selected_table_reports_each_configuration_over_the_epochs_all_its_seeds_trained():
    # the held-out sentences choose: full_s0's validation accuracy peaks (86) where its held-out
    # accuracy does not, and the table reports 83, the validation accuracy at the held-out peak
    full = [
        run("full_s0", [80, 84, 83, 82], [80, 83, 86, 83], method="full"),
        run("full_s1", [80, 82, 84, 83], [80, 83, 86, 85], seed=1, method="full"),
        run("full_s2", [80, 82, 84, 83], [80, 83, 87, 85], seed=2, method="full"),
    ]
    # seed 0 trained two epochs, seeds 1 and 2 one: all are read over the first epoch, so seed
    # 0's best held-out point at epoch 2 (90) is not its selected one
    lora = [
        run("lora_s0", [80, 81, 83, 82, 90, 90, 90, 90], [79, 80, 82, 81, 89, 89, 89, 89]),
        run("lora_s1", [81, 83, 82, 82], [80, 84, 81, 81], seed=1),
        run("lora_s2", [81, 83, 82, 82], [80, 83, 81, 81], seed=2),
    ]
    table = long_runs.selected_table(full + lora, labels=LABELS)
    assert list(table.index) == ["Full fine-tuning", "LoRA r=8"]
    lora_row, full_row = table.loc["LoRA r=8"], table.loc["Full fine-tuning"]
    assert lora_row["epochs"] == 1.0 and lora_row["selected epoch"] == pytest.approx((0.75 + 0.5 + 0.5) / 3)
    assert lora_row["accuracy"] == pytest.approx((82 + 84 + 83) / 3) and lora_row["at end"] == pytest.approx(81.0)
    assert full_row["accuracy"] == pytest.approx((83 + 86 + 87) / 3)
    assert lora_row["difference"] == pytest.approx(83.0 - 256 / 3)
    interval = lora_row["difference interval"]
    assert interval.low < interval.estimate < interval.high and interval.estimate == pytest.approx(83.0 - 256 / 3)
    assert np.isnan(full_row["difference"]) and np.isnan(full_row["p"])


def test_holm_adjusts_the_comparisons_that_have_an_interval_and_leaves_the_others_out():
    from lora_lib.study.stats import holm

    full = [run(f"full_s{s}", [80, 90, 90, 90], [80, 90, 89 + s, 90], method="full", seed=s) for s in range(3)]
    lora = [run(f"lora_s{s}", [80, 88, 88, 88], [80, 87 + s, 86, 85], seed=s) for s in range(3)]
    dora = [run(f"dora_s{s}", [80, 89, 89, 89], [80, 88, 88 - s, 88], seed=s, method="dora") for s in range(3)]
    lone = [run("pissa_s0", [80, 91, 91, 91], method="pissa")]
    table = long_runs.selected_table(full + lora + dora + lone, labels=LABELS)
    tested = table["p"].notna()
    assert sorted(table.index[tested]) == ["DoRA r=8", "LoRA r=8"]
    assert table.loc[tested, "Holm p"].tolist() == pytest.approx(list(holm(table.loc[tested, "p"].to_numpy())))
    assert np.isnan(table.loc["PiSSA r=8", "Holm p"])


def test_a_configuration_with_too_few_seeds_gets_its_value_and_no_interval():
    full = [run(f"full_s{s}", [80, 84, 83, 82], method="full", seed=s) for s in range(3)]
    table = long_runs.selected_table([*full, run("lora_s0", [80, 86, 85, 84])], labels=LABELS)
    row = table.loc["LoRA r=8"]
    assert row["interval"] is None and row["difference interval"] is None and np.isnan(row["p"])
    assert row["difference"] == pytest.approx(2.0)
    shown = render.selected_frame(table).loc["LoRA r=8"]
    assert shown["difference (points)"] == "+2.00 (1 seed)" and shown["Holm p"] == ""
    assert long_runs.gaps_said(table).loc["LoRA r=8", "side"] == "too few seeds"


def test_runs_of_one_configuration_at_different_rates_are_refused():
    with pytest.raises(CurveError, match="lora_s1"):
        long_runs.configurations([run("lora_s0", [80] * 4), run("lora_s1", [80] * 4, seed=1, lr=5e-4)])


def test_a_table_without_the_reference_is_refused():
    with pytest.raises(CurveError, match="Full fine-tuning"):
        long_runs.selected_table([run("lora_s0", [80] * 4)], labels=LABELS)


def test_a_budget_reports_the_checkpoint_selected_among_the_points_reached_by_then():
    record = run("a", [80, 88, 86, 90], [79, 87, 85, 89])  # a point a minute
    assert long_runs.within(record, 0.5) is None
    assert long_runs.within(record, 3).step == 20  # 88 beats the 86 of minute 3
    assert long_runs.within(record).step == 40


def test_equal_compute_counts_the_runs_that_had_the_machine_and_marks_those_that_had_ended():
    full = [run(f"full_s{s}", [80, 84, 85, 86], method="full", seed=s) for s in range(3)]
    lora = [run(f"lora_s{s}", [82, 85], seed=s) for s in range(3)]  # two minutes each
    busy = run("lora_s3", [99, 99], seed=3, loads=(2.0, 3.5))  # contended: left out
    table = long_runs.equal_compute([*full, *lora, busy], minutes=(0.5, 1, 3), labels=LABELS)
    assert sorted(table["minutes"].unique()) == [1, 3]  # no run had reached a point by 0.5 min
    at = table.set_index(["configuration", "minutes"])
    assert at.loc[("LoRA r=8", 1), "seeds"] == 3 and at.loc[("LoRA r=8", 1), "accuracy"] == pytest.approx(81.0)
    assert at.loc[("LoRA r=8", 3), "stopped"] and not at.loc[("Full fine-tuning", 3), "stopped"]
    assert at.loc[("LoRA r=8", 3), "difference"] == pytest.approx(84.0 - 84.0)
    assert at.loc[("LoRA r=8", 1), "difference"] == pytest.approx(81.0 - 79.0)
    assert at.loc[("LoRA r=8", 1), "difference interval"] is not None
    wide = render.budget_frame(table, "difference")
    assert list(wide.columns) == ["1 min", "3 min"] and list(wide.index) == ["LoRA r=8"]
    assert wide.loc["LoRA r=8", "3 min"].endswith(", ended")
    accuracy = render.budget_frame(table)
    assert list(accuracy.index) == ["Full fine-tuning", "LoRA r=8"]
    with pytest.raises(ValueError, match="'accuracy' or 'difference'"):
        render.budget_frame(table, "gap")


def test_equal_compute_leaves_out_slowed_runs_and_reads_runs_over_their_common_length():
    # lora_s2 trained at 80 of the others' 100 examples a second; full_s0 trained two epochs
    # where the others trained one: at 8 minutes it reports its first epoch, as the others do
    full = [run("full_s0", [80, 81, 82, 83, 90, 90, 90, 90], method="full")]
    full += [run(f"full_s{s}", [80, 81, 82, 83], method="full", seed=s) for s in (1, 2)]
    lora = [run(f"lora_s{s}", [80, 81, 82, 83], seed=s, speed=speed) for s, speed in enumerate([100.0, 100.0, 80.0])]
    table = long_runs.equal_compute(full + lora, minutes=(8,), labels=LABELS).set_index("configuration")
    assert table.loc["LoRA r=8", "seeds"] == 2
    assert table.loc["Full fine-tuning", "accuracy"] == pytest.approx(82.0) and table.loc["Full fine-tuning", "stopped"]
    assert {r.run_id for r in long_runs.counted_runs(full + lora)} == {r.run_id for r in full + lora[:2]}


def test_the_answer_for_the_landing_page_reads_the_selected_table_and_the_budgets():
    # LoRA: ahead after one minute (81 against 79), below at the selected checkpoints (83 against 85)
    full = [run(f"full_s{s}", [80, 84, 85, 86], method="full", seed=s) for s in range(3)]
    lora = [run(f"lora_s{s}", [82, 83, 84, 84], seed=s) for s in range(3)]
    tier = full + lora
    table = long_runs.answer(
        long_runs.selected_table(tier, labels=LABELS), long_runs.equal_compute(tier, minutes=(1, 4), labels=LABELS)
    )
    assert list(table.index) == ["given time", "after 1 minutes", "after 4 minutes"]
    assert table["side"].tolist() == ["below", "above", "below"]
    assert table.loc["given time", "high"] < 0 < table.loc["after 1 minutes", "low"]
    assert table.loc["given time", "epoch"] == pytest.approx(0.75)  # the earliest of the equal clean points
    assert table["seeds"].tolist() == [3, 3, 3] and table["reference seeds"].tolist() == [3, 3, 3]
    one_seed = full + lora[:1]
    thin = long_runs.answer(
        long_runs.selected_table(one_seed, labels=LABELS),
        long_runs.equal_compute(one_seed, minutes=(1,), labels=LABELS),
    )
    assert thin["side"].tolist() == ["too few seeds"] * 2 and thin["seeds"].tolist() == [1, 1]
    # the landing page says nothing of a comparison without its seeds, and the numbers of one with them
    assert long_runs.answer_said(thin) == ""
    said = long_runs.answer_said(table)
    given, early = table.loc["given time"], table.loc["after 1 minutes"]
    assert (
        f"{-given['high']:.1f} to {-given['low']:.1f}" in said and f"{early['low']:.1f} to {early['high']:.1f}" in said
    )
    no_lora = long_runs.equal_compute(full, minutes=(1,), labels=LABELS)
    assert long_runs.answer(long_runs.selected_table(full, labels=LABELS), no_lora).empty


def test_the_third_studys_targets_are_judged_from_their_intervals():
    full = [run(f"full_s{s}", [80, 84, 85, 86], [90, 93, 94, 95], method="full", seed=s) for s in range(3)]
    ahead = [run(f"lora_s{s}", [82, 85, 86, 86], [93, 96, 97, 97], seed=s, trainable_pct=0.3) for s in range(3)]
    # more accurate still, but one seed: it cannot be the best
    lone = [run("dora_s0", [90, 90, 90, 90], [99, 99, 99, 99], method="dora", trainable_pct=0.3)]
    tier = full + ahead + lone

    def judged(records):
        selected = long_runs.selected_table(records, labels=LABELS)
        return long_runs.judge_targets(selected, long_runs.equal_compute(records, minutes=(1, 4), labels=LABELS))

    table = judged(tier)
    assert table["configuration"].tolist() == ["Full fine-tuning", "LoRA r=8", "LoRA r=8"]
    assert table["verdict"].tolist() == ["met", "met", "met"]  # 95% >= 90%; +2 points; ahead at 1 minute
    assert table["by"].iloc[0] == pytest.approx(5.0) and table["by"].iloc[1] == pytest.approx(3.0)
    behind = [run(f"lora_s{s}", [82, 85, 86, 86], [85, 86, 87, 87], seed=s, trainable_pct=0.3) for s in range(3)]
    assert judged(full + behind)["verdict"].tolist() == ["met", "missed", "missed"]  # behind at every budget
    thin = judged(full[:2] + ahead)
    assert thin["verdict"].tolist() == ["not resolved"] * 3 and thin["seeds"].tolist() == [2, 2, 2]
    equal = long_runs.equal_compute(tier, minutes=(1, 4), labels=LABELS)
    lines = long_runs.budgets_said(equal)
    assert list(lines) == ["LoRA r=8"]  # DoRA's one seed has no interval to say
    for interval in equal.loc[equal["configuration"] == "LoRA r=8", "difference interval"]:
        assert f"{interval.low:.1f} to {interval.high:.1f}" in lines["LoRA r=8"]  # ahead at both budgets
    # "ahead at some budget" is the best of the budgets: it counts only where Holm's adjustment
    # over them keeps the p below 5%; intervals above zero with p 0.03 at both do not
    selected = long_runs.selected_table(tier, labels=LABELS)
    lora_rows = equal["configuration"] == "LoRA r=8"
    for p_values, expected in (([0.03, 0.03], "not resolved"), ([0.01, 0.5], "met")):
        adjusted = equal.copy()
        adjusted.loc[lora_rows, "p"] = p_values
        assert long_runs.judge_targets(selected, adjusted)["verdict"].iloc[2] == expected
    shown = render.targets_frame(table)
    assert shown["verdict"].tolist() == ["met"] * 3 and shown["by"].iloc[1] == "+3.00"
    assert table["difference"].tolist() == [False, True, True]
    gap = table["interval"].iloc[1]
    assert shown.iloc[1, 1] == render.estimate_text(gap.estimate, gap, 3, sign=True)


def test_a_budget_by_which_both_sides_had_ended_is_not_said_as_equal_compute():
    # a point a minute: full fine-tuning ends at 4 minutes, LoRA at 8; at 10 both report whole runs
    full = [run(f"full_s{s}", [80, 84, 85, 86], method="full", seed=s) for s in range(3)]
    lora = [run(f"lora_s{s}", [80, 81, 82, 83, 84, 85, 86, 87], seed=s) for s in range(3)]
    equal = long_runs.equal_compute(full + lora, minutes=(2, 6, 10), labels=LABELS)
    budgets = long_runs.compared_budgets(equal, "LoRA r=8")
    assert budgets["minutes"].tolist() == [2, 6] and budgets["reference ended"].tolist() == [False, True]
    table = long_runs.answer(long_runs.selected_table(full + lora, labels=LABELS), equal)
    assert list(table.index) == ["given time", "after 2 minutes", "after 6 minutes"]
    assert table["reference ended"].tolist() == [False, False, True]
    line = long_runs.budgets_said(equal)["LoRA r=8"]
    at = equal.set_index(["configuration", "minutes"])["difference interval"]
    said_ends = [(-at[("LoRA r=8", m)].high, -at[("LoRA r=8", m)].low) for m in (2, 6)]
    assert all(f"{high:.1f} to {low:.1f}" in line for high, low in said_ends)  # behind at 2 and 6
    assert line.count(" to ") == 2  # two intervals: 10 minutes, whole runs on both sides, is not one of them
    assert long_runs.compared_budgets(equal.iloc[:0], "LoRA r=8").empty


def test_each_configurations_speed_is_given_per_machine():
    runs = [
        run(f"full_s{s}", [80] * 4, method="full", seed=s, speed=speed) for s, speed in enumerate([210.0, 220.0, 230.0])
    ]
    runs[0].environment["cpu"] = "Another CPU"
    table = long_runs.speeds_by_machine(runs)
    assert (
        table.loc[("Full fine-tuning", "test"), "runs"] == 2
        and table.loc[("Full fine-tuning", "test"), "speed"] == 225.0
    )
    assert table.loc[("Full fine-tuning", "Another CPU"), "speed"] == 210.0


def test_an_estimate_and_its_interval_with_a_trailing_word_are_kept_on_one_line():
    frame = render.unbreakable_intervals(render.pd.DataFrame({"a": ["+1.20 (-0.50 to +2.90), ended"]}))
    assert frame.loc[0, "a"] == "+1.20 " + "(-0.50 to +2.90), ended".replace(" ", render.NBSP)


def test_no_curve_runs_are_refused_with_the_command_that_makes_them():
    with pytest.raises(CurveError, match="lora-sweep studies/v3/experiments.yml"):
        long_runs.selected_table([], labels=LABELS)


def test_seed_zeros_fourth_epoch_decides_how_long_the_other_seeds_train():
    flat = [80] * 12 + [85, 85, 85, 85] + [85] * 16  # the 4th epoch rose 5 points over the 3rd
    level = [80] * 32
    runs = [
        run("lora_s0", flat),
        run("lora_s1", [80] * 32, seed=1),
        run("full_s0", level, method="full"),
        run("dora_s0", [80] * 16, method="dora"),  # 4 epochs only: nothing to decide
    ]
    table = long_runs.schedule_table(runs)
    assert list(table.index) == ["Full fine-tuning", "LoRA r=8"]
    assert table.loc["LoRA r=8", "rise over epoch 4"] == pytest.approx(5.0)
    assert table.loc["LoRA r=8", "other seeds train"] == 8 and table.loc["LoRA r=8", "other seeds trained"] == "8"
    assert table.loc["Full fine-tuning", "other seeds train"] == 4
    assert table.loc["Full fine-tuning", "other seeds trained"] == "" and table["flat by its end"].all()
    assert long_runs.schedule_table([run("dora_s0", [80] * 16, method="dora")]).empty


def test_each_gap_is_said_as_its_interval_allows():
    full = [run(f"full_s{s}", [80, 90, 90, 90], [80, 90, 90, 90], method="full", seed=s) for s in range(3)]
    below = [run(f"lora_s{s}", [80, 86, 86, 86], [80, 85, 85, 85], seed=s) for s in range(3)]
    level = [run(f"dora_s{s}", [80, 90, 90, 90], [80, 90, 90, 90], seed=s, method="dora") for s in range(3)]
    lone = [run("pissa_s0", [80, 91, 91, 91], [80, 91, 91, 91], method="pissa")]
    said = long_runs.gaps_said(long_runs.selected_table(full + below + level + lone, labels=LABELS))
    assert said["side"].to_dict() == {
        "LoRA r=8": "below",
        "DoRA r=8": "not distinguishable",
        "PiSSA r=8": "too few seeds",
    }


def test_each_grid_run_answers_one_question_and_progress_counts_the_finished_ones():
    from pathlib import Path

    from conftest import make_record

    from lora_lib.study.config import RunConfig

    assert long_runs.question_of(RunConfig(method="lora", hparams={"rank": 64}, lr=1e-3)) == "rank"
    assert long_runs.question_of(RunConfig(method="dora", hparams={"rank": 8}, lr=1e-3)) == "successors"
    assert long_runs.question_of(RunConfig(method="lora", hparams={"rank": 8}, lr=1e-3, loraplus_ratio=16)) == (
        "successors"
    )
    every_linear = {"rank": 2, "targets": "query,key,value,output.dense,intermediate.dense"}
    assert long_runs.question_of(RunConfig(method="lora", hparams=every_linear, lr=1e-3)) == "time"
    assert long_runs.question_of(RunConfig(method="houlsby", lr=1e-3)) == "time"

    grid = Path(__file__).resolve().parent.parent / "studies/v3/experiments.yml"
    finished = [make_record("full_s0", method="full", rank=None), make_record("dora_r8_s1", method="dora")]
    table = long_runs.progress(grid, finished)
    assert table["runs"].tolist() == [24, 12, 12] and table["finished"].tolist() == [1, 1, 0]
    assert table["configurations"].iloc[1] == "rsLoRA r=8, LoRA+ r=8, DoRA r=8, PiSSA r=8"
    assert long_runs.planned(grid)["successors"] == table["configurations"].iloc[1].split(", ")
    assert long_runs.rank_plan(grid) == (["LoRA", "rsLoRA"], [2, 8, 64])
    full = [make_record(f"full_s{s}", method="full", rank=None) for s in range(5)]
    dora = [make_record(f"dora_r8_s{s}", method="dora") for s in range(3)]
    assert long_runs.finished_configurations(grid, full + dora) == ["Full fine-tuning", "DoRA r=8"]
    assert long_runs.finished_configurations(grid, full[:4] + dora) == ["DoRA r=8"]


def test_a_curves_swing_is_the_change_from_one_point_to_the_next():
    runs = [run("a", [80] * 4, [80, 82, 81, 81]), run("b", [80] * 3, [85, 85, 88], seed=1)]
    assert long_runs.swings(runs) == (pytest.approx(1.0), pytest.approx(3.0))  # changes 2, 1, 0, 0, 3
    with pytest.raises(CurveError, match="two points"):
        long_runs.swings([run("c", [80])])


def test_the_successors_are_set_beside_lora_r8_at_each_budget_of_epochs():
    # two epochs of four points; rsLoRA peaks on the held-out sentences at half an epoch, where
    # its validation accuracy is 87, and stays below LoRA's later peak on the held-out sentences
    lora = [run(f"lora_s{s}", [80, 82, 84, 86, 87, 88, 88, 88], seed=s) for s in range(3)]
    rslora = [
        run(
            f"rslora_s{s}",
            [84, 86, 85, 85, 85, 85, 85, 85],
            [83, 87, 84, 84, 84, 84, 84, 84],
            seed=s,
            hparams={"rank": 8, "use_rslora": True},
        )
        for s in range(3)
    ]
    dora = [run("dora_s0", [80, 81, 82, 83], method="dora")]  # one epoch, one seed
    full = [run(f"full_s{s}", [90] * 8, method="full", seed=s) for s in range(3)]  # not question 3's
    table = long_runs.successors_table(lora + rslora + dora + full, epochs=(1, 2), labels=LABELS)
    at = table.set_index(["configuration", "epochs"])
    assert sorted(table["configuration"].unique()) == ["DoRA r=8", "LoRA r=8", "rsLoRA r=8"]
    assert at.loc[("LoRA r=8", 1), "accuracy"] == pytest.approx(85.0) and at.loc[("LoRA r=8", 2), "accuracy"] == 87.0
    assert at.loc[("rsLoRA r=8", 1), "difference"] == pytest.approx(2.0)  # sooner: 87 against 85 after an epoch
    assert at.loc[("rsLoRA r=8", 2), "difference"] == pytest.approx(0.0)  # not higher after two
    assert at.loc[("rsLoRA r=8", 1), "difference interval"].low > 0
    assert at.loc[("rsLoRA r=8", 1), "Holm p"] == at.loc[("rsLoRA r=8", 1), "p"]  # the one tested comparison
    assert at.loc[("DoRA r=8", 2), "stopped"] and np.isnan(at.loc[("DoRA r=8", 2), "p"])
    assert at.loc[("DoRA r=8", 1), "difference interval"] is None  # one seed: no interval
    wide = render.budget_frame(table, "difference", planned=["rsLoRA r=8", "PiSSA r=8"])
    assert list(wide.columns) == ["1 epoch", "2 epochs"] and list(wide.index) == ["rsLoRA r=8", "DoRA r=8", "PiSSA r=8"]
    assert wide.loc["PiSSA r=8"].tolist() == ["not run yet", ""] and wide.loc["DoRA r=8", "2 epochs"].endswith(
        ", ended"
    )
    before = render.budget_frame(table.iloc[:0], planned=["PiSSA r=8"])
    assert before.loc["PiSSA r=8"].tolist() == ["not run yet"]
    # said against LoRA r=8, by epochs: rsLoRA ahead after one, level after two; DoRA's one seed says nothing
    lines = long_runs.budgets_said(table, "epochs", long_runs.SUCCESSOR_REFERENCE)
    assert list(lines) == ["rsLoRA r=8"]
    sooner, level = at.loc[("rsLoRA r=8", 1), "difference interval"], at.loc[("rsLoRA r=8", 2), "difference interval"]
    assert f"{sooner.low:.1f} to {sooner.high:.1f}" in lines["rsLoRA r=8"] and "LoRA r=8" in lines["rsLoRA r=8"]
    assert f"{level.low:+.1f} to {level.high:+.1f}" in lines["rsLoRA r=8"]


def test_the_rank_series_gives_each_rank_at_one_rate_and_the_change_per_doubling():
    def series(name, rank, accuracy, lr, seeds=3, **hparams):
        return [
            run(
                f"{name}_r{rank}_s{s}",
                [accuracy + 1] * 4,
                [accuracy] * 4,
                seed=s,
                lr=lr,
                hparams={"rank": rank, **hparams},
            )
            for s in range(seeds)
        ]

    lora = series("lora", 2, 84, 5e-4) + series("lora", 8, 86, 5e-4) + series("lora", 64, 88, 5e-4)
    rslora = series("rslora", 2, 85, 2.5e-4, seeds=1, use_rslora=True) + series(
        "rslora", 8, 86, 2.5e-4, use_rslora=True
    )
    others = [
        run("loraplus_s0", [90] * 4, hparams={"rank": 8}, loraplus_ratio=16, lr=5e-4),  # a successor, not a series
        run("lora_all_s0", [90] * 4, hparams={"rank": 2, "targets": "query,key,value"}, lr=5e-4),  # every layer
    ]
    table = long_runs.rank_table(lora + rslora + others, labels=LABELS)
    assert list(table.index) == ["LoRA", "rsLoRA"]
    assert table.loc["LoRA", "rate"] == 5e-4 and table.loc["rsLoRA", "rate"] == 2.5e-4
    assert table.loc["LoRA", "r=8"].estimate == pytest.approx(86.0) and table.loc["rsLoRA", "r=2"] == pytest.approx(
        85.0
    )
    slope = table.loc["LoRA", "per doubling"]
    assert slope.estimate == pytest.approx(np.polyfit(np.log2([2, 8, 64]), [84, 86, 88], 1)[0])
    assert table.loc["rsLoRA", "per doubling"] is None  # r=2 has one seed
    shown = render.rank_frame(table.drop(index="rsLoRA"), series=["LoRA", "rsLoRA"], ranks=[2, 8, 64, 128])
    assert list(shown.columns) == [
        "rate",
        "r = 2 (%)",
        "r = 8 (%)",
        "r = 64 (%)",
        "r = 128 (%)",
        "per doubling of r (points)",
    ]
    assert shown.loc["LoRA", "r = 128 (%)"] == "not run yet" and shown.loc["rsLoRA", "r = 8 (%)"] == "not run yet"
    assert shown.loc["LoRA", "per doubling of r (points)"] == render.estimate_text(slope.estimate, slope, 3, sign=True)
    assert list(long_runs.ranks_said(table, [2, 8, 64])) == ["LoRA"]  # rsLoRA's r=2 has one seed: no slope to say
    assert f"{slope.low:.1f} to {slope.high:.1f}" in long_runs.ranks_said(table, [2, 8, 64])["LoRA"]
    assert long_runs.ranks_said(table, [2, 8, 64, 128]) == {}  # r=128 planned, not run: the series is not done
    made_up = pd.DataFrame(
        {
            "per doubling": [Interval(-1.0, -1.5, -0.5), Interval(0.1, -0.2, 0.4)],
            "r=2 seeds": [3, 3],
            "r=8 seeds": [3, 3],
        },
        index=["falls", "flat"],
    )
    said = long_runs.ranks_said(made_up, [2, 8])
    assert "0.5 to 1.5" in said["falls"] and "-0.2 to +0.4" in said["flat"]
    assert long_runs.ranks_said(made_up.iloc[:0], [2, 8]) == {}
    # the scale's effect on rank's: rsLoRA's slope minus LoRA's, once both have every rank's seeds
    assert long_runs.scaling_effect(lora + rslora, [2, 8, 64], labels=LABELS) is None  # rsLoRA: r=2 alone, no r=64
    rs_full = [series("rslora", rank, acc, 2.5e-4, use_rslora=True) for rank, acc in ((2, 85), (8, 86), (64, 87))]
    effect = long_runs.scaling_effect(lora + sum(rs_full, []), [2, 8, 64], labels=LABELS)
    x = np.log2([2, 8, 64])
    assert effect.estimate == pytest.approx(np.polyfit(x, [85, 86, 87], 1)[0] - np.polyfit(x, [84, 86, 88], 1)[0])
    assert effect.low < effect.estimate < effect.high
    moved = series("lora", 2, 84, 1e-3) + series("lora", 8, 86, 5e-4)
    with pytest.raises(CurveError, match="LoRA's ranks ran at"):
        long_runs.rank_table(moved, labels=LABELS)


def test_the_command_refuses_a_folder_without_curve_runs(tmp_path):
    with pytest.raises(SystemExit, match=str(tmp_path)):
        long_runs.main([str(tmp_path)])
