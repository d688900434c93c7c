"""The third study's learning curves, and the rules stated before its runs (studies/v3/search.yml).

- ``selected_point(record)``: the checkpoint a run reports, the point of its curve with the
  highest accuracy on the clean tuning slice (the earliest of equals); the validation split
  chooses nothing.
- ``last_epoch_rise(records)``: how much a configuration's clean-slice accuracy rose over its
  last epoch, in points; ``is_flat`` applies the rule (at most ``FLAT_RISE``).
- ``contended(record)``: whether other work shared the machine during a run, from its load averages.
- ``curve_frame(records)``: one row per run, point and split, for plots and tables.
- ``first_epochs(record, epochs)``: a longer constant-rate run cut to the shorter run it repeats.
- ``reached(record, minutes)``, ``accuracy_within(record, minutes)``: the points, and the last
  point's accuracy, reached within a budget of training time.
- ``slowed(records)``: the runs that trained well below their configuration's usual speed.
- ``chosen_rate(records, current)``: the long-schedule search's rate, by the selected points.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from .config import RunConfig
from .record import CurvePoint, Record

SELECTION_SPLIT = "sentences"  # the clean tuning slice: what chooses a checkpoint or a rate
FLAT_RISE = 0.3  # points: a curve whose last epoch rose more than this over the one before still rises
CONTENDED_LOAD = 1.5  # times the machine's cores: a load average above it means other work shared the machine
SLOW_SHARE = 0.9  # of its configuration's median speed: a run below it was slowed by something its load missed


class CurveError(ValueError):
    """A record without a learning curve, or curves that cannot be compared."""


def _curve(record: Record) -> list[CurvePoint]:
    if not record.curve:
        raise CurveError(f"run {record.run_id} has no learning curve (it ran without curve_every)")
    return record.curve


def best_point(points: list[CurvePoint], split: str = SELECTION_SPLIT) -> CurvePoint:
    """The point with the highest accuracy on ``split`` (the earliest of equals)."""
    scores = [point.splits[split].accuracy for point in points]
    return points[int(np.argmax(scores))]  # argmax returns the first of equal maxima


def selected_point(record: Record, split: str = SELECTION_SPLIT) -> CurvePoint:
    """The point of the run's curve with the highest accuracy on ``split`` (the earliest of equals)."""
    return best_point(_curve(record), split)


def last_epoch_rise(records: list[Record], split: str = SELECTION_SPLIT) -> float:
    """The seeds' mean accuracy on ``split`` over the points of the last epoch, minus the mean
    over the epoch before, in points. A CurveError if the runs trained less than two epochs or
    their curves' points differ."""
    curves = [_curve(record) for record in records]
    epochs = [point.epoch for point in curves[0]]
    if any([point.epoch for point in curve] != epochs for curve in curves):
        raise CurveError("the runs' curves have different points: " + ", ".join(r.run_id for r in records))
    end = epochs[-1]
    if end < 2:
        raise CurveError(f"a curve of {end:g} epochs has no epoch before its last")
    accuracy = np.array([[point.splits[split].accuracy for point in curve] for curve in curves]).mean(axis=0)
    epoch = np.array(epochs)
    last = accuracy[epoch > end - 1 + 1e-9].mean()
    before = accuracy[(epoch > end - 2 + 1e-9) & (epoch <= end - 1 + 1e-9)].mean()
    return float(100 * (last - before))


def is_flat(records: list[Record], split: str = SELECTION_SPLIT) -> bool:
    """Whether the configuration's curve has flattened by its end: its last epoch rose at most
    ``FLAT_RISE`` points over the epoch before."""
    return last_epoch_rise(records, split) <= FLAT_RISE


def contended(record: Record, cores: int | None = None) -> bool:
    """Whether a load average the run recorded (as training started and ended, and at each
    point) exceeds ``CONTENDED_LOAD`` times the cores (the record's machine's, else this one's)."""
    cores = cores or record.environment.get("cpu_count") or os.cpu_count()
    loads = [record.cost.model_extra.get("load_average_start"), record.cost.model_extra.get("load_average_end")]
    loads += [point.load_average for point in record.curve or []]
    known = [load for load in loads if load is not None]
    if not known:
        raise CurveError(f"run {record.run_id} recorded no load average (it predates the third study)")
    return max(known) > CONTENDED_LOAD * cores


def curve_frame(records: list[Record]) -> pd.DataFrame:
    """One row per run, point and split: ``run_id``, ``seed``, ``step``, ``epoch``, ``minutes``
    of training, ``split``, ``accuracy`` (%) and ``loss``, and ``selected`` (the run's reported point)."""
    rows = []
    for record in records:
        chosen = selected_point(record).step
        for point in _curve(record):
            for split, score in point.splits.items():
                rows.append(
                    {
                        "run_id": record.run_id,
                        "seed": record.seed,
                        "step": point.step,
                        "epoch": point.epoch,
                        "minutes": point.train_seconds / 60,
                        "split": split,
                        "accuracy": 100 * score.accuracy,
                        "loss": score.loss,
                        "selected": point.step == chosen,
                    }
                )
    return pd.DataFrame(rows)


def first_epochs(record: Record, epochs: float) -> Record:
    """The run cut to its points within ``epochs``: at a constant rate after a fixed warm-up, the
    first points of a longer run are the shorter run of the same seed. A CurveError if the run
    trained fewer epochs, or did not hold its rate constant (a decaying rate depends on the end)."""
    curve = _curve(record)
    if record.config.lr_schedule != "constant":
        raise CurveError(f"run {record.run_id} decays its rate: its first points are not a shorter run's")
    if curve[-1].epoch < epochs - 1e-9:
        raise CurveError(f"run {record.run_id} trained {curve[-1].epoch:g} epochs, fewer than {epochs:g}")
    return record.model_copy(update={"curve": [point for point in curve if point.epoch <= epochs + 1e-9]})


