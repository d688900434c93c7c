"""The rank question at one learning rate: steps, where nothing more is resolved, the step from small ranks."""

import numpy as np
import pytest
from conftest import make_record

from lora_lib.study import ranks
from lora_lib.study.record import Predictions

SENTENCES = 400
LABELS = [i % 2 for i in range(SENTENCES)]


def runs_of(rank, wrong, lr=1e-3, seeds=5):
    """``seeds`` runs of LoRA r=``rank`` on query and value, each wrong on the first ``wrong`` sentences."""
    predicted = [1 - y if i < wrong else y for i, y in enumerate(LABELS)]
    return [
        make_record(
            f"lora_r{rank}_lr{lr:g}_s{s}",
            seed=s,
            lr=lr,
            hparams={"rank": rank, "alpha": 16},
            predictions=Predictions(label=predicted, prob_positive=[0.5] * SENTENCES),
        )
        for s in range(seeds)
    ]


def test_a_step_after_r_2_is_found_and_nothing_is_resolved_above_it():
    records = [*runs_of(1, 40), *runs_of(2, 40), *runs_of(4, 20), *runs_of(8, 20), *runs_of(8, 0, lr=2e-3)]
    answer = ranks.rank_answer(records, 1e-3, labels=LABELS)
    assert answer.ranks == (1, 2, 4, 8) and answer.rates == (1e-3,) * 4  # r=8 at 2e-3 is another series
    assert answer.up == ((2, 4),) and answer.down == ()
    assert answer.flat_from == 4 and answer.monotone == "no step down resolved"
    assert answer.steps[(2, 4)].estimate == pytest.approx(5.0)  # 20 more of 400 right
    assert answer.small_to_large.estimate == pytest.approx(5.0) and answer.small_to_large.low > 0
    # the least-squares slope through 90, 90, 95, 95 against log2 r = 0, 1, 2, 3
    assert answer.slope.estimate == pytest.approx(np.polyfit([0, 1, 2, 3], [90, 90, 95, 95], 1)[0])


def test_the_conclusion_is_made_of_each_series_structured_answer():
    up = ranks.rank_answer([*runs_of(1, 40), *runs_of(2, 40), *runs_of(4, 20), *runs_of(8, 20)], 1e-3, labels=LABELS)
    down = ranks.rank_answer([*runs_of(1, 20), *runs_of(2, 20), *runs_of(4, 40)], 1e-3, labels=LABELS)
    text = ranks.rank_conclusion({"at one rate": up, "elsewhere": down})
    assert text.count("helps") == 1 and text.count("hurts") == 1
    assert f"r = {up.flat_from} on" in text and "a step down resolved" in text and "no step down resolved" in text


def test_a_resolved_step_down_says_the_series_is_not_monotone():
    records = [*runs_of(1, 20), *runs_of(2, 20), *runs_of(4, 40)]
    answer = ranks.rank_answer(records, 1e-3, labels=LABELS)
    assert answer.down == ((2, 4),) and answer.monotone == "a step down resolved"


def test_the_series_needs_one_configuration_per_rank_and_two_ranks():
    two_rates = [*runs_of(1, 40), *runs_of(8, 20), *runs_of(8, 10, lr=2e-3)]
    with pytest.raises(ValueError, match="lr"):
        ranks.rank_series(two_rates, None, labels=LABELS)
    assert list(ranks.rank_series(two_rates, 1e-3, labels=LABELS).index) == [1, 8]
    with pytest.raises(ValueError, match="4e-05|lr 4e-05"):
        ranks.rank_series(two_rates, 4e-5, labels=LABELS)
    with pytest.raises(ValueError, match="both sides of 2"):
        ranks.rank_answer([*runs_of(4, 20), *runs_of(8, 20)], 1e-3, labels=LABELS)


def test_the_rank_plot_draws_each_series_with_its_intervals_and_names_changed_rates():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.container import ErrorbarContainer

    from lora_lib.study import render

    one_rate = ranks.rank_series([*runs_of(1, 40), *runs_of(4, 20)], 1e-3, labels=LABELS)
    two_rates = ranks.rank_series([*runs_of(1, 40), *runs_of(4, 20), *runs_of(16, 10, lr=2e-3)], None, labels=LABELS)
    figure = render.rank_plot({"one rate": one_rate, "grid": two_rates})
    ax = figure.axes[0]
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 2 and list(ax.get_xticks()) == [1, 4, 16]
    assert [t.get_text() for t in ax.texts] == ["0.001", "0.001", "0.002"]  # only the series whose rate changes
    plt.close(figure)


def test_the_loss_curves_draw_one_line_per_configuration_over_its_seeds():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lora_lib.study import render

    records = [*runs_of(1, 40), *runs_of(4, 20)]  # two configurations, five seeds each
    for i, record in enumerate(records):
        offset = 0.01 * (i % 5)  # seed i's curve sits 0.01 i above the others
        record.history.train = [{"step": s, "epoch": s / 4, "loss": 0.7 - 0.1 * s + offset} for s in (1, 2, 3)]
    figure = render.loss_curves(records)
    ax = figure.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["LoRA r=1", "LoRA r=4"]
    # each line is the mean over the seeds: the five seeds' offsets 0 to 0.04 average 0.02
    assert list(ax.lines[0].get_ydata()) == pytest.approx([0.62, 0.52, 0.42])
    plt.close(figure)
