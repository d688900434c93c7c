"""The learning rate a run takes when it names none: the rate the study chose for its configuration.

The second study searched each configuration's rate on the clean tuning slice (1,000 whole
training sentences held out; never the validation split): stage 1 on 10,000 phrases for one
epoch, then each configuration's best two rates at the grid's schedule (stage 2). The rates
below are what that search chose (``protocol.grid_rates`` of its records in
``executed/tuning/``; a test keeps the two equal). A LoRA rank on query and value that was not
searched takes the rate of the searched rank nearest in log2(r). A configuration the study did
not search has no default: the run must say its ``lr``.
"""

from __future__ import annotations

import math

from lora_lib.registry import METHODS, with_defaults

# Methods whose searched configuration is their registered defaults.
METHOD_RATES = {"full": 6e-5, "head": 5e-3, "bitfit": 3e-3, "houlsby": 2e-3, "pfeiffer": 4e-3, "ia3": 1.5e-2}
# LoRA at alpha = 16, alpha / r scaling and no dropout: targets -> {searched rank: rate}.
LORA_RATES = {
    ("query", "value"): {1: 1e-3, 8: 1e-3, 64: 2e-3},
    ("query",): {16: 2e-3},
    ("value",): {16: 1e-3},
    ("query", "key", "value", "attention.output.dense"): {4: 1e-3},
    ("query", "key", "value", "output.dense", "intermediate.dense"): {2: 1e-3},
}
NEAREST_RANK = ("query", "value")  # the targets whose other ranks take the nearest searched rank's rate


def target_tuple(targets) -> tuple[str, ...]:
    """A LoRA ``targets`` value ("query,value" or a sequence) as a tuple of names."""
    return tuple(t.strip() for t in targets.split(",")) if isinstance(targets, str) else tuple(targets)


def rate_for_rank(searched: dict[int, float], rank: int) -> tuple[int, float]:
    """The rate a LoRA rank takes: that of the searched rank nearest in log2(rank), the lower
    one on a tie. ``searched`` maps each searched rank to its chosen rate."""
    if not searched:
        raise ValueError("no searched rank to take a rate from: run the search (search.yml) first")
    nearest = min(sorted(searched), key=lambda r: abs(math.log2(r) - math.log2(rank)))
    return nearest, searched[nearest]


def study_rate(method: str, hparams: dict | None = None) -> float:
    """The rate the study chose for ``method`` with ``hparams``, or a ValueError naming the
    configuration and asking for ``lr`` where the study searched none."""
    full = with_defaults(method, hparams)
    registered = with_defaults(method, {})
    if method in METHOD_RATES and full == registered:
        return METHOD_RATES[method]
    if method == "lora":
        targets = target_tuple(full["targets"])
        plain = {k: full[k] for k in ("alpha", "dropout", "use_rslora")} == {
            k: registered[k] for k in ("alpha", "dropout", "use_rslora")
        }
        searched = LORA_RATES.get(targets, {})
        if plain and full["rank"] in searched:
            return searched[full["rank"]]
        if plain and targets == NEAREST_RANK:
            return rate_for_rank(searched, full["rank"])[1]
    given = ", ".join(f"{k}={v!r}" for k, v in (hparams or {}).items())
    known = ", ".join(METHODS) if method not in METHODS else f"{method}({given})"
    raise ValueError(
        f"the study chose no learning rate for {known}: pass lr (for example -p lr 1e-3); the study's "
        "rates are lora_lib.study.rates.METHOD_RATES and LORA_RATES"
    )
