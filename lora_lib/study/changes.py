"""The second study beside the first: what each configuration trained with in each, what its
mean validation accuracy did (``since_first_study``), and what a run cost (``time_per_run``).

Both studies score the same 872 validation sentences, but the first study's records keep no
per-sentence predictions to pair them sentence by sentence, so the difference carries the
seeds' spread only (Welch's interval over seeds): it leaves out the sampling error of the
sentences on which the two disagree, and is narrower than a paired interval would be.
"""

from __future__ import annotations

import pandas as pd

from .aggregate import config_label, format_lr, method_order
from .paired import rank_of
from .record import Record, by_configuration
from .stats import t_interval, welch_interval


def _by_label(records: list[Record]) -> dict[str, list[Record]]:
    """One study's configurations by ``config_label``, the name both studies give them."""
    groups: dict[str, list[Record]] = {}
    for runs in by_configuration(records).values():
        label = config_label(runs[0].method, runs[0].config.hparams)
        if label in groups:
            raise ValueError(f"{label!r} names more than one configuration of a study: pass the records of one grid")
        groups[label] = runs
    return groups


def _order(runs: list[Record]) -> tuple[int, int]:
    """Where a configuration's row goes: the registry's order of methods, then LoRA's rank."""
    return method_order(runs[0].method), rank_of(runs[0]) or 0


def since_first_study(first: list[Record], second: list[Record]) -> pd.DataFrame:
    """One row per configuration that both studies ran (by ``config_label``), in registry order:
    each study's head, learning rate and seeds, each one's mean validation accuracy with its
    t-interval over seeds, and the second's mean minus the first's (Welch, over seeds)."""
    if any(r.metrics.eval_split != "validation" for r in [*first, *second]):
        raise ValueError("since_first_study compares validation accuracy: pass records scored on the validation split")
    before, after = _by_label(first), _by_label(second)
    rows = []
    for label in sorted(before.keys() & after.keys(), key=lambda name: _order(after[name])):
        old, new = before[label], after[label]
        old_accuracy, new_accuracy = ([r.metrics.dev_accuracy for r in runs] for runs in (old, new))
        rows.append(
            {
                "configuration": label,
                "head": f"{old[0].config.head} → {new[0].config.head}",
                "learning rate": f"{format_lr(old[0].config.lr)} → {format_lr(new[0].config.lr)}",
                "seeds": f"{len(old)} → {len(new)}",
                "first study (%)": t_interval(old_accuracy),
                "second study (%)": t_interval(new_accuracy),
                "change (points)": welch_interval(new_accuracy, old_accuracy),
            }
        )
    if not rows:
        raise ValueError("the two studies share no configuration: pass the first study's and the second's records")
    return pd.DataFrame(rows).set_index("configuration")


def time_per_run(first: list[Record], second: list[Record]) -> pd.DataFrame:
    """Training minutes per run: for each configuration both studies ran, each study's mean and
    the second's over the first's; then a row "every run", each study's mean over all its runs
    (the grids differ in their mix of configurations), and its ratio."""
    before, after = _by_label(first), _by_label(second)

    def minutes(runs: list[Record]) -> float:
        return sum(r.cost.train_seconds for r in runs) / len(runs) / 60

    shared = sorted(before.keys() & after.keys(), key=lambda name: _order(after[name]))
    rows = [(label, minutes(before[label]), minutes(after[label])) for label in shared]
    rows.append(("every run", minutes(first), minutes(second)))
    frame = pd.DataFrame(rows, columns=["configuration", "first study (min)", "second study (min)"])
    frame["second / first"] = frame["second study (min)"] / frame["first study (min)"]
    return frame.set_index("configuration")
