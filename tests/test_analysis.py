import math

import pytest
import torch

from lora_lib import apply_method, save_adapter
from lora_lib.analysis import (
    amplification,
    energy_captured,
    lora_updates,
    query_value_weights,
    random_projection_norm,
    subspace_similarity,
    update_singular_values,
)
from lora_lib.lora import LoRALinear


def test_lora_updates_read_back_from_the_adapter_file(tiny, tmp_path):
    model, _ = tiny
    apply_method(model, "lora", rank=4, alpha=8)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, LoRALinear):
                module.lora_B.normal_()
    save_adapter(model, tmp_path / "a.safetensors")
    updates = lora_updates(tmp_path / "a.safetensors")
    assert sorted(updates) == [
        f"bert.encoder.layer.{i}.attention.self.{m}" for i in range(2) for m in ("query", "value")
    ]
    for name, update in updates.items():
        torch.testing.assert_close(update["delta"], model.get_submodule(name).delta_weight())


def test_lora_updates_refuse_another_method(tiny, tmp_path):
    model, _ = tiny
    save_adapter(apply_method(model, "bitfit"), tmp_path / "b.safetensors")
    with pytest.raises(ValueError) as err:
        lora_updates(tmp_path / "b.safetensors")
    assert "'bitfit'" in str(err.value)


def test_subspace_similarity_bounds():
    torch.manual_seed(0)
    a = torch.randn(8, 64)
    assert subspace_similarity(a, a, 8, 8) == pytest.approx(1.0)
    # A's rows span a subspace; a matrix whose rows are orthogonal to it scores 0.
    q, _ = torch.linalg.qr(torch.randn(64, 64))
    inside, outside = q[:, :8].T, q[:, 8:16].T
    assert subspace_similarity(inside, outside, 8, 8) == pytest.approx(0.0, abs=1e-12)
    wider = torch.cat([inside, torch.randn(56, 64)])  # rank 64 containing the first 8 directions
    assert subspace_similarity(inside, wider, 8, 64) == pytest.approx(1.0)
    random = subspace_similarity(torch.randn(1, 64), torch.randn(1, 64), 1, 1)
    assert 0 <= random < 0.3


def test_energy_captured():
    s = [3.0, 2.0, 1.0]
    assert energy_captured(s, 1) == pytest.approx(9 / 14)
    assert energy_captured(s, 2) == pytest.approx(13 / 14)
    assert energy_captured(s, 3) == pytest.approx(1.0)


def test_full_update_spectrum(tiny):
    model, _ = tiny
    before = query_value_weights(model)
    assert len(before) == 4
    name = "bert.encoder.layer.0.attention.self.query.weight"
    with torch.no_grad():
        dict(model.named_parameters())[name].add_(torch.outer(torch.ones(32), torch.arange(32.0)))
    spectra = update_singular_values(before, model)
    assert spectra[name][0] == pytest.approx(math.sqrt(32) * torch.arange(32.0).norm().item())
    assert max(spectra[name][1:]) < 1e-4 and max(spectra["bert.encoder.layer.1.attention.self.value.weight"]) == 0


def test_amplification_by_hand():
    weight = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 1.0]])
    e = torch.eye(3)
    # singular directions (u, v): (e1, e2) with 5, (e3, e1) with 2
    delta = 5 * torch.outer(e[0], e[1]) + 2 * torch.outer(e[2], e[0])
    one = amplification(delta, weight, rank=1)  # U^T W V^T = W[0, 1] = 1
    assert one["weight_along_delta"] == pytest.approx(1.0) and one["factor"] == pytest.approx(math.sqrt(29))
    two = amplification(delta, weight, rank=2)  # [[W01, W00], [W21, W20]] = [[1, 3], [0, 0]]
    assert two["weight_along_delta"] == pytest.approx(math.sqrt(10))
    assert two["factor"] == pytest.approx(math.sqrt(29 / 10)) and two["weight_norm"] == pytest.approx(math.sqrt(15))


def test_random_projection_keeps_all_of_a_matrix_at_full_rank_and_scales_with_it():
    weight = torch.randn(5, 5, generator=torch.Generator().manual_seed(1))
    assert random_projection_norm(weight, rank=5) == pytest.approx(float(weight.norm()))
    part = random_projection_norm(weight, rank=2, seed=3)
    assert 0 < part < float(weight.norm()) and random_projection_norm(2 * weight, rank=2, seed=3) == pytest.approx(
        2 * part
    )
