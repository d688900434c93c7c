"""Adapters in PEFT's format: ours loads in PEFT with the same logits, and PEFT's loads as ours."""

import copy

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model

from lora_lib import LoRALinear, apply_method
from lora_lib.peft_format import from_peft, to_peft


def _trained(model, method, **hparams):
    apply_method(model, method, rank=4, alpha=8, **hparams)
    torch.manual_seed(3)
    with torch.no_grad():  # a stand-in for training: every trained tensor moves
        for param in model.parameters():
            if param.requires_grad:
                param.add_(torch.randn_like(param) * 0.3)
    return model.eval()


@pytest.mark.parametrize(
    "method, hparams",
    [("lora", {}), ("lora", {"use_rslora": True}), ("dora", {}), ("pissa", {}), ("pissa", {"use_rslora": True})],
)
def test_an_exported_adapter_gives_peft_the_same_logits(model_and_tokenizer, batch, tmp_path, method, hparams):
    model, _ = model_and_tokenizer
    base = copy.deepcopy(model)
    ours = _trained(model, method, **hparams)
    to_peft(ours, tmp_path / "adapter")
    assert {p.name for p in (tmp_path / "adapter").iterdir()} >= {"adapter_config.json", "adapter_model.safetensors"}
    theirs = PeftModel.from_pretrained(base, str(tmp_path / "adapter")).eval()
    with torch.no_grad():
        expected, got = ours(**batch).logits, theirs(**batch).logits
    assert (expected - got).abs().max() < 1e-5


def test_a_peft_adapter_imports_with_the_same_logits(tiny, batch, tmp_path):
    model, _ = tiny
    base = copy.deepcopy(model)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"], modules_to_save=["classifier"])
    theirs = get_peft_model(copy.deepcopy(model), config)
    torch.manual_seed(4)
    with torch.no_grad():
        for param in theirs.parameters():
            if param.requires_grad:
                param.add_(torch.randn_like(param) * 0.3)
    theirs.save_pretrained(str(tmp_path / "peft"))
    ours = from_peft(tmp_path / "peft", base).eval()
    assert sum(isinstance(m, LoRALinear) for m in ours.modules()) == 4
    with torch.no_grad():
        assert (ours(**batch).logits - theirs.eval()(**batch).logits).abs().max() < 1e-5


def test_pissa_goes_out_as_a_plain_lora_of_twice_the_rank_on_the_pretrained_weights(tiny, tmp_path):
    import json

    model, _ = tiny
    pretrained = {n: p.clone() for n, p in model.named_parameters()}
    to_peft(_trained(model, "pissa"), tmp_path / "adapter")
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"]) == (8, 16) and config["init_lora_weights"] is True
    # exporting left the trained model on its residual: its base weights are not the pretrained ones
    query = model.bert.encoder.layer[0].attention.self.query.base_layer.weight
    assert not torch.allclose(query, pretrained["bert.encoder.layer.0.attention.self.query.weight"])


@pytest.mark.parametrize("method", ["houlsby", "ia3"])
def test_what_has_no_peft_lora_equivalent_is_refused_by_name(tiny, tmp_path, method):
    model, _ = tiny
    apply_method(model, method)
    with pytest.raises(ValueError) as err:
        to_peft(model, tmp_path / "adapter")
    assert method in str(err.value)


@pytest.mark.slow
def test_a_study_adapter_exported_to_peft_gives_the_same_logits(tmp_path):
    """The study's own LoRA r=8 (seed 0), loaded in one call, written in PEFT's format and read
    back by PeftModel.from_pretrained onto the packaged model with the head it was trained with."""
    from pathlib import Path

    from lora_lib import from_adapter, load_model
    from lora_lib.checkpoint import read_adapter

    path = Path(__file__).resolve().parent.parent / "executed" / "lora_r8_s0.safetensors"
    ours, tokenizer = from_adapter(path)
    to_peft(ours, tmp_path / "adapter")
    base, _ = load_model(head=read_adapter(path)[0]["head"])
    theirs = PeftModel.from_pretrained(base, str(tmp_path / "adapter")).eval()
    batch = tokenizer(["a gripping , funny film", "it 's dull and far too long"], return_tensors="pt", padding=True)
    with torch.no_grad():
        expected, got = ours.eval()(**batch).logits, theirs(**batch).logits
    assert (expected - got).abs().max() < 1e-5
