"""Learning curves (the third study): evaluations during training, on the clean tuning slice and
the validation split, each sentence's prediction kept, a constant rate after the warm-up."""

import pytest
from test_train import tiny_config

from lora_lib.study.config import RunConfig
from lora_lib.study.data import hold_out_sentences, load_sst2
from lora_lib.study.record import load_record
from lora_lib.study.train import curve_steps, run


@pytest.mark.parametrize(
    ("train_size", "batch_size", "epochs", "every", "steps"),
    [
        (64_000, 32, 5, 0.25, list(range(500, 10_001, 500))),  # 2,000 steps an epoch, 20 points
        (100, 32, 1.5, 0.5, [2, 4, 6]),  # 4 steps an epoch (the last batch short)
        (100, 32, 1.2, 0.5, [2, 4, 5]),  # the run's last step is always a point
    ],
)
def test_a_curve_is_evaluated_every_share_of_an_epoch_and_at_the_end(train_size, batch_size, epochs, every, steps):
    assert curve_steps(train_size, batch_size, epochs, every) == steps


@pytest.mark.slow
def test_a_curve_run_scores_both_splits_at_each_point_and_ends_on_the_validation_split(sst2_dir, tmp_path):
    config = tiny_config(
        tmp_path,
        max_steps=None,
        epochs=1,
        max_train_samples=96,
        curve_every=0.5,
        holdout_size=100,
        lr_schedule="constant",
        warmup_steps=2,
    )
    record = run(config)
    assert load_record(tmp_path / f"{config.run_id}.json") == record and record.schema_version == 4
    assert [point.step for point in record.curve] == [3, 6] and [point.epoch for point in record.curve] == [0.5, 1.0]

    splits = load_sst2(sst2_dir)
    _, held_out = hold_out_sentences(splits["train"], 100)
    truth = {"sentences": held_out["label"], "validation": splits["validation"]["label"]}
    for point in record.curve:
        assert set(point.splits) == {"sentences", "validation"}
        for name, score in point.splits.items():
            labels = score.labels()
            assert len(labels) == len(truth[name])
            assert sum(p == y for p, y in zip(labels, truth[name])) / len(labels) == pytest.approx(score.accuracy)
    # the last point is the run's final evaluation, on the validation split
    last = record.curve[-1].splits["validation"]
    assert last.labels() == record.predictions.label and last.accuracy == pytest.approx(record.metrics.dev_accuracy)
    seconds = [point.train_seconds for point in record.curve]
    assert 0 < seconds[0] < seconds[1] <= record.cost.train_seconds + 1e-6
    assert record.cost.load_average_start >= 0 and record.cost.load_average_end >= 0
    # every second step's training loss is logged, curve points or not; the rate after the two
    # warm-up steps stays where it was set
    assert [entry["step"] for entry in record.history.train] == [2, 4, 6]
    assert [entry["learning_rate"] for entry in record.history.train[1:]] == [pytest.approx(config.lr)] * 2


def test_the_held_out_sentences_leave_a_curve_runs_training_set(sst2_dir):
    from lora_lib import load_model
    from lora_lib.study.train import prepare_splits

    _, tokenizer = load_model("tiny-random")
    config = RunConfig(model_name="tiny-random", lr=1e-3, curve_every=0.25, holdout_size=100)
    train, evaluation, curve = prepare_splits(config, tokenizer)
    plain, _, none = prepare_splits(config.model_copy(update={"curve_every": None}), tokenizer)
    assert none == {} and len(evaluation) == len(curve["validation"]) == 872 and len(curve["sentences"]) == 100
    # every held-out sentence and each training phrase inside one leave training
    assert len(plain) == 67_349 and 100 < len(plain) - len(train)


@pytest.mark.parametrize(
    ("overrides", "named"),
    [({"eval_split": "sentences"}, "eval_split"), ({"max_steps": 10}, "max_steps")],
)
def test_a_curve_needs_the_validation_split_and_a_length_in_epochs(overrides, named):
    with pytest.raises(ValueError) as err:
        RunConfig(lr=1e-3, curve_every=0.25, **overrides)
    assert named in str(err.value)


# --- the rules, on made-up curves ----------------------------------------------------------


