"""LoRA (Hu et al., 2021): a frozen linear layer plus a trainable low-rank update.

The layer computes ``W0 x + (alpha / r) * B A x``. ``W0`` stays in the wrapped
``base_layer``, frozen and never copied; ``A`` (r x in) starts Kaiming-uniform and ``B``
(out x r) starts at zero, so a fresh layer is exactly its base layer.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .layers import InjectedLayer, adapter_dtype, as_int, widened


class LoRALinear(InjectedLayer):
    """Wrap a frozen ``nn.Linear`` with a trainable rank-``rank`` update.

    Args:
        base_layer: the pretrained layer. It is frozen in place and kept as ``base_layer``.
        rank: the rank ``r`` of the update, ``1 <= r <= min(in_features, out_features)``; any
            integral type (``int``, ``numpy.int64``).
        alpha: the update is scaled by ``alpha / r`` (``alpha / sqrt(r)`` with ``use_rslora``,
            Kalajdzievski 2023, which keeps the update's scale stable as ``r`` grows).
        dropout: dropout probability on the LoRA path only; the base path never drops.
        use_rslora: use the rank-stabilised scaling ``alpha / sqrt(r)``.

    ``merge()`` folds the update into ``base_layer.weight`` for inference at the base
    layer's cost; ``unmerge()`` takes it out again. Both are explicit, never a side effect
    of ``.eval()``, and a merged layer refuses to train (its update would get no gradient).
    On a bf16 or fp16 base, ``A`` and ``B`` are kept in float32 and merging is computed in
    float32, so training's small steps are not rounded away.
    """

    group = "lora"
    mergeable = True

    def __init__(
        self,
        base_layer: nn.Linear,
        rank: int = 8,
        alpha: float = 16,
        dropout: float = 0.0,
        use_rslora: bool = False,
    ):
        super().__init__(base_layer)  # keeps base_layer, frozen
        rank = self.checked_rank(base_layer, rank, alpha, dropout)
        self.rank, self.alpha, self.use_rslora = rank, alpha, use_rslora
        self.scaling = alpha / (math.sqrt(rank) if use_rslora else rank)
        factory = {"dtype": adapter_dtype(base_layer.weight), "device": base_layer.weight.device}
        self.lora_A = nn.Parameter(torch.empty(rank, base_layer.in_features, **factory))
        self.lora_B = nn.Parameter(torch.zeros(base_layer.out_features, rank, **factory))
        # The initialisation of nn.Linear, as microsoft/LoRA and PEFT use for A.
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    @staticmethod
    def checked_rank(base_layer: nn.Linear, rank, alpha, dropout) -> int:
        """The rank as an int, once rank, alpha and dropout are known to be valid for ``base_layer``."""
        in_features, out_features = base_layer.in_features, base_layer.out_features
        max_rank = min(in_features, out_features)
        rank = as_int(rank, "rank")
        if not 1 <= rank <= max_rank:
            raise ValueError(
                f"rank must be an integer from 1 to min(in_features, out_features) = {max_rank} "
                f"for this {in_features}->{out_features} layer, got {rank!r}"
            )
        if not alpha > 0:
            raise ValueError(f"alpha must be > 0, got {alpha!r}; the update is scaled by alpha / r")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        return rank

    @property
    def in_features(self) -> int:
        return self.base_layer.in_features

    @property
    def out_features(self) -> int:
        return self.base_layer.out_features

    def delta_weight(self) -> torch.Tensor:
        """The update ``(alpha / r) B A`` as a full out x in matrix."""
        return self.scaling * (self.lora_B @ self.lora_A)

    def lora_path(self, x: torch.Tensor) -> torch.Tensor:
        """``(alpha / r) B A x``, in the dtype of ``A`` and ``B``."""
        # Scaling the r-wide intermediate costs r / out_features of scaling the output.
        return (x.to(self.lora_A.dtype) @ self.lora_A.T * self.scaling) @ self.lora_B.T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            self.check_not_training_merged()
            return self.base_layer(x)
        result = self.base_layer(x)
        return result + self.lora_path(self.dropout(x)).to(result.dtype)

    @torch.no_grad()
    def merge(self, safe: bool = False) -> None:
        """Fold the update into the base weight. Merging a merged layer does nothing.

        With ``safe=True`` the merged weight is computed aside and checked for NaN and inf
        before it replaces the base weight, so a broken update never corrupts the model.
        """
        if self.merged:
            return
        weight = self.base_layer.weight
        merged_weight = (widened(weight) + self.delta_weight()).to(weight.dtype)
        if safe and not torch.isfinite(merged_weight).all():
            raise ValueError("the LoRA update holds NaN or inf; the base weight was left unchanged")
        self.base_layer.weight.copy_(merged_weight)
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Take the update back out of the base weight. Unmerging an unmerged layer does nothing."""
        if not self.merged:
            return
        weight = self.base_layer.weight
        weight.copy_((widened(weight) - self.delta_weight()).to(weight.dtype))
        self.merged = False

    def extra_repr(self) -> str:
        return (
            f"rank={self.rank}, alpha={self.alpha}, scaling={self.scaling:.4g}, "
            f"rslora={self.use_rslora}, merged={self.merged}"
        )
