"""The injected layers' contract (lora_lib.layers.InjectedLayer), checked on every registered method."""

import pytest
import torch
from torch import nn
from transformers import BertConfig, BertForSequenceClassification
from transformers.models.bert.modeling_bert import BertOutput

from lora_lib import (
    METHODS,
    BottleneckAdapter,
    InjectedLayer,
    apply_method,
    count_parameters,
    merge_adapters,
    unmerge_adapters,
)
from lora_lib.merging import has_merged_layers
from lora_lib.models import TINY_CONFIG


def injected(model):
    return [m for m in model.modules() if isinstance(m, InjectedLayer)]


def _layers_of(method):
    model = BertForSequenceClassification(BertConfig(vocab_size=64, **TINY_CONFIG))
    return injected(apply_method(model, method))


# Which methods merge is a property of their layers: read it from them, not from a list here.
MERGEABLE = [m for m in METHODS if _layers_of(m) and all(layer.mergeable for layer in _layers_of(m))]
NOT_MERGEABLE = [m for m in METHODS if any(not layer.mergeable for layer in _layers_of(m))]


def test_the_study_has_methods_of_both_kinds():
    assert {"lora", "ia3"} <= set(MERGEABLE) and {"houlsby", "pfeiffer"} <= set(NOT_MERGEABLE)


@pytest.mark.parametrize("method", list(METHODS))
def test_every_layer_a_method_adds_keeps_the_contract(tiny, method):
    model, _ = tiny
    original = {id(m) for m in model.modules()}
    apply_method(model, method)
    # A module the method added right under one of the model's own is an injected layer (what
    # that layer holds inside, such as LoRA's dropout, is its own business).
    modules = dict(model.named_modules())
    added = [
        (name, m)
        for name, m in modules.items()
        if id(m) not in original and id(modules[name.rpartition(".")[0]]) in original
    ]
    assert all(isinstance(m, InjectedLayer) for _, m in added), [(n, type(m).__name__) for n, m in added]
    assert len(added) == len(injected(model))
    groups = count_parameters(model)["groups"]
    for layer in injected(model):
        assert isinstance(layer.base_layer, layer.wraps)
        assert not any(p.requires_grad for p in layer.base_layer.parameters())
        assert layer.merged is False and isinstance(layer.mergeable, bool)
        assert groups[layer.group]["trainable"] > 0


