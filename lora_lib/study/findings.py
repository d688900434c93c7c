"""Judging the study: its targets, and its findings as sentences, from ``summarize``'s table.

Only configurations with all their seeds count; a number from fewer seeds is not a result.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .aggregate import label_of
from .headline import said
from .ranks import rank_answer, rank_sentence
from .stats import Interval, rank_trend, t_interval, welch_interval

# The study's targets: SST-2 validation accuracy, judged from 95% intervals, over seeds and
# sentences where the records keep their predictions (``paired_findings``), over the seeds for
# the first study's (``findings``, whose configurations have SEEDS_PER_RESULT seeds each).
FULL_TARGET, LORA_MAX_GAP_POINTS, LORA_MAX_TRAINABLE_PCT, SEEDS_PER_RESULT = 0.90, 1.0, 1.0, 3
# The LoRA configuration the second study named before its grid ran: a best-of-many choice can
# flatter the best configuration, never this one.
PRE_STATED = "LoRA r=8"


def verdict(low: float, high: float, threshold: float, higher_is_better: bool = True) -> str:
    """ "met", "missed" or "not resolved": where a 95% interval lies against a threshold."""
    if np.isnan(low):
        return "not resolved"
    good, bad = (low >= threshold, high < threshold) if higher_is_better else (high <= threshold, low > threshold)
    return "met" if good else "missed" if bad else "not resolved"


@dataclass(frozen=True)
class LoraGap:
    """LoRA against full fine-tuning: the rank with the highest mean accuracy, and the highest
    among the ranks that train under ``LORA_MAX_TRAINABLE_PCT``% of the parameters (``None`` if
    none does), each with its gap below full fine-tuning as an interval."""

    best: pd.Series
    gap: Interval
    best_small: pd.Series | None
    gap_small: Interval | None

    @property
    def judged(self) -> pd.Series:
        """The rank the target is judged on: the best under the budget, else the best."""
        return self.best_small if self.best_small is not None else self.best

    @property
    def verdict(self) -> str:
        """The target, a rank under the budget within ``LORA_MAX_GAP_POINTS`` of full fine-tuning,
        judged from the gap's interval; "missed" when no rank trains under the budget."""
        if self.gap_small is None:
            return "missed"
        return verdict(self.gap_small.low, self.gap_small.high, LORA_MAX_GAP_POINTS, higher_is_better=False)


def lora_against_full(summary: pd.DataFrame, seeds: int = SEEDS_PER_RESULT) -> LoraGap | None:
    """LoRA's ranks against full fine-tuning, among configurations with ``seeds`` runs; ``None``
    until full fine-tuning and at least one rank have their seeds."""
    done = summary[summary["runs"] >= seeds]
    lora, full = done[done["method"] == "lora"], done[done["method"] == "full"]
    if lora.empty or full.empty:
        return None
    full = full.iloc[0]
    best = lora.loc[lora["accuracy_mean"].idxmax()]
    small = lora[lora["trainable_pct"] < LORA_MAX_TRAINABLE_PCT]
    best_small = small.loc[small["accuracy_mean"].idxmax()] if not small.empty else None
    return LoraGap(
        best,
        welch_interval(full["accuracies"], best["accuracies"]),
        best_small,
        welch_interval(full["accuracies"], best_small["accuracies"]) if best_small is not None else None,
    )


