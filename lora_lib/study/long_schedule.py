"""The third grid's learning rates, computed from the records that chose them.

The rate check (``studies/v3/search.yml``, records in ``executed/v3/rates/``) trained full
fine-tuning and LoRA r=8 at their second-study rates and a step below, at the long schedule;
``curves.chosen_rate`` picks each one's grid rate on the held-out sentences. Every other rate
follows from those two by the rule ``studies/v3/experiments.yml`` states:

- another parameter-efficient configuration moves as LoRA r=8 moved: its second-study rate
  (``rates.study_rate``; a LoRA rank that study did not search takes its nearest searched
  rank's) times LoRA r=8's checked rate over its second-study one;
- each of LoRA's successors at r=8 (rsLoRA, LoRA+, DoRA, PiSSA) takes its stage-1 best
  (``executed/v3/tuning/``) times LoRA r=8's checked rate over LoRA r=8's own stage-1 best;
- the rank series runs each method at one rate for every rank: LoRA at LoRA r=8's, rsLoRA at
  rsLoRA r=8's.

``grid_rate(...)`` is that rule; a test keeps every run of the grid file equal to it.
"""

from __future__ import annotations

import pandas as pd

from lora_lib.registry import with_defaults

from .config import RunConfig
from .curves import chosen_rate, configuration_label
from .grid import expand
from .rates import LORA_RATES, rate_for_rank, study_rate, target_tuple
from .record import Record
from .successors import config_variant

CHECKED = ("full", "lora")  # the configurations the rate check trained: full fine-tuning and LoRA r=8
LORA_FAMILY = ("lora", "dora", "pissa")
SUCCESSOR_RANK = 8  # the successors' stage 1 and their grid runs are at r=8; other ranks are the rank series


def checked_rates(rate_records: list[Record]) -> dict[str, tuple[float, float]]:
    """Per method of the rate check ("full", "lora"): the second study's rate and the one the
    check chose at the long schedule (the second study's on a tie)."""
    by_method: dict[str, list[Record]] = {}
    for record in rate_records:
        by_method.setdefault(record.method, []).append(record)
    missing = [m for m in CHECKED if m not in by_method]
    if missing:
        raise ValueError(
            f"the rate check has no run of {', '.join(missing)}: run lora-sweep studies/v3/search.yml first"
        )
    rates = {}
    for method in CHECKED:
        current = study_rate(method, by_method[method][0].config.hparams)
        rates[method] = (current, chosen_rate(by_method[method], current))
    return rates


def _three_figures(rate: float) -> float:
    return float(f"{rate:.3g}")


def _second_study_rate(method: str, hparams: dict) -> float:
    """The second study's rate for the configuration, a LoRA rank it did not search on these
    targets taking its nearest searched rank's."""
    try:
        return study_rate(method, hparams)
    except ValueError:
        full = with_defaults(method, hparams)
        if method != "lora" or target_tuple(full["targets"]) not in LORA_RATES:
            raise
        return rate_for_rank(LORA_RATES[target_tuple(full["targets"])], full["rank"])[1]


def grid_rate(
    method: str,
    hparams: dict | None,
    checked: dict[str, tuple[float, float]],
    successors: dict[str, tuple[float, float]],
    loraplus_ratio: float | None = None,
) -> float:
    """The grid's rate for a configuration, from ``checked_rates`` and ``successors.best_rates``
    (each successor's stage-1 best and LoRA's at its rank), to three significant figures."""
    hparams = dict(hparams or {})
    (lora_second, lora_checked), (_, full_checked) = checked["lora"], checked["full"]
    if method == "full":
        return full_checked
    full = with_defaults(method, hparams)
    if method in LORA_FAMILY and target_tuple(full["targets"]) == ("query", "value"):
        name = config_variant(method, hparams, loraplus_ratio)
        if name.startswith("LoRA r="):
            return lora_checked  # LoRA r=8 itself, and the rank series at its rate
        if name.startswith("rsLoRA r=") and full["rank"] != SUCCESSOR_RANK:
            return grid_rate(method, {**hparams, "rank": SUCCESSOR_RANK}, checked, successors)
        if name not in successors:
            raise ValueError(f"no stage-1 search of {name}: run lora-sweep studies/v3/search_variants.yml first")
        best, lora_best = successors[name]
        return _three_figures(best * lora_checked / lora_best)
    return _three_figures(_second_study_rate(method, hparams) * lora_checked / lora_second)


def grid_table(grid_file, checked: dict[str, tuple[float, float]], successors: dict[str, tuple[float, float]]):
    """One row per configuration of the grid file: its seeds, the epochs its runs train, the
    rate the file gives it and the rate ``grid_rate`` derives from the records (equal, as a
    test keeps them)."""
    rows: dict[str, dict] = {}
    for run in expand(grid_file).runs:
        config = RunConfig.from_parameters(**run.parameters)
        row = rows.setdefault(
            configuration_label(config),
            {
                "seeds": [],
                "epochs": [],
                "rate in the file": config.lr,
                "rate by the rule": grid_rate(
                    config.method, config.hparams, checked, successors, config.loraplus_ratio
                ),
            },
        )
        row["seeds"].append(config.seed)
        row["epochs"].append(config.epochs)
    frame = pd.DataFrame.from_dict(rows, orient="index").rename_axis("configuration")
    frame["epochs"] = frame["epochs"].map(lambda e: ", ".join(f"{x:g}" for x in sorted(set(e), reverse=True)))
    frame["seeds"] = frame["seeds"].map(len)
    return frame
