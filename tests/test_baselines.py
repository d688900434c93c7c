"""The baselines: full, head, BitFit, Houlsby, Pfeiffer and (IA)^3, through the same API as LoRA."""

import copy
import math
import re

import pytest
import torch
from peft import IA3Config, get_peft_model
from torch import nn
from transformers import BertConfig
from transformers.models.bert.modeling_bert import BertOutput

from lora_lib import (
    METHODS,
    BottleneckAdapter,
    IA3Linear,
    adapter_state_dict,
    apply_method,
    count_parameters,
    load_adapter,
    merge_adapters,
    save_adapter,
    unmerge_adapters,
)

# bert-base-uncased: hidden h, layers L, feed-forward d_ff, a 2-label head of 2h + 2.
H, L, D_FF = 768, 12, 3072
HEAD = 2 * H + 2
M = H // 16  # the bottleneck at reduction factor 16
ADAPTER = 2 * H * M + M + H  # two weight matrices, two bias vectors
BERT_BASE_TRAINABLE = {
    "full": 109_483_778,
    "head": 1_538,
    "bitfit": 104_450,
    "houlsby": 1_790_594,
    "pfeiffer": 896_066,
    "ia3": 56_834,
    "dora": 314_882,  # LoRA's 296,450 and 12 x 2 x 768 magnitudes
    "pissa": 296_450,  # LoRA's: only the initialisation differs
}
FORMULAS = {
    "head": HEAD,
    # embedding LayerNorm h; per layer q, k, v, attention-out 4h, two LayerNorms 2h, d_ff, out h; pooler h
    "bitfit": H + L * (7 * H + D_FF) + H + HEAD,
    "houlsby": 2 * L * ADAPTER + HEAD,
    "pfeiffer": L * ADAPTER + HEAD,
    "ia3": L * (2 * H + D_FF) + HEAD,
    "dora": L * 2 * (8 * 2 * H + H) + HEAD,
    "pissa": L * 2 * 8 * 2 * H + HEAD,
}
# What each method claims to train, as parameter-name patterns (the head trains in every one).
TRAINS = {
    "full": r".*",
    "head": r"classifier\..*",
    "bitfit": r".*\.bias|classifier\..*",
    "lora": r".*\.lora_[AB]|classifier\..*",
    "dora": r".*\.(lora_[AB]|magnitude)|classifier\..*",
    "pissa": r".*\.lora_[AB]|classifier\..*",
    "houlsby": r".*\.adapter_(down|up)\.(weight|bias)|classifier\..*",
    "pfeiffer": r".*\.adapter_(down|up)\.(weight|bias)|classifier\..*",
    "ia3": r".*\.ia3_vector|classifier\..*",
}


@pytest.mark.parametrize("method", sorted(BERT_BASE_TRAINABLE))
def test_bert_base_trainable_counts(bert_base_shape, method):
    """The counts that the methods' docstrings state, and the formulas they derive them from."""
    counts = count_parameters(apply_method(bert_base_shape(), method))
    assert counts["trainable"] == BERT_BASE_TRAINABLE[method]
    if method in FORMULAS:
        assert counts["trainable"] == FORMULAS[method]


def test_count_groups(bert_base_shape):
    groups = count_parameters(apply_method(bert_base_shape(), "houlsby"))["groups"]
    assert groups["adapter"] == {"total": 2 * L * ADAPTER, "trainable": 2 * L * ADAPTER}
    assert groups["head"]["trainable"] == HEAD and groups["base"]["trainable"] == 0
    groups = count_parameters(apply_method(bert_base_shape(), "ia3"))["groups"]
    assert groups["ia3"]["trainable"] == L * (2 * H + D_FF)
    groups = count_parameters(apply_method(bert_base_shape(), "bitfit"))["groups"]
    assert groups["base"]["trainable"] == FORMULAS["bitfit"] - HEAD


def test_houlsby_trains_layernorms_when_asked(bert_base_shape):
    counts = count_parameters(apply_method(bert_base_shape(), "houlsby", train_layernorm=True))
    layernorms = (1 + 2 * L) * 2 * H  # the embedding LayerNorm and two per layer, weight and bias
    assert counts["trainable"] == BERT_BASE_TRAINABLE["houlsby"] + layernorms


def test_explicit_bottleneck(bert_base_shape):
    counts = count_parameters(apply_method(bert_base_shape(), "pfeiffer", bottleneck=8))
    assert counts["trainable"] == L * (2 * H * 8 + 8 + H) + HEAD


