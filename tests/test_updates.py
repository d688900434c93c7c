"""Chapter 6's computations: subspace similarity against chance, spectra, and how much of full
fine-tuning's update a low rank keeps."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import make_record

from lora_lib.analysis import (
    normalised_spectrum,
    random_energy_captured,
    random_subspace_similarity,
    similarity_grid,
    subspace_similarity,
)
from lora_lib.study import updates
from lora_lib.study.record import REPORTED, load_records
from lora_lib.study.stats import Interval
from lora_lib.study.sweep import expand

EXECUTED = Path(__file__).resolve().parent.parent / REPORTED


def test_the_similarity_grid_is_subspace_similarity_at_every_i_and_j():
    torch.manual_seed(0)
    a1, a2 = torch.randn(4, 32), torch.randn(9, 32)
    grid = similarity_grid(a1, a2)
    assert grid.shape == (4, 9)
    for i, j in [(1, 1), (2, 5), (4, 9), (3, 1)]:
        assert grid[i - 1, j - 1] == pytest.approx(subspace_similarity(a1, a2, i, j))


def test_random_subspaces_overlap_as_the_baseline_says():
    generator = torch.Generator().manual_seed(0)
    d, i, j = 48, 2, 6
    draws = [
        subspace_similarity(torch.randn(i, d, generator=generator), torch.randn(j, d, generator=generator), i, j)
        for _ in range(2000)
    ]
    assert np.mean(draws) == pytest.approx(random_subspace_similarity(d, i, j), rel=0.05)
    assert random_subspace_similarity(384, 1, 1) == 1 / 384


def test_a_normalised_spectrum_starts_at_one_and_falls():
    spectrum = normalised_spectrum(torch.diag(torch.tensor([1.0, 4.0, 2.0])), 3)
    assert spectrum.tolist() == pytest.approx([1.0, 0.5, 0.25])


def test_noise_has_no_low_rank_structure():
    energy = random_energy_captured((64, 64), [1, 8, 64])
    assert energy[64] == pytest.approx(1.0)
    assert 8 / 64 < energy[8] < 3 * 8 / 64  # a little above its share of the directions, far below a low-rank update's


def _update(directions, scales):
    """A LoRA update whose A has rows ``scales[k] * directions[k]``."""
    a = torch.stack([s * d for s, d in zip(scales, directions)])
    return {"A": a, "B": torch.zeros(a.shape[1], a.shape[0]), "delta": torch.zeros(a.shape[1], a.shape[1])}


def test_the_overlap_table_tells_shared_top_directions_from_chance():
    q, _ = torch.linalg.qr(torch.randn(16, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64))
    e = list(q.T)  # 16 orthonormal directions
    # Both ranks put their largest weight on e[0] when trained with seed 0; rank 4 with seed 1 on e[5].
    small = {0: {"m": _update([e[0], e[1]], [3, 1])}, 1: {"m": _update([e[0], e[2]], [3, 1])}}
    large = {
        0: {"m": _update([e[0], e[3], e[4], e[1]], [5, 2, 1, 0.5])},
        1: {"m": _update([e[5], e[3], e[4], e[1]], [5, 2, 1, 0.5])},
    }
    pairs = updates.top_direction_overlap(small, large)
    assert len(pairs) == 4 and pairs["same seed"].sum() == 2
    table = updates.overlap_summary(small, large)
    phi = table["φ(1, 1)"]
    assert table.index.tolist()[-1].startswith("random subspaces of R^16")
    assert phi.iloc[0] == pytest.approx(0.5)  # seed 0 shares e[0]; seed 1 does not
    assert phi.iloc[1] == pytest.approx(0.5)  # small seed 1 with large seed 0 shares e[0]; small 0 with large 1 not
    assert phi.iloc[2] == pytest.approx(1.0)  # both small runs put e[0] first
    assert phi.iloc[3] == pytest.approx(1 / 16, abs=1e-4)
    assert table["pairs of runs"].tolist() == [2, 2, 1, ""]


def _full_record(run_id, spectra):
    return make_record(
        run_id, method="full", rank=None, accuracy=0.9, analysis={"full_update_singular_values": spectra}
    )


def test_full_update_energy_per_run_and_for_noise():
    records = [_full_record("full_s0", {"q": [3.0, 2.0, 1.0], "v": [1.0, 0.0, 0.0]})]
    table = updates.full_update_energy(records, ranks=(1, 3))
    assert table.index.tolist() == ["full_s0", "random 3 x 3 matrix"]
    assert table.loc["full_s0", "r = 1"] == pytest.approx(100 * (9 / 14 + 1) / 2)
    assert table.loc["full_s0", "r = 3"] == pytest.approx(100.0)
    with pytest.raises(ValueError, match="full"):
        updates.full_update_energy([])


def test_the_papers_gaps_come_from_their_published_numbers():
    paired = pd.DataFrame({"difference": [Interval(-1.5, -3.5, 0.4)]}, index=["LoRA r=8"])
    table = updates.against_papers(paired, ["LoRA r=8"])
    # LoRA on RoBERTa-base: 95.1 against full fine-tuning's 94.8
    assert table.loc[("LoRA paper, Table 2", "RoBERTa-base", "LoRA"), "difference to full (points)"] == pytest.approx(
        0.3
    )
    assert table.loc[("this study", "MiniLM-L6", "LoRA r=8"), "difference to full (points)"] == pytest.approx(-1.5)
    assert table.loc[("this study", "MiniLM-L6", "LoRA r=8"), "95% interval"] == "-3.50 to +0.40"
    assert "full fine-tuning" not in table.index.get_level_values("method")
    ours = pd.DataFrame(
        {
            "method": ["lora", "bitfit", "ia3"],
            "difference": [Interval(-1.5, -3.5, -0.3), Interval(-1.0, -1.6, -0.4), Interval(0, -1, 1)],
        },
        index=["LoRA r=8", "BitFit", "(IA)³"],
    )
    within = updates.papers_within(ours, ["LoRA r=8", "BitFit", "(IA)³"])
    # LoRA's gaps in the paper, +0.3 and -0.2, both lie above -0.3; BitFit's -1.1 inside -1.6 to -0.4
    assert within.groupby("configuration", sort=False)["where"].agg(list).to_dict() == {
        "LoRA r=8": ["above", "above"],
        "BitFit": ["inside"],
    }
    assert updates.papers_sentence(within).startswith("LoRA r=8: 2 above (+0.3, -0.2); BitFit: 1 inside (-1.1)")
    grid = [make_record(f"lora_r8_s{seed}", seed=seed, head="mean", epochs=1.5) for seed in range(5)]
    reported = updates.reporting([*grid, make_record("full_s0", method="full", rank=None, head="mean", epochs=1.5)])
    assert set(reported.index) == {"LoRA paper, Table 2", "Houlsby et al., Table 1", "this study"}
    this_study = reported.loc["this study", "how the number is reported"]
    assert "mean of 5 seeds" in this_study and "(1.5 epochs)" in this_study and "mean of the token states" in this_study


def test_the_study_adapters_by_seed_and_their_spectra():
    records = load_records(EXECUTED, eval_split="validation")
    r8 = updates.lora_adapters(records, EXECUTED, 8)
    grid_seeds = {run.parameters["seed"] for run in expand(EXECUTED.parent / "studies" / "v2" / "experiments.yml").runs}
    assert sorted(r8) == sorted(grid_seeds) and len(r8[0]) == 12
    assert updates.last_layer(r8[0]) == [
        "bert.encoder.layer.5.attention.self.query",
        "bert.encoder.layer.5.attention.self.value",
    ]
    assert updates.matrix_title("bert.encoder.layer.5.attention.self.value") == "layer 6 value"
    table = updates.spectra({8: r8[0], 2: updates.lora_adapters(records, EXECUTED, 2)[0]})
    assert table.shape == (8, 2) and table["r = 2"].isna().sum() == 6 and (table.iloc[0] == 1).all()
    assert 0.5 < updates.top_energy(r8[0], 4) <= 1
    with pytest.raises(ValueError, match="LoRA r=3"):
        updates.lora_adapters(records, EXECUTED, 3)


def test_lora_adapters_keep_a_rank_apart_from_the_same_rank_on_other_targets(tmp_path):
    plain = make_record("lora_r16_s0", method="lora", rank=16, hparams={"rank": 16})
    query = make_record("lora_q_r16_s0", method="lora", rank=16, hparams={"rank": 16, "targets": ["query"]})
    for record in (plain, query):
        record.adapter_file = f"{record.run_id}.safetensors"  # neither file exists
    with pytest.raises(FileNotFoundError) as err:
        updates.lora_adapters([plain, query], tmp_path, 16)
    assert "lora_r16_s0" in str(err.value) and "lora_q_r16_s0" not in str(err.value)
    with pytest.raises(FileNotFoundError) as err:
        updates.lora_adapters([plain, query], tmp_path, 16, targets=["query"])
    assert "lora_q_r16_s0" in str(err.value) and "lora_r16_s0," not in str(err.value)


def test_the_amplification_table_is_the_hand_example_and_update_norms_read_full_spectra():
    weight = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 1.0]])
    e = torch.eye(3)
    delta = 5 * torch.outer(e[0], e[1]) + 2 * torch.outer(e[2], e[0])  # directions (e1, e2) and (e3, e1)
    table = updates.amplification_table({1: {"q": {"delta": delta}}}, {"q.weight": weight})
    assert table.loc["r = 1", "W along ΔW's directions"] == pytest.approx(1.0)  # W[0, 1]
    assert table.loc["r = 1", "amplification"] == pytest.approx(29**0.5)
    full = make_record(
        "full_s0", method="full", rank=None, analysis={"full_update_singular_values": {"a": [3.0, 4.0], "b": [1.0]}}
    )
    norms = updates.update_norms({1: {"q": {"delta": delta}}}, [full])
    assert norms["LoRA r = 1"] == pytest.approx(29**0.5) and norms["full fine-tuning (full_s0)"] == pytest.approx(3.0)
    with pytest.raises(ValueError, match="full fine-tuning"):
        updates.update_norms({}, [make_record()])
