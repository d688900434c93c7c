"""summarize: one row per configuration, grouping runs by what they ran, never by their ids."""

import math

import pytest
from conftest import make_record

from lora_lib.registry import METHODS
from lora_lib.study.aggregate import config_label, label_of, summarize
from lora_lib.study.record import results_table


def test_runs_with_equal_configurations_are_one_group_whatever_their_ids():
    records = [make_record("first try", seed=0, accuracy=0.90), make_record("again-7", seed=1, accuracy=0.80)]
    summary = summarize(results_table(records))
    assert len(summary) == 1
    row = summary.iloc[0]
    assert (row["runs"], row["seeds"], row["run_ids"]) == (2, "0,1", ("first try", "again-7"))
    assert row["accuracy_mean"] == pytest.approx(0.85) and row["accuracy_std"] == pytest.approx(math.sqrt(0.005))
    assert row["label"] == "LoRA r=8"


def test_runs_that_differ_in_more_than_the_seed_are_separate_groups():
    # ids that look like two seeds of one configuration, but the learning rates differ
    records = [make_record("lora_r8_s0", seed=0, lr=1e-3), make_record("lora_r8_s1", seed=1, lr=2e-3)]
    summary = summarize(results_table(records))
    assert sorted(summary["lr"]) == [1e-3, 2e-3] and summary["runs"].tolist() == [1, 1]
    assert summary["accuracy_std"].isna().all()  # one run has no spread


def test_groups_follow_the_registry_order_then_the_rank():
    records = [make_record(f"lora_r{r}_s0", rank=r) for r in (16, 2)] + [
        make_record("bitfit_s0", method="bitfit", rank=None),
        make_record("full_s0", method="full", rank=None),
    ]
    summary = summarize(results_table(records))
    assert summary["label"].tolist() == ["Full fine-tuning", "BitFit", "LoRA r=2", "LoRA r=16"]


def test_configurations_that_adapt_other_weights_are_named_by_them():
    records = [
        make_record("qv", rank=8),
        make_record("q", rank=16, hparams={"rank": 16, "targets": ["query"]}),
        make_record("all", rank=2, hparams={"rank": 2, "targets": ["query", "key", "value", "output.dense"]}),
    ]
    labels = summarize(results_table(records))["label"].tolist()
    assert labels == ["LoRA r=2 + key + output.dense", "LoRA r=8", "LoRA r=16 on query"]


def test_nothing_to_summarize_is_an_error():
    with pytest.raises(ValueError):
        summarize(results_table([]))


def test_label_of():
    assert label_of("lora", 4) == "LoRA r=4"
    assert label_of("ia3") == "(IA)³" and label_of("ia3", None) == "(IA)³"
    assert label_of("not-registered") == "not-registered"
    assert label_of("lora", 8, ["query", "value"]) == "LoRA r=8"
    assert label_of("lora", 8, ["query", "value", "pooler.dense"]) == "LoRA r=8 + pooler.dense"
    assert label_of("lora", 16, ["query"]) == "LoRA r=16 on query"
    attention = ["query", "key", "value", "attention.output.dense"]
    assert label_of("lora", 4, attention) == "LoRA r=4 on the attention matrices"
    assert label_of("lora", 2, ["query", "key", "value", "output.dense", "intermediate.dense"]).endswith(
        "every linear layer"
    )


def test_config_label_fills_in_the_methods_defaults():
    assert config_label("lora", {}) == label_of("lora", METHODS["lora"].defaults["rank"])
    assert config_label("lora", {"rank": 16, "targets": ["query"]}) == "LoRA r=16 on query"
    assert config_label("lora", {"targets": ["value"]}) == f"LoRA r={METHODS['lora'].defaults['rank']} on value"
    assert config_label("houlsby", {"reduction_factor": 8}) == "Houlsby"
    assert config_label("not-registered", None) == "not-registered"
