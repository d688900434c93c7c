"""Two configurations compared on the same sentences, from the predictions their records keep.

- ``evaluation_labels(config)``: the gold labels of the split a run was scored on (the
  validation split, or the tuning slice its ``eval_split`` and ``holdout_size`` hold out).
- ``correct(records, labels)``: seeds x sentences, whether each run got each sentence right.
- ``accuracy_intervals(records)``: each configuration's accuracy with its interval over the
  seeds alone beside the one over seeds and sentences.
- ``compare(a, b)``: A minus B with the paired bootstrap over seeds and sentences, McNemar's
  test on the pooled predictions, and the t-interval over the seeds alone beside them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from .config import RunConfig
from .data import evaluation_split, load_sst2
from .record import Record
from .stats import Interval, McNemar, bootstrap_interval, mcnemar, paired_bootstrap, t_interval, welch_interval


@lru_cache(maxsize=8)
def _labels(eval_split: str, holdout_size: int, data_dir: str | None) -> tuple[int, ...]:
    return tuple(evaluation_split(load_sst2(data_dir), eval_split, holdout_size)[1]["label"])


def evaluation_labels(config: RunConfig, data_dir: str | None = None) -> np.ndarray:
    """The gold labels, in order, of the split that ``config`` is scored on."""
    return np.array(_labels(config.eval_split, config.holdout_size, data_dir or config.data_dir))


def correct(records: list[Record], labels) -> np.ndarray:
    """Seeds x sentences of 0/1, one row per record in seed order: its prediction equals the label."""
    labels = np.asarray(labels)
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
        predicted = np.asarray(record.predictions.label)
        if predicted.shape != labels.shape:
            raise ValueError(
                f"run {record.run_id} has {len(predicted)} predictions, its evaluation split {len(labels)} sentences"
            )
        rows.append(predicted == labels)
    return np.array(rows, dtype=float)


@dataclass(frozen=True)
class Comparison:
    """A minus B in points: over seeds and sentences (paired bootstrap), over the seeds alone
    (Welch), and McNemar's test on the pooled predictions."""

    difference: Interval
    seeds_only: Interval
    mcnemar: McNemar
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
        difference=paired_bootstrap(correct_a, correct_b),
        seeds_only=welch_interval(correct_a.mean(axis=1), correct_b.mean(axis=1)),
        mcnemar=mcnemar(correct_a, correct_b),
        seeds=(len(a), len(b)),
    )


def accuracy_intervals(records: list[Record], data_dir: str | None = None, labels=None) -> pd.DataFrame:
    """Per configuration (``Record.group_key``): the mean accuracy's 95% interval over the seeds
    alone (t) beside the one over seeds and sentences (bootstrap), which adds the evaluation
    split's own sampling error. Records without predictions (schema version 1) are an error."""
    groups: dict[str, list[Record]] = {}
    for record in records:
        groups.setdefault(record.group_key(), []).append(record)
    rows = []
    for group, runs in groups.items():
        gold = evaluation_labels(runs[0].config, data_dir) if labels is None else labels
        rows.append(
            {
                "group": group,
                "seeds": t_interval([r.metrics.dev_accuracy for r in runs]),
                "seeds and sentences": bootstrap_interval(correct(runs, gold)),
            }
        )
    return pd.DataFrame(rows).set_index("group")
