"""The contract every injected layer keeps: wrap a frozen ``base_layer``, train something beside it.

``LoRALinear``, ``BottleneckAdapter`` and ``IA3Linear`` are ``InjectedLayer`` subclasses, so
counting, merging and saving find them all with one ``isinstance`` and ask them the same
questions: which parameter group they belong to, whether they can fold into the base
weights, and whether they have.
"""

from __future__ import annotations

from typing import ClassVar

from torch import nn


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

    def merge(self, safe: bool = False) -> None:
        """Fold the trained part into ``base_layer``'s weights."""
        raise ValueError(
            f"{type(self).__name__} has a non-linearity between its projections and cannot be folded into the "
            "base weights; only LoRA and (IA)^3 merge"
        )

    def unmerge(self) -> None:
        """Take the trained part back out of ``base_layer``'s weights."""
        raise ValueError(f"{type(self).__name__} cannot be merged, so there is nothing to unmerge")
