"""The third study's grid (``studies/v3/experiments.yml``) read for the questions it answers.

- ``configurations(records)``: the runs of each configuration (``curves.curve_label``), in seed order.
- ``common_length(runs)``: the epochs every run of a configuration trained, and the runs cut to
  them (``curves.first_epochs``): a configuration whose seed 0 trained 8 epochs and whose other
  seeds 4, because its curve was flat at 4, is reported over 4.
- ``selected_table(records)``: each configuration's validation accuracy at its selected
  checkpoints, with its interval over seeds and sentences, and its difference to full
  fine-tuning there (interval, sign-flip p, Holm's over the table).
- ``within(record, minutes)``: the checkpoint a run would report given a budget of training
  time: its selected point among the points it had reached.
- ``equal_compute(records)``: each configuration's accuracy at those checkpoints after 5, 10,
  20 and 40 minutes of training on this machine, and its difference to full fine-tuning's,
  from the runs that had the machine to themselves.
- ``successors_table(records)``: LoRA's successors beside LoRA r=8 after 1, 2 and 4 epochs.
- ``rank_table(records)``: LoRA's and rsLoRA's accuracy at r = 2, 8 and 64, each at one rate,
  and the change per doubling of r.
- ``schedule_table(records)``: how seed 0's first four epochs decided how long each
  configuration's other seeds train.
- ``gaps_said(table)``: each difference to full fine-tuning as its interval allows it to be said.
- ``question_of(config)``, ``planned(grid_file)``, ``progress(grid_file, records)``: which
  question a run answers, the configurations the grid runs for each, and how many of each
  question's runs have finished.
- ``swings(records)``: how far a curve moves from one point to the next.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lora_lib.registry import with_defaults

from .aggregate import method_order
from .config import RunConfig
from .curves import (
    FLAT_RISE,
    SELECTION_SPLIT,
    CurveError,
    best_point,
    configuration_label,
    contended,
    curve_label,
    first_epochs,
    last_epoch_rise,
    reached,
    slowed,
)
from .findings import FULL_TARGET, LORA_MAX_GAP_POINTS, LORA_MAX_TRAINABLE_PCT, verdict
from .headline import said
from .paired import correct_rows, evaluation_labels
from .rates import target_tuple
from .record import CurvePoint, Record
from .stats import (
    CONFIDENCE,
    Interval,
    crossed_contrast,
    crossed_interval,
    holm,
    holm_column,
    rank_slope,
    sign_flip_test,
    slope_weights,
)

REFERENCE = "Full fine-tuning"
REPORTED_SPLIT = "validation"  # what a selected checkpoint reports; it chooses nothing
MIN_SEEDS = 3  # the protocol's seeds for a curve: with fewer, the seeds' variance is too rough to put in an interval
SAME_RUN_EXCEPT = {"seed", "run_id", "epochs"}  # what may differ between the runs of one configuration
EQUAL_COMPUTE_MINUTES = (5, 10, 20, 40)
# The best configuration under 1% that the grid named before it ran, and gave the headline's five seeds.
STATED_SMALL = "LoRA r=2 on every linear layer"
SUCCESSOR_REFERENCE = "LoRA r=8"  # what question 3 sets the successors beside
SUCCESSOR_EPOCHS = (1, 2, 4)  # question 3's budgets: sooner at 1 and 2 epochs, higher at 4, the successors' length
QUESTIONS = {
    "time": "Given time, does the gap close? At equal compute, which is ahead?",
    "successors": "Do LoRA's successors get there sooner or higher?",
    "rank": "Once the scaling is fixed, what does rank buy?",
}
DECIDING_EPOCHS = 4  # seed 0's first four epochs decide its configuration's other seeds' length
LONG_EPOCHS = 8  # what they train if its curve still rose over the fourth


def configurations(records: list[Record]) -> dict[str, list[Record]]:
    """Each configuration's curve runs in seed order, the configurations in the tables' order
    (full fine-tuning first, then by method, then by name)."""
    groups: dict[str, list[Record]] = {}
    for record in records:
        if record.curve:
            groups.setdefault(curve_label(record), []).append(record)
    for label, runs in groups.items():
        settings = [r.config.model_dump(exclude=SAME_RUN_EXCEPT) for r in runs]
        odd = [r.run_id for r, s in zip(runs, settings) if s != settings[0]]
        if odd:
            raise CurveError(
                f"{label}: runs {', '.join(odd)} differ from {runs[0].run_id} in more than seed and length "
                "(another rate or setting): keep one configuration's runs in a folder, or move the others "
                "into a superseded/ folder"
            )
    order = sorted(groups, key=lambda label: (method_order(groups[label][0].method), label))
    return {label: sorted(groups[label], key=lambda r: r.seed) for label in order}


def common_length(runs: list[Record]) -> tuple[float, list[Record]]:
    """The epochs every run trained (the shortest run's), and each run cut to them."""
    epochs = min(run.curve[-1].epoch for run in runs)
    return epochs, [first_epochs(run, epochs) for run in runs]


def within(
    record: Record, minutes: float | None = None, split: str = SELECTION_SPLIT, epochs: float | None = None
) -> CurvePoint | None:
    """The point the run reports given ``minutes`` of training, or ``epochs`` (all of its
    training if neither): the highest on ``split`` (the held-out sentences) among those reached,
    the earliest of equals; None before its first point."""
    if minutes is not None and epochs is not None:
        raise ValueError("give a budget in minutes or in epochs, not both")
    points = record.curve if minutes is None else reached(record, minutes)
    if epochs is not None:
        points = [point for point in points if point.epoch <= epochs + 1e-9]
    return best_point(points, split) if points else None


def correct_at(points: list[CurvePoint], labels) -> np.ndarray:
    """Seeds x sentences of 0/1: whether each point's prediction on the validation split is right."""
    named = [(f"the point at step {point.step}", point.splits[REPORTED_SPLIT].labels()) for point in points]
    return correct_rows(named, labels)


def _accuracy(correct: np.ndarray) -> tuple[float, Interval | None]:
    """The mean accuracy in points, and its interval where there are seeds enough for one."""
    estimate = 100 * float(correct.mean())
    return estimate, crossed_interval(correct).interval if len(correct) >= MIN_SEEDS else None


def _difference(correct: np.ndarray, reference: np.ndarray) -> tuple[float, Interval | None, float]:
    """A minus the reference in points; its interval and sign-flip p where both have seeds
    enough (else None and NaN)."""
    estimate = 100 * float(correct.mean() - reference.mean())
    if min(len(correct), len(reference)) < MIN_SEEDS:
        return estimate, None, np.nan
    return estimate, crossed_interval(correct, reference).interval, sign_flip_test(correct, reference)


def _labels(groups: dict[str, list[Record]], labels, data_dir: str | None):
    if not groups:
        raise CurveError("no curve runs: run lora-sweep studies/v3/experiments.yml first")
    return evaluation_labels(next(iter(groups.values()))[0].config, data_dir) if labels is None else labels


def selected_table(
    records: list[Record], reference: str = REFERENCE, data_dir: str | None = None, labels=None
) -> pd.DataFrame:
    """One row per configuration, over the epochs all its runs trained: seeds, epochs, the mean
    selected epoch, the validation accuracy (points) at the selected checkpoints and at the end,
    each with its interval (None with fewer than ``MIN_SEEDS`` seeds), and the difference to
    ``reference`` at the selected checkpoints with its interval, p and Holm's p over the table
    (NaN where there is none)."""
    groups = configurations(records)
    gold = _labels(groups, labels, data_dir)
    if reference not in groups:
        raise CurveError(f"no run of {reference}, the reference every difference is taken to: run it first")
    cut = {label: common_length(runs) for label, runs in groups.items()}
    chosen = {label: [within(run) for run in runs] for label, (_, runs) in cut.items()}
    base = correct_at(chosen[reference], gold)
    rows = []
    for label, (epochs, runs) in cut.items():
        correct = correct_at(chosen[label], gold)
        accuracy, interval = _accuracy(correct)
        end, end_interval = _accuracy(correct_at([run.curve[-1] for run in runs], gold))
        row = {
            "configuration": label,
            "method": runs[0].method,
            "seeds": len(runs),
            "trainable (%)": runs[0].params.trainable_pct,
            "epochs": epochs,
            "selected epoch": float(np.mean([point.epoch for point in chosen[label]])),
            "accuracy": accuracy,
            "interval": interval,
            "at end": end,
            "end interval": end_interval,
            "difference": np.nan,
            "difference interval": None,
            "p": np.nan,
        }
        if label != reference:
            row["difference"], row["difference interval"], row["p"] = _difference(correct, base)
        rows.append(row)
    table = pd.DataFrame(rows).set_index("configuration")
    table["Holm p"] = holm_column(table)
    return table


def counted_runs(records: list[Record]) -> list[Record]:
    """The curve runs that the equal-compute comparison counts: neither ``contended`` nor
    ``slowed`` against the uncontended runs of their configuration (which needs three of them)."""
    quiet = [r for r in records if r.curve and not contended(r)]
    slow = slowed(quiet)
    return [r for r in quiet if r.run_id not in slow]


def speeds_by_machine(records: list[Record]) -> pd.DataFrame:
    """One row per configuration and CPU model its curve runs trained on: the runs and their
    median examples a second, so that a reader sees whether the grid's machines trained at the
    same speed (and its minutes compare) or not."""
    rows = [
        {
            "configuration": curve_label(r),
            "cpu": r.environment.get("cpu", "unknown"),
            "speed": r.cost.train_examples_per_second,
        }
        for r in records
        if r.curve
    ]
    frame = pd.DataFrame(rows, columns=["configuration", "cpu", "speed"])
    return frame.groupby(["configuration", "cpu"], sort=False).agg(runs=("speed", "size"), speed=("speed", "median"))


def equal_compute(
    records: list[Record],
    minutes=EQUAL_COMPUTE_MINUTES,
    reference: str = REFERENCE,
    data_dir: str | None = None,
    labels=None,
) -> pd.DataFrame:
    """One row per configuration and budget of training minutes: the validation accuracy
    (points) at each run's checkpoint selected among the points reached by then, with its
    interval, and its difference to ``reference``'s at the same budget. Only ``counted_runs``
    count, each cut to the epochs all its configuration's counted runs trained (as
    ``selected_table`` reads them); a budget before any counted run's first point is left out,
    and ``stopped`` says a run had ended before the budget (it reports its whole run)."""
    counted = counted_runs(records)
    if not counted and any(r.curve for r in records):
        raise CurveError("every curve run shared the machine or ran slow: none can be compared at equal compute")
    groups = {label: common_length(runs)[1] for label, runs in configurations(counted).items()}
    return _at_budgets(groups, minutes, "minutes", reference, _labels(groups, labels, data_dir))


def _at_budgets(groups: dict[str, list[Record]], budgets, unit: str, reference: str, gold) -> pd.DataFrame:
    """``equal_compute``'s rows, the budgets in ``unit`` ("minutes" or "epochs"), with the sign-flip
    p of each difference and Holm's over the differences at each budget."""
    rows = []
    for budget in budgets:
        points = {label: [within(run, **{unit: budget}) for run in runs] for label, runs in groups.items()}
        base = points.get(reference)
        base = correct_at(base, gold) if base and None not in base else None
        for label, runs in groups.items():
            if None in points[label]:
                continue
            correct = correct_at(points[label], gold)
            accuracy, interval = _accuracy(correct)
            end = [run.curve[-1].train_seconds / 60 if unit == "minutes" else run.curve[-1].epoch for run in runs]
            row = {
                "configuration": label,
                "method": runs[0].method,
                unit: budget,
                "seeds": len(runs),
                "epoch": float(np.mean([point.epoch for point in points[label]])),
                "accuracy": accuracy,
                "interval": interval,
                "difference": np.nan,
                "difference interval": None,
                "p": np.nan,
                "stopped": min(end) < budget - 1e-9,  # one of its runs had ended: it reports that run whole
                "ended": max(end) < budget - 1e-9,  # every one had
            }
            if base is not None and label != reference:
                row["difference"], row["difference interval"], row["p"] = _difference(correct, base)
            rows.append(row)
    table = pd.DataFrame(rows, columns=[*(rows[0] if rows else ["configuration", "method", unit, "p"])])
    table["Holm p"] = holm_column(table, by=unit)
    return table


def successors_table(
    records: list[Record],
    epochs=SUCCESSOR_EPOCHS,
    reference: str = SUCCESSOR_REFERENCE,
    data_dir: str | None = None,
    labels=None,
) -> pd.DataFrame:
    """Question 3, "do LoRA's successors get there sooner or higher?": each successor's and
    ``reference``'s validation accuracy at the checkpoint its held-out sentences select among
    the points up to each of ``epochs`` (sooner: the early budgets; higher: the last, the length
    the successors train), with the difference to ``reference``, its interval, sign-flip p and
    Holm's over the successors at each budget; the rows of ``equal_compute``, the budget in
    epochs. Any run may count: an epoch is the same steps on any machine."""
    runs = [r for r in records if r.curve and (question_of(r.config) == "successors" or curve_label(r) == reference)]
    groups = {label: common_length(group)[1] for label, group in configurations(runs).items()}
    return _at_budgets(groups, epochs, "epochs", reference, _labels(groups, labels, data_dir))


def rank_table(
    records: list[Record], epochs: float = DECIDING_EPOCHS, data_dir: str | None = None, labels=None
) -> pd.DataFrame:
    """Question 4, "once the scaling is fixed, what does rank buy?": one row per series (LoRA's
    alpha / r and rsLoRA's alpha / sqrt(r) on query and value, each at one rate for every rank),
    with its rate, each rank's validation accuracy at the checkpoint selected within ``epochs``
    (an ``Interval`` with ``MIN_SEEDS`` seeds or more, else the bare mean) and its seeds, and the
    change per doubling of r (``stats.rank_slope``: its interval over seeds and sentences, None
    until every rank has ``MIN_SEEDS`` seeds or with fewer than two ranks). A series whose ranks
    ran at different rates is refused: the question asks for one rate each."""
    rows = []
    for name, (rate, correct) in _rank_series(records, epochs, data_dir, labels).items():
        row = {"series": name, "rate": rate}
        for rank, array in correct.items():
            estimate, interval = _accuracy(array)
            row[f"r={rank}"] = interval if interval is not None else estimate
            row[f"r={rank} seeds"] = len(array)
        enough = len(correct) >= 2 and all(len(a) >= MIN_SEEDS for a in correct.values())
        row["per doubling"] = rank_slope(list(correct), list(correct.values())) if enough else None
        rows.append(row)
    return pd.DataFrame(rows).set_index("series")


def _rank_series(records, epochs, data_dir, labels) -> dict[str, tuple[float, dict[int, np.ndarray]]]:
    """Each rank series' rate and, rank by rank, its seeds x sentences of 0/1 at the checkpoints
    selected within ``epochs``; refuses a series whose ranks ran at different rates."""
    series: dict[str, dict[int, list[Record]]] = {}
    for label, group in configurations(records).items():
        config = group[0].config
        if config.method != "lora":
            continue
        full = with_defaults("lora", config.hparams)
        if target_tuple(full["targets"]) != ("query", "value") or config.loraplus_ratio:
            continue
        name = label.rsplit(" r=", 1)[0]
        series.setdefault(name, {})[int(full["rank"])] = common_length(group)[1]
    if not series:
        raise CurveError("no run of the rank series: run lora-sweep studies/v3/experiments.yml first")
    gold = _labels({name: next(iter(ranks.values())) for name, ranks in series.items()}, labels, data_dir)
    result = {}
    for name, ranks in series.items():
        rates = {float(runs[0].config.lr) for runs in ranks.values()}
        if len(rates) > 1:
            raise CurveError(
                f"{name}'s ranks ran at {sorted(rates)}: the rank series runs every rank at one rate, "
                "so pass the runs of one rate"
            )
        result[name] = (
            rates.pop(),
            {
                rank: correct_at([within(run, epochs=epochs) for run in runs], gold)
                for rank, runs in sorted(ranks.items())
            },
        )
    return result


def scaling_effect(
    records: list[Record],
    ranks: list[int],
    series: tuple[str, str] = ("LoRA", "rsLoRA"),
    epochs: float = DECIDING_EPOCHS,
    data_dir: str | None = None,
    labels=None,
) -> Interval | None:
    """What fixing the scale does to rank's effect: the second series' change per doubling of r
    minus the first's (points), with the crossed design's interval over seeds and sentences
    (``stats.crossed_contrast`` with both slopes' weights); None until both series have every
    one of ``ranks`` with ``MIN_SEEDS`` seeds. Above zero: under the second's scale, rank buys
    more. Refuses, as ``rank_table`` does, records without a rank series or a series whose ranks
    ran at different rates (``CurveError``)."""
    found = _rank_series(records, epochs, data_dir, labels)
    arrays, weights = [], []
    for sign, name in zip((-1, 1), series):
        correct = found.get(name, (None, {}))[1]
        if any(rank not in correct or len(correct[rank]) < MIN_SEEDS for rank in ranks):
            return None
        arrays += [correct[rank] for rank in ranks]
        weights += list(sign * slope_weights(ranks))
    return crossed_contrast(arrays, weights).interval


def schedule_table(records: list[Record]) -> pd.DataFrame:
    """One row per configuration whose seed 0 trained more than ``DECIDING_EPOCHS`` epochs:
    seed 0's rise over its fourth epoch and over its last (points, held-out sentences), the
    epochs the rule gives its other seeds (``LONG_EPOCHS`` if the fourth epoch rose more than
    ``FLAT_RISE``, else ``DECIDING_EPOCHS``), the epochs those seeds' records trained ("" before
    they ran), and whether seed 0 was flat by its end (its last epoch rose at most ``FLAT_RISE``):
    one that was not is reported as still rising."""
    rows = []
    for label, runs in configurations(records).items():
        first = next((run for run in runs if run.seed == 0), None)
        if first is None or first.curve[-1].epoch <= DECIDING_EPOCHS:
            continue
        rise, end_rise = last_epoch_rise([first_epochs(first, DECIDING_EPOCHS)]), last_epoch_rise([first])
        others = sorted({run.curve[-1].epoch for run in runs if run.seed != 0})
        rows.append(
            {
                "configuration": label,
                "seed 0 epochs": first.curve[-1].epoch,
                f"rise over epoch {DECIDING_EPOCHS}": rise,
                "rise over its last epoch": end_rise,
                "flat by its end": end_rise <= FLAT_RISE,
                "other seeds train": LONG_EPOCHS if rise > FLAT_RISE else DECIDING_EPOCHS,
                "other seeds trained": ", ".join(f"{e:g}" for e in others),
            }
        )
    columns = ["configuration", "seed 0 epochs", f"rise over epoch {DECIDING_EPOCHS}", "rise over its last epoch"]
    columns += ["flat by its end", "other seeds train", "other seeds trained"]
    return pd.DataFrame(rows, columns=columns).set_index("configuration")


def gaps_said(table: pd.DataFrame, reference: str = "full fine-tuning") -> pd.DataFrame:
    """``selected_table``'s differences as a reader is told them: ``side`` "below", "above" or
    "not distinguishable" from the interval, or "too few seeds" where one side has fewer than
    ``MIN_SEEDS``; ``text`` the words (``headline.said``'s)."""
    rows = []
    reference_seeds = int(table.loc[REFERENCE, "seeds"])
    for label, row in table.iterrows():
        if pd.isna(row["difference"]):
            continue
        interval = row["difference interval"]
        if interval is None:
            side = "too few seeds"
            text = f"no interval until both have {MIN_SEEDS} seeds ({row['seeds']} and {reference_seeds} so far)"
        else:
            words = said(interval, reference)
            side, text = words.side, words.text
        rows.append({"configuration": label, "side": side, "text": text})
    return pd.DataFrame(rows, columns=["configuration", "side", "text"]).set_index("configuration")


def compared_budgets(
    table: pd.DataFrame, label: str, reference: str = REFERENCE, unit: str = "minutes"
) -> pd.DataFrame:
    """``label``'s rows of ``equal_compute`` (or ``successors_table``, ``unit="epochs"``) at the
    budgets where ``reference`` has a row too, in order, with ``reference ended`` (every one of
    its runs had ended before the budget, so it reports its whole runs there). A budget by which
    every run of both had ended is left out: it reads the whole runs of both, as the selected
    checkpoints do, and says nothing about equal compute."""
    if not len(table):
        return table.assign(**{"reference ended": []})
    ended = table[table["configuration"] == reference].set_index(unit)["ended"]
    rows = table[(table["configuration"] == label) & table[unit].isin(ended.index)].sort_values(unit)
    rows = rows.assign(**{"reference ended": rows[unit].map(ended).astype(bool).to_numpy()})
    return rows[~(rows["ended"].astype(bool) & rows["reference ended"])]


def answer(selected: pd.DataFrame, equal: pd.DataFrame, label: str = SUCCESSOR_REFERENCE) -> pd.DataFrame:
    """The first two questions for one configuration, as the landing page says them: a row
    "given time" (its selected checkpoints against full fine-tuning's, from ``selected_table``)
    and one per budget of ``compared_budgets`` (``minutes``), each with ``side`` ("below",
    "above", "not distinguishable", or "too few seeds" where either has fewer than
    ``MIN_SEEDS``), the interval's ends, ``text`` (``headline.said``'s words), the seeds of both
    and ``reference ended``; empty where ``label`` has no runs yet."""
    columns = ["question", "minutes", "side", "low", "high", "text", "seeds", "reference seeds", "epoch"]
    columns += ["reference ended"]
    if label not in selected.index or REFERENCE not in selected.index:
        return pd.DataFrame(columns=columns).set_index("question")
    rows = []

    def add(question, minutes, row, reference_seeds, reference_ended=False):
        interval = row["difference interval"]
        words = said(interval) if interval is not None else None
        rows.append(
            {
                "question": question,
                "minutes": minutes,
                "side": words.side if words else "too few seeds",
                "low": words.low if words else np.nan,
                "high": words.high if words else np.nan,
                "text": words.text if words else f"no interval until both have {MIN_SEEDS} seeds",
                "seeds": int(row["seeds"]),
                "reference seeds": int(reference_seeds),
                "epoch": float(row["selected epoch" if minutes is None else "epoch"]),
                "reference ended": reference_ended,
            }
        )

    add("given time", None, selected.loc[label], selected.loc[REFERENCE, "seeds"])
    reference_seeds = equal[equal["configuration"] == REFERENCE].set_index("minutes")["seeds"] if len(equal) else {}
    for _, row in compared_budgets(equal, label).iterrows():
        minutes = row["minutes"]
        add(f"after {minutes:g} minutes", minutes, row, reference_seeds[minutes], bool(row["reference ended"]))
    return pd.DataFrame(rows, columns=columns).set_index("question")


def _standings(rows: list[dict], unit: str = "minutes", reference: str = "full fine-tuning") -> str:
    """Budgets in order, each a dict of ``side``, ``low``, ``high`` and ``unit``, as one clause:
    neighbouring budgets on the same side share their words, "not distinguishable from full
    fine-tuning after 5 and 10 minutes (-2.1 to +0.1 and -2.0 to +0.5 points)"."""
    groups: list[list[dict]] = []
    for row in rows:
        if groups and groups[-1][0]["side"] == row["side"]:
            groups[-1].append(row)
        else:
            groups.append([row])

    def joined(items: list[str]) -> str:
        return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]

    clauses = []
    for group in groups:
        one = len(group) == 1 and group[0][unit] == 1
        after = joined([f"{row[unit]:g}" for row in group]) + " " + (unit.rstrip("s") if one else unit)
        side = group[0]["side"]
        if side == "below":
            numbers = joined([f"{-row['high']:.1f} to {-row['low']:.1f}" for row in group])
            clauses.append(f"behind {reference} after {after} (by {numbers} points)")
        elif side == "above":
            numbers = joined([f"{row['low']:.1f} to {row['high']:.1f}" for row in group])
            clauses.append(f"ahead of {reference} after {after} (by {numbers} points)")
        else:
            numbers = joined([f"{row['low']:+.1f} to {row['high']:+.1f}" for row in group])
            clauses.append(f"not distinguishable from {reference} after {after} ({numbers} points)")
    ended = [row[unit] for row in rows if row.get("reference ended")]
    if ended:
        clauses[-1] += (
            f", {reference} having finished its runs by {ended[0]:g} {unit.rstrip('s') if ended[0] == 1 else unit}"
        )
    return "; ".join(clauses)


