"""Paired comparisons from the predictions that records keep."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from conftest import make_record
from matplotlib.container import ErrorbarContainer

from lora_lib.study import paired, render
from lora_lib.study.config import RunConfig
from lora_lib.study.record import Predictions

LABELS = [1, 0, 1, 1, 0, 0, 1, 0]


def run(run_id, seed, predicted, **config):
    return make_record(
        run_id,
        seed=seed,
        predictions=Predictions(label=predicted, prob_positive=[0.5] * len(predicted)),
        **config,
    )


def test_correct_is_seeds_by_sentences_in_seed_order():
    runs = [run("b", 1, [0] * 8), run("a", 0, LABELS)]
    assert paired.correct(runs, LABELS).tolist() == [[1] * 8, [0, 1, 0, 0, 1, 1, 0, 1]]


def test_predictions_of_another_split_are_refused_naming_the_run():
    with pytest.raises(ValueError, match="run short"):
        paired.correct([run("short", 0, LABELS[:5])], LABELS)


def test_compare_by_hand():
    a = [run("a0", 0, LABELS), run("a1", 1, LABELS)]  # every sentence right
    b = [run("b0", 0, [1] * 8), run("b1", 1, [0] * 8)]  # 4 of 8 right each, 8 wrong in all
    comparison = paired.compare(a, b, labels=LABELS)
    assert comparison.difference.estimate == pytest.approx(50.0)
    assert comparison.difference.low <= 50.0 <= comparison.difference.high
    assert comparison.seeds_only.estimate == pytest.approx(50.0) and comparison.seeds == (2, 2)
    # B gets each sentence right for one seed of two: all 8 per-sentence differences are +0.5,
    # so the sign-flip test sees 8 signs alike (pooled McNemar would see 8 discordant pairs too)
    assert comparison.p_value == pytest.approx(2 * 0.5**8, abs=3e-3)
    # the crossed interval is narrower than the pigeonhole bootstrap's, which counts the interaction thrice
    assert comparison.difference.high - comparison.difference.low < comparison.bootstrap.high - comparison.bootstrap.low


def test_compare_refuses_what_cannot_be_paired():
    with pytest.raises(ValueError, match="v1_s0"):
        paired.compare([make_record("v1_s0")], [run("b", 0, LABELS)], labels=LABELS)
    with pytest.raises(ValueError, match="different splits"):
        paired.compare([run("a", 0, LABELS)], [run("b", 0, LABELS, eval_split="sentences")], labels=LABELS)
    with pytest.raises(ValueError, match="short"):
        paired.compare([run("short", 0, LABELS[:4])], [run("b", 0, LABELS)], labels=LABELS)


@pytest.mark.slow
def test_evaluation_labels_are_the_split_a_run_was_scored_on(sst2_dir):
    validation = paired.evaluation_labels(RunConfig(data_dir=sst2_dir))
    assert len(validation) == 872 and set(np.unique(validation)) == {0, 1}
    held_out = paired.evaluation_labels(RunConfig(eval_split="sentences", holdout_size=1000, data_dir=sst2_dir))
    assert len(held_out) == 1000


def test_accuracy_intervals_set_the_sentences_error_beside_the_seeds():
    # two seeds that agree exactly: no spread over the seeds, but 8 sentences are few
    runs = [run("a0", 0, [1, 0, 1, 1, 0, 0, 1, 1]), run("a1", 1, [1, 0, 1, 1, 0, 0, 1, 1])]
    for r in runs:
        r.metrics.dev_accuracy = 7 / 8
    table = paired.accuracy_intervals(runs, labels=LABELS)
    assert len(table) == 1
    seeds, both = table.iloc[0]["seeds"], table.iloc[0]["seeds and sentences"]
    assert seeds.estimate == both.estimate == pytest.approx(87.5)
    assert seeds.low == seeds.high == pytest.approx(87.5) and both.low < 87.5 <= both.high


def test_against_reference_sets_each_configuration_beside_full_fine_tuning():
    def grid_run(method, seed, wrong, **hparams):
        predicted = [1 - y if i < wrong else y for i, y in enumerate(LABELS)]
        record = run(f"{method}{hparams}_s{seed}", seed, predicted, method=method, hparams=hparams)
        record.metrics.dev_accuracy = 1 - wrong / 8
        return record

    runs = [
        *(grid_run("lora", s, 2, rank=16, targets=["query"]) for s in range(2)),
        *(grid_run("lora", s, 1, rank=8) for s in range(2)),
        *(grid_run("full", s, 0) for s in range(2)),
        *(grid_run("lora", s, 4, rank=1) for s in range(2)),
    ]
    table = paired.against_reference(runs, labels=LABELS)
    assert list(table.index) == ["Full fine-tuning", "LoRA r=1", "LoRA r=8", "LoRA r=16 on query"]
    assert table.loc["Full fine-tuning", "difference"] is None
    # every seed one sentence of 8 worse than full fine-tuning: -12.5 points
    assert table.loc["LoRA r=8", "difference"].estimate == pytest.approx(-12.5)
    # the seeds agree, so over the seeds alone the difference has no spread; the sentences give it one
    seeds_only, both = table.loc["LoRA r=8", ["difference over seeds", "difference"]]
    assert seeds_only.low == seeds_only.high == pytest.approx(-12.5) and both.low < -12.5 < both.high
    assert table.loc["LoRA r=1", "difference"].estimate == pytest.approx(-50.0)
    # one sentence, wrong for both seeds: one unit for the sign-flip test, which cannot resolve it
    assert table.loc["LoRA r=8", "p"] == pytest.approx(1.0)
    r1_p = table.loc["LoRA r=1", "p"]
    assert r1_p == pytest.approx(2 * 0.5**4, abs=0.02)  # four sentences, every seed wrong on them
    # Holm over the three comparisons with full fine-tuning: the smallest p times three
    assert table.loc["LoRA r=1", "Holm p"] == pytest.approx(3 * r1_p)
    assert np.isnan(table.loc["Full fine-tuning", "Holm p"])
    assert table.loc["LoRA r=16 on query", "accuracy over seeds"].estimate == pytest.approx(75.0)
    assert table["seeds"].tolist() == [2, 2, 2, 2]
    with pytest.raises(ValueError, match="'Full fine-tuning'"):
        paired.against_reference(runs[:2], labels=LABELS)
    weights = paired.against_reference(runs[:4], reference="LoRA r=8", labels=LABELS)
    assert weights.loc["LoRA r=16 on query", "difference"].estimate == pytest.approx(-12.5)
    spent = paired.which_weights(runs, labels=LABELS)  # full fine-tuning and r=1 are not ways to spend r=8's budget
    assert list(spent.index) == ["LoRA r=8", "LoRA r=16 on query"]
    assert spent.loc["LoRA r=16 on query", "difference"].estimate == pytest.approx(-12.5)
    assert spent["trainable"].tolist() == [r.params.trainable for r in (runs[2], runs[0])]

    figure = render.differences_plot(table, "Full fine-tuning", target=-1.0)
    ax = figure.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["LoRA r=1", "LoRA r=8", "LoRA r=16 on query"]
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    r1 = table.loc["LoRA r=1", "difference"]
    assert bars[0].lines[0].get_xdata()[0] == pytest.approx(r1.estimate)  # drawn top down, in table order
    assert sorted(bars[0].lines[2][0].get_segments()[0][:, 0]) == pytest.approx([r1.low, r1.high])
    vertical = [line.get_xdata() for line in ax.lines if len(line.get_xdata()) == 2]  # axvline's two points
    assert sorted(x[0] for x in vertical if x[0] == x[1]) == [-1.0, 0.0]
    plt.close(figure)


def test_the_two_intervals_of_each_accuracy_are_set_side_by_side():
    from lora_lib.study.stats import Interval

    table = pd.DataFrame(
        {
            "seeds": [5, 5],
            "accuracy over seeds": [Interval(88.0, 87.5, 88.5), Interval(87.0, 86.0, 88.0)],
            "accuracy over seeds and sentences": [Interval(88.0, 86.75, 89.25), Interval(87.0, 85.0, 89.0)],
            "difference": [None, Interval(-1.0, -2.25, 0.5)],
            "difference over seeds": [None, Interval(-1.0, -1.5, -0.5)],
        },
        index=["Full fine-tuning", "LoRA r=8"],
    )
    frame = render.uncertainty_frame(table)
    row = frame.loc["Full fine-tuning"]
    assert row["mean (%)"] == 88.0 and row["over seeds"] == "87.50 to 88.50"
    assert (row["width"], row["width with sentences"]) == pytest.approx((1.0, 2.5))
    assert row["difference over seeds"] == row["difference over seeds and sentences"] == "–"
    lora = frame.loc["LoRA r=8"]
    assert (lora["difference over seeds"], lora["difference over seeds and sentences"]) == (
        "-1.50 to -0.50",
        "-2.25 to 0.50",
    )


def test_a_tables_estimates_and_their_intervals_never_break_inside():
    import pandas as pd

    from lora_lib.study.render import Table

    frame = pd.DataFrame(
        {
            "difference": ["-3.99 [-5.74, -2.24]", "+0.79 (+0.03 to +1.54)"],
            "p": ["< 0.001", "0.2"],
            "over seeds": ["85.34 to 89.29", "-0.81 to +0.45"],
            "verdict": ["below full", "not told apart"],
        }
    )
    rows = [line for line in Table(frame, index=False)._repr_markdown_().splitlines()[2:]]
    cells = [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]
    assert [row[0] for row in cells] == ["-3.99 [-5.74,\u00a0-2.24]", "+0.79 (+0.03\u00a0to\u00a0+1.54)"]
    assert [row[1] for row in cells] == ["<\u00a00.001", "0.2"]
    assert [row[2] for row in cells] == ["85.34\u00a0to\u00a089.29", "-0.81\u00a0to\u00a0+0.45"]
    assert [row[3] for row in cells] == ["below full", "not told apart"]  # prose still wraps
