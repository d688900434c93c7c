"""Two configurations compared on the same sentences, from the predictions their records keep.

- ``evaluation_labels(config)``: the gold labels of the split a run was scored on (the
  validation split, or the tuning slice its ``eval_split`` and ``holdout_size`` hold out).
- ``correct(records, labels)``: seeds x sentences, whether each run got each sentence right.
- ``accuracy_intervals(records)``: each configuration's accuracy with its interval over the
  seeds alone beside the one over seeds and sentences (the crossed design's, and the
  pigeonhole bootstrap's of the second study's first look).
- ``compare(a, b)``: A minus B with the crossed design's interval over seeds and sentences,
  the sentence-clustered sign-flip test, and beside them the pigeonhole bootstrap and the
  Welch interval over the seeds alone.
- ``against_reference(records, reference)``: every configuration of a grid beside one of them
  (full fine-tuning, or LoRA r=8 for the choice of weights): its accuracy both ways and its
  paired difference to the reference, with its p-value and Holm's over the table's family.
- ``which_weights(records)``: the same for the ways of spending LoRA r=8's parameters on other
  weight matrices (the LoRA paper's Section 7.1), each against query and value at r=8.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from lora_lib.registry import METHODS, with_defaults

from .aggregate import config_label, label_of, method_order
from .config import RunConfig
from .data import evaluation_split, load_sst2
from .record import Record, by_configuration
from .stats import (
    Interval,
    bootstrap_interval,
    crossed_interval,
    holm_column,
    paired_bootstrap,
    sign_flip_test,
    t_interval,
    welch_interval,
)


@lru_cache(maxsize=8)
def _labels(eval_split: str, holdout_size: int, data_dir: str | None) -> tuple[int, ...]:
    return tuple(evaluation_split(load_sst2(data_dir), eval_split, holdout_size)[1]["label"])


def evaluation_labels(config: RunConfig, data_dir: str | None = None) -> np.ndarray:
    """The gold labels, in order, of the split that ``config`` is scored on."""
    return np.array(_labels(config.eval_split, config.holdout_size, data_dir or config.data_dir))


def correct(records: list[Record], labels) -> np.ndarray:
    """Seeds x sentences of 0/1, one row per record in seed order: its prediction equals the label."""
    rows = []
    for record in sorted(records, key=lambda r: r.seed):
        if record.predictions is None:
            raise ValueError(
                f"run {record.run_id} keeps no per-sentence predictions (a record of schema version 1): "
                "run it again to compare it sentence by sentence"
            )
        if record.schema_version < 3:
            raise ValueError(
                f"run {record.run_id} keeps its predictions in a length-grouped order (schema version 2): "
                "put them in the split's order with python -m lora_lib.study.repair FOLDER"
            )
        rows.append((f"run {record.run_id}", record.predictions.label))
    return correct_rows(rows, labels)


def correct_rows(predictions, labels) -> np.ndarray:
    """Rows x sentences of 0/1 from ``(name, predicted labels)`` pairs: whether each prediction
    equals the label. ``name`` says whose predictions they are when their length is not the split's."""
    labels = np.asarray(labels)
    rows = []
    for name, predicted in predictions:
        predicted = np.asarray(predicted)
        if predicted.shape != labels.shape:
            raise ValueError(
                f"{name} has {len(predicted)} predictions, the evaluation split {len(labels)} sentences: "
                "score every run on the same split"
            )
        rows.append(predicted == labels)
    return np.array(rows, dtype=float).reshape(len(rows), len(labels))


@dataclass(frozen=True)
class Comparison:
    """A minus B in points: over seeds and sentences (the crossed design's interval, and the
    pigeonhole bootstrap that the second study first used), over the seeds alone (Welch), and
    the sign-flip test's p-value, clustered by sentence."""

    difference: Interval
    bootstrap: Interval
    seeds_only: Interval
    p_value: float
    seeds: tuple[int, int]


def compare(a: list[Record], b: list[Record], data_dir: str | None = None, labels=None) -> Comparison:
    """Configuration A's runs against B's on the sentences both were scored on (their gold
    ``labels``, read from the data unless given)."""
    if not a or not b:
        raise ValueError("compare needs at least one run on each side")
    splits = {(r.config.eval_split, r.config.holdout_size) for r in [*a, *b]}
    if len(splits) != 1:
        raise ValueError(f"the runs were scored on different splits {sorted(splits)}: compare runs of one split")
    labels = evaluation_labels(a[0].config, data_dir) if labels is None else labels
    correct_a, correct_b = correct(a, labels), correct(b, labels)
    return Comparison(
        difference=crossed_interval(correct_a, correct_b).interval,
        bootstrap=paired_bootstrap(correct_a, correct_b),
        seeds_only=welch_interval(correct_a.mean(axis=1), correct_b.mean(axis=1)),
        p_value=sign_flip_test(correct_a, correct_b),
        seeds=(len(a), len(b)),
    )


