"""The search's tables that chapters 3 and 5 show, on records made up for the purpose."""

from pathlib import Path

import pytest
from conftest import make_record

from lora_lib.study import protocol
from lora_lib.study.config import RunConfig

REPO = Path(__file__).resolve().parent.parent


def search_run(run_id, method, lr, accuracy, stage=1, rank=None, **hparams):
    schedule = {"max_train_samples": 10_000, "epochs": 1.0} if stage == 1 else {"epochs": 1.5}
    if rank is not None:
        hparams = {"rank": rank, **hparams}
    return make_record(
        run_id, method=method, rank=rank, lr=lr, accuracy=accuracy, eval_split="holdout", hparams=hparams, **schedule
    )


SEARCH = [
    search_run("full_a", "full", 6e-5, 0.88),
    search_run("full_b", "full", 1.2e-4, 0.90),
    search_run("long_full_a", "full", 6e-5, 0.95, stage=2),
    search_run("long_full_b", "full", 1.2e-4, 0.94, stage=2),
    search_run("lora_a", "lora", 2e-3, 0.86, rank=8),
    search_run("lora_b", "lora", 4e-3, 0.87, rank=8),
    search_run("pooler_a", "lora", 2e-3, 0.85, rank=8, targets=["query", "value", "pooler.dense"]),
    search_run("pooler_b", "lora", 4e-3, 0.86, rank=8, targets=["query", "value", "pooler.dense"]),
    search_run("rs_r1", "lora", 4e-3, 0.80, rank=1, alpha=5.657, use_rslora=True),
    search_run("a16_r1", "lora", 4e-3, 0.81, rank=1),
    search_run("s2_r1", "lora", 4e-3, 0.82, rank=1, alpha=2),
    search_run("head_only", "head", 1e-2, 0.70),
    # scored on the clean slice: not the first study's search
    search_run("clean", "full", 1e-4, 0.99).model_copy(
        update={"metrics": search_run("x", "full", 1e-4, 0.99).metrics.model_copy(update={"eval_split": "sentences"})}
    ),
]


@pytest.fixture
def search():
    return protocol.search_table(SEARCH)


def test_the_search_table_names_configurations_by_what_they_are(search):
    assert len(search) == len(SEARCH) - 1  # the clean-slice run is not part of this search
    by_id = search.set_index("run_id")
    assert by_id.loc["long_full_a", "stage"] == 2 and by_id.loc["full_a", "stage"] == 1
    assert by_id.loc["pooler_a", "configuration"] == "LoRA r=8 + pooler.dense"
    assert by_id.loc["rs_r1", "rule"] == "α / √r (rsLoRA)" and by_id.loc["s2_r1", "rule"] == "α = 2r (scaling 2)"
    assert by_id.loc["a16_r1", "rule"] == "α = 16" and by_id.loc["full_b", "accuracy"] == 90.0


def test_the_chosen_rate_comes_from_stage_2_where_it_ran(search):
    chosen = protocol.chosen_rates(search)
    assert chosen.loc["Full fine-tuning", "lr"] == 6e-5 and chosen.loc["Full fine-tuning", "stage"] == 2
    assert chosen.loc["LoRA r=8", "lr"] == 4e-3 and chosen.loc["LoRA r=8", "stage"] == 1


def test_the_pooler_and_scaling_comparisons(search):
    pooler = protocol.pooler_comparison(search)
    assert pooler["difference"].tolist() == pytest.approx([-1.0, -1.0])
    scaling = protocol.scaling_comparison(search)
    assert scaling.loc["α = 2r (scaling 2)", "r = 1"] == 82.0 and scaling.loc["α = 16", "r = 8"] == 87.0


