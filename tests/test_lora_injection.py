"""LoRA injected into BERT: parameter counts, equivalence with PEFT, training, saving."""

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file

from lora_lib import (
    adapter_state_dict,
    apply_method,
    count_parameters,
    load_adapter,
    load_adapter_state_dict,
    merge_adapters,
    save_adapter,
    unmerge_adapters,
)
from lora_lib.lora import LoRALinear

# The counts that the reference study published for bert-base-uncased, LoRA on query and value.
BERT_BASE_LORA_TRAINABLE = {1: 38_402, 2: 75_266, 4: 148_994, 8: 296_450, 16: 591_362}


@pytest.mark.parametrize("rank", sorted(BERT_BASE_LORA_TRAINABLE))
def test_bert_base_trainable_counts(bert_base_shape, rank):
    counts = count_parameters(apply_method(bert_base_shape(), "lora", rank=rank))
    assert counts["trainable"] == BERT_BASE_LORA_TRAINABLE[rank]
    assert counts["groups"]["lora"]["trainable"] == 12 * 2 * rank * (768 + 768)
    assert counts["groups"]["head"] == {"total": 1_538, "trainable": 1_538}
    assert counts["groups"]["base"]["trainable"] == 0


def test_bert_base_totals(bert_base_shape):
    lora = count_parameters(apply_method(bert_base_shape(), "lora", rank=8))
    assert lora["total"] == 109_778_690
    assert lora["trainable_pct"] == pytest.approx(100 * 296_450 / 109_778_690)
    full = count_parameters(apply_method(bert_base_shape(), "full"))
    assert full["trainable"] == full["total"] == 109_483_778


def test_only_lora_and_head_train(tiny):
    model, _ = tiny
    apply_method(model, "lora", rank=4)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {
        *(
            f"bert.encoder.layer.{i}.attention.self.{m}.lora_{ab}"
            for i in range(2)
            for m in ("query", "value")
            for ab in "AB"
        ),
        "classifier.weight",
        "classifier.bias",
    }
    assert model.applied_method == {
        "method": "lora",
        "hparams": {"rank": 4, "alpha": 16, "targets": ["query", "value"], "dropout": 0.0, "use_rslora": False},
    }


def _peft_twin(model, rank, alpha, targets, use_rslora=False):
    """Our LoRA model and a PEFT LoRA model on a copy of the same base, with the same A and B."""
    peft_model = get_peft_model(
        copy.deepcopy(model),
        LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(targets), lora_dropout=0.0, use_rslora=use_rslora),
    )
    apply_method(model, "lora", rank=rank, alpha=alpha, targets=targets, use_rslora=use_rslora)
    torch.manual_seed(1)
    n_copied = 0
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, LoRALinear):
                module.lora_B.normal_()  # a non-zero update, so the check means something
                theirs = peft_model.base_model.model.get_submodule(name)
                theirs.lora_A["default"].weight.copy_(module.lora_A)
                theirs.lora_B["default"].weight.copy_(module.lora_B)
                n_copied += 1
    assert n_copied > 0
    return model.eval(), peft_model.eval()


@pytest.mark.parametrize("use_rslora", [False, True])
def test_matches_peft_unmerged_and_merged(model_and_tokenizer, batch, use_rslora):
    model, _ = model_and_tokenizer
    base_weight = model.bert.encoder.layer[0].attention.self.query.weight.detach().clone()
    plain = copy.deepcopy(model)
    ours, theirs = _peft_twin(model, rank=4, alpha=8, targets=("query", "value"), use_rslora=use_rslora)
    with torch.no_grad():
        reference = theirs(**batch).logits
        # The copied update must move the logits, or the comparison would prove nothing.
        assert (reference - plain(**batch).logits).abs().max() > 1e-3
        torch.testing.assert_close(ours(**batch).logits, reference, rtol=0, atol=1e-5)
        merge_adapters(ours)
        torch.testing.assert_close(ours(**batch).logits, reference, rtol=0, atol=1e-5)
        theirs.merge_adapter()
        torch.testing.assert_close(ours(**batch).logits, theirs(**batch).logits, rtol=0, atol=1e-5)
        unmerge_adapters(ours)
    restored = ours.bert.encoder.layer[0].attention.self.query.base_layer.weight
    torch.testing.assert_close(restored, base_weight, rtol=0, atol=1e-6)


def _train_steps(model, batch, steps=3):
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    labels = torch.tensor([1, 0, 1])
    for _ in range(steps):
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval()


def test_training_changes_every_lora_matrix_and_no_frozen_weight(model_and_tokenizer, batch):
    model, _ = model_and_tokenizer
    apply_method(model, "lora", rank=4)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    _train_steps(model, batch)
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert not torch.equal(param, before[name]), f"{name} did not change"
        else:
            assert torch.equal(param, before[name]), f"frozen {name} changed"
    assert (
        sum("lora_" in name for name, p in model.named_parameters() if p.requires_grad)
        == 4 * model.config.num_hidden_layers
    )


