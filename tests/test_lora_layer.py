import math

import numpy as np
import pytest
import torch
from torch import nn

from lora_lib import LoRALinear


def make_layer(in_features=12, out_features=10, **kwargs):
    torch.manual_seed(0)
    return LoRALinear(nn.Linear(in_features, out_features), **kwargs)


def randomize_b(layer):
    with torch.no_grad():
        layer.lora_B.normal_()
    return layer


def test_wraps_the_base_layer_without_copying_it():
    base = nn.Linear(12, 10)
    layer = LoRALinear(base, rank=4)
    assert layer.base_layer is base
    assert not base.weight.requires_grad and not base.bias.requires_grad
    assert layer.lora_A.shape == (4, 12) and layer.lora_B.shape == (10, 4)
    assert layer.lora_A.requires_grad and layer.lora_B.requires_grad


def test_starts_as_the_base_layer():
    layer = make_layer(rank=4)
    x = torch.randn(3, 5, 12)
    assert torch.equal(layer.lora_B, torch.zeros(10, 4))
    assert layer.lora_A.abs().sum() > 0
    # Kaiming-uniform with a = sqrt(5) bounds A by 1 / sqrt(in_features).
    assert layer.lora_A.abs().max() <= 1 / math.sqrt(12)
    assert torch.equal(layer(x), layer.base_layer(x))


def test_forward_is_base_plus_scaled_low_rank_update():
    layer = randomize_b(make_layer(rank=4, alpha=6))
    x = torch.randn(7, 12)
    expected = x @ (layer.base_layer.weight + 6 / 4 * layer.lora_B @ layer.lora_A).T + layer.base_layer.bias
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-6)
    assert torch.linalg.matrix_rank(layer.delta_weight()) == 4


@pytest.mark.parametrize("use_rslora, expected", [(False, 16 / 4), (True, 16 / 2)])
def test_scaling(use_rslora, expected):
    assert make_layer(rank=4, alpha=16, use_rslora=use_rslora).scaling == expected


def test_dropout_acts_on_the_lora_path_only():
    layer = make_layer(rank=4, dropout=0.5).train()
    x = torch.randn(64, 12)
    # B = 0: the LoRA path is zero, so with dropout in training mode the output is still the base.
    assert torch.equal(layer(x), layer.base_layer(x))
    randomize_b(layer)
    torch.manual_seed(1)
    out = layer(x)
    torch.manual_seed(1)
    mask_x = nn.functional.dropout(x, 0.5, training=True)
    expected = layer.base_layer(x) + mask_x @ layer.lora_A.T @ layer.lora_B.T * layer.scaling
    torch.testing.assert_close(out, expected)
    layer.eval()
    torch.testing.assert_close(layer(x), layer.base_layer(x) + x @ layer.delta_weight().T, rtol=1e-5, atol=1e-5)


def test_merge_unmerge_and_idempotence():
    layer = randomize_b(make_layer(rank=4)).eval()
    x = torch.randn(5, 12)
    w0 = layer.base_layer.weight.detach().clone()
    unmerged = layer(x)

    layer.merge()
    assert layer.merged
    torch.testing.assert_close(layer(x), unmerged, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(layer.base_layer.weight, w0 + layer.delta_weight())
    merged_weight = layer.base_layer.weight.detach().clone()
    layer.merge()  # a second merge must not add the update twice
    assert torch.equal(layer.base_layer.weight, merged_weight)

    layer.unmerge()
    assert not layer.merged
    torch.testing.assert_close(layer.base_layer.weight, w0, rtol=0, atol=1e-6)
    torch.testing.assert_close(layer(x), unmerged, rtol=1e-5, atol=1e-6)
    layer.unmerge()  # and a second unmerge must not subtract it twice
    torch.testing.assert_close(layer.base_layer.weight, w0, rtol=0, atol=1e-6)


def test_safe_merge_refuses_a_broken_update():
    layer = randomize_b(make_layer(rank=2))
    with torch.no_grad():
        layer.lora_B[0, 0] = float("nan")
    w0 = layer.base_layer.weight.detach().clone()
    with pytest.raises(ValueError) as err:
        layer.merge(safe=True)
    assert "NaN" in str(err.value)
    assert not layer.merged and torch.equal(layer.base_layer.weight, w0)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(rank=0), "rank"),
        (dict(rank=11), "rank"),  # above min(in_features, out_features) = 10
        (dict(rank=2.5), "rank"),
        (dict(rank=True), "rank"),
        (dict(alpha=0), "alpha"),
        (dict(alpha=-1.0), "alpha"),
        (dict(dropout=1.0), "dropout"),
        (dict(dropout=-0.1), "dropout"),
    ],
)
def test_bad_arguments(kwargs, name):
    with pytest.raises(ValueError) as err:
        make_layer(**kwargs)
    assert name in str(err.value)