def findings(summary: pd.DataFrame, seeds: int = SEEDS_PER_RESULT) -> list[str]:
    """The study's key findings as sentences, computed from ``summarize``'s table.

    Every claim is judged from a 95% interval (met, missed or not resolved), never from a mean
    alone. Only configurations with ``seeds`` runs are used: a number from fewer seeds is not a
    result, and the configurations still short of them are named instead.
    """
    short = summary[summary["runs"] < seeds]
    done = summary[summary["runs"] >= seeds]
    lines = []
    lora = done[done["method"] == "lora"]
    full = done[done["method"] == "full"].iloc[0] if (done["method"] == "full").any() else None
    if full is not None:
        ci = t_interval(full["accuracies"])
        lines.append(
            f"Full fine-tuning reaches {ci.estimate:.2f}% (95% interval {ci.low:.2f} to {ci.high:.2f}, "
            f"{full['runs']} seeds): the {FULL_TARGET:.0%} target is "
            f"{verdict(ci.low, ci.high, FULL_TARGET * 100)}."
        )
    against = lora_against_full(summary, seeds)
    if against is not None:
        if against.best_small is None:
            line = f"No LoRA rank trains under {LORA_MAX_TRAINABLE_PCT:.0f}% of the parameters"
        else:
            small = against.best_small
            line = (
                f"The most accurate LoRA rank under {LORA_MAX_TRAINABLE_PCT:.0f}% trained, r = {int(small['rank'])} "
                f"({_percent(small['trainable_pct'])}), is {_gap(against.gap_small)}"
            )
        line += (
            f": the target of at most {LORA_MAX_GAP_POINTS:.1f} point below with under "
            f"{LORA_MAX_TRAINABLE_PCT:.0f}% trained is {against.verdict}."
        )
        if against.best_small is None or against.best["group"] != against.best_small["group"]:
            best = against.best
            line += (
                f" The most accurate rank, r = {int(best['rank'])} ({_percent(best['trainable_pct'])} trained), "
                f"is {_gap(against.gap)}."
            )
        lines.append(line)
    if lora["rank"].nunique() > 2:
        lines.append(rank_effect(lora))
    others = done[~done["method"].isin(["full", "lora"])].sort_values("accuracy_mean", ascending=False)
    if not others.empty and full is not None:
        lines.append(
            "The other methods: "
            + "; ".join(
                f"{row['label']} ({_percent(row['trainable_pct'])} trained) is "
                f"{_gap(welch_interval(full['accuracies'], row['accuracies']))}"
                for _, row in others.iterrows()
            )
            + "."
        )
    if full is not None and len(done) > 1:
        rest = done[done["method"] != "full"]
        cost = [
            f"Cost against full fine-tuning ({full['examples_per_second']:.0f} examples/s, "
            f"{full['peak_rss_mb']:.0f} MiB peak): "
        ]
        if against is not None:
            judged = against.judged
            cost.append(
                f"{judged['label']} trains {judged['examples_per_second'] / full['examples_per_second']:.2f}x "
                f"as fast in {judged['peak_rss_mb'] / full['peak_rss_mb']:.2f}x the memory; "
            )
        cost.append(_fastest_and_leanest(rest, full))
        encoder = rest[rest["method"] != "head"]
        if len(encoder) < len(rest) and not encoder.empty:
            # The head alone is cheapest by construction; the question is what adapting the encoder costs.
            cost.append("; of the methods that adapt the encoder, " + _fastest_and_leanest(encoder, full))
        lines.append("".join(cost) + ".")
    if not short.empty:
        lines.append(_pending(dict(zip(short["label"], short["runs"])), seeds))
    return lines


def _pending(runs: dict[str, int], seeds: int) -> str:
    """The configurations that have fewer than ``seeds`` runs, each with its count."""
    listed = ", ".join(f"{name} ({count} of {seeds})" for name, count in runs.items())
    return f"Not yet results (fewer than {seeds} seeds, left out above): {listed}."


def _fastest_and_leanest(methods: pd.DataFrame, full: pd.Series) -> str:
    fastest = methods.loc[methods["examples_per_second"].idxmax()]
    leanest = methods.loc[methods["peak_rss_mb"].idxmin()]
    speed = f"{fastest['examples_per_second'] / full['examples_per_second']:.2f}x"
    memory = f"{leanest['peak_rss_mb'] / full['peak_rss_mb']:.2f}x the memory"
    if fastest.name == leanest.name:
        return f"the fastest and leanest is {fastest['label']} ({speed}, {memory})"
    return f"the fastest is {fastest['label']} ({speed}), the leanest {leanest['label']} ({memory})"


def _percent(pct: float) -> str:
    """A share of the parameters: two decimals from 1% up; below 1%, three, as the results table
    prints them, so that 0.995% never reads 1.00% beside the 1% target, nor 0.003% 0.00%."""
    return f"{pct:.2f}%" if pct >= 1 else f"{pct:.3f}%"