def curve_record(run_id, clean, validation=None, seed=0, lr=1e-3, loads=(2.0, 2.1), per_epoch=4, **config):
    """A record whose curve has these clean-slice accuracies (%) at every 1/per_epoch epoch, one
    minute of training apart; validation at 1 point less unless given."""
    from conftest import make_record

    from lora_lib.study.record import CurvePoint, SplitScore

    validation = validation or [c - 1 for c in clean]

    def score(accuracy, n):
        right = round(accuracy / 100 * n)
        return SplitScore(accuracy=right / n, loss=0.3, predicted="1" * right + "0" * (n - right))

    points = [
        CurvePoint(
            step=10 * (i + 1),
            epoch=(i + 1) / per_epoch,
            train_seconds=60.0 * (i + 1),
            load_average=loads[-1],
            splits={"sentences": score(c, 1000), "validation": score(v, 1000)},
        )
        for i, (c, v) in enumerate(zip(clean, validation))
    ]
    record = make_record(run_id, seed=seed, lr=lr, curve_every=1 / per_epoch, **config)
    cost = record.cost.model_copy(update={"load_average_start": loads[0], "load_average_end": loads[-1]})
    return record.model_copy(update={"curve": points, "cost": cost, "environment": {"cpu": "test", "cpu_count": 2}})


def test_a_run_reports_the_point_its_clean_slice_picks_the_earliest_of_equals():
    from lora_lib.study.curves import selected_point

    record = curve_record("a", clean=[80, 85, 87, 87, 86], validation=[80, 81, 82, 90, 91])
    point = selected_point(record)
    assert point.step == 30 and point.splits["validation"].accuracy == pytest.approx(0.82)


def test_a_curve_is_flat_when_its_last_epoch_rose_at_most_three_tenths_of_a_point():
    from lora_lib.study.curves import is_flat, last_epoch_rise

    # two epochs of four points: over the second, the seeds' mean rises 0.25 points, then 0.5
    flat = [
        curve_record("a", [87] * 4 + [87, 87, 87.5, 87.5]),
        curve_record("b", [87] * 4 + [87.5, 87, 87, 87.5], seed=1),
    ]
    rising = [curve_record("c", [87] * 4 + [87.5] * 4), curve_record("d", [86] * 4 + [86.5] * 4, seed=1)]
    assert last_epoch_rise(flat) == pytest.approx(0.25) and is_flat(flat)
    assert last_epoch_rise(rising) == pytest.approx(0.5) and not is_flat(rising)


def test_curves_of_other_points_or_without_a_second_epoch_are_refused():
    from lora_lib.study.curves import CurveError, last_epoch_rise

    with pytest.raises(CurveError, match="different points"):
        last_epoch_rise([curve_record("a", [80] * 8), curve_record("b", [80] * 12, seed=1)])
    with pytest.raises(CurveError, match="no epoch before"):
        last_epoch_rise([curve_record("a", [80] * 4)])
    with pytest.raises(CurveError, match="no learning curve"):
        last_epoch_rise([curve_record("a", [80] * 8).model_copy(update={"curve": None})])


@pytest.mark.parametrize(("loads", "contended"), [((2.0, 2.2), False), ((2.0, 3.1), True), ((3.5, 2.0), True)])
def test_a_run_is_contended_when_a_load_average_passes_one_and_a_half_times_the_cores(loads, contended):
    from lora_lib.study.curves import contended as is_contended

    assert is_contended(curve_record("a", [80] * 4, loads=loads)) is contended


def test_the_accuracy_within_a_budget_is_the_last_point_reached_by_then():
    from lora_lib.study.curves import accuracy_within

    record = curve_record("a", clean=[80, 85, 87], validation=[79, 84, 86])
    assert accuracy_within(record, 2.5) == pytest.approx(84.0) and accuracy_within(record, 0.5) is None
    assert accuracy_within(record, 10, split="sentences") == pytest.approx(87.0)


def test_the_long_search_keeps_the_current_rate_unless_another_scores_higher():
    from lora_lib.study.curves import CurveError, chosen_rate

    lower, current = curve_record("a", [80, 88, 86], lr=5e-4), curve_record("b", [80, 87, 88], lr=1e-3)
    assert chosen_rate([lower, current], current=1e-3) == 1e-3  # a tie: the current rate
    better = curve_record("c", [80, 89, 86], lr=5e-4)
    assert chosen_rate([better, current], current=1e-3) == 5e-4
    with pytest.raises(CurveError, match="current rate"):
        chosen_rate([better], current=1e-3)


