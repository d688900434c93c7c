"""From a results table to one row per configuration: runs that differ only in their seed.

A configuration is ``RunConfig.group_key()``: the whole configuration without its seed (the
``group`` column of ``results_table``), never a parse of run ids.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lora_lib.registry import METHODS, with_defaults

# Sets of LoRA targets that have a name of their own (the LoRA paper's Section 7.1): BERT's
# four attention matrices, and every linear layer of the encoder ("output.dense" is both the
# attention's output projection and the feed-forward block's second layer).
NAMED_TARGETS = {
    ("query", "key", "value", "attention.output.dense"): "the attention matrices",
    ("query", "key", "value", "output.dense", "intermediate.dense"): "every linear layer",
}


def label_of(method: str, rank=None, targets=None) -> str:
    """How tables and figures name a configuration: the registry's label, and LoRA's rank and,
    where they differ from the default (query and value), its targets: "LoRA r=8 + pooler.dense"
    beside the default ones, "LoRA r=16 on query" instead of them, "LoRA r=2 on every linear
    layer" for a set in ``NAMED_TARGETS``."""
    name = METHODS[method].label if method in METHODS else method
    if method != "lora" or not pd.notna(rank):
        return name
    name = f"{name} r={int(rank)}"
    default = list(METHODS["lora"].defaults["targets"])
    if targets is None or list(targets) == default:
        return name
    if tuple(targets) in NAMED_TARGETS:
        return f"{name} on {NAMED_TARGETS[tuple(targets)]}"
    if set(default) <= set(targets):
        return name + "".join(f" + {t}" for t in targets if t not in default)
    return f"{name} on {', '.join(targets)}"


def config_label(method: str, hparams: dict | None) -> str:
    """``label_of`` a run's method and hyperparameters, the method's defaults standing in for any
    hyperparameter the run leaves out: the one way every table, figure and title names a run."""
    known = with_defaults(method, hparams)
    return label_of(method, known.get("rank"), known.get("targets"))


def format_lr(lr: float) -> str:
    """A learning rate in scientific notation without padding: ``2e-3``, ``1.2e-4``."""
    mantissa, exponent = f"{lr:.3e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def method_order(method: str) -> int:
    """Methods in registry order (full fine-tuning first), unknown ones last."""
    names = list(METHODS)
    return names.index(method) if method in names else len(names)


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration: accuracy mean and std over seeds, parameters, cost. The
    training time is the median over the seeds: a run slowed by other work on the machine
    moves a mean of five by a fifth of its delay, the median not at all."""
    if results.empty:
        raise ValueError("no records to summarize: run book/train.ipynb or the sweep first")
    rows = []
    for group, runs in results.groupby("group", sort=False):
        runs = runs.sort_values("seed")
        first = runs.iloc[0]
        rows.append(
            {
                "group": group,
                "method": first["method"],
                "rank": first["rank"],
                "lr": first["lr"],
                "label": config_label(first["method"], first["hparams"]),
                "runs": len(runs),
                "run_ids": tuple(runs["run_id"]),
                "seeds": ",".join(str(s) for s in runs["seed"]),
                "accuracy_mean": runs["dev_accuracy"].mean(),
                "accuracy_std": runs["dev_accuracy"].std(ddof=1) if len(runs) > 1 else np.nan,
                "accuracies": tuple(runs["dev_accuracy"]),
                "train_loss_tail": runs["train_loss_tail"].mean(),
                "trainable": int(first["trainable"]),
                "trainable_pct": first["trainable_pct"],
                "train_minutes": runs["train_seconds"].median() / 60,
                "examples_per_second": runs["train_examples_per_second"].mean(),
                "peak_rss_mb": runs["peak_rss_mb"].mean(),
            }
        )
    summary = pd.DataFrame(rows)
    order = summary["method"].map(method_order)
    return (
        summary.assign(_order=order)
        .sort_values(["_order", "rank", "label"])
        .drop(columns="_order")
        .reset_index(drop=True)
    )
