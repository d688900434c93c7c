"""LoRA's successors (lora_lib.variants) against PEFT's own: the same logits from the same weights,
the same training steps, and the round trips each variant promises."""

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model
from peft.optimizers import create_loraplus_optimizer

from lora_lib import (
    DoRALinear,
    LoRALinear,
    apply_method,
    count_parameters,
    load_adapter,
    loraplus_param_groups,
    merge_adapters,
    save_adapter,
    unmerge_adapters,
)

LABELS = torch.tensor([1, 0, 1])


def _twins(model, method, **peft_options):
    """Our ``method`` and PEFT's LoRA with ``peft_options`` on copies of one base, heads frozen
    in both (so that only the adapters train), ours with PEFT's A and B."""
    theirs = get_peft_model(
        copy.deepcopy(model),
        LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"], lora_dropout=0.0, **peft_options),
    )
    apply_method(model, method, rank=4, alpha=8)
    model.classifier.requires_grad_(False)
    return model, theirs


def _copy_into_ours(ours, theirs, randomize_b=True):
    torch.manual_seed(1)
    with torch.no_grad():
        for name, module in ours.named_modules():
            if isinstance(module, LoRALinear):
                peft_layer = theirs.base_model.model.get_submodule(name)
                if randomize_b:  # a non-zero update, so that the check means something
                    peft_layer.lora_B["default"].weight.normal_(std=0.5)
                module.lora_A.copy_(peft_layer.lora_A["default"].weight)
                module.lora_B.copy_(peft_layer.lora_B["default"].weight)
                if isinstance(module, DoRALinear):
                    module.magnitude.copy_(peft_layer.lora_magnitude_vector["default"].weight)


def _steps(model, optimizer, batch, steps=3):
    torch.manual_seed(2)  # the same dropout masks for both twins
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        model(**batch, labels=LABELS).loss.backward()
        optimizer.step()
    return model.eval()


def _adam(model):
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.0)


def test_dora_computes_peft_dora_and_trains_the_same_steps(model_and_tokenizer, batch):
    model, _ = model_and_tokenizer
    plain = copy.deepcopy(model).eval()
    ours, theirs = _twins(model, "dora", use_dora=True)
    _copy_into_ours(ours, theirs)
    ours.eval(), theirs.eval()
    with torch.no_grad():
        reference = theirs(**batch).logits
        assert (reference - plain(**batch).logits).abs().max() > 1e-3
        gap = (ours(**batch).logits - reference).abs().max().item()
    assert gap < 1e-5, gap
    _steps(ours, _adam(ours), batch)
    _steps(theirs, _adam(theirs), batch)  # DoRA's gradient: the magnitude's, and B A's through it
    with torch.no_grad():
        torch.testing.assert_close(ours(**batch).logits, theirs(**batch).logits, rtol=0, atol=1e-4)
    layer = ours.bert.encoder.layer[0].attention.self.query
    peft_layer = theirs.base_model.model.bert.encoder.layer[0].attention.self.query
    torch.testing.assert_close(
        layer.magnitude, peft_layer.lora_magnitude_vector["default"].weight, rtol=1e-4, atol=1e-5
    )


def test_dora_starts_as_its_base_merges_and_unmerges(tiny, batch):
    model, _ = tiny
    plain = copy.deepcopy(model)
    apply_method(model, "dora", rank=4)
    layers = [m for m in model.modules() if isinstance(m, DoRALinear)]
    # The magnitudes start at W0's row norms: one per output feature of each wrapped layer.
    assert sum(layer.magnitude.numel() for layer in layers) == len(layers) * 32
    counts = count_parameters(model)
    assert counts["trainable"] == len(layers) * (4 * (32 + 32) + 32) + 32 * 2 + 2
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, plain(**batch).logits, rtol=0, atol=1e-6)
        for layer in layers:
            layer.lora_B.normal_(std=0.5)
            layer.magnitude.mul_(1.3)
        unmerged = model(**batch).logits
        w0 = layers[0].base_layer.weight.clone()
        merge_adapters(model)
        torch.testing.assert_close(model(**batch).logits, unmerged, rtol=0, atol=1e-5)
        unmerge_adapters(model)
        torch.testing.assert_close(layers[0].base_layer.weight, w0, rtol=0, atol=1e-6)
        torch.testing.assert_close(model(**batch).logits, unmerged, rtol=0, atol=1e-5)


def test_pissa_starts_from_peft_pissa_and_changes_no_output(model_and_tokenizer, batch):
    model, _ = model_and_tokenizer
    plain = copy.deepcopy(model).eval()
    ours, theirs = _twins(model, "pissa", init_lora_weights="pissa")
    for name, module in ours.named_modules():
        if isinstance(module, LoRALinear):
            peft_layer = theirs.base_model.model.get_submodule(name)
            for mine, peft in (
                (module.lora_A, peft_layer.lora_A["default"].weight),
                (module.lora_B, peft_layer.lora_B["default"].weight),
                (module.base_layer.weight, peft_layer.base_layer.weight),
            ):
                torch.testing.assert_close(mine, peft, rtol=0, atol=1e-5)
            # the residual and the principal part add back up to the pretrained weight
            original = plain.get_submodule(name).weight
            torch.testing.assert_close(module.base_layer.weight + module.delta_weight(), original, rtol=0, atol=1e-5)
    with torch.no_grad():
        change = (ours.eval()(**batch).logits - plain(**batch).logits).abs().max().item()
    assert change < 1e-4, change  # zero for the whole model, up to the SVD's rounding


def test_a_pissa_adapter_file_restores_the_trained_model_on_a_fresh_base(tiny, batch, tmp_path):
    model, _ = tiny
    fresh = copy.deepcopy(model)
    apply_method(model, "pissa", rank=4)
    _steps(model, _adam(model), batch)
    path = save_adapter(model, tmp_path / "pissa.safetensors")
    load_adapter(fresh, path)  # applies PiSSA to the pretrained weights, then loads A, B and the head
    with torch.no_grad():
        torch.testing.assert_close(fresh.eval()(**batch).logits, model(**batch).logits, rtol=0, atol=1e-5)


def test_loraplus_trains_b_at_its_ratio_as_peft_does(model_and_tokenizer, batch):
    model, _ = model_and_tokenizer
    ours, theirs = _twins(model, "lora")
    _copy_into_ours(ours, theirs)
    groups = loraplus_param_groups(ours, lr=1e-3, ratio=16)
    assert sorted(g["lr"] for g in groups) == [1e-3, 1.6e-2]
    mine = torch.optim.AdamW(groups, lr=1e-3)
    peft_optimizer = create_loraplus_optimizer(theirs, torch.optim.AdamW, lr=1e-3, loraplus_lr_ratio=16)
    _steps(ours, mine, batch)
    _steps(theirs, peft_optimizer, batch)
    with torch.no_grad():
        torch.testing.assert_close(ours(**batch).logits, theirs(**batch).logits, rtol=0, atol=1e-5)
    with pytest.raises(ValueError) as err:
        loraplus_param_groups(ours, lr=1e-3, ratio=0.5)
    assert "ratio" in str(err.value)
