"""Folding trained updates into the base weights for inference, and taking them out again.

What merges is what is linear in its input: LoRA's ``B A`` and (IA)^3's vectors. A bottleneck
adapter has a non-linearity between its projections and cannot merge.
"""

from __future__ import annotations

from torch import nn

from .layers import InjectedLayer


def _mergeable_layers(model: nn.Module) -> list[InjectedLayer]:
    injected = [m for m in model.modules() if isinstance(m, InjectedLayer)]
    blocking = [m for m in injected if not m.mergeable]
    if blocking:
        blocking[0].merge()  # raises the layer's own explanation
    if not injected:
        raise ValueError("nothing to merge: the model has no LoRA or (IA)^3 layers")
    return injected


def merge_adapters(model: nn.Module, safe: bool = False) -> nn.Module:
    """Fold every injected update (LoRA's and (IA)^3's) into its base weights, in place.

    Merging twice is a no-op. Bottleneck adapters cannot be merged and raise an error
    before any layer is changed. A merged model infers at the base model's cost and refuses
    to train until ``unmerge_adapters`` takes the updates out again.
    """
    for layer in _mergeable_layers(model):
        layer.merge(safe=safe)
    return model


def unmerge_adapters(model: nn.Module) -> nn.Module:
    """Take every merged update back out of its base weights, in place."""
    for layer in _mergeable_layers(model):
        layer.unmerge()
    return model


def has_merged_layers(model: nn.Module) -> bool:
    """Whether any injected layer of ``model`` is merged into its base weights."""
    return any(m.merged for m in model.modules() if isinstance(m, InjectedLayer))
