"""Counting parameters: total, trainable, and who they belong to."""

from __future__ import annotations

from torch import nn

from .methods import HEAD, INJECTED


def parameter_groups(model: nn.Module) -> dict[str, str]:
    """Map each parameter name to its group: ``base``, ``head``, ``lora``, ``adapter`` or ``ia3``."""
    groups = {}
    for module_name, module in model.named_modules():
        if isinstance(module, INJECTED):
            for name, _ in module.named_parameters():
                if not name.startswith("base_layer."):
                    groups[f"{module_name}.{name}"] = module.group
    return {
        name: groups.get(name, "head" if name.startswith(HEAD + ".") else "base")
        for name, _ in model.named_parameters()
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


def method_table(model_name: str | None = None) -> list[dict]:
    """Parameter counts of every registered method, with its defaults, on one model."""
    import copy

    from .methods import METHODS, apply_method
    from .models import load_model

    base, _ = load_model(model_name)
    rows = []
    for name, spec in METHODS.items():
        counts = count_parameters(apply_method(copy.deepcopy(base), name))
        rows.append({"method": name, "trainable": counts["trainable"], "total": counts["total"],
                     "trainable_pct": counts["trainable_pct"], "description": spec.description})
    return rows


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Print what each method trains on a model.")
    parser.add_argument("--model", default=None, help="Hugging Face id or folder (default: the packaged model)")
    args = parser.parse_args(argv)
    print(f"{'method':<10}{'trainable':>14}{'total':>14}{'%':>9}  description")
    for row in method_table(args.model):
        print(f"{row['method']:<10}{row['trainable']:>14,}{row['total']:>14,}{row['trainable_pct']:>9.3f}  {row['description']}")


if __name__ == "__main__":
    main()