def answer_said(table: pd.DataFrame, label: str = SUCCESSOR_REFERENCE) -> str:
    """``answer``'s rows as the landing page's sentences, or "" until both ``label`` and full
    fine-tuning have ``MIN_SEEDS`` seeds (the page then says the study is under way)."""
    if table.empty or table.loc["given time", "side"] == "too few seeds":
        return ""
    given = table.loc["given time"]
    budgets = table.drop(index="given time")
    budgets = budgets[budgets["side"] != "too few seeds"]
    seeds = (
        f"{given['seeds']} seeds each"
        if given["seeds"] == given["reference seeds"]
        else f"{given['seeds']} seeds of {label}, {given['reference seeds']} of full fine-tuning"
    )
    text = (
        f"Given time, {label} is {given['text']} at the checkpoints its held-out training sentences select "
        f"(epoch {given['epoch']:.1f} on average; {seeds})."
    )
    if len(budgets):
        text += f" At equal training time on this machine it is {_standings(budgets.to_dict('records'))}."
    return text


def budgets_said(table: pd.DataFrame, unit: str = "minutes", reference: str = REFERENCE) -> dict[str, str]:
    """``equal_compute``'s (or, with ``unit="epochs"`` and ``reference=SUCCESSOR_REFERENCE``,
    ``successors_table``'s) differences as a reader is told them, a line per configuration: where
    it stands against ``reference`` after each of ``compared_budgets``'s budgets at which both
    have ``MIN_SEEDS`` seeds (its interval says behind, ahead or not distinguishable); a
    configuration with no such budget has no line."""
    lines = {}
    for label in dict.fromkeys(table["configuration"]) if len(table) else []:
        if label == reference:
            continue
        stands = []
        for _, row in compared_budgets(table, label, reference, unit).iterrows():
            if row["difference interval"] is None:
                continue
            words = said(row["difference interval"])
            stands.append(
                {"side": words.side, "low": words.low, "high": words.high, unit: row[unit]}
                | {"reference ended": bool(row["reference ended"])}
            )
        if stands:
            lines[label] = _standings(stands, unit, "full fine-tuning" if reference == REFERENCE else reference)
    return lines