def test_the_head_comparison_averages_seeds_and_keeps_the_best_rate():
    runs = [
        make_record(
            f"h{head}{lr}{seed}",
            method=method,
            rank=None,
            hparams={},
            lr=lr,
            accuracy=accuracy,
            eval_split="sentences",
            head=head,
            seed=seed,
        )
        for method, head, lr, accuracies in [
            ("head", "mean", 1e-2, (0.80, 0.82)),
            ("head", "mean", 5e-3, (0.70, 0.70)),
            ("head", "pooler", 1e-2, (0.72, 0.74)),
            ("head", "pooler", 5e-3, (0.60, 0.60)),
        ]
        for seed, accuracy in enumerate(accuracies)
    ]
    # a search run: mean head, same rate, a third seed, but no pooler twin
    lone = make_record(
        "search",
        method="head",
        rank=None,
        hparams={},
        lr=1e-2,
        accuracy=0.99,
        eval_split="sentences",
        head="mean",
        seed=7,
    )
    comparison = protocol.head_comparison([*runs, lone])
    assert comparison["seeds"].tolist() == [2, 2, 2, 2]
    best = protocol.best_head(comparison)
    assert best.loc["Head only", "mean"] == 81.0 and best.loc["Head only", "pooler"] == 73.0
    assert best.loc["Head only", "mean − pooler (points)"] == 8.0
    with pytest.raises(ValueError) as err:
        protocol.head_comparison(SEARCH[:2])
    assert "heads.yml" in str(err.value)


def test_the_untrained_pooler_shows_in_its_statistics(tiny_pooler):
    model, _ = tiny_pooler
    stats = protocol.pooler_statistics(model)
    assert set(stats) == {"pooler_bias_max", "pooler_weight_std", "query_weight_std"}
    model.bert.pooler.dense.bias.data.zero_()
    assert protocol.pooler_statistics(model)["pooler_bias_max"] == 0.0


@pytest.mark.slow
def test_the_clean_slice_leaves_no_held_out_sentence_inside_training(sst2_dir):
    overlap = protocol.slice_overlap("sentences", 1000, data_dir=sst2_dir)
    assert overlap["size"] == 1000 and overlap["in_train"] == 0 and overlap["dropped"] > 0
    old = protocol.slice_overlap("holdout", 2000, data_dir=sst2_dir)
    assert old["in_train"] > 1000  # the first study's random phrases mostly lie inside training
    assert old["dropped"] == 0 and old["validation_size"] == overlap["validation_size"] == 872


def clean_run(run_id, method, lr, accuracy, rank=None, head="mean", seed=0, precision="fp32", **hparams):
    if rank is not None:
        hparams = {"rank": rank, **hparams}
    return make_record(
        run_id,
        method=method,
        rank=rank,
        lr=lr,
        accuracy=accuracy,
        eval_split="sentences",
        head=head,
        seed=seed,
        precision=precision,
        hparams=hparams,
        max_train_samples=10_000,
        epochs=1.0,
    )


CLEAN = [
    clean_run("full_a", "full", 3e-5, 0.80),
    clean_run("full_b", "full", 6e-5, 0.85),
    clean_run("full_c", "full", 1.2e-4, 0.83),
    clean_run("head_a", "head", 1e-3, 0.70),
    clean_run("head_b", "head", 1e-2, 0.75),
    clean_run("head_c", "head", 1e-1, 0.75),  # ties the best at the top edge
    clean_run("lora1_a", "lora", 2e-3, 0.80, rank=1),
    clean_run("lora1_b", "lora", 4e-3, 0.82, rank=1),
    clean_run("lora8_a", "lora", 2e-3, 0.84, rank=8),
    clean_run("lora8_b", "lora", 4e-3, 0.83, rank=8),
    clean_run("q16", "lora", 2e-3, 0.81, rank=16, targets=["query"]),
    clean_run("q16_b", "lora", 4e-3, 0.82, rank=16, targets=["query"]),
    # not the search: the pooler head, a second seed, bf16, the first study's slice
    clean_run("pooler", "full", 6e-5, 0.99, head="pooler"),
    clean_run("bf16", "full", 6e-5, 0.99, precision="bf16"),
    clean_run("seed1", "full", 6e-5, 0.99, seed=1),
    search_run("old", "full", 6e-5, 0.99),
]


def test_the_clean_search_keeps_the_mean_head_at_seed_0_on_held_out_sentences():
    search = protocol.clean_search(CLEAN)
    assert sorted(search["run_id"]) == sorted(r.run_id for r in CLEAN[:12])