def accuracy_intervals(records: list[Record], data_dir: str | None = None, labels=None) -> pd.DataFrame:
    """Per configuration (``Record.group_key``): the mean accuracy's 95% interval over the seeds
    alone (t) beside the one over seeds and sentences (the crossed design's), which adds the
    evaluation split's own sampling error, and the pigeonhole bootstrap's of the first look.
    Records without predictions (schema version 1) are an error."""
    groups = by_configuration(records)
    rows = []
    for group, runs in groups.items():
        gold = evaluation_labels(runs[0].config, data_dir) if labels is None else labels
        correct_runs = correct(runs, gold)
        rows.append(
            {
                "group": group,
                "seeds": t_interval([r.metrics.dev_accuracy for r in runs]),
                "seeds and sentences": crossed_interval(correct_runs).interval,
                "bootstrap": bootstrap_interval(correct_runs),
            }
        )
    return pd.DataFrame(rows).set_index("group")


def against_reference(
    records: list[Record], reference: str = "Full fine-tuning", data_dir: str | None = None, labels=None
) -> pd.DataFrame:
    """One row per configuration (``Record.group_key``), in registry order, named by
    ``config_label``: its share of trained parameters, its seeds, its accuracy over the seeds
    alone and over seeds and sentences, and its difference to the ``reference`` configuration
    (by its label; the crossed design's interval over seeds and sentences, beside the pigeonhole
    bootstrap's and Welch's interval over the seeds alone), with the sign-flip test's p and
    Holm's adjustment of it over the family of every row against the reference (column "Holm
    p"); the reference's own row has none of these. Every record must be scored on the same split."""
    groups = by_configuration(records)
    base = [runs for runs in groups.values() if config_label(runs[0].method, runs[0].config.hparams) == reference]
    if len(base) != 1:
        raise ValueError(
            f"against_reference needs exactly one configuration named {reference!r}, got {len(base)}: "
            "pass the records of one grid"
        )
    gold = evaluation_labels(records[0].config, data_dir) if labels is None else labels
    intervals = accuracy_intervals(records, data_dir, gold)
    rows = []
    for group, runs in groups.items():
        first = runs[0]
        versus = None if runs is base[0] else compare(runs, base[0], data_dir, gold)
        rows.append(
            {
                "configuration": config_label(first.method, first.config.hparams),
                "method": first.method,
                "rank": rank_of(first),
                "_variant": config_label(first.method, first.config.hparams) != label_of(first.method, rank_of(first)),
                "trainable (%)": first.params.trainable_pct,
                "seeds": len(runs),
                "accuracy over seeds": intervals.loc[group, "seeds"],
                "accuracy over seeds and sentences": intervals.loc[group, "seeds and sentences"],
                "accuracy (bootstrap)": intervals.loc[group, "bootstrap"],
                "difference": versus.difference if versus else None,
                "difference (bootstrap)": versus.bootstrap if versus else None,
                "difference over seeds": versus.seeds_only if versus else None,
                "p": versus.p_value if versus else None,
            }
        )
    frame = pd.DataFrame(rows)
    frame["Holm p"] = holm_column(frame)
    frame["_order"] = frame["method"].map(method_order)
    frame = frame.sort_values(["_order", "_variant", "rank"], na_position="first")
    return frame.drop(columns=["_order", "_variant"]).set_index("configuration")


def which_weights(
    records: list[Record], reference: str = "LoRA r=8", data_dir: str | None = None, labels=None
) -> pd.DataFrame:
    """``against_reference`` on LoRA's configurations that adapt other weight matrices than its
    default ones (query and value), beside the ``reference`` configuration on the default ones,
    with each one's count of trained parameters (column "trainable"): which weights to spend a
    budget of parameters on."""
    default = list(METHODS["lora"].defaults["targets"])
    chosen = [
        r
        for r in records
        if r.method == "lora"
        and (
            config_label(r.method, r.config.hparams) == reference
            or list(with_defaults(r.method, r.config.hparams)["targets"]) != default
        )
    ]
    table = against_reference(chosen, reference, data_dir, labels)
    trainable = {config_label(r.method, r.config.hparams): r.params.trainable for r in chosen}
    return table.assign(trainable=table.index.map(trainable))


def rank_of(record: Record):
    """LoRA's rank as the run trained it (the method's default where the run left it out)."""
    return with_defaults(record.method, record.config.hparams).get("rank")