def test_adapter_round_trip_into_a_fresh_base(model_and_tokenizer, batch, tmp_path):
    model, _ = model_and_tokenizer
    fresh = copy.deepcopy(model)
    apply_method(model, "lora", rank=4)
    _train_steps(model, batch)
    path = save_adapter(model, tmp_path / "adapter.safetensors")
    saved = load_file(str(path))
    assert set(saved) == set(adapter_state_dict(model))
    assert all("lora_" in k or k.startswith("classifier.") for k in saved)

    load_adapter(fresh, path)  # applies the saved method to the fresh base, then loads
    with torch.no_grad():
        assert torch.equal(fresh.eval()(**batch).logits, model(**batch).logits)


def test_load_state_with_mismatched_keys_or_shapes(tiny):
    model, _ = tiny
    other = copy.deepcopy(model)
    apply_method(model, "lora", rank=4)
    apply_method(other, "lora", rank=2)
    with pytest.raises(ValueError) as err:
        load_adapter_state_dict(model, adapter_state_dict(other))
    assert "bert.encoder.layer.0.attention.self.query.lora_A" in str(err.value)
    state = adapter_state_dict(model)
    state.pop("classifier.bias")
    state["bert.pooler.dense.weight"] = torch.zeros(32, 32)
    with pytest.raises(ValueError) as err:
        load_adapter_state_dict(model, state)
    assert "classifier.bias" in str(err.value) and "bert.pooler.dense.weight" in str(err.value)


def test_a_refused_state_changes_nothing(tiny):
    model, _ = tiny
    apply_method(model, "lora", rank=4)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    state = {name: torch.ones_like(p) for name, p in adapter_state_dict(model).items()}
    state.pop("classifier.bias")
    with pytest.raises(ValueError):
        load_adapter_state_dict(model, state)
    assert all(torch.equal(p, before[name]) for name, p in model.named_parameters())


def test_load_adapter_into_a_model_with_another_method(tiny, tmp_path):
    model, _ = tiny
    other = copy.deepcopy(model)
    save_adapter(apply_method(model, "lora", rank=4), tmp_path / "a.safetensors")
    apply_method(other, "lora", rank=2)
    with pytest.raises(ValueError) as err:
        load_adapter(other, tmp_path / "a.safetensors")
    assert "a.safetensors" in str(err.value)


def test_target_that_matches_nothing(tiny_pooler):
    model, _ = tiny_pooler
    with pytest.raises(ValueError) as err:
        apply_method(model, "lora", targets=("query", "qkv"))
    # It names the target, and lists what could be targeted instead.
    assert "'qkv'" in str(err.value)
    assert "bert.encoder.layer.N.attention.self.key" in str(err.value)
    assert "bert.pooler.dense" in str(err.value)


def test_targets_match_name_suffixes(tiny):
    model, _ = tiny
    apply_method(model, "lora", rank=2, targets=("attention.output.dense", "intermediate.dense"))
    wrapped = sorted(name for name, m in model.named_modules() if isinstance(m, LoRALinear))
    assert wrapped == [
        f"bert.encoder.layer.{i}.{m}" for i in range(2) for m in ("attention.output.dense", "intermediate.dense")
    ]


def test_targets_as_a_comma_separated_string(tiny):
    model, _ = tiny
    apply_method(model, "lora", rank=2, targets="query, key")
    wrapped = sorted(name for name, m in model.named_modules() if isinstance(m, LoRALinear))
    assert wrapped == [f"bert.encoder.layer.{i}.attention.self.{m}" for i in range(2) for m in ("key", "query")]


def test_rank_out_of_range_for_the_model(tiny):
    model, _ = tiny
    with pytest.raises(ValueError) as err:
        apply_method(model, "lora", rank=64)  # the tiny model's layers are 32 wide
    assert "rank" in str(err.value)


def test_unknown_method_and_hyperparameter(tiny):
    model, _ = tiny
    with pytest.raises(ValueError) as err:
        apply_method(model, "lorax")
    assert "'lorax'" in str(err.value)
    with pytest.raises(TypeError) as err:
        apply_method(model, "lora", ranks=8)
    assert "ranks" in str(err.value)
    assert all(p.requires_grad for p in model.parameters()), "a refused method must leave the model untouched"


def test_applying_twice_is_an_error(tiny):
    model, _ = tiny
    apply_method(model, "lora")
    with pytest.raises(ValueError) as err:
        apply_method(model, "bitfit")
    assert "'lora'" in str(err.value)  # the method that is applied already