def _p_value(p: float) -> str:
    """A p-value with two significant digits, or "p < 0.001", never "p = 0.00"."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.2g}"


def _gap(interval: Interval) -> str:
    bounds = f"95% interval {interval.low:.2f} to {interval.high:.2f}"
    return f"{interval.estimate:.2f} points below full fine-tuning ({bounds})"


def paired_findings(
    table: pd.DataFrame,
    summary: pd.DataFrame,
    seeds: int,
    records: list | None = None,
    labels=None,
    rank_records: list | None = None,
) -> list[str]:
    """The study's key findings as sentences, from ``paired.against_reference``'s ``table`` (each
    configuration against full fine-tuning, on the same sentences) and ``summarize``'s
    ``summary`` of the same records (the rank's trend, the cost).

    Every difference is said as its 95% interval over seeds and sentences allows
    (``headline.said``: below, above or not distinguishable); the targets are judged elsewhere
    (``judge_targets``), not here. The rank's effect too where the ``records`` themselves are given (their gold
    ``labels`` read from the data unless given: ``ranks.rank_answer``), else over the seeds alone.
    With ``rank_records`` (runs of further ranks at one rate, ``studies/v2/rank_rate.yml``), the
    rank series is the grid's ranks at that rate and those runs: the rank at one rate. Only
    configurations with ``seeds`` runs count; the others are named instead.
    """
    done = table[table["seeds"] >= seeds]
    short = table[table["seeds"] < seeds]
    lines = []
    if "Full fine-tuning" in done.index:
        full = done.loc["Full fine-tuning", "accuracy over seeds and sentences"]
        lines.append(
            f"Full fine-tuning reaches {full.estimate:.2f}% (95% interval over seeds and sentences "
            f"{full.low:.2f} to {full.high:.2f}, {seeds} seeds)."
        )
        small = done[(done["method"] == "lora") & (done["trainable (%)"] < LORA_MAX_TRAINABLE_PCT)]
        if not small.empty:
            best = small["accuracy over seeds"].map(lambda i: i.estimate).idxmax()
            named = [PRE_STATED] if PRE_STATED in done.index else []
            named += [best] if best not in named else []
            parts = [f"{name} ({_percent(done.loc[name, 'trainable (%)'])} trained) is " for name in named]
            parts = [part + said(done.loc[name, "difference"]).text for part, name in zip(parts, named)]
            under = f"the most accurate LoRA configuration under {LORA_MAX_TRAINABLE_PCT:g}%"
            lines.append("LoRA: " + f"; {under}, ".join(parts) + ".")
    ranks = lora_ranks(summary, seeds)
    if ranks["rank"].nunique() > 2:
        if records:
            rates = sorted({r.config.lr for r in rank_records or []})
            if len(rates) > 1:
                raise ValueError(f"rank_records trained at {len(rates)} rates {rates}: pass the runs of one rate")
            series = [*records, *(rank_records or [])]
            lines.append(rank_sentence(rank_answer(series, rates[0] if rates else None, seeds, labels)))
        else:
            lines.append(rank_effect(ranks))
    if (~done["method"].isin(["full", "lora"])).any() and "Full fine-tuning" in done.index:
        lines.append(other_methods(done))
    if not short.empty:
        lines.append(_pending(short["seeds"].to_dict(), seeds))
    return lines


def lora_ranks(summary: pd.DataFrame, seeds: int) -> pd.DataFrame:
    """``summarize``'s rows of LoRA on its default weights (query and value), one per rank, that
    have ``seeds`` runs: the rows whose trend over the rank is the rank's effect."""
    ranks = summary[(summary["method"] == "lora") & (summary["runs"] >= seeds)]
    return ranks[ranks["label"] == ranks["rank"].map(lambda r: label_of("lora", r))]


def rank_effect(ranks: pd.DataFrame, slope: Interval | None = None) -> str:
    """The rank's effect, as a sentence, from ``summarize``'s rows of LoRA at several ranks on the
    same weights (``lora_ranks``): accuracy per doubling of r with its interval over the seeds
    and the ANOVA, and where given, ``slope``: the same with its interval over seeds and sentences,
    which then judges the effect. For records without per-sentence predictions (the first study);
    ``ranks.rank_answer`` answers for the others."""
    runs = [(rank, accuracy) for rank, accs in zip(ranks["rank"], ranks["accuracies"]) for accuracy in accs]
    trend = rank_trend([r for r, _ in runs], [a for _, a in runs])
    judged = slope or trend.slope
    effect = (
        "a higher rank helps"
        if judged.low > 0
        else "a higher rank hurts"
        if judged.high < 0
        else "no effect of the rank is resolved"
    )
    seeds = f"{trend.slope.low:+.2f} to {trend.slope.high:+.2f}"
    interval = (
        f"95% interval over seeds and sentences {slope.low:+.2f} to {slope.high:+.2f}, over the seeds alone {seeds}"
        if slope
        else f"95% interval {seeds}"
    )
    return (
        f"Rank: accuracy changes by {judged.estimate:+.2f} points per doubling of r ({interval}); a one-way "
        f"ANOVA of the seeds' accuracies over the {ranks['rank'].nunique()} ranks gives "
        f"{_p_value(trend.anova_p)}: {effect}."
    )


def _difference(interval: Interval, reference: str = "full fine-tuning") -> str:
    side = "above" if interval.estimate > 0 else "below"
    return (
        f"{abs(interval.estimate):.2f} points {side} {reference} (paired, 95% interval "
        f"{interval.low:+.2f} to {interval.high:+.2f})"
    )


