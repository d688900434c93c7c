"""FLOPs of a training step, from the model's shapes: hand-computed counts on the tiny BERT, and torch's own counter."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from lora_lib import apply_method, merge_adapters
from lora_lib.study.flops import lengths_of, trace_step

# The tiny BERT: hidden h = 32, 2 layers, feed-forward 64, a frozen pooler (head
# "frozen-pooler": it counts a product that passes its gradient down) and a 2-label classifier.
# Two sentences of 5 and 3 real tokens.
LENGTHS = [5, 3]
T, N, SQUARES = 8, 2, 5 * 5 + 3 * 3  # tokens, sentences, sum of squared lengths

# Forward, per token and layer: query, key, value and attention output (32 x 32 each), the
# feed-forward pair (32 x 64 and 64 x 32), 2 FLOPs per multiply-add.
LAYER_PER_TOKEN = 2 * (4 * 32 * 32 + 2 * 32 * 64)  # 16,384
# Attention per layer and sentence of length l: Q K^T and P V, 2 l^2 h each.
ATTENTION_PER_SQUARE = 2 * 2 * 32  # 128 per l^2
HEAD_PER_SENTENCE = 2 * 32 * 32 + 2 * 32 * 2  # pooler and classifier: 2,176
BASE_FORWARD = 2 * LAYER_PER_TOKEN * T + 2 * ATTENTION_PER_SQUARE * SQUARES + HEAD_PER_SENTENCE * N
assert BASE_FORWARD == 275_200

# LoRA r = 8 on query and value: x A^T (32 -> 8) and (.) B^T (8 -> 32), 2 x 2 x 256 per token
# and layer, 2 such layers per layer.
LORA_PER_TOKEN = 2 * (32 * 8 + 8 * 32)  # 1,024 per wrapped layer


def model_with(tiny_pooler, method, **hparams):
    model, _ = tiny_pooler
    apply_method(model, method, **hparams)
    return model


def test_full_fine_tuning_is_three_forward_passes(tiny_pooler):
    # Everything trains, the embeddings too, so every product computes both of its gradients.
    flops = trace_step(model_with(tiny_pooler, "full"))
    assert flops.forward(LENGTHS) == BASE_FORWARD
    assert flops.backward(LENGTHS) == 2 * BASE_FORWARD
    assert flops.training(LENGTHS) == 825_600


def test_lora_counts_frozen_layers_input_gradients_only(tiny_pooler):
    flops = trace_step(model_with(tiny_pooler, "lora", rank=8))
    forward = BASE_FORWARD + 2 * 2 * LORA_PER_TOKEN * T
    assert flops.forward(LENGTHS) == forward == 307_968

    # Layer 0: its input (the frozen embeddings) needs no gradient. Query and value: the base
    # product computes nothing; LoRA computes dB, the r-wide intermediate's gradient and dA
    # (3 x 512 per token), never dx. Key: nothing. Attention output and feed-forward: dx only.
    layer0 = 2 * 3 * 512 + 2 * 32 * 32 + 2 * 32 * 64 + 2 * 64 * 32  # 13,312 per token
    # Attention 0: Q needs a gradient (LoRA), K does not, V does: dQ, dP, dV.
    attention0 = 3 * 2 * 32  # 192 per l^2
    # Layer 1: every input needs a gradient. Query, key, value bases: dx; each LoRA: dB, the
    # intermediate's gradient, dA and dx (4 x 512); attention output and feed-forward: dx.
    layer1 = 3 * 2 * 32 * 32 + 2 * 4 * 512 + 2 * 32 * 32 + 2 * 32 * 64 + 2 * 64 * 32  # 20,480 per token
    attention1 = 4 * 2 * 32  # dQ, dK, dP, dV: 256 per l^2
    # The frozen pooler passes its gradient down (dx); the classifier trains (dx and dW).
    head = 2 * 32 * 32 + 2 * (2 * 32 * 2)  # 2,304 per sentence
    backward = (layer0 + layer1) * T + (attention0 + attention1) * SQUARES + head * N
    assert flops.backward(LENGTHS) == backward == 290_176
    assert flops.training(LENGTHS) == 598_144


def test_merged_lora_adds_nothing(tiny_pooler):
    model = model_with(tiny_pooler, "lora", rank=8)
    merge_adapters(model)
    assert trace_step(model).forward(LENGTHS) == BASE_FORWARD


def test_head_only_backward_stops_at_the_head(tiny_pooler):
    # Nothing below the classifier trains: its input needs no gradient, only its weight does.
    flops = trace_step(model_with(tiny_pooler, "head"))
    assert flops.backward(LENGTHS) == 2 * 32 * 2 * N


@pytest.mark.parametrize("method, hparams", [("full", {}), ("lora", {"rank": 4}), ("bitfit", {})])
def test_agrees_with_torch_flop_counter_when_nothing_is_padded(tiny_pooler, method, hparams):
    model = model_with(tiny_pooler, method, **hparams)
    flops = trace_step(model)
    ids = torch.randint(1000, 2000, (3, 7))
    model.train()
    with FlopCounterMode(display=False) as counter:
        model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=torch.tensor([0, 1, 1])).loss.backward()
    assert flops.training([7, 7, 7]) == counter.get_total_flops()


def test_counts_real_tokens_not_padding(tiny_pooler):
    _, tokenizer = tiny_pooler
    batch = tokenizer(["a short one", "a somewhat longer sentence than that"], padding=True, return_tensors="pt")
    lengths = lengths_of(batch)
    assert lengths[0] < lengths[1] == batch["input_ids"].shape[1]
    flops = trace_step(model_with(tiny_pooler, "full"))
    assert flops.training(lengths) < flops.training([lengths[1]] * 2)


def test_trace_leaves_the_model_as_it_was(tiny_pooler):
    model = model_with(tiny_pooler, "lora", rank=8).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trace_step(model)
    assert model.training
    assert all(not m._forward_hooks for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