def test_edges_say_where_each_best_rate_sits():
    table = protocol.edges(protocol.clean_search(CLEAN))
    assert list(table.index) == ["Full fine-tuning", "Head only", "LoRA r=1", "LoRA r=8", "LoRA r=16 on query"]
    assert table["edge"].tolist() == ["inside", "highest", "highest", "lowest", "highest"]
    assert table.loc["Head only", "best"] == 1e-2  # the lower of the tied rates
    assert table.loc["Full fine-tuning", "best"] == 6e-5 and table.loc["LoRA r=1", "tried"] == "2e-3, 4e-3"
    assert table.loc["LoRA r=1", "accuracies"] == "80.0, 82.0"  # in the order of the rates tried


def test_a_rank_takes_the_rate_of_the_searched_rank_nearest_in_log2():
    searched = {1: 1e-3, 8: 4e-3, 64: 8e-3}
    assert [protocol.rate_for_rank(searched, r)[0] for r in (1, 2, 4, 8, 16, 32, 64)] == [1, 1, 8, 8, 8, 64, 64]
    assert protocol.rate_for_rank(searched, 32) == (64, 8e-3)
    with pytest.raises(ValueError, match="search.yml"):
        protocol.rate_for_rank({}, 8)


def test_the_search_figure_draws_each_configuration_and_fills_its_best_rate():
    import matplotlib

    matplotlib.use("Agg")
    from lora_lib.study import render

    search = protocol.clean_search(CLEAN)
    fig = render.search_curves(search, {"methods": ["Full fine-tuning", "LoRA r=8"], "weights": ["LoRA r=16 on query"]})
    methods, weights = fig.axes
    full_line, full_best, lora_line, lora_best = methods.get_lines()
    assert list(full_line.get_ydata()) == [80.0, 85.0, 83.0] and list(full_best.get_xdata()) == [6e-5]
    assert list(lora_best.get_ydata()) == [84.0] and len(weights.get_lines()) == 2
    with pytest.raises(ValueError, match="LoRA r=64"):
        render.search_curves(search, {"ranks": ["LoRA r=64"]})


SLICE_LABELS = [1, 0] * 50


def slice_run(method, seed, wrong, rank=None, precision="fp32", epochs=1.5):
    """A run at the grid's schedule on a 100-sentence clean slice that gets its first ``wrong`` sentences wrong."""
    from lora_lib.study.record import Predictions

    predicted = [1 - y if i < wrong else y for i, y in enumerate(SLICE_LABELS)]
    return make_record(
        f"{method}_{epochs}_{precision}_s{seed}",
        method=method,
        rank=rank,
        hparams={"rank": rank} if rank else {},
        seed=seed,
        accuracy=1 - wrong / 100,
        precision=precision,
        epochs=epochs,
        eval_split="sentences",
        head="mean",
        predictions=Predictions(label=predicted, prob_positive=[0.5] * 100),
    )


def test_the_precision_comparison_pairs_bf16_with_fp32_and_judges_the_margin():
    labels = SLICE_LABELS

    def grid_run(method, precision, seed, wrong, rank=None):
        return slice_run(method, seed, wrong, rank=rank, precision=precision)

    runs = [
        *(grid_run("full", "fp32", s, 10) for s in range(3)),
        *(grid_run("full", "bf16", s, 11) for s in range(3)),  # one sentence more wrong: -1 point
        *(grid_run("lora", "fp32", s, 10, rank=8) for s in range(3)),
        *(grid_run("lora", "bf16", s, 10, rank=8) for s in range(3)),
        grid_run("bitfit", "fp32", 0, 10),  # no bf16 twin
    ]
    table = protocol.precision_comparison(runs, labels=labels)
    assert list(table.index) == ["Full fine-tuning", "LoRA r=8"]
    # one sentence of 100 more wrong: -1 point, and the sentences' resampling widens it below -1
    assert str(table.loc["Full fine-tuning", "bf16 − fp32 (points)"]).startswith("-1.00 [-")
    assert str(table.loc["LoRA r=8", "bf16 − fp32 (points)"]) == "0.00 [0.00, 0.00]"
    assert (
        table.loc["Full fine-tuning", "within the margin"] == "no"
        and table.loc["LoRA r=8", "within the margin"] == "yes"
    )
    assert protocol.precision_decision(table).startswith("fp32: the difference leaves the margin for Full fine-tuning")
    assert protocol.precision_decision(table.drop(index="Full fine-tuning")).startswith("fp32 for now")
    assert protocol.precision_decision(table, needed=("LoRA r=8",)).startswith("bf16")
    with pytest.raises(ValueError, match="precision.yml"):
        protocol.precision_comparison(runs[-1:], labels=labels)


