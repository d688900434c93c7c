"""The classification head: what the classifier reads (mean of token states, or a trained pooler), for every method."""

import json

import pytest
import torch
from safetensors import safe_open

from lora_lib import METHODS, apply_method, count_parameters, load_adapter, load_model, save_adapter
from lora_lib.models import TINY_CONFIG, checkpoint_pooling, default_model_path, resolve_head
from lora_lib.params import parameter_groups

HIDDEN = TINY_CONFIG["hidden_size"]
CLASSIFIER = 2 * HIDDEN + 2
POOLER = HIDDEN * HIDDEN + HIDDEN


def tiny(head):
    torch.manual_seed(0)
    model, tokenizer = load_model("tiny-random", head=head)
    return model.eval(), tokenizer


def between_encoder_and_classifier(model):
    """The parameters that sit between the encoder's last hidden states and the classifier (the pooler, if any)."""
    return {
        name: param
        for name, param in model.named_parameters()
        if name.startswith("bert.") and not name.startswith(("bert.embeddings.", "bert.encoder."))
    }


def test_mean_head_reads_the_masked_mean_of_the_token_states():
    model, tokenizer = tiny("mean")
    assert model.bert.pooler is None and not between_encoder_and_classifier(model)
    assert model.head_kind == "mean" and model.head_modules == ("classifier",)
    batch = tokenizer(["a gripping , funny film", "dull"], return_tensors="pt", padding=True)
    assert batch["attention_mask"][1].sum() < batch["attention_mask"].shape[1], "the batch must hold padding"
    with torch.no_grad():
        hidden = model.bert(**batch).last_hidden_state
        mask = batch["attention_mask"]
        expected = []
        for states, keep in zip(hidden, mask):
            pooled = states[keep.bool()].mean(dim=0)  # the real tokens only
            expected.append(pooled @ model.classifier.weight.T + model.classifier.bias)
        torch.testing.assert_close(model(**batch).logits, torch.stack(expected), rtol=0, atol=1e-5)


def test_mean_head_padding_does_not_change_a_sentence():
    model, tokenizer = tiny("mean")
    with torch.no_grad():
        alone = model(**tokenizer(["dull"], return_tensors="pt")).logits[0]
        padded = tokenizer(["dull", "a gripping , funny film with a lot to say"], return_tensors="pt", padding=True)
        in_batch = model(**padded).logits[0]
        # Padding the positions is not a no-op for the encoder's states there, so a mean over them would move.
        states = model.bert(**padded).last_hidden_state[0]
        assert (states.mean(dim=0) - states[padded["attention_mask"][0].bool()].mean(dim=0)).abs().max() > 1e-3
    torch.testing.assert_close(in_batch, alone, rtol=0, atol=1e-5)


@pytest.mark.parametrize("method", list(METHODS))
def test_pooler_head_trains_the_pooler_in_every_method(method):
    model, _ = tiny("pooler")
    assert model.head_kind == "pooler" and model.head_modules == ("bert.pooler", "classifier")
    apply_method(model, method)
    pooler = dict(model.bert.pooler.named_parameters(prefix="bert.pooler"))
    assert pooler and all(p.requires_grad for p in pooler.values())
    groups = parameter_groups(model)
    assert {groups[name] for name in pooler} == {"head"}
    assert count_parameters(model)["groups"]["head"] == {"total": POOLER + CLASSIFIER, "trainable": POOLER + CLASSIFIER}


@pytest.mark.parametrize("method", [m for m in METHODS if m not in ("full", "bitfit")])
def test_frozen_pooler_head_leaves_the_pooler_to_the_method(method):
    model, _ = tiny("frozen-pooler")
    apply_method(model, method)
    assert not any(p.requires_grad for p in model.bert.pooler.parameters())
    assert count_parameters(model)["groups"]["head"] == {"total": CLASSIFIER, "trainable": CLASSIFIER}


@pytest.mark.parametrize("head", ["mean", "pooler"])
@pytest.mark.parametrize("method", list(METHODS))
def test_no_method_trains_on_top_of_a_frozen_projection(head, method):
    """Whatever sits between the encoder and the classifier trains with the classifier: with the pooler head the
    pooler trains, with the mean head there is nothing there."""
    model, _ = tiny(head)
    apply_method(model, method)
    between = between_encoder_and_classifier(model)
    assert (not between) if head == "mean" else set(between) == {"bert.pooler.dense.weight", "bert.pooler.dense.bias"}
    frozen = sorted(name for name, param in between.items() if not param.requires_grad)
    assert frozen == []
    assert all(p.requires_grad for p in model.classifier.parameters())


def test_the_check_above_catches_the_old_frozen_pooler():
    model, _ = tiny("frozen-pooler")
    apply_method(model, "lora")
    assert any(not p.requires_grad for p in between_encoder_and_classifier(model).values())


def test_auto_reads_the_checkpoints_pooling_config(tmp_path):
    # The packaged default checkpoint is all-MiniLM-L6-v2: its sentence-transformers config says mean pooling.
    assert checkpoint_pooling(default_model_path()) == "mean"
    assert resolve_head("auto", default_model_path()) == "mean"
    # The tiny random model has no config of its own: BERT's pooler.
    assert tiny("auto")[0].head_kind == "pooler"
    # A checkpoint without a sentence-transformers config, and one trained with [CLS] pooling.
    assert checkpoint_pooling(tmp_path) is None and resolve_head("auto", tmp_path) == "pooler"
    (tmp_path / "modules.json").write_text(
        json.dumps([{"idx": 0, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}])
    )
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(
        json.dumps({"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False})
    )
    assert checkpoint_pooling(tmp_path) == "cls" and resolve_head("auto", tmp_path) == "pooler"
    for head in ("mean", "pooler", "frozen-pooler"):
        assert resolve_head(head, default_model_path()) == head


def test_an_unknown_head_is_refused():
    with pytest.raises(ValueError) as err:
        load_model("tiny-random", head="cls-pooler")
    assert "head" in str(err.value) and "cls-pooler" in str(err.value)


@pytest.mark.slow
def test_auto_gives_the_default_model_the_mean_head():
    model, _ = load_model(None, head="auto")
    assert model.head_kind == "mean" and model.bert.pooler is None
    assert not between_encoder_and_classifier(model)


@pytest.mark.parametrize("head", ["mean", "pooler"])
def test_adapter_files_record_the_head(head, tmp_path):
    model, tokenizer = tiny(head)
    apply_method(model, "lora", rank=2)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(0.1)  # a stand-in for training
    path = save_adapter(model, tmp_path / "a.safetensors")
    with safe_open(str(path), framework="pt") as f:
        assert f.metadata()["head"] == head
    same, _ = tiny(head)
    load_adapter(same, path)
    batch = tokenizer(["not bad at all", "dull"], return_tensors="pt", padding=True)
    with torch.no_grad():
        assert torch.equal(same(**batch).logits, model(**batch).logits)
    other, _ = tiny("pooler" if head == "mean" else "mean")
    with pytest.raises(ValueError) as err:
        load_adapter(other, path)
    assert "head" in str(err.value) and head in str(err.value)
    assert getattr(other, "applied_method", None) is None  # refused before anything was applied
