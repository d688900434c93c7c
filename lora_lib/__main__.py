"""``python -m lora_lib``: what each registered method trains on a model."""

from __future__ import annotations

import argparse
import copy

from . import METHODS, apply_method, count_parameters, load_model


def method_table(model_name: str | None = None) -> list[dict]:
    """Parameter counts of every registered method, with its defaults, on one model."""
    base, _ = load_model(model_name)
    rows = []
    for name, spec in METHODS.items():
        counts = count_parameters(apply_method(copy.deepcopy(base), name))
        rows.append(
            {
                "method": name,
                "trainable": counts["trainable"],
                "total": counts["total"],
                "trainable_pct": counts["trainable_pct"],
                "description": spec.description,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Print what each method trains on a model.")
    parser.add_argument("--model", default=None, help="Hugging Face id or folder (default: the packaged model)")
    args = parser.parse_args(argv)
    print(f"{'method':<10}{'trainable':>14}{'total':>14}{'%':>9}  description")
    for row in method_table(args.model):
        counts = f"{row['trainable']:>14,}{row['total']:>14,}{row['trainable_pct']:>9.3f}"
        print(f"{row['method']:<10}{counts}  {row['description']}")


if __name__ == "__main__":
    main()
