"""The second study beside the first, per configuration (lora_lib.study.changes)."""

import numpy as np
import pytest
from conftest import make_record
from scipy import stats

from lora_lib.study import changes


def study(head, lr_full, full, lora, ranks=(8,)):
    """Full fine-tuning and LoRA records of one study, a seed per accuracy."""
    runs = [make_record(f"full_s{s}", "full", None, s, a, lr=lr_full, head=head) for s, a in enumerate(full)]
    for rank in ranks:
        runs += [make_record(f"lora_r{rank}_s{s}", "lora", rank, s, a, lr=2e-3, head=head) for s, a in enumerate(lora)]
    return runs


def test_each_configuration_both_studies_ran_gets_its_change_over_seeds():
    first = study("frozen-pooler", 1.2e-4, [0.88, 0.89, 0.89], [0.87, 0.87, 0.88], ranks=(8, 64))
    second = study("mean", 6e-5, [0.90, 0.91, 0.90, 0.91, 0.91], [0.89, 0.90, 0.90, 0.89, 0.91])
    table = changes.since_first_study(first, second)
    assert list(table.index) == ["Full fine-tuning", "LoRA r=8"]  # r=64 ran only in the first
    full = table.loc["Full fine-tuning"]
    assert full["head"] == "frozen-pooler → mean" and full["learning rate"] == "1.2e-4 → 6e-5"
    assert full["seeds"] == "3 → 5"
    new, old = np.array([90, 91, 90, 91, 91.0]), np.array([88, 89, 89.0])
    assert full["change (points)"].estimate == pytest.approx(new.mean() - old.mean())
    welch = stats.ttest_ind(new, old, equal_var=False).confidence_interval(0.95)
    assert (full["change (points)"].low, full["change (points)"].high) == pytest.approx((welch.low, welch.high))
    assert full["first study (%)"].estimate == pytest.approx(old.mean())


def test_studies_without_a_shared_configuration_or_off_the_validation_split_are_refused():
    first = study("frozen-pooler", 1.2e-4, [0.88, 0.89], [0.87, 0.88], ranks=(64,))
    second = [make_record("full_s0", "full", None, 0, 0.9, head="mean", eval_split="sentences")]
    with pytest.raises(ValueError, match="validation"):
        changes.since_first_study(first, second)
    with pytest.raises(ValueError, match="share no configuration"):
        changes.since_first_study([r for r in first if r.method == "lora"], study("mean", 6e-5, [0.9, 0.9], [0.9, 0.9]))


def test_time_per_run_sets_each_shared_configuration_and_every_run_side_by_side():
    first = study("frozen-pooler", 1.2e-4, [0.88, 0.89], [0.87, 0.88], ranks=(8, 64))
    second = study("mean", 6e-5, [0.9, 0.9], [0.9, 0.9])
    for records, minutes in ((first, {"full": 15, "lora": 10}), (second, {"full": 12, "lora": 6})):
        for r in records:
            r.cost.train_seconds = 60 * minutes[r.method]
    table = changes.time_per_run(first, second)
    assert list(table.index) == ["Full fine-tuning", "LoRA r=8", "every run"]
    assert table.loc["LoRA r=8", "second / first"] == pytest.approx(0.6)
    # the first study's mean over its 6 runs (2 full at 15, 4 LoRA at 10) against the second's 4
    assert table.loc["every run", "first study (min)"] == pytest.approx((2 * 15 + 4 * 10) / 6)
    assert table.loc["every run", "second / first"] == pytest.approx(9 / (70 / 6))