def reached(record: Record, minutes: float) -> list[CurvePoint]:
    """The run's points within ``minutes`` of training (its evaluations not counted)."""
    return [point for point in _curve(record) if point.train_seconds <= 60 * minutes]


def accuracy_within(record: Record, minutes: float, split: str = "validation") -> float | None:
    """The accuracy (%) on ``split`` at the run's last point within ``minutes`` of training;
    ``None`` if its first point came later."""
    points = reached(record, minutes)
    return 100 * points[-1].splits[split].accuracy if points else None


def slowed(records: list[Record]) -> set[str]:
    """The run ids of runs that trained below ``SLOW_SHARE`` of the median examples a second of
    their configuration (``curve_label``); a configuration with fewer than three runs has no
    median to judge by. It catches a slow run whose load averages looked normal."""
    speeds: dict[str, list[Record]] = {}
    for record in records:
        speeds.setdefault(curve_label(record), []).append(record)
    slow = set()
    for runs in speeds.values():
        if len(runs) >= 3:
            median = float(np.median([r.cost.train_examples_per_second for r in runs]))
            slow |= {r.run_id for r in runs if r.cost.train_examples_per_second < SLOW_SHARE * median}
    return slow


def chosen_rate(records: list[Record], current: float, split: str = SELECTION_SPLIT) -> float:
    """The rate of the run whose selected point scores highest on ``split`` (one run per rate,
    one configuration); ``current`` wins a tie."""
    rates = {record.config.lr: selected_point(record, split).splits[split].accuracy for record in records}
    if len(rates) != len(records):
        raise CurveError("one run per rate: " + ", ".join(r.run_id for r in records))
    if current not in rates:
        raise CurveError(f"no run at the current rate {current:g}: " + ", ".join(r.run_id for r in records))
    best = max(rates.values())
    return current if rates[current] == best else min(rate for rate, score in rates.items() if score == best)


def run_summary(records: list[Record]) -> pd.DataFrame:
    """One row per curve run: its rate, the selected point (epoch, held-out and validation
    accuracy there), the validation accuracy at the end, the last epoch's rise on the held-out
    sentences, the training minutes and the minutes its points took, and whether it was contended."""
    rows = []
    for record in records:
        chosen, last = selected_point(record), _curve(record)[-1]
        seconds = record.cost.model_extra.get("eval_seconds")
        rows.append(
            {
                "run_id": record.run_id,
                "lr": record.config.lr,
                "selected epoch": chosen.epoch,
                "held-out at selected (%)": 100 * chosen.splits[SELECTION_SPLIT].accuracy,
                "validation at selected (%)": 100 * chosen.splits["validation"].accuracy,
                "validation at end (%)": 100 * last.splits["validation"].accuracy,
                "last epoch's rise (points)": last_epoch_rise([record]) if last.epoch >= 2 else None,
                "training (min)": record.cost.train_seconds / 60,
                "points (min)": None if seconds is None else seconds / 60,
                "contended": contended(record),
            }
        )
    return pd.DataFrame(rows).set_index("run_id")


def configuration_label(config: RunConfig) -> str:
    """How the third study names a configuration: LoRA's successors by what they change
    ("rsLoRA r=8", "LoRA+ r=8", "DoRA r=8", "PiSSA r=8"), every other one as the tables do."""
    from .aggregate import config_label
    from .successors import config_variant

    if config.method in ("lora", "dora", "pissa"):
        name = config_variant(config.method, config.hparams, config.loraplus_ratio)
        if not name.startswith("LoRA r="):
            return name
    return config_label(config.method, config.hparams)


def curve_label(record: Record) -> str:
    """A run's configuration as the third study names it (``configuration_label``)."""
    return configuration_label(record.config)


def mean_curves(records: list[Record], split: str = "validation") -> pd.DataFrame:
    """Each configuration's curve on ``split``, averaged over its seeds point by point: one row
    per configuration and step, with the mean epoch and minutes of training, the accuracy's
    mean and standard deviation over seeds (%), and how many seeds reached the step."""
    frame = curve_frame(records)
    labels = {record.run_id: curve_label(record) for record in records}
    methods = {record.run_id: record.method for record in records}
    frame = frame[frame["split"] == split].assign(
        configuration=frame["run_id"].map(labels), method=frame["run_id"].map(methods)
    )
    grouped = frame.groupby(["configuration", "step"], sort=False)
    return grouped.agg(
        method=("method", "first"),
        epoch=("epoch", "mean"),
        minutes=("minutes", "mean"),
        accuracy=("accuracy", "mean"),
        sd=("accuracy", lambda a: a.std(ddof=1) if len(a) > 1 else 0.0),
        seeds=("accuracy", "size"),
    ).reset_index()


def main(argv: list[str] | None = None) -> None:
    """``python -m lora_lib.study.curves FOLDER``: the curve runs in FOLDER, a row each."""
    import argparse

    from .record import load_records

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("folder", help="a folder of records written with curve_every")
    args = parser.parse_args(argv)
    records = [record for record in load_records(args.folder) if record.curve]
    if not records:
        raise SystemExit(f"{args.folder}: no record with a learning curve")
    from .aggregate import format_lr

    summary = run_summary(records).round(2)
    summary["lr"] = [format_lr(record.config.lr) for record in records]
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(summary.to_string())


if __name__ == "__main__":
    main()
