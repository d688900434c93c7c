"""Judging the study: its targets, and its findings as sentences, from ``summarize``'s table.

Only configurations with all their seeds count; a number from fewer seeds is not a result.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .aggregate import points_below
from .stats import t_interval, welch_interval

# The study's targets: mean SST-2 validation accuracy over three seeds.
FULL_TARGET, LORA_MAX_GAP_POINTS, LORA_MAX_TRAINABLE_PCT, SEEDS_PER_RESULT = 0.90, 1.0, 1.0, 3


def meets_full_target(accuracy_mean: float) -> bool:
    """Whether full fine-tuning's mean accuracy reaches ``FULL_TARGET``, judged on the number as
    reported (a percentage with two decimals)."""
    return round(accuracy_mean * 100, 2) >= FULL_TARGET * 100


def within_lora_gap(gap_points: float) -> bool:
    """Whether a LoRA rank ``gap_points`` below full fine-tuning is within ``LORA_MAX_GAP_POINTS``,
    judged on the number as reported (two decimals)."""
    return round(gap_points, 2) <= LORA_MAX_GAP_POINTS


@dataclass(frozen=True)
class LoraGap:
    """LoRA against full fine-tuning: the rank with the highest mean accuracy, and the highest
    among the ranks that train under ``LORA_MAX_TRAINABLE_PCT``% of the parameters (``None`` if
    none does), each with how many points it is below full fine-tuning."""

    best: pd.Series
    gap: float
    best_small: pd.Series | None
    gap_small: float | None

    @property
    def met(self) -> bool:
        """The target: a rank under the parameter budget within ``LORA_MAX_GAP_POINTS`` of full
        fine-tuning."""
        return self.gap_small is not None and within_lora_gap(self.gap_small)


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
    return LoraGap(best, points_below(full, best), best_small,
                   points_below(full, best_small) if best_small is not None else None)


def findings(summary: pd.DataFrame, seeds: int = SEEDS_PER_RESULT) -> list[str]:
    """The study's key findings as sentences, computed from ``summarize``'s table.

    Only configurations with ``seeds`` runs are used: a number from fewer seeds is not a
    result, and the configurations still short of them are named instead.
    """
    short = summary[summary["runs"] < seeds]
    done = summary[summary["runs"] >= seeds].set_index("group")
    lines = []
    lora = done[done["method"] == "lora"]
    full = done[done["method"] == "full"].iloc[0] if (done["method"] == "full").any() else None
    if full is not None:
        verdict = "meets" if meets_full_target(full["accuracy_mean"]) else "misses"
        lines.append(f"Full fine-tuning reaches {_points(full)}, which {verdict} the {FULL_TARGET:.0%} target."
                     + (" Chapter 5 says what was tried to reach it." if verdict == "misses" else ""))
    against = lora_against_full(summary, seeds)
    if against is not None:
        best, small = against.best, against.best_small
        line = (f"The best LoRA rank, r = {int(best['rank'])}, reaches {_points(best)}: {_where(against.gap)} "
                f"full fine-tuning, training {_percent(best['trainable_pct'])} of the parameters")
        if small is not None and small["group"] == best["group"]:
            line += ", so it"
        elif small is not None:
            line += (f"; the best under {LORA_MAX_TRAINABLE_PCT:.0f}% trained, r = {int(small['rank'])} "
                     f"({_percent(small['trainable_pct'])}), reaches {_points(small)}: {_where(against.gap_small)} "
                     "full fine-tuning, so LoRA")
        else:
            line += f"; no rank trains under {LORA_MAX_TRAINABLE_PCT:.0f}%, so LoRA"
        lines.append(line + f" {'meets' if against.met else 'misses'} the target of at most {LORA_MAX_GAP_POINTS:.1f} "
                     f"point below with under {LORA_MAX_TRAINABLE_PCT:.0f}% trained."
                     + ("" if against.met else " Chapter 5 says what was tried to close the gap."))
    if len(lora) > 1:
        ordered = lora.sort_values("rank")
        spread = (ordered["accuracy_mean"].max() - ordered["accuracy_mean"].min()) * 100
        noise = ordered["accuracy_std"].mean() * 100
        ranks = ", ".join(f"r = {int(r['rank'])}: {r['accuracy_mean'] * 100:.2f}" for _, r in ordered.iterrows())
        top, bottom = (ordered.loc[ordered["accuracy_mean"].idxmax()], ordered.loc[ordered["accuracy_mean"].idxmin()])
        lines.append(f"Rank: {ranks}. The means span {spread:.2f} points (highest at r = {int(top['rank'])}, lowest at "
                     f"r = {int(bottom['rank'])}), against a seed-to-seed standard deviation of {noise:.2f} points on "
                     f"average: {'a higher rank does not clearly help' if spread <= 2 * noise else 'the rank makes a difference larger than the seeds do'}.")
    others = done[~done["method"].isin(["full", "lora"])].sort_values("accuracy_mean", ascending=False)
    if not others.empty:
        lines.append("The other methods: " + "; ".join(
            f"{row['label']} {_points(row)} with {_percent(row['trainable_pct'])} trained" for _, row in others.iterrows()) + ".")
    if full is not None and len(done) > 1:
        rest = done[done["method"] != "full"]
        cost = [f"Cost against full fine-tuning ({full['examples_per_second']:.0f} examples/s, "
                f"{full['peak_rss_mb']:.0f} MiB peak): "]
        if against is not None:
            # The rank the LoRA target is judged on: the best under the budget, else the best.
            r8 = against.best_small if against.best_small is not None else against.best
            cost.append(f"{r8['label']} trains {r8['examples_per_second'] / full['examples_per_second']:.2f}x as fast "
                        f"in {r8['peak_rss_mb'] / full['peak_rss_mb']:.2f}x the memory; ")
        cost.append(_fastest_and_leanest(rest, full))
        encoder = rest[rest["method"] != "head"]
        if len(encoder) < len(rest) and not encoder.empty:
            # The head alone is cheapest by construction; the question is what adapting the encoder costs.
            cost.append("; of the methods that adapt the encoder, " + _fastest_and_leanest(encoder, full))
        lines.append("".join(cost) + ".")
    if not short.empty:
        lines.append(f"Not yet results (fewer than {seeds} seeds, left out above): "
                     + ", ".join(f"{row['label']} ({row['runs']} of {seeds})" for _, row in short.iterrows()) + ".")
    return lines


def _fastest_and_leanest(methods: pd.DataFrame, full: pd.Series) -> str:
    fastest = methods.loc[methods["examples_per_second"].idxmax()]
    leanest = methods.loc[methods["peak_rss_mb"].idxmin()]
    speed = f"{fastest['examples_per_second'] / full['examples_per_second']:.2f}x"
    memory = f"{leanest['peak_rss_mb'] / full['peak_rss_mb']:.2f}x the memory"
    if fastest.name == leanest.name:
        return f"the fastest and leanest is {fastest['label']} ({speed}, {memory})"
    return f"the fastest is {fastest['label']} ({speed}), the leanest {leanest['label']} ({memory})"


def _percent(pct: float) -> str:
    """A share of the parameters: two decimals, or one significant digit below 0.01%, which would print as 0.00."""
    return f"{pct:.2f}%" if pct >= 0.01 else f"{pct:.1g}%"


def _where(gap_points: float) -> str:
    return "level with" if round(gap_points, 2) == 0 else f"{abs(gap_points):.2f} points {'below' if gap_points > 0 else 'above'}"


def _points(row) -> str:
    if row["runs"] < 2:
        return f"{row['accuracy_mean'] * 100:.2f}% (1 run)"
    return f"{row['accuracy_mean'] * 100:.2f} ± {row['accuracy_std'] * 100:.2f}% ({row['runs']} seeds)"




def findings_markdown(summary: pd.DataFrame) -> str:
    """``findings`` as a markdown bullet list (the README and the book show it)."""
    return "".join(f"- {line}\n" for line in findings(summary))


def verdict(low: float, high: float, threshold: float, higher_is_better: bool = True) -> str:
    """"met", "missed" or "not resolved": where a 95% interval lies against a threshold."""
    if np.isnan(low):
        return "not resolved"
    good, bad = (low >= threshold, high < threshold) if higher_is_better else (high <= threshold, low > threshold)
    return "met" if good else "missed" if bad else "not resolved"


def headline(summary: pd.DataFrame, seeds: int = SEEDS_PER_RESULT) -> dict[str, object]:
    """The study's headline numbers, each with its 95% interval, for the landing page."""
    done = summary[summary["runs"] >= seeds]
    full = done[done["method"] == "full"].iloc[0]
    against = lora_against_full(summary, seeds)
    lora = against.best_small if against.best_small is not None else against.best
    full_ci, lora_ci = t_interval(full["accuracies"]), t_interval(lora["accuracies"])
    gap = welch_interval(full["accuracies"], lora["accuracies"])
    return {
        "runs": int(summary["runs"].sum()), "configurations": len(summary), "seeds": seeds,
        "full_mean": f"{full_ci.estimate:.2f}", "full_ci": f"{full_ci.low:.2f} to {full_ci.high:.2f}",
        "full_verdict": verdict(full_ci.low, full_ci.high, FULL_TARGET * 100),
        "lora_label": lora["label"], "lora_trainable": f"{lora['trainable_pct']:.2f}%",
        "lora_mean": f"{lora_ci.estimate:.2f}", "lora_ci": f"{lora_ci.low:.2f} to {lora_ci.high:.2f}",
        "lora_gap": f"{gap.estimate:.2f}", "lora_gap_ci": f"{gap.low:.2f} to {gap.high:.2f}",
        "lora_verdict": verdict(gap.low, gap.high, LORA_MAX_GAP_POINTS, higher_is_better=False),
    }


