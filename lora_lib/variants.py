"""LoRA's successors, each a small change to ``LoRALinear``.

- rsLoRA (Kalajdzievski 2023) is ``LoRALinear(use_rslora=True)``: the update is
  scaled by ``alpha / sqrt(r)`` instead of ``alpha / r``.
- DoRA (Liu et al. 2024), ``DoRALinear``: a learned magnitude per output row times
  the direction of ``W0 + s B A``.
- PiSSA (Meng et al. 2024), ``pissa_init_``: ``B`` and ``A`` start as ``W0``'s top-r
  singular directions, and the frozen weight keeps only the residual.
- LoRA+ (Hayou et al. 2024), ``loraplus_param_groups``: ``B`` learns at a multiple
  of ``A``'s rate.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .layers import widened
from .lora import LoRALinear


class DoRALinear(LoRALinear):
    """DoRA: ``m * (W0 + s B A) / ||W0 + s B A||``, the norm taken per output row.

    The magnitude ``m`` (one per output feature) starts at the row norms of ``W0``,
    so a fresh layer is its base layer. As the paper's section 4.3 (and PEFT) do,
    the norm is a constant to the backward pass: it follows ``B A``, but no
    gradient flows through it.
    """

    def __init__(
        self,
        base_layer: nn.Linear,
        rank: int = 8,
        alpha: float = 16,
        dropout: float = 0.0,
        use_rslora: bool = False,
    ):
        super().__init__(base_layer, rank, alpha, dropout, use_rslora)
        norm = self.weight_norm().detach().to(self.lora_A.dtype)
        self.magnitude = nn.Parameter(norm)
        self.merged_norm: torch.Tensor | None = None  # what merging divided by

    def weight_norm(self) -> torch.Tensor:
        """``||W0 + s B A||`` of each output row."""
        weight = widened(self.base_layer.weight) + self.delta_weight()
        return torch.linalg.norm(weight, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            self.check_not_training_merged()
            return self.base_layer(x)
        result = self.base_layer(x)
        dropped = self.dropout(x)
        bias = self.base_layer.bias
        if dropped is x:  # no dropout: W0 x is the base output less its bias
            w0x = result if bias is None else result - bias
        else:
            w0x = F.linear(dropped, self.base_layer.weight)
        scale = (self.magnitude / self.weight_norm().detach()).to(result.dtype)
        update = self.lora_path(dropped).to(result.dtype)
        return result + (scale - 1) * w0x + scale * update

    @torch.no_grad()
    def merge(self, safe: bool = False) -> None:
        """``W0 <- m * (W0 + s B A) / ||W0 + s B A||``; a second merge does nothing."""
        if self.merged:
            return
        weight, norm = self.base_layer.weight, self.weight_norm()
        scale = (self.magnitude / norm)[:, None]
        merged = (scale * (widened(weight) + self.delta_weight())).to(weight.dtype)
        if safe and not torch.isfinite(merged).all():
            raise ValueError("the DoRA update holds NaN or inf; the base weight is unchanged")
        weight.copy_(merged)
        self.merged_norm, self.merged = norm, True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Take the update back out, with the norm that merging divided by."""
        if not self.merged:
            return
        weight = self.base_layer.weight
        scale = (self.merged_norm / self.magnitude)[:, None]
        weight.copy_((widened(weight) * scale - self.delta_weight()).to(weight.dtype))
        self.merged_norm, self.merged = None, False


@torch.no_grad()
def pissa_init_(layer: LoRALinear) -> LoRALinear:
    """PiSSA: start ``B A`` at ``W0``'s top-r singular triplets, freeze the residual.

    With ``W0 = U S V^T``: ``A = sqrt(S_r / s) V_r^T`` and ``B = U_r sqrt(S_r / s)``,
    so that ``s B A = U_r S_r V_r^T``, and ``W0`` becomes ``W0 - s B A``. The output
    is unchanged (up to rounding), and training starts in the weight's principal
    directions. The residual is a function of ``W0`` alone, so an adapter file needs
    nothing more: loading one redoes this on the pretrained weight, then copies the
    trained ``A`` and ``B`` in. The starting ``A`` and ``B`` stay on the layer as
    ``pissa_A0`` and ``pissa_B0`` (buffers, not in the state dict): with them the trained
    update is a plain LoRA delta on ``W0``, ``s (B A - B0 A0)``, which is how
    ``peft_format.to_peft`` exports it.
    """
    weight = layer.base_layer.weight
    u, s, vh = torch.linalg.svd(widened(weight), full_matrices=False)
    root = torch.sqrt(s[: layer.rank] / layer.scaling)
    layer.lora_A.copy_(root[:, None] * vh[: layer.rank])
    layer.lora_B.copy_(u[:, : layer.rank] * root[None, :])
    layer.register_buffer("pissa_A0", layer.lora_A.detach().clone(), persistent=False)
    layer.register_buffer("pissa_B0", layer.lora_B.detach().clone(), persistent=False)
    weight.copy_((widened(weight) - layer.delta_weight()).to(weight.dtype))
    return layer


def loraplus_param_groups(
    model: nn.Module,
    lr: float,
    ratio: float = 16.0,
    weight_decay: float = 0.0,
) -> list[dict]:
    """LoRA+'s optimizer groups: every LoRA ``B`` at ``ratio * lr``, the rest at ``lr``.

    For any torch optimizer: ``AdamW(loraplus_param_groups(model, 1e-3))``. Weight
    decay applies to matrices only (never to biases, LayerNorms or vectors). PEFT's
    ``create_loraplus_optimizer`` also moves every vector (biases, the head's bias,
    DoRA's magnitude) to B's rate; here, as in the paper, only ``B`` moves.
    """
    if not ratio >= 1:
        raise ValueError(f"ratio must be >= 1 (B's rate over A's), got {ratio!r}")
    groups = {(is_b, matrix): [] for is_b in (True, False) for matrix in (True, False)}
    for name, param in model.named_parameters():
        if param.requires_grad:
            groups[name.endswith("lora_B"), param.ndim >= 2].append(param)
    return [
        {
            "params": params,
            "lr": lr * ratio if is_b else lr,
            "weight_decay": weight_decay if matrix else 0.0,
        }
        for (is_b, matrix), params in groups.items()
        if params
    ]