def test_grid_rates_take_each_configurations_own_rate_and_the_nearest_searched_rank():
    rates = protocol.grid_rates(protocol.clean_search(CLEAN), ranks=(1, 2, 4, 8))
    assert list(rates.index) == [
        "Full fine-tuning",
        "Head only",
        "LoRA r=1",
        "LoRA r=2",
        "LoRA r=4",
        "LoRA r=8",
        "LoRA r=16 on query",
    ]
    assert rates.loc["Full fine-tuning", "lr"] == 6e-5 and rates.loc["LoRA r=16 on query", "lr"] == 4e-3
    assert rates.loc["LoRA r=2", "lr"] == 4e-3 and rates.loc["LoRA r=2", "from"] == "the rate of r=1"
    assert rates.loc["LoRA r=4", "lr"] == 2e-3 and rates.loc["LoRA r=8", "from"] == "searched (stage 1)"


def stage_2_run(run_id, method, lr, accuracy, epochs=None, precision=None, **settings):
    """A run of the search's stage 2: the whole clean training set, at ``STAGE_2``'s schedule and precision."""
    record = clean_run(run_id, method, lr, accuracy, **settings).model_copy(deep=True)
    record.config.max_train_samples = None
    record.config.epochs = epochs or protocol.STAGE_2["epochs"]
    record.config.precision = precision or protocol.STAGE_2["precision"]
    return record


def test_a_second_stage_with_one_rate_does_not_choose():
    one = [*CLEAN, stage_2_run("checked", "full", 1.2e-4, 0.90)]
    search = protocol.clean_search(one)
    assert "checked" in set(search["run_id"])
    chosen = protocol.chosen_rates(search, ranks=None)
    assert chosen.loc["Full fine-tuning", "stage"] == 1 and chosen.loc["Full fine-tuning", "lr"] == 6e-5


def test_the_second_stage_chooses_among_its_rates_at_its_own_schedule_and_precision():
    runs = [
        *CLEAN,
        stage_2_run("low", "full", 3e-5, 0.91),
        stage_2_run("best", "full", 6e-5, 0.90),
        # other comparisons at the grid's data: three epochs, or fp32; not the search
        stage_2_run("longer", "full", 1.2e-4, 0.99, epochs=3.0),
        stage_2_run("fp32", "full", 1.2e-4, 0.99, precision="fp32"),
    ]
    search = protocol.clean_search(runs)
    assert {"low", "best"} <= set(search["run_id"]) and not {"longer", "fp32"} & set(search["run_id"])
    chosen = protocol.chosen_rates(search, ranks=None)
    assert chosen.loc["Full fine-tuning", "stage"] == 2 and chosen.loc["Full fine-tuning", "lr"] == 3e-5
    second = protocol.edges(search, stage=2)
    assert list(second.index) == ["Full fine-tuning"] and second.loc["Full fine-tuning", "accuracies"] == "91.0, 90.0"