def gaps_to_full(summary: pd.DataFrame, seeds: int = SEEDS_PER_RESULT) -> pd.DataFrame:
    """Every configuration against full fine-tuning: the gap in points with its 95% interval,
    and the one-point target's verdict from that interval."""
    done = summary[summary["runs"] >= seeds]
    full = done[done["method"] == "full"].iloc[0]
    rows = []
    for _, row in done[done["method"] != "full"].iterrows():
        gap = welch_interval(full["accuracies"], row["accuracies"])
        rows.append({"configuration": row["label"], "trained (%)": round(row["trainable_pct"], 3),
                     "points below full": round(gap.estimate, 2), "95% interval": f"{gap.low:.2f} to {gap.high:.2f}",
                     "within a point": verdict(gap.low, gap.high, LORA_MAX_GAP_POINTS, higher_is_better=False)})
    return pd.DataFrame(rows).set_index("configuration")


def fit_table(summary: pd.DataFrame, methods: tuple[str, ...] = ("full", "lora", "houlsby", "ia3")) -> pd.DataFrame:
    """Validation accuracy beside the training loss each configuration ends on, mean over seeds."""
    rows = summary[summary["method"].isin(methods)]
    return pd.DataFrame({"validation accuracy (%)": (rows["accuracy_mean"] * 100).round(2).values,
                         "final training loss": rows["train_loss_tail"].round(3).values,
                         "trained (%)": rows["trainable_pct"].round(2).values}, index=rows["label"].rename(None))
