"""Version 2 records' predictions, put back in the evaluation split's order."""

import numpy as np
import pytest
import torch
from conftest import make_record
from transformers.trainer_pt_utils import get_length_grouped_indices

from lora_lib.study import paired, repair
from lora_lib.study.record import Predictions

LENGTHS = [5, 30, 12, 7, 22, 9, 40, 3, 15, 11]
LABELS = [1, 0, 0, 1, 1, 0, 1, 0, 1, 0]


def grouped_record(predicted, seed=3, accuracy=None):
    """A version 2 record whose predictions came in the sampler's length-grouped order."""
    order = get_length_grouped_indices(LENGTHS, 4, generator=torch.Generator().manual_seed(seed))
    record = make_record(
        "v2_s3",
        seed=seed,
        eval_batch_size=4,
        accuracy=np.mean(np.asarray(predicted) == LABELS) if accuracy is None else accuracy,
        predictions=Predictions(label=[predicted[i] for i in order], prob_positive=[i / 10 for i in order]),
    )
    return record.model_copy(update={"schema_version": 2})


def test_the_split_order_is_restored_and_checked_against_the_accuracy():
    predicted = [1, 0, 1, 1, 0, 0, 1, 0, 1, 1]  # 7 of 10 right
    record = grouped_record(predicted)
    assert record.predictions.label != predicted  # the grouping did move them
    with pytest.raises(ValueError, match="schema version 2"):
        paired.correct([record], LABELS)
    fixed = repair.split_order(record, LENGTHS, LABELS)
    assert fixed.predictions.label == predicted and fixed.schema_version == repair.SCHEMA_VERSION
    assert fixed.predictions.prob_positive == [i / 10 for i in range(10)]
    assert paired.correct([fixed], LABELS).mean() == pytest.approx(0.7)


def test_a_record_whose_order_cannot_be_recovered_is_left_alone():
    record = grouped_record([1, 0, 1, 1, 0, 0, 1, 0, 1, 1], accuracy=0.5)
    with pytest.raises(ValueError, match="v2_s3"):
        repair.split_order(record, LENGTHS, LABELS)