def test_the_curve_frame_has_a_row_per_point_and_split_and_marks_the_selected_point():
    from lora_lib.study.curves import curve_frame

    frame = curve_frame([curve_record("a", [80, 88, 86]), curve_record("b", [80, 82, 84], seed=1)])
    assert len(frame) == 2 * 3 * 2
    selected = frame[frame["selected"] & (frame["split"] == "validation")]
    assert selected.set_index("run_id")["step"].to_dict() == {"a": 20, "b": 30}
    assert frame["minutes"].max() == pytest.approx(3.0)


def test_the_summary_of_curve_runs_reads_each_runs_selected_point_and_cost(tmp_path, capsys):
    from lora_lib.study.curves import main, run_summary
    from lora_lib.study.record import save_record

    record = curve_record("a", clean=[85, 87, 88, 87] * 2, validation=[84, 86, 89, 85] * 2, loads=(2.0, 3.5))
    cost = record.cost.model_copy(update={"eval_seconds": 120.0})
    row = run_summary([record.model_copy(update={"cost": cost})]).loc["a"]
    assert row["selected epoch"] == 0.75 and row["validation at selected (%)"] == pytest.approx(89.0)
    assert row["validation at end (%)"] == pytest.approx(85.0) and row["last epoch's rise (points)"] == pytest.approx(
        0.0
    )
    assert row["points (min)"] == pytest.approx(2.0) and bool(row["contended"])
    save_record(record, tmp_path)
    main([str(tmp_path)])
    assert "a" in capsys.readouterr().out.splitlines()[-1]


def test_mean_curves_average_each_configurations_seeds_point_by_point_and_name_the_successors():
    from lora_lib.study.curves import curve_label, mean_curves

    runs = [
        curve_record("lora_s0", [80, 86, 88], validation=[80, 85, 87], seed=0),
        curve_record("lora_s1", [80, 86, 88], validation=[82, 87, 89], seed=1),
        curve_record("rslora_s0", [80, 86, 88], hparams={"rank": 8, "use_rslora": True}),
    ]
    assert [curve_label(r) for r in runs] == ["LoRA r=8", "LoRA r=8", "rsLoRA r=8"]
    curves = mean_curves(runs).set_index(["configuration", "step"])
    assert curves.loc[("LoRA r=8", 20), "accuracy"] == pytest.approx(86.0)
    assert curves.loc[("LoRA r=8", 20), "sd"] == pytest.approx(2**0.5) and curves.loc[("LoRA r=8", 20), "seeds"] == 2
    assert (
        curves.loc[("rsLoRA r=8", 30), "accuracy"] == pytest.approx(87.0) and curves.loc[("rsLoRA r=8", 30), "sd"] == 0
    )


def test_learning_curves_draw_a_panel_per_configuration_with_full_fine_tuning_behind_each():
    import matplotlib.pyplot as plt

    from lora_lib.study.curves import mean_curves
    from lora_lib.study.render import learning_curves

    runs = [
        curve_record("lora_s0", [80, 86, 88, 89], validation=[79, 84, 87, 88]),  # trains on after seed 1 stops
        curve_record("lora_s1", [80, 86], validation=[81, 86], seed=1),
        curve_record("houlsby_s0", [81, 85, 87], method="houlsby", rank=None, hparams={}),
        curve_record("full_s0", [82, 88, 89], method="full", rank=None),
    ]
    for x, label in (("epoch", "epoch"), ("minutes", "minutes of training on this machine")):
        figure = learning_curves(mean_curves(runs), x=x)
        panels = [ax for ax in figure.axes if ax.get_title()]
        assert [ax.get_title() for ax in panels] == ["LoRA r=8", "Houlsby"]
        lora, houlsby = panels
        assert [line.get_label() for line in houlsby.get_lines()] == ["Full fine-tuning", "Houlsby"]
        dashed = [line for line in lora.get_lines() if line.get_linestyle() == "--"]
        assert len(dashed) == 1 and list(dashed[0].get_ydata()) == [85.0, 87.0, 88.0]  # from the last shared point
        assert figure._supxlabel.get_text() == label
        assert len(figure.axes) == 3  # two panels and the key
        plt.close(figure)
    with pytest.raises(ValueError, match="'epoch' or 'minutes'"):
        learning_curves(mean_curves(runs), x="steps")
