"""The contract every injected layer keeps: wrap a frozen ``base_layer``, train something beside it.

``LoRALinear``, ``BottleneckAdapter`` and ``IA3Linear`` are ``InjectedLayer`` subclasses, so
counting, merging and saving find them all with one ``isinstance`` and ask them the same
questions: which parameter group they belong to, whether they can fold into the base
weights, and whether they have.
"""

from __future__ import annotations

import operator
from typing import ClassVar

import torch
from torch import nn


def adapter_dtype(weight: torch.Tensor) -> torch.dtype:
    """The dtype an injected layer's own parameters take beside a base ``weight``: float32 on a
    half-precision base (bf16, fp16), whose rounding would swallow the small updates of
    training; the base's own dtype otherwise. PEFT keeps adapters in float32 the same way."""
    return torch.float32 if weight.dtype in (torch.float16, torch.bfloat16) else weight.dtype


def widened(weight: torch.Tensor) -> torch.Tensor:
    """``weight`` in at least float32, where merging computes (a bf16 sum rounds the update away)."""
    return weight.to(torch.promote_types(weight.dtype, torch.float32))


def as_int(value, name: str) -> int:
    """``value`` as a Python int where it is integral (``int``, ``numpy.int64``, a 0-d integer
    tensor), else a ValueError naming ``name``. ``True`` is refused: a flag is no count."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None


class InjectedLayer(nn.Module):
    """A trainable addition to a frozen module, kept as ``base_layer`` (never copied).

    Subclasses set ``group`` (the name ``count_parameters`` reports their parameters under),
    ``mergeable``, ``no_decay`` and ``wraps`` (what ``base_layer`` may be: an ``nn.Linear``
    unless the layer wraps a larger block, as a bottleneck adapter wraps BERT's output block);
    a mergeable layer implements ``merge`` and ``unmerge``, both of which do nothing when
    called twice.
    """

    group: ClassVar[str]
    mergeable: ClassVar[bool] = False
    wraps: ClassVar[type[nn.Module]] = nn.Linear
    # Parameters that weight decay must leave alone (decay pulls toward 0, which is not their neutral value).
    no_decay: ClassVar[tuple[str, ...]] = ()

    def __init__(self, base_layer: nn.Module):
        super().__init__()
        if not isinstance(base_layer, self.wraps):
            raise TypeError(
                f"{type(self).__name__} wraps an nn.{self.wraps.__name__}, got {type(base_layer).__name__}; "
                "target the model's Linear layers (see lora_lib.methods.linear_layer_names)"
            )
        self.base_layer = base_layer.requires_grad_(False)
        self.merged = False

    def check_not_training_merged(self) -> None:
        """Refuse a forward pass that would train a merged layer: its update lives in the base
        weight then, so its own parameters get no gradient and training would change nothing."""
        if self.training and torch.is_grad_enabled() and any(p.requires_grad for p in self._parameters.values()):
            raise RuntimeError(
                f"this {type(self).__name__} is merged into its base weights, so training it would change "
                "nothing; call lora_lib.unmerge_adapters(model) before training (or model.eval() to infer)"
            )

    def merge(self, safe: bool = False) -> None:
        """Fold the trained part into ``base_layer``'s weights."""
        raise ValueError(
            f"{type(self).__name__} has a non-linearity between its projections and cannot be folded into the "
            "base weights; only LoRA and (IA)^3 merge"
        )

    def unmerge(self) -> None:
        """Take the trained part back out of ``base_layer``'s weights."""
        raise ValueError(f"{type(self).__name__} cannot be merged, so there is nothing to unmerge")