def test_the_next_rate_lies_beyond_the_edge_where_stage_2_chose():
    runs = [
        *CLEAN,
        stage_2_run("full_low", "full", 6e-5, 0.91),
        stage_2_run("full_high", "full", 1.2e-4, 0.90),
        stage_2_run("lora8_low", "lora", 2e-3, 0.86, rank=8),
        stage_2_run("lora8_high", "lora", 4e-3, 0.87, rank=8),
    ]
    search = protocol.clean_search(runs)
    # full fine-tuning: stage 2 chose the lower of its rates; stage 1 tried 3e-5 below it
    assert protocol.next_rate(search, "Full fine-tuning") == {
        "edge": "lowest",
        "best": 6e-5,
        "next": 3e-5,
        "best_short": 85.0,
        "next_short": 80.0,
    }
    # LoRA r=8: stage 2 chose its higher rate, 4e-3, and stage 1 tried nothing above it
    with pytest.raises(ValueError, match="LoRA r=8"):
        protocol.next_rate(search, "LoRA r=8")
    wider = protocol.clean_search([*runs, clean_run("lora8_c", "lora", 8e-3, 0.79, rank=8)])
    assert protocol.next_rate(wider, "LoRA r=8")["next"] == 8e-3
    assert protocol.next_rate(wider, "LoRA r=8")["next_short"] == 79.0
    with pytest.raises(ValueError, match="Head only"):
        protocol.next_rate(search, "Head only")  # no stage-2 runs


def test_the_search_figure_draws_one_stage_at_a_time():
    from lora_lib.study import render

    search = protocol.clean_search([*CLEAN, stage_2_run("long", "full", 6e-5, 0.90)])
    with pytest.raises(ValueError, match="one stage"):
        render.search_curves(search, {"methods": ["Full fine-tuning"]})
    fig = render.search_curves(search[search["stage"] == 1], {"methods": ["Full fine-tuning"]})
    assert list(fig.axes[0].get_lines()[0].get_ydata()) == [80.0, 85.0, 83.0]  # not the stage-2 point at 90


def test_the_schedule_comparison_pairs_each_schedule_in_the_same_precision_and_decides_by_the_rule():
    labels = SLICE_LABELS

    def run(method, epochs, seed, wrong, precision="bf16", rank=None):
        return slice_run(method, seed, wrong, rank=rank, precision=precision, epochs=epochs)

    runs = [
        *(run("full", 1.5, s, 20) for s in range(3)),
        *(run("full", 3.0, s, 10) for s in range(3)),  # ten sentences fewer wrong: +10 points
        *(run("lora", 1.5, s, 10, rank=8) for s in range(5)),
        *(run("lora", 3.0, s, 10, rank=8) for s in range(3)),  # the same: not told apart
        *(run("lora", 3.0, s, 0, precision="fp32", rank=8) for s in range(3)),  # no fp32 twin at 1.5
    ]
    table = protocol.schedule_comparison(runs, labels=labels)
    assert list(table.index) == ["Full fine-tuning", "LoRA r=8"]
    assert table.loc["LoRA r=8", "seeds"] == "5 / 3"
    assert str(table.loc["Full fine-tuning", "3 epochs − 1.5 epochs (points)"]).startswith("10.00 [")
    assert table["verdict"].tolist() == ["better", "not told apart"]
    assert protocol.schedule_decision(table).startswith("3 epochs: better for Full fine-tuning")
    assert protocol.schedule_decision(table.drop(index="Full fine-tuning")).startswith("1.5 epochs for now")
    assert protocol.schedule_decision(table, needed=("LoRA r=8",)).startswith("1.5 epochs: 3 epochs are not told")
    worse = protocol.schedule_comparison([*runs[:3], *(run("full", 3.0, s, 30) for s in range(3))], labels=labels)
    assert worse["verdict"].tolist() == ["worse"]
    assert protocol.schedule_decision(worse, needed=("Full fine-tuning",)).startswith("1.5 epochs: 3 epochs are worse")
    with pytest.raises(ValueError, match="schedule.yml"):
        protocol.schedule_comparison(runs[:3], labels=labels)


def test_the_second_grid_takes_the_rate_the_search_chose_for_each_configuration():
    from lora_lib.study.aggregate import config_label
    from lora_lib.study.record import load_records
    from lora_lib.study.sweep import expand

    rates = protocol.grid_rates(protocol.clean_search(load_records(REPO / "executed" / "tuning")))
    grid = [
        RunConfig.from_parameters(**run.parameters) for run in expand(REPO / "studies" / "v2" / "experiments.yml").runs
    ]
    used = {config_label(c.method, c.hparams): c.lr for c in grid}
    assert set(used) == set(rates.index)
    assert used == pytest.approx(rates["lr"].to_dict())