def test_every_method_says_what_it_trains():
    # TRAINS is what the next test checks each method against: a new method must say what it trains.
    assert set(TRAINS) == set(METHODS)
    labels = [spec.label for spec in METHODS.values()]
    assert len(set(labels)) == len(labels) and all(labels)
    assert all(len(spec.description) > 20 for spec in METHODS.values())


@pytest.mark.parametrize("method", list(METHODS))
def test_no_harm_at_initialisation(model_and_tokenizer, batch, method):
    model, _ = model_and_tokenizer
    plain = copy.deepcopy(model)
    apply_method(model, method)
    with torch.no_grad():
        # PiSSA moves W0's top directions into B A: the same sum, up to the SVD's rounding.
        torch.testing.assert_close(
            model(**batch).logits, plain(**batch).logits, rtol=0, atol=1e-4 if method == "pissa" else 1e-6
        )


def test_adapter_placement(base_twin):
    """Each adapter wraps a whole output block: Houlsby's after attention and after the feed-forward network,
    Pfeiffer's after the feed-forward network only."""
    model, other, _ = base_twin()
    apply_method(model, "houlsby")
    adapters = {n: m for n, m in model.named_modules() if isinstance(m, BottleneckAdapter)}
    assert sorted(adapters) == [f"bert.encoder.layer.{i}.{p}" for i in range(2) for p in ("attention.output", "output")]
    assert not any(m.after_add_norm for m in adapters.values())
    apply_method(other, "pfeiffer")
    adapters = {n: m for n, m in other.named_modules() if isinstance(m, BottleneckAdapter)}
    assert sorted(adapters) == [f"bert.encoder.layer.{i}.output" for i in range(2)]
    assert all(m.after_add_norm for m in adapters.values())
    for adapter in adapters.values():
        assert type(adapter.base_layer).__name__ == "BertOutput"
        assert not any(p.requires_grad for p in adapter.base_layer.parameters())


class _FixedDropout(nn.Module):
    """Dropout with one fixed mask, so that a hand-written forward can apply it too: it pins the adapter's place
    relative to the block's dropout (after it in AdapterHub), which evaluation mode alone would not."""

    def __init__(self, size, generator):
        super().__init__()
        self.mask = (torch.rand(size, generator=generator) > 0.3).float() / 0.7

    def forward(self, x):
        return x * self.mask


def _layer_norm(x, norm):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + norm.eps) * norm.weight + norm.bias


ACTIVATIONS = {
    "swish": lambda z: z * torch.sigmoid(z),
    "relu": lambda z: torch.clamp(z, min=0),
    "gelu": lambda z: 0.5 * z * (1 + torch.erf(z / math.sqrt(2))),
}


def _output_block_by_hand(block, x, residual, placement):
    """An output block (dense -> dropout -> Add & Norm), with its adapter placed by hand (``placement`` None: the
    block alone, as the base model has it); the block's dropout is a ``_FixedDropout``."""
    adapted = isinstance(block, BottleneckAdapter)
    base = block.base_layer if adapted else block
    h = (x @ base.dense.weight.T + base.dense.bias) * base.dropout.mask
    if placement is None or not adapted:
        return _layer_norm(h + residual, base.LayerNorm)
    act = ACTIVATIONS[block.activation_name]

    def adapter(z):
        down, up = block.adapter_down, block.adapter_up
        return act(z @ down.weight.T + down.bias) @ up.weight.T + up.bias

    if placement == "pfeiffer":  # SeqBnConfig: after the block's Add & Norm, which applies again after it
        return _layer_norm(h + adapter(_layer_norm(h + residual, base.LayerNorm)) + residual, base.LayerNorm)
    return _layer_norm(h + adapter(h) + residual, base.LayerNorm)  # DoubleSeqBnConfig: before the Add & Norm


def _bert_layer_by_hand(layer, x, mask, placement):
    """One BERT layer, written out from its weights: self-attention, its output block, the feed-forward network."""
    attention = layer.attention.self
    batch, length, hidden = x.shape
    heads, size = attention.num_attention_heads, attention.attention_head_size

    def split(linear):
        return (x @ linear.weight.T + linear.bias).view(batch, length, heads, size).transpose(1, 2)

    q, k, v = split(attention.query), split(attention.key), split(attention.value)
    scores = q @ k.transpose(-1, -2) / math.sqrt(size)
    scores = scores.masked_fill(~mask.bool()[:, None, None, :], float("-inf"))
    context = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(batch, length, hidden)
    attended = _output_block_by_hand(layer.attention.output, context, x, placement)
    inner = layer.intermediate.dense
    intermediate = ACTIVATIONS["gelu"](attended @ inner.weight.T + inner.bias)
    return _output_block_by_hand(layer.output, intermediate, attended, placement)