@pytest.mark.parametrize("method", MERGEABLE)
def test_merge_and_unmerge_are_idempotent(tiny, batch, method):
    model, _ = tiny
    apply_method(model, method)
    torch.manual_seed(3)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:  # stand-in for training: every trained parameter moves
                param.add_(torch.rand_like(param) * 0.2 + 0.1)
    model.eval()

    def base_weights():
        return {n: p.detach().clone() for n, p in model.named_parameters() if ".base_layer." in n}

    with torch.no_grad():
        expected = model(**batch).logits
        base = base_weights()
        merge_adapters(model)
        merged = base_weights()
        assert any(not torch.equal(merged[n], base[n]) for n in base), "merging changed no base weight"
        assert has_merged_layers(model) and all(layer.merged for layer in injected(model))
        merge_adapters(model)  # a second merge adds nothing
        assert all(torch.equal(w, merged[n]) for n, w in base_weights().items())
        torch.testing.assert_close(model(**batch).logits, expected, rtol=0, atol=1e-5)
        unmerge_adapters(model)
        unmerged = base_weights()
        unmerge_adapters(model)  # a second unmerge takes nothing more out
        assert all(torch.equal(w, unmerged[n]) for n, w in base_weights().items())
        assert not has_merged_layers(model)
        for name, weight in unmerged.items():
            torch.testing.assert_close(weight, base[name], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(model(**batch).logits, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("method", NOT_MERGEABLE)
def test_a_model_with_bottleneck_adapters_refuses_to_merge_and_changes_nothing(tiny, method):
    model, _ = tiny
    apply_method(model, method)
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    for fold in (merge_adapters, unmerge_adapters):
        with pytest.raises(ValueError) as err:
            fold(model)
        assert "BottleneckAdapter" in str(err.value)
    assert all(torch.equal(p, weights[n]) for n, p in model.named_parameters())
    assert not has_merged_layers(model)


def test_the_bottleneck_adapter_says_it_cannot_merge():
    adapter = BottleneckAdapter(BertOutput(BertConfig(hidden_size=8, intermediate_size=16)), bottleneck=2)
    assert not adapter.mergeable
    for fold in (adapter.merge, adapter.unmerge):
        with pytest.raises(ValueError) as err:
            fold()
        assert "BottleneckAdapter" in str(err.value)
    assert not adapter.merged


def test_a_layer_of_ones_own_is_counted_under_its_group():
    class Scale(InjectedLayer):
        group = "scale"

        def __init__(self, base_layer):
            super().__init__(base_layer)
            self.scale = nn.Parameter(torch.ones(base_layer.out_features))

        def forward(self, x):
            return self.base_layer(x) * self.scale

    model = nn.Sequential()
    model.add_module("encoder", Scale(nn.Linear(4, 3)))
    model.add_module("classifier", nn.Linear(3, 2))
    groups = count_parameters(model)["groups"]
    assert groups["scale"] == {"total": 3, "trainable": 3}
    assert groups["base"] == {"total": 15, "trainable": 0}  # the wrapped layer: frozen by the contract
    assert groups["head"] == {"total": 8, "trainable": 8}
    with pytest.raises(TypeError) as err:
        Scale(nn.Conv1d(4, 4, 1))
    assert "Conv1d" in str(err.value)


def _train_steps(model, batch, steps=2):
    """A few AdamW steps on the model's trainable parameters; returns them before and after."""
    trained = {n: p for n, p in model.named_parameters() if p.requires_grad}
    before = {n: p.detach().clone() for n, p in trained.items()}
    optimizer = torch.optim.AdamW(trained.values(), lr=1e-2)
    labels = torch.tensor([1, 0, 1])
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        model(**batch, labels=labels).loss.backward()
        optimizer.step()
    return before, trained


@pytest.mark.parametrize("method", MERGEABLE)
def test_a_merged_model_refuses_to_train_and_trains_again_once_unmerged(tiny, batch, method):
    model, _ = tiny
    apply_method(model, method)
    merge_adapters(model)
    with pytest.raises(RuntimeError) as err:
        model.train()(**batch)
    assert "unmerge_adapters" in str(err.value)
    unmerge_adapters(model)
    before, trained = _train_steps(model, batch)
    adapter_params = [n for n in trained if n.split(".")[0] != "classifier"]
    assert adapter_params and all(not torch.equal(trained[n], before[n]) for n in adapter_params)


@pytest.mark.parametrize("method", [m for m in METHODS if m not in ("full", "head", "bitfit")])
def test_on_a_bf16_base_injected_layers_keep_float32_and_train(tiny, batch, method):
    model, _ = tiny
    model.to(torch.bfloat16)
    apply_method(model, method)
    layers = injected(model)
    own = [p for layer in layers for name, p in layer.named_parameters() if not name.startswith("base_layer.")]
    assert own and all(p.dtype == torch.float32 for p in own)
    assert all(p.dtype == torch.bfloat16 for layer in layers for p in layer.base_layer.parameters())
    before, trained = _train_steps(model, batch)
    assert all(not torch.equal(p, before[n]) for n, p in trained.items() if p.dtype == torch.float32)
    if all(layer.mergeable for layer in layers):
        model.eval()
        with torch.no_grad():
            unmerged = model(**batch).logits.float()
            merge_adapters(model)
            torch.testing.assert_close(model(**batch).logits.float(), unmerged, rtol=0.05, atol=0.05)
