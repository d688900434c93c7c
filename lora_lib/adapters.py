"""The baselines' building blocks: bottleneck adapters and (IA)^3 scaling vectors.

Both wrap the frozen layer they extend (kept as ``base_layer``, never copied), as
``LoRALinear`` does, so the base model's weights keep their values and the trainable part
is easy to find. BitFit needs no building block: it only unfreezes the biases.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.activations import ACT2FN

from .layers import InjectedLayer


class BottleneckAdapter(InjectedLayer):
    """A bottleneck adapter (Houlsby et al., 2019) after a frozen projection.

    Computes ``h + up(act(down(h)))`` with ``h = base_layer(x)``: a down-projection
    ``hidden -> bottleneck``, a non-linearity, an up-projection ``bottleneck -> hidden`` and
    the adapter's own skip connection. The up-projection starts at zero, so a fresh adapter
    is the identity and the model is unchanged until it learns.

    Parameters: ``2 * hidden * bottleneck + bottleneck + hidden`` (two weight matrices and
    two bias vectors). The non-linearity sits between the projections, so unlike LoRA and
    (IA)^3 an adapter cannot be folded into the base weights: it costs latency at inference.
    """

    group = "adapter"
    mergeable = False

    def __init__(self, base_layer: nn.Linear, bottleneck: int, activation: str = "gelu"):
        super().__init__(base_layer)
        hidden = base_layer.out_features
        if isinstance(bottleneck, bool) or not isinstance(bottleneck, int) or not 1 <= bottleneck <= hidden:
            raise ValueError(f"bottleneck must be an integer from 1 to the hidden size {hidden}, got {bottleneck!r}")
        if activation not in ACT2FN:
            raise ValueError(f"unknown activation {activation!r}; choose one of {sorted(ACT2FN)}")
        weight = base_layer.weight
        factory = {"dtype": weight.dtype, "device": weight.device}
        self.adapter_down = nn.Linear(hidden, bottleneck, **factory)
        self.adapter_up = nn.Linear(bottleneck, hidden, **factory)
        # Small random down-projection, zero up-projection: the adapter starts as the identity.
        nn.init.normal_(self.adapter_down.weight, std=1e-2)
        nn.init.zeros_(self.adapter_down.bias)
        nn.init.zeros_(self.adapter_up.weight)
        nn.init.zeros_(self.adapter_up.bias)
        self.activation_name = activation
        self.activation = ACT2FN[activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.base_layer(x)
        return h + self.adapter_up(self.activation(self.adapter_down(h)))

    def extra_repr(self) -> str:
        return f"bottleneck={self.adapter_down.out_features}, activation={self.activation_name}"


class IA3Linear(InjectedLayer):
    """(IA)^3 (Liu et al., 2022): a learned vector that rescales a frozen layer elementwise.

    ``position="output"`` computes ``l * base_layer(x)`` (a vector of length
    ``out_features``; the paper's keys and values), ``position="input"`` computes
    ``base_layer(l * x)`` (length ``in_features``; the paper's feed-forward activation,
    rescaled where it enters the output projection). The vector starts at ones, so a fresh
    layer is its base layer.

    Both are linear in the input, so they fold into the base weights:
    ``W' = diag(l) W, b' = l * b`` for the output, ``W' = W diag(l)`` for the input.
    """

    group = "ia3"
    mergeable = True
    no_decay = ("ia3_vector",)  # it starts at ones: decay toward 0 would shrink what it rescales

    def __init__(self, base_layer: nn.Linear, position: str):
        super().__init__(base_layer)
        if position not in ("input", "output"):
            raise ValueError(f"position must be 'input' or 'output', got {position!r}")
        self.position = position
        size = base_layer.in_features if position == "input" else base_layer.out_features
        weight = base_layer.weight
        self.ia3_vector = nn.Parameter(torch.ones(size, dtype=weight.dtype, device=weight.device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return self.base_layer(x)
        if self.position == "input":
            return self.base_layer(x * self.ia3_vector)
        return self.base_layer(x) * self.ia3_vector

    @torch.no_grad()
    def merge(self, safe: bool = False) -> None:
        """Fold the vector into the base weights. Merging a merged layer does nothing."""
        if self.merged:
            return
        if safe and not torch.isfinite(self.ia3_vector).all():
            raise ValueError("the (IA)^3 vector holds NaN or inf; the base weights were left unchanged")
        self._rescale(self.ia3_vector)
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Divide the vector back out. Unmerging an unmerged layer does nothing."""
        if not self.merged:
            return
        if (self.ia3_vector == 0).any():
            raise ValueError("an (IA)^3 vector with a zero entry cannot be unmerged: that row or column is lost")
        self._rescale(1.0 / self.ia3_vector)
        self.merged = False

    def _rescale(self, vector: torch.Tensor) -> None:
        base = self.base_layer
        if self.position == "input":
            base.weight.mul_(vector[None, :])
            return
        base.weight.mul_(vector[:, None])
        if base.bias is not None:
            base.bias.mul_(vector)

    def extra_repr(self) -> str:
        return f"position={self.position}, size={self.ia3_vector.numel()}, merged={self.merged}"