@pytest.mark.parametrize("method", ["houlsby", "pfeiffer"])
def test_adapters_sit_where_adapterhub_puts_them(tiny, batch, method):
    """Each layer's output equals a hand-written BERT layer with the adapters in the method's place (AdapterHub's
    DoubleSeqBnConfig for Houlsby, SeqBnConfig for Pfeiffer), and not the other place.
    scripts/compare_adapterhub.py checks the same against AdapterHub itself, in an environment that has it."""
    model, _ = tiny
    apply_method(model, method)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".adapter_" in name:  # a stand-in for training, so that the adapters do something
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    for layer in model.bert.encoder.layer:
        for block in (layer.attention.output, layer.output):
            base = block.base_layer if isinstance(block, BottleneckAdapter) else block
            base.dropout = _FixedDropout(model.config.hidden_size, generator)
    with torch.no_grad():
        states = model.eval()(**batch, output_hidden_states=True).hidden_states
        mask = batch["attention_mask"]
        other = "pfeiffer" if method == "houlsby" else "houlsby"
        for i, layer in enumerate(model.bert.encoder.layer):
            plain = _bert_layer_by_hand(layer, states[i], mask, placement=None)
            expected = _bert_layer_by_hand(layer, states[i], mask, placement=method)
            assert (expected - plain).abs().max() > 1e-2, "the adapters must move the output, or this proves nothing"
            torch.testing.assert_close(states[i + 1], expected, rtol=0, atol=1e-5)
            assert (states[i + 1] - _bert_layer_by_hand(layer, states[i], mask, placement=other)).abs().max() > 1e-2


@pytest.mark.parametrize("method", ["houlsby", "pfeiffer"])
@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_a_fresh_adapter_model_is_the_base_model_exactly(tiny, batch, method, training):
    """A fresh adapter adds exactly zero in either place: outputs bit for bit the base model's, dropout included."""
    model, _ = tiny
    plain = copy.deepcopy(model)
    apply_method(model, method)
    outputs = []
    for m in (plain, model):
        torch.manual_seed(3)  # the same dropout masks in training mode
        with torch.no_grad():
            outputs.append(m.train(training)(**batch, output_hidden_states=True))
    for ours, theirs in zip(outputs[1].hidden_states, outputs[0].hidden_states):
        assert torch.equal(ours, theirs)
    assert torch.equal(outputs[1].logits, outputs[0].logits)


def test_a_bottleneck_adapter_wraps_an_output_block():
    with pytest.raises(TypeError) as err:
        BottleneckAdapter(nn.Linear(8, 8), bottleneck=2)
    assert "Linear" in str(err.value) and "BertOutput" in str(err.value)
    block = BertOutput(BertConfig(hidden_size=8, intermediate_size=16))
    adapter = BottleneckAdapter(block, bottleneck=2)
    assert adapter.base_layer is block and not any(p.requires_grad for p in block.parameters())
    assert sum(p.numel() for n, p in adapter.named_parameters() if not n.startswith("base_layer.")) == 2 * 8 * 2 + 2 + 8


def test_ia3_matches_peft_on_the_papers_modules(model_and_tokenizer, batch):
    model, _ = model_and_tokenizer
    plain = copy.deepcopy(model)
    feedforward = r".*\.layer\.\d+\.output\.dense"
    theirs = get_peft_model(
        copy.deepcopy(model),
        IA3Config(
            target_modules=rf".*\.(key|value)|{feedforward}", feedforward_modules=feedforward, init_ia3_weights=True
        ),
    ).eval()
    apply_method(model, "ia3")
    torch.manual_seed(2)
    copied = 0
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, IA3Linear):
                module.ia3_vector.uniform_(0.5, 1.5)
                their_vector = theirs.base_model.model.get_submodule(name).ia3_l["default"]
                their_vector.copy_(module.ia3_vector.view_as(their_vector))
                copied += 1
        assert copied == 3 * model.config.num_hidden_layers
        reference = theirs(**batch, output_hidden_states=True)
        ours = model(**batch, output_hidden_states=True)
        # The copied vectors must move the encoder's output, or the comparison would prove nothing.
        assert (
            reference.hidden_states[-1] - plain(**batch, output_hidden_states=True).hidden_states[-1]
        ).abs().max() > 1e-2
        torch.testing.assert_close(ours.hidden_states[-1], reference.hidden_states[-1], rtol=0, atol=1e-5)
        torch.testing.assert_close(ours.logits, reference.logits, rtol=0, atol=1e-5)