def other_methods(table: pd.DataFrame) -> str:
    """The methods other than full fine-tuning and LoRA in ``paired.against_reference``'s
    ``table``, each with its share of trained parameters and its difference to full fine-tuning;
    only those with as many seeds as any configuration, since the others are not results yet."""
    finished = with_all_seeds(table)
    others = finished[~finished["method"].isin(["full", "lora"])]
    if others.empty:
        return "No method other than full fine-tuning and LoRA has all its seeds yet."
    return (
        "The other methods: "
        + "; ".join(
            f"{name} ({_percent(row['trainable (%)'])} trained) is {said(row['difference']).text}"
            for name, row in others.iterrows()
        )
        + "."
    )


def which_weights_answer(weights: pd.DataFrame, reference: str = PRE_STATED) -> str:
    """Which way of spending LoRA's budget did better, as a sentence, from ``paired.which_weights``'s
    table: the configurations whose paired difference to the ``reference`` is resolved above or
    below zero, and those it does not resolve, each with its difference."""
    if reference not in weights.index:
        raise ValueError(
            f"which_weights_answer has no row {reference!r} to compare with: pass the reference that "
            "paired.which_weights was given"
        )
    others = weights.drop(index=reference)
    sides = {
        "did better than": [n for n, d in others["difference"].items() if d.low > 0],
        "did worse than": [n for n, d in others["difference"].items() if d.high < 0],
    }
    unresolved = [n for n in others.index if n not in sides["did better than"] + sides["did worse than"]]
    parts = [
        f"{' and '.join(names)} {side} {reference}"
        + f" ({'; '.join(_difference(others.loc[n, 'difference'], reference) for n in names)})"
        for side, names in sides.items()
        if names
    ]
    if unresolved:
        listed = "; ".join(f"{n}, {_difference(others.loc[n, 'difference'], reference)}" for n in unresolved)
        parts.append(
            f"the interval does not tell {'it' if len(unresolved) == 1 else 'them'} from {reference}: {listed}"
        )
    return "At this budget, " + "; ".join(parts) + "."


def paired_headline(table: pd.DataFrame) -> dict[str, object]:
    """The landing page's numbers from ``paired.against_reference``'s table, every interval over
    seeds and sentences, every verdict ``judge_targets``'s: full fine-tuning's accuracy, the best
    LoRA configuration under ``LORA_MAX_TRAINABLE_PCT``% and the pre-stated one, each with its
    difference to full fine-tuning."""
    _, best, stated = judge_targets(table).itertuples()
    full = table.loc["Full fine-tuning", "accuracy over seeds and sentences"]
    seeds = sorted(set(table["seeds"]))
    numbers = {
        "runs": int(table["seeds"].sum()),
        "configurations": len(table),
        "seeds": " to ".join(str(n) for n in seeds[:: max(len(seeds) - 1, 1)]),
        "full_mean": f"{full.estimate:.2f}",
        "full_ci": f"{full.low:.2f} to {full.high:.2f}",
        "full_verdict": verdict(full.low, full.high, FULL_TARGET * 100),
        "lora_candidates": len(small_lora(table)),
    }
    for key, judged in (("lora", best), ("stated", stated)):
        row = table.loc[judged.configuration]
        accuracy, difference = row["accuracy over seeds and sentences"], row["difference"]
        numbers |= {
            f"{key}_label": judged.configuration,
            f"{key}_trainable": _percent(row["trainable (%)"]),
            f"{key}_mean": f"{accuracy.estimate:.2f}",
            f"{key}_diff": f"{difference.estimate:+.2f}",
            f"{key}_diff_ci": f"{difference.low:+.2f} to {difference.high:+.2f}",
            f"{key}_verdict": judged.verdict,
        }
    return numbers


def pre_stated_sentences(numbers: dict[str, object]) -> dict[str, str]:
    """What chapter 5 says of the configuration named before the grid, from ``paired_headline``'s
    ``numbers``: ``stated_sentence`` in the text after the best LoRA configuration's verdict and
    ``stated_summary`` in the summary after the pre-stated one's. When the best is the pre-stated
    one, each says so instead of repeating its numbers; otherwise the text gives the pre-stated
    one's difference and the summary the best one's."""
    stated, best, candidates = numbers["stated_label"], numbers["lora_label"], numbers["lora_candidates"]
    under = f"under {LORA_MAX_TRAINABLE_PCT:g}%"
    if best == stated:
        return {
            "stated_sentence": (
                f"It is the configuration the grid named before it ran, {stated} on query and value, so "
                f"choosing the best of {candidates} configurations {under} did not flatter it."
            ),
            "stated_summary": f"{stated}, named before the grid, is also the best LoRA configuration {under}.",
        }
    return {
        "stated_sentence": (
            f"Picking the best of {candidates} LoRA configurations {under} flatters the best a "
            f"little, so the grid named one configuration before it ran, {stated} on query and value: it differs "
            f"from full fine-tuning by {numbers['stated_diff']} points ({numbers['stated_diff_ci']}), and its verdict "
            f"is {numbers['stated_verdict']}."
        ),
        "stated_summary": (
            f"For the best LoRA configuration {under}, {best}, the difference is "
            f"{numbers['lora_diff']} points ({numbers['lora_diff_ci']}): {numbers['lora_verdict']}."
        ),
    }