def test_the_largest_rank_is_accepted():
    assert make_layer(rank=10).lora_A.shape == (10, 12)


def test_base_must_be_linear():
    with pytest.raises(TypeError) as err:
        LoRALinear(nn.Conv1d(4, 4, 1))
    assert "Conv1d" in str(err.value)


def test_a_merged_layer_refuses_to_train_and_trains_again_once_unmerged():
    layer = randomize_b(make_layer(rank=4))
    x, target = torch.randn(8, 12), torch.randn(8, 10)
    layer.merge()
    with pytest.raises(RuntimeError) as err:
        layer.train()(x)
    assert "unmerge_adapters" in str(err.value)
    with torch.no_grad():  # inference on a merged layer is what merging is for, in either mode
        layer(x)
    layer.unmerge()
    optimizer = torch.optim.SGD([layer.lora_A, layer.lora_B], lr=0.1)
    before = layer.delta_weight().detach().clone()
    nn.functional.mse_loss(layer(x), target).backward()
    optimizer.step()
    assert not torch.allclose(layer.delta_weight(), before)
    assert layer.base_layer.weight.grad is None


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_on_a_half_precision_base_the_update_stays_float32_and_merges_in_float32(dtype):
    torch.manual_seed(0)
    base = nn.Linear(12, 10).to(dtype)
    layer = randomize_b(LoRALinear(base, rank=4))
    assert layer.lora_A.dtype == layer.lora_B.dtype == torch.float32
    x = torch.randn(6, 12).to(dtype)
    assert layer(x).dtype == dtype
    w0 = base.weight.detach().clone()
    layer.merge()
    # The sum is formed in float32 and rounded once: exactly what float32 arithmetic gives.
    assert torch.equal(base.weight, (w0.float() + layer.delta_weight()).to(dtype))
    merged = base.weight.detach().clone()
    layer.unmerge()
    assert torch.equal(base.weight, (merged.float() - layer.delta_weight()).to(dtype))


def test_a_bf16_base_trains_its_float32_update():
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(12, 10).to(torch.bfloat16), rank=4).train()
    a0 = layer.lora_A.detach().clone()
    optimizer = torch.optim.AdamW([layer.lora_A, layer.lora_B], lr=1e-4, weight_decay=0)
    x, target = torch.randn(16, 12).to(torch.bfloat16), torch.randn(16, 10)
    for _ in range(3):
        optimizer.zero_grad()
        nn.functional.mse_loss(layer(x).float(), target).backward()
        optimizer.step()
    # A's entries are up to 0.29, where bf16's spacing is 2^-9: three Adam steps of 1e-4 would
    # round away in a bf16 A. Kept in float32, A moves.
    moved = (layer.lora_A - a0).abs().max()
    assert 0 < moved < 2**-10 and layer.lora_A.dtype == torch.float32


@pytest.mark.parametrize("rank", [np.int64(4), np.int32(4), torch.tensor(4)])
def test_rank_takes_any_integral_type(rank):
    layer = make_layer(rank=rank)
    assert layer.rank == 4 and type(layer.rank) is int


@pytest.mark.parametrize("rank", [True, 4.0, "4", 0])
def test_rank_refuses_what_is_not_a_positive_integer(rank):
    with pytest.raises(ValueError) as err:
        make_layer(rank=rank)
    assert "rank" in str(err.value)


def test_the_layer_diagram_counts_what_the_layer_trains():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lora_lib.study.diagrams import lora_layer

    figure = lora_layer(d=384, k=192, r=8)
    texts = " ".join(t.get_text() for t in figure.axes[0].texts)
    plt.close(figure)
    layer = LoRALinear(nn.Linear(192, 384), rank=8)
    trained = sum(p.numel() for p in layer.parameters() if p.requires_grad)
    assert f"r(d + k) = {trained:,}" in texts and f"d·k = {layer.base_layer.weight.numel():,}" in texts


def test_the_placement_diagram_tags_every_method_of_chapter_4():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lora_lib.study.diagrams import METHOD_COLORS, layer_methods

    figure = layer_methods()
    tagged = {t.get_bbox_patch().get_facecolor() for t in figure.axes[0].texts if t.get_bbox_patch() is not None}
    plt.close(figure)
    assert {matplotlib.colors.to_rgba(c) for c in METHOD_COLORS.values()} == tagged