def ranks_said(table: pd.DataFrame, ranks: list[int]) -> dict[str, str]:
    """``rank_table``'s change per doubling of r as a reader is told it, a line per series that
    has every one of ``ranks`` (``rank_plan``'s, which every series runs), each with
    ``MIN_SEEDS`` seeds: it rises, falls, or changes by no amount its interval can tell from none."""
    lines = {}
    for name, row in table.iterrows():
        slope = row["per doubling"]
        seeds = [row.get(f"r={rank} seeds") for rank in ranks]
        if slope is None or any(pd.isna(n) or n < MIN_SEEDS for n in seeds):
            continue
        words = said(slope)
        if words.side == "above":
            lines[name] = f"rises by {slope.low:.1f} to {slope.high:.1f} points per doubling of r"
        elif words.side == "below":
            lines[name] = f"falls by {-slope.high:.1f} to {-slope.low:.1f} points per doubling of r"
        else:
            lines[name] = (
                "no change per doubling of r that its interval can tell from none "
                f"({slope.low:+.1f} to {slope.high:+.1f} points)"
            )
    return lines


def small_candidates(selected: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``selected_table`` that "the best under ``LORA_MAX_TRAINABLE_PCT``% trained"
    is chosen among: under that share of the parameters, with ``MIN_SEEDS`` seeds or more."""
    return selected[(selected["trainable (%)"] < LORA_MAX_TRAINABLE_PCT) & (selected["seeds"] >= MIN_SEEDS)]


def judge_targets(selected: pd.DataFrame, equal: pd.DataFrame, stated: str = STATED_SMALL) -> pd.DataFrame:
    """The third study's targets, each "met", "missed" or "not resolved" from its interval over
    seeds and sentences (``findings.verdict``; "not resolved" too where a side has fewer than
    ``MIN_SEEDS`` seeds): full fine-tuning's accuracy at its selected checkpoints against
    ``FULL_TARGET``; the best configuration under ``LORA_MAX_TRAINABLE_PCT``% trained (the highest
    mean among those with seeds enough) and the ``stated`` one, their paired difference to full
    fine-tuning against ``-LORA_MAX_GAP_POINTS``; and at equal compute, whether the best is ahead
    of full fine-tuning at some budget of ``equal_compute`` (met: its interval above zero and its
    sign-flip p, Holm-adjusted over the budgets, below 5%), behind at every one (missed: it never
    is), or neither, its interval the budget's whose lower end is highest; the budgets are
    ``compared_budgets``'s, by which not both had ended. ``by`` is the
    estimate's distance from the threshold in points; ``seeds`` the fewer of the two sides';
    ``difference`` whether the estimate is a difference to full fine-tuning."""
    rows = []

    def add(target, configuration, estimate, interval, threshold, seeds, outcome=None):
        low, high = (interval.low, interval.high) if interval is not None else (np.nan, np.nan)
        rows.append(
            {
                "target": target,
                "configuration": configuration,
                "estimate": estimate,
                "interval": interval,
                "seeds": seeds,
                "difference": threshold <= 0,  # the accuracy target's threshold is a level, the others a gap
                "verdict": outcome or verdict(low, high, threshold),
                "by": estimate - threshold,
            }
        )

    if REFERENCE in selected.index:
        full = selected.loc[REFERENCE]
        target = f"{REFERENCE}: accuracy ≥ {100 * FULL_TARGET:.1f}%"
        add(target, REFERENCE, full["accuracy"], full["interval"], 100 * FULL_TARGET, int(full["seeds"]))
    small = small_candidates(selected)
    best = small["accuracy"].idxmax() if len(small) else None
    within = f"within {LORA_MAX_GAP_POINTS:g} point of full fine-tuning"
    under = f"under {LORA_MAX_TRAINABLE_PCT:g}% trained"
    for which, name in ((f"the best {under}:", best), (f"the one named before the grid ({under}):", stated)):
        if name is not None and name in selected.index and name != REFERENCE:
            row = selected.loc[name]
            seeds = int(min(row["seeds"], selected.loc[REFERENCE, "seeds"]))
            add(f"{which} {within}", name, row["difference"], row["difference interval"], -LORA_MAX_GAP_POINTS, seeds)
    if best is not None and len(equal):
        at = compared_budgets(equal, best)
        at = at[at["difference interval"].notna()]
        intervals = list(at["difference interval"])
        # "at some budget" is a best of several: ahead counts only where Holm's adjustment over
        # the budgets keeps the difference's p below the intervals' 5%
        over_budgets = holm(at["p"].to_numpy(dtype=float)) if intervals else []
        ahead = [i for i, p in zip(intervals, over_budgets) if i.low > 0 and p < 1 - CONFIDENCE]
        chosen = max(intervals, key=lambda i: i.low) if intervals else None
        outcome = "met" if ahead else "missed" if intervals and all(i.high < 0 for i in intervals) else "not resolved"
        seeds = int(equal.loc[equal["configuration"].isin([best, REFERENCE]), "seeds"].min())
        estimate = chosen.estimate if chosen else np.nan
        add(f"the best {under}: ahead of full fine-tuning at a budget", best, estimate, chosen, 0.0, seeds, outcome)
    columns = ["target", "configuration", "estimate", "interval", "seeds", "difference", "verdict", "by"]
    return pd.DataFrame(rows, columns=columns).set_index("target")


def question_of(config: RunConfig) -> str:
    """The ``QUESTIONS`` key a grid run answers: a LoRA-family run on query and value at another
    rank than 8 belongs to the rank series, one at r=8 other than plain LoRA to the successors,
    every other one (LoRA r=8, full fine-tuning, every linear layer, the adapters) to time and
    equal compute."""
    if config.method not in ("lora", "dora", "pissa"):
        return "time"
    full = with_defaults(config.method, config.hparams)
    if target_tuple(full["targets"]) != ("query", "value"):
        return "time"
    if full["rank"] != 8:
        return "rank"
    return "time" if configuration_label(config) == "LoRA r=8" else "successors"


def planned(grid_file) -> dict[str, list[str]]:
    """The configurations the grid file runs for each question (``QUESTIONS``' keys), in the
    file's order."""
    from .grid import expand

    plan: dict[str, list[str]] = {key: [] for key in QUESTIONS}
    for run in expand(grid_file).runs:
        config = RunConfig.from_parameters(**run.parameters)
        label = configuration_label(config)
        if label not in plan[question_of(config)]:
            plan[question_of(config)].append(label)
    return plan


def rank_plan(grid_file) -> tuple[list[str], list[int]]:
    """The rank series the grid file runs (question 4, with LoRA r=8 and rsLoRA r=8 beside them),
    and their ranks: what ``render.rank_frame`` shows before every run has finished."""
    labels = planned(grid_file)["rank"]
    pairs = [label.rsplit(" r=", 1) for label in labels]
    ranks = {int(rank) for _, rank in pairs} | {8}  # r=8 is each series' LoRA r=8 or rsLoRA r=8
    return list(dict.fromkeys(name for name, _ in pairs)), sorted(ranks)


def finished_configurations(grid_file, records: list[Record]) -> list[str]:
    """The configurations of the grid file all of whose runs have a record among ``records``, in
    the file's order: those whose numbers are the study's, not a partial count."""
    from .grid import expand

    done = {record.run_id for record in records}
    state: dict[str, bool] = {}
    for run in expand(grid_file).runs:
        label = configuration_label(RunConfig.from_parameters(**run.parameters))
        state[label] = state.get(label, True) and run.run_id in done
    return [label for label, finished in state.items() if finished]


def progress(grid_file, records: list[Record]) -> pd.DataFrame:
    """One row per question: the grid's configurations and runs for it, and how many of the
    runs have a record among ``records``."""
    from .grid import expand

    done = {record.run_id for record in records}
    plan = planned(grid_file)
    rows = {
        key: {"question": text, "configurations": ", ".join(plan[key]), "runs": 0, "finished": 0}
        for key, text in QUESTIONS.items()
    }
    for run in expand(grid_file).runs:
        row = rows[question_of(RunConfig.from_parameters(**run.parameters))]
        row["runs"] += 1
        row["finished"] += run.run_id in done
    return pd.DataFrame(rows.values()).set_index("question")


def swings(records: list[Record], split: str = REPORTED_SPLIT) -> tuple[float, float]:
    """How much a curve moves from one point to the next on ``split``: the median and the
    largest absolute change over every pair of consecutive points of every run, in points."""
    steps = [
        abs(later.splits[split].accuracy - earlier.splits[split].accuracy)
        for record in records
        if record.curve
        for earlier, later in zip(record.curve, record.curve[1:])
    ]
    if not steps:
        raise CurveError("no curve with two points to measure a swing")
    return 100 * float(np.median(steps)), 100 * float(max(steps))


def main(argv: list[str] | None = None) -> None:
    """``python -m lora_lib.study.long_runs FOLDER``: the first two questions and the targets,
    from the curve runs in FOLDER, as the book's landing page and chapter 8 give them."""
    import argparse

    from .record import load_records

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("folder", help="the third study's records, e.g. executed/v3")
    parser.add_argument("--configuration", default=SUCCESSOR_REFERENCE, help="what to set against full fine-tuning")
    parser.add_argument("--data-dir", help="the GLUE SST-2 folder (default: $SST2_DIR)")
    args = parser.parse_args(argv)
    tier = [r for r in load_records(args.folder) if r.curve and question_of(r.config) == "time"]
    if not tier:
        raise SystemExit(f"{args.folder}: no curve run of question 1's configurations")
    selected = selected_table(tier, data_dir=args.data_dir)
    equal = equal_compute(tier, data_dir=args.data_dir)
    answered = answer(selected, equal, args.configuration)
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_colwidth", 80):
        print(answered.drop(columns=["text"]).round(2).to_string(), end="\n\n")
        print(answer_said(answered, args.configuration) or "too few seeds for a finding yet", end="\n\n")
        print(judge_targets(selected, equal).round(2).to_string())


if __name__ == "__main__":
    main()
