"""What the learned updates look like (the LoRA paper's section 7, on our records).

- ``lora_updates(path)``: the update ``(alpha / r) B A`` of every adapted layer, read back
  from an adapter file.
- ``subspace_similarity(A1, A2, i, j)``: how much of the top-``i`` directions that one
  ``A`` learned lie in the top-``j`` directions of another, from 0 (orthogonal) to 1.
- ``energy_captured(singular_values, r)``: the share of an update's squared Frobenius norm
  that its best rank-``r`` approximation keeps.
- ``similarity_grid(A1, A2)``: ``subspace_similarity`` for every ``i`` and ``j`` at once, and
  ``random_subspace_similarity(d, i, j)``, what it is on average for random subspaces.
- ``normalised_spectrum(matrix, k)``: the top ``k`` singular values over the largest; and
  ``random_energy_captured(shape, ranks)``, ``energy_captured`` for a Gaussian matrix: what an
  update without any low-rank structure keeps.
- ``amplification(delta, weight, r)``: ``||ΔW||_F / ||U^T W V^T||_F`` with ``U``, ``V`` the top
  ``r`` singular directions of ``ΔW`` (the paper's section 7.3): how much the update amplifies
  directions that ``W`` holds weakly; ``projection_norm(weight, u, v)`` for any ``U``, ``V``,
  such as random ones.
- ``update_singular_values(before, after)``: the spectrum of a full fine-tuning update,
  which ``lora_lib.study.train`` keeps in the record of every full fine-tuning run (the weights
  themselves are never saved).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open

# The matrices that LoRA adapts by default: what the updates are compared on.
QUERY_VALUE = re.compile(r"(^|\.)layer\.(\d+)\.attention\.self\.(query|value)(\.base_layer)?\.weight$")


def lora_updates(path: str | Path) -> dict[str, dict[str, torch.Tensor]]:
    """``{module name: {"A", "B", "delta"}}`` from an adapter file of a LoRA run."""
    with safe_open(str(path), framework="pt") as f:
        applied = json.loads((f.metadata() or {}).get("applied_method", "{}"))
        if applied.get("method") != "lora":
            raise ValueError(f"{path} is not a LoRA adapter (it holds {applied.get('method')!r})")
        hparams = applied["hparams"]
        scaling = hparams["alpha"] / (hparams["rank"] ** 0.5 if hparams["use_rslora"] else hparams["rank"])
        names = sorted({key.rsplit(".", 1)[0] for key in f.keys() if key.endswith(".lora_A")})
        updates = {}
        for name in names:
            a, b = f.get_tensor(f"{name}.lora_A"), f.get_tensor(f"{name}.lora_B")
            updates[name] = {"A": a, "B": b, "delta": scaling * b @ a}
    return updates


def top_right_singular_vectors(matrix: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` leading right-singular vectors of ``matrix``, as the columns of a d x k matrix."""
    _, _, vh = torch.linalg.svd(matrix.double(), full_matrices=False)
    return vh[:k].T


def subspace_similarity(a1: torch.Tensor, a2: torch.Tensor, i: int, j: int) -> float:
    """phi(A1, A2, i, j) = ||U1_i^T U2_j||_F^2 / min(i, j), the LoRA paper's equation (4).

    ``U1_i`` holds the top ``i`` right-singular vectors of ``a1`` (r1 x d), ``U2_j`` the top ``j``
    of ``a2``. 1 means the smaller subspace lies inside the larger one; 0, orthogonal.
    """
    u1, u2 = top_right_singular_vectors(a1, i), top_right_singular_vectors(a2, j)
    return float((u1.T @ u2).norm() ** 2 / min(i, j))


def energy_captured(singular_values, rank: int) -> float:
    """The share of the squared Frobenius norm that the best rank-``rank`` approximation keeps."""
    s = torch.as_tensor(singular_values, dtype=torch.float64)
    return float((s[:rank] ** 2).sum() / (s**2).sum())


