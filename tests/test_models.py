import pytest
from transformers import BertForSequenceClassification

from lora_lib import count_parameters, load_model
from lora_lib.models import TINY_RANDOM


def test_tiny_random_model():
    model, tokenizer = load_model(TINY_RANDOM, num_labels=3)
    config = model.config
    assert isinstance(model, BertForSequenceClassification)
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads, config.intermediate_size) == (
        32,
        2,
        4,
        64,
    )
    assert config.vocab_size == tokenizer.vocab_size == 30_522
    assert model.classifier.out_features == 3


@pytest.mark.slow
def test_default_model_is_the_packaged_minilm():
    model, tokenizer = load_model()
    config = model.config
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads, config.intermediate_size) == (
        384,
        6,
        12,
        1536,
    )
    # 22.7M in the encoder and its pooler (384 * 384 + 384), plus a 2-label head of 2 * 384 + 2. The
    # default head reads the mean of the token states, so the model has no pooler at all.
    assert model.head_kind == "mean" and model.bert.pooler is None
    assert count_parameters(model)["total"] == 22_713_216 - (384 * 384 + 384) + 770
    with_pooler, _ = load_model(head="frozen-pooler")
    assert count_parameters(with_pooler)["total"] == 22_713_216 + 770
    assert tokenizer("don't")["input_ids"] == [101, 2123, 1005, 1056, 102]


def test_model_that_cannot_be_found_offline(tmp_path):
    with pytest.raises(OSError) as err:
        load_model(str(tmp_path / "no-such-folder"))
    assert "no-such-folder" in str(err.value)


def test_hub_id_offline_says_how_to_point_at_a_local_copy():
    with pytest.raises(OSError) as err:
        load_model("bert-base-uncased")
    assert "bert-base-uncased" in str(err.value) and "--local-dir" in str(err.value)


@pytest.mark.parametrize("num_labels", [1, 2.0, True])
def test_bad_num_labels(num_labels):
    with pytest.raises(ValueError) as err:
        load_model(TINY_RANDOM, num_labels=num_labels)
    assert "num_labels" in str(err.value)