def with_all_seeds(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``paired.against_reference``'s table with as many seeds as any configuration:
    the finished configurations, since a mean over fewer seeds is not a result yet."""
    return table[table["seeds"] == table["seeds"].max()]


def small_lora(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``paired.against_reference``'s table that may be the best LoRA configuration:
    finished LoRA configurations (``with_all_seeds``) under ``LORA_MAX_TRAINABLE_PCT``% of the
    parameters, since a mean over fewer seeds would win the choice by its noise."""
    finished = with_all_seeds(table)
    return finished[(finished["method"] == "lora") & (finished["trainable (%)"] < LORA_MAX_TRAINABLE_PCT)]


def judge_targets(table: pd.DataFrame, pre_stated: str | None = PRE_STATED) -> pd.DataFrame:
    """The study's targets judged on ``paired.against_reference``'s table, each from an interval
    over seeds and sentences: full fine-tuning's accuracy against ``FULL_TARGET``; the best LoRA
    configuration (``small_lora``) that trains under ``LORA_MAX_TRAINABLE_PCT``% of the parameters, by its paired
    difference to full fine-tuning against ``-LORA_MAX_GAP_POINTS``; and the same for the
    ``pre_stated`` configuration, which the best-of-many choice cannot flatter."""
    full = table.loc["Full fine-tuning", "accuracy over seeds and sentences"]
    lora = small_lora(table)
    if lora.empty:
        raise ValueError(
            f"no LoRA configuration with all {table['seeds'].max()} seeds trains under "
            f"{LORA_MAX_TRAINABLE_PCT:g}% of the parameters"
        )
    best = lora["accuracy over seeds"].map(lambda i: i.estimate).idxmax()
    rows = [("Full fine-tuning", f"accuracy ≥ {FULL_TARGET * 100:.1f}%", full, FULL_TARGET * 100)]
    named = [(best, "best LoRA")] + ([(pre_stated, "LoRA stated before the grid")] if pre_stated else [])
    for name, which in named:
        rows.append(
            (
                name,
                f"{which} under {LORA_MAX_TRAINABLE_PCT:g}%: within {LORA_MAX_GAP_POINTS:g} point of full",
                table.loc[name, "difference"],
                -LORA_MAX_GAP_POINTS,
            )
        )
    return pd.DataFrame(
        [
            {
                "target": target,
                "configuration": name,
                "interval (points)": str(interval),
                "verdict": verdict(interval.low, interval.high, threshold),
                "by": f"{interval.estimate - threshold:+.2f}",
            }
            for name, target, interval, threshold in rows
        ]
    ).set_index("target")


HOLM_LEVEL = 0.05  # the family's error rate at which Holm's adjusted p-values are read


def side(interval: Interval) -> str:
    """Where a difference's interval puts it against zero: "above", "below" or "not told apart"."""
    return "above" if interval.low > 0 else "below" if interval.high < 0 else "not told apart"


def second_look(table: pd.DataFrame) -> pd.DataFrame:
    """Every difference of ``paired.against_reference``'s ``table`` judged twice: by the first
    look's pigeonhole bootstrap and by the crossed design's interval, then whether the crossed
    verdict holds under Holm's adjustment over the table's family ("holds", "does not hold", or
    "–" where there is no verdict to hold). Column "changed" is True where the two looks differ."""
    rows = table[table["difference"].notna()]
    first = rows["difference (bootstrap)"].map(side)
    second = rows["difference"].map(side)
    holm = [
        "–" if verdict == "not told apart" else "holds" if p < HOLM_LEVEL else "does not hold"
        for verdict, p in zip(second, rows["Holm p"])
    ]
    return pd.DataFrame(
        {
            "first look": rows["difference (bootstrap)"].map(str),
            "first verdict": first,
            "second look": rows["difference"].map(str),
            "second verdict": second,
            "under Holm": holm,
            "changed": first != second,
        },
        index=rows.index,
    )
