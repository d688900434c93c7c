"""Counting parameters: total, trainable, and who they belong to."""

from __future__ import annotations

from torch import nn

from .layers import InjectedLayer
from .registry import head_modules


def parameter_groups(model: nn.Module) -> dict[str, str]:
    """Map each parameter name to its group: ``base``, ``head``, ``lora``, ``adapter`` or ``ia3``."""
    groups = {}
    for module_name, module in model.named_modules():
        if isinstance(module, InjectedLayer):
            for name, _ in module.named_parameters():
                if not name.startswith("base_layer."):
                    groups[f"{module_name}.{name}"] = module.group
    heads = tuple(f"{module}." for module in head_modules(model))
    return {
        name: groups.get(name, "head" if name.startswith(heads) else "base") for name, _ in model.named_parameters()
    }


def count_parameters(model: nn.Module) -> dict:
    """Count the model's parameters.

    Returns ``{"total", "trainable", "trainable_pct", "groups"}`` where ``groups`` maps each
    group (``base``, ``head``, and ``lora``, ``adapter`` or ``ia3`` where present) to its
    ``{"total", "trainable"}``. ``trainable_pct`` is ``100 * trainable / total``, PEFT's
    ``print_trainable_parameters`` convention: the total includes what a method adds.
    """
    groups = parameter_groups(model)
    by_group: dict[str, dict[str, int]] = {}
    for name, param in model.named_parameters():
        counts = by_group.setdefault(groups[name], {"total": 0, "trainable": 0})
        counts["total"] += param.numel()
        counts["trainable"] += param.numel() if param.requires_grad else 0
    total = sum(g["total"] for g in by_group.values())
    trainable = sum(g["trainable"] for g in by_group.values())
    return {
        "total": total,
        "trainable": trainable,
        "trainable_pct": 100.0 * trainable / total,
        "groups": by_group,
    }


def decay_parameter_names(model: nn.Module) -> list[str]:
    """The trainable parameters that weight decay should apply to: not biases, not LayerNorm
    parameters, and not what an injected layer lists in its ``no_decay`` (the (IA)^3 vectors)."""
    exempt = {
        f"{prefix}.{name}"
        for prefix, module in model.named_modules()
        if isinstance(module, InjectedLayer)
        for name in module.no_decay
    }
    exempt |= {
        f"{prefix}.{name}".lstrip(".")
        for prefix, module in model.named_modules()
        if isinstance(module, nn.LayerNorm)
        for name, _ in module.named_parameters(recurse=False)
    }
    return [
        name
        for name, p in model.named_parameters()
        if p.requires_grad and name not in exempt and not name.endswith(".bias")
    ]
