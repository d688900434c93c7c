"""The baselines' building blocks: bottleneck adapters and (IA)^3 scaling vectors.

Both wrap what they extend and keep it frozen as ``base_layer`` (never copied), as
``LoRALinear`` does, so the base model's weights keep their values and the trainable part
is easy to find: (IA)^3 wraps the Linear layer it rescales, a bottleneck adapter the whole
output block (projection, dropout, residual sum and LayerNorm) it sits in, since where it
goes relative to the residual sum and the LayerNorm is what tells Houlsby's placement from
Pfeiffer's. BitFit needs no building block: it only unfreezes the biases.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.activations import ACT2FN

from .layers import InjectedLayer, adapter_dtype, as_int, widened


class BottleneckAdapter(InjectedLayer):
    """A bottleneck adapter inside a BERT layer's output block, where AdapterHub places it.

    The adapter itself is ``a(z) = up(act(down(z)))``: a down-projection ``hidden ->
    bottleneck``, a non-linearity and an up-projection ``bottleneck -> hidden``. It wraps a
    whole output block (``BertSelfOutput`` after attention, ``BertOutput`` after the
    feed-forward network), which computes ``LayerNorm(h + r)`` with ``h = dropout(dense(x))``
    and ``r`` the block's input, the residual. Where the adapter goes:

    - ``after_add_norm=False`` (Houlsby et al., 2019; AdapterHub's ``DoubleSeqBnConfig``):
      on the sublayer's output, before the residual sum and LayerNorm:
      ``LayerNorm(h + a(h) + r)``.
    - ``after_add_norm=True`` (Pfeiffer et al., 2021; AdapterHub's ``SeqBnConfig``): after
      the block's Add & Norm, ``a(LayerNorm(h + r))``; its own skip connection takes ``h``
      and the block's residual sum and LayerNorm apply again: ``LayerNorm(h + a(LayerNorm(h
      + r)) + r)`` (``original_ln_before``, ``residual_before_ln``, ``original_ln_after``).

    The up-projection and both biases start at zero and the down-projection is drawn from
    ``N(0, 0.01^2)``, so ``a`` is exactly zero and a fresh adapter leaves its block's output
    unchanged, in either place. (AdapterHub's default ``"bert"`` initialisation draws both
    projections from ``N(0, 0.02^2)``, so its adapters start near the identity, not at it.)

    Parameters: ``2 * hidden * bottleneck + bottleneck + hidden`` (two weight matrices and two
    bias vectors), in either place. The non-linearity sits between the projections, so
    unlike LoRA and (IA)^3 an adapter cannot be folded into the base weights: it costs
    latency at inference.
    """

    group = "adapter"
    mergeable = False
    wraps = nn.Module  # the whole output block: checked below

    def __init__(self, block: nn.Module, bottleneck: int, activation: str = "gelu", after_add_norm: bool = False):
        dense, norm = getattr(block, "dense", None), getattr(block, "LayerNorm", None)
        if not (
            isinstance(dense, nn.Linear)
            and isinstance(norm, nn.LayerNorm)
            and norm.normalized_shape == (dense.out_features,)
            and isinstance(getattr(block, "dropout", None), nn.Module)
        ):
            raise TypeError(
                f"{type(self).__name__} wraps a BERT output block (a module with a Linear dense, a dropout and a "
                f"LayerNorm, such as BertSelfOutput or BertOutput), got {type(block).__name__}"
            )
        hidden = dense.out_features
        bottleneck = as_int(bottleneck, "bottleneck")
        if not 1 <= bottleneck <= hidden:
            raise ValueError(f"bottleneck must be an integer from 1 to the hidden size {hidden}, got {bottleneck!r}")
        if activation not in ACT2FN:
            raise ValueError(f"unknown activation {activation!r}; choose one of {sorted(ACT2FN)}")
        super().__init__(block)  # the whole block is the frozen base
        factory = {"dtype": adapter_dtype(dense.weight), "device": dense.weight.device}
        self.adapter_down = nn.Linear(hidden, bottleneck, **factory)
        self.adapter_up = nn.Linear(bottleneck, hidden, **factory)
        # Small random down-projection, zero up-projection: the adapter starts as the identity.
        nn.init.normal_(self.adapter_down.weight, std=1e-2)
        nn.init.zeros_(self.adapter_down.bias)
        nn.init.zeros_(self.adapter_up.weight)
        nn.init.zeros_(self.adapter_up.bias)
        self.activation_name = activation
        self.activation = ACT2FN[activation]
        self.after_add_norm = after_add_norm

    def adapter(self, z: torch.Tensor) -> torch.Tensor:
        """The bottleneck alone, ``up(act(down(z)))``, without its skip connection."""
        return self.adapter_up(self.activation(self.adapter_down(z.to(self.adapter_down.weight.dtype)))).to(z.dtype)

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        block = self.base_layer
        h = block.dropout(block.dense(hidden_states))
        if self.after_add_norm:  # Pfeiffer: the adapter reads the block's output after Add & Norm
            return block.LayerNorm(h + self.adapter(block.LayerNorm(h + input_tensor)) + input_tensor)
        return block.LayerNorm(h + self.adapter(h) + input_tensor)  # Houlsby: before Add & Norm

    def extra_repr(self) -> str:
        place = "after Add & Norm" if self.after_add_norm else "before Add & Norm"
        return f"bottleneck={self.adapter_down.out_features}, activation={self.activation_name}, {place}"


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
        self.ia3_vector = nn.Parameter(torch.ones(size, dtype=adapter_dtype(weight), device=weight.device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            self.check_not_training_merged()
            return self.base_layer(x)
        if self.position == "input":
            return self.base_layer(x * self.ia3_vector.to(x.dtype))
        result = self.base_layer(x)
        return result * self.ia3_vector.to(result.dtype)

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
        """Multiply the base weights by ``vector``, computed in at least float32."""
        base = self.base_layer
        scale = vector[None, :] if self.position == "input" else vector[:, None]
        base.weight.copy_((widened(base.weight) * scale).to(base.weight.dtype))
        if self.position == "output" and base.bias is not None:
            base.bias.copy_((widened(base.bias) * vector).to(base.bias.dtype))

    def extra_repr(self) -> str:
        return f"position={self.position}, size={self.ia3_vector.numel()}, merged={self.merged}"