@pytest.mark.parametrize("method", list(TRAINS))
def test_exactly_the_claimed_parameters_train(model_and_tokenizer, batch, method):
    model, _ = model_and_tokenizer
    apply_method(model, method)
    claimed = re.compile(TRAINS[method])
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {name for name, _ in model.named_parameters() if claimed.fullmatch(name)}

    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        model(**batch, labels=torch.tensor([1, 0, 1])).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    for name, param in model.named_parameters():
        changed = not torch.equal(param, before[name])
        assert changed == (name in trainable), f"{name}: changed={changed}, trainable={name in trainable}"


@pytest.mark.parametrize("method", list(METHODS))
def test_adapter_round_trip(tiny, batch, method, tmp_path):
    model, _ = tiny
    fresh = copy.deepcopy(model)
    apply_method(model, method)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(torch.randn_like(param) * 0.1)  # stand-in for training
    save_adapter(model, tmp_path / "a.safetensors")
    load_adapter(fresh, tmp_path / "a.safetensors")
    assert fresh.applied_method == model.applied_method
    assert adapter_state_dict(fresh).keys() == adapter_state_dict(model).keys()
    with torch.no_grad():
        assert torch.equal(fresh.eval()(**batch).logits, model.eval()(**batch).logits)


def test_ia3_merges_and_unmerges(tiny, batch):
    model, _ = tiny
    apply_method(model, "ia3")
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, IA3Linear):
                module.ia3_vector.uniform_(0.5, 1.5)
        weights = {n: p.detach().clone() for n, p in model.named_parameters() if "base_layer" in n}
        unmerged = model(**batch).logits
        merge_adapters(model)
        merge_adapters(model)  # idempotent
        torch.testing.assert_close(model(**batch).logits, unmerged, rtol=0, atol=1e-5)
        unmerge_adapters(model)
        for name, param in model.named_parameters():
            if name in weights:
                torch.testing.assert_close(param, weights[name], rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(model(**batch).logits, unmerged, rtol=0, atol=1e-6)


@pytest.mark.parametrize("method", ["houlsby", "pfeiffer"])
def test_bottleneck_adapters_cannot_merge(tiny, method):
    model, _ = tiny
    apply_method(model, method)
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    with pytest.raises(ValueError) as err:
        merge_adapters(model)
    assert "BottleneckAdapter" in str(err.value)
    assert all(torch.equal(p, weights[n]) for n, p in model.named_parameters())


@pytest.mark.parametrize("method", ["full", "head", "bitfit"])
def test_nothing_to_merge(tiny, method):
    model, _ = tiny
    apply_method(model, method)
    with pytest.raises(ValueError) as err:
        merge_adapters(model)
    assert "LoRA" in str(err.value)  # what could have been merged


def test_reduction_factor_that_leaves_no_bottleneck(tiny):
    model, _ = tiny
    with pytest.raises(ValueError) as err:
        apply_method(model, "houlsby", reduction_factor=64)  # hidden size 32
    assert "reduction_factor" in str(err.value)
    with pytest.raises(ValueError) as err:
        apply_method(copy.deepcopy(tiny[0]), "pfeiffer", bottleneck=0)
    assert "bottleneck" in str(err.value)


@pytest.mark.parametrize(
    "method, hparams",
    [
        ("bitfit", {"rank": 8}),
        ("ia3", {"targets": ["key"]}),
        ("houlsby", {"rank": 8}),
        ("full", {"lr": 1e-3}),
    ],
)
def test_hyperparameters_a_method_does_not_take(tiny, method, hparams):
    model, _ = tiny
    with pytest.raises(TypeError) as err:
        apply_method(model, method, **hparams)
    assert next(iter(hparams)) in str(err.value)
    assert all(p.requires_grad for p in model.parameters()), "a refused method must leave the model untouched"


def test_unknown_activation(tiny):
    with pytest.raises(ValueError) as err:
        apply_method(tiny[0], "houlsby", activation="tanhh")
    assert "tanhh" in str(err.value)