def update_singular_values(before: dict[str, torch.Tensor], model: torch.nn.Module) -> dict[str, list[float]]:
    """Singular values of ``W_after - W_before`` for every weight named in ``before``."""
    after = dict(model.named_parameters())
    return {name: torch.linalg.svdvals((after[name].detach() - w0).double()).tolist() for name, w0 in before.items()}


def query_value_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of every query and value weight: what a full fine-tuning update is measured on."""
    return {name: p.detach().clone() for name, p in model.named_parameters() if QUERY_VALUE.search(name)}


def similarity_grid(a1: torch.Tensor, a2: torch.Tensor) -> np.ndarray:
    """``phi[i - 1, j - 1] = subspace_similarity(a1, a2, i, j)`` for every ``i`` up to ``a1``'s
    rows and ``j`` up to ``a2``'s, from one SVD of each."""
    u1 = top_right_singular_vectors(a1, a1.shape[0])
    u2 = top_right_singular_vectors(a2, a2.shape[0])
    overlap = ((u1.T @ u2) ** 2).cumsum(0).cumsum(1).numpy()
    i, j = np.meshgrid(np.arange(1, overlap.shape[0] + 1), np.arange(1, overlap.shape[1] + 1), indexing="ij")
    return overlap / np.minimum(i, j)


def random_subspace_similarity(d: int, i: int, j: int) -> float:
    """The expected ``subspace_similarity`` of a random ``i``- and a random ``j``-dimensional
    subspace of R^d: ``E ||U_i^T U_j||_F^2 = i j / d``, so ``phi = max(i, j) / d``."""
    return max(i, j) / d


def normalised_spectrum(matrix: torch.Tensor, k: int) -> np.ndarray:
    """The top ``k`` singular values of ``matrix`` divided by the largest."""
    s = torch.linalg.svdvals(matrix.double())[:k].numpy()
    return s / s[0]


def random_energy_captured(shape: tuple[int, int], ranks, seed: int = 0) -> dict[int, float]:
    """``energy_captured`` at each rank for a matrix of i.i.d. Gaussian entries of ``shape``:
    what a rank-``r`` approximation keeps of an update with no low-rank structure at all."""
    generator = torch.Generator().manual_seed(seed)
    s = torch.linalg.svdvals(torch.randn(shape, generator=generator, dtype=torch.float64))
    return {rank: energy_captured(s, rank) for rank in ranks}


def projection_norm(weight: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> float:
    """``||U^T W V^T||_F``: how much of ``weight`` (d_out x d_in) lies between the columns of
    ``u`` (d_out x r) and the rows of ``v`` (r x d_in), both orthonormal."""
    return float((u.T.double() @ weight.double() @ v.T.double()).norm())


def amplification(delta: torch.Tensor, weight: torch.Tensor, rank: int) -> dict[str, float]:
    """The LoRA paper's amplification factor ``||ΔW||_F / ||U^T W V^T||_F``, with ``U`` and ``V``
    the top ``rank`` left and right singular vectors of ``delta``: how strongly the update
    amplifies the directions it shares with ``weight``. Also both norms, and ``||W||_F``."""
    u, _, vh = torch.linalg.svd(delta.double(), full_matrices=False)
    along = projection_norm(weight, u[:, :rank], vh[:rank])
    size = float(delta.double().norm())
    return {
        "delta_norm": size,
        "weight_along_delta": along,
        "weight_norm": float(weight.double().norm()),
        "factor": size / along,
    }


def random_projection_norm(weight: torch.Tensor, rank: int, seed: int = 0) -> float:
    """``projection_norm`` for random orthonormal ``U`` and ``V`` of ``rank`` columns: the baseline
    the paper sets beside ``U`` and ``V`` from the update."""
    generator = torch.Generator().manual_seed(seed)
    u = torch.linalg.qr(torch.randn(weight.shape[0], rank, generator=generator, dtype=torch.float64))[0]
    v = torch.linalg.qr(torch.randn(weight.shape[1], rank, generator=generator, dtype=torch.float64))[0]
    return projection_norm(weight, u, v.T)
