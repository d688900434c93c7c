"""The rank question as the LoRA paper asks it: does a higher rank help, and is it monotone?

The paper's finding is that "increasing the rank does not guarantee monotonic gains": a small
rank on query and value does about as well as a large one. A straight line against log2(r)
answers a different question (how much a doubling adds on average), and a rank series whose
learning rate changes along it confounds the rank with the step size. So, for LoRA on query and
value at one learning rate:

- ``rank_series(records, lr)``: each rank's accuracy with the crossed design's interval.
- ``rank_answer(records, lr)``: the structured answer (``RankAnswer``): every step from one rank
  to the next with its paired interval, which steps are resolved up or down, the lowest rank
  from which no higher rank is resolved above it, the step between the small and the larger
  ranks, and the slope per doubling. ``rank_sentence`` says it in words.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lora_lib.registry import METHODS, with_defaults

from .aggregate import format_lr
from .paired import correct, evaluation_labels
from .record import Record, by_configuration
from .stats import Interval, crossed_contrast, crossed_interval, rank_slope

SMALL_RANKS = 2  # the step asked about: ranks up to 2 against the ranks above (the second study's first look)


def _plain_lora_on_query_and_value(record: Record) -> bool:
    if record.method != "lora":
        return False
    full, registered = with_defaults("lora", record.config.hparams), METHODS["lora"].defaults
    same = [tuple(full["targets"]) == tuple(registered["targets"])]
    return all(same + [full[k] == registered[k] for k in ("alpha", "dropout", "use_rslora")])


def rank_series(records: list[Record], lr: float | None, seeds: int | None = None, labels=None) -> pd.DataFrame:
    """One row per rank of LoRA on query and value (registered alpha, no dropout, alpha / r
    scaling) trained at learning rate ``lr`` (None: at whatever rate each rank ran, one
    configuration per rank), in rank order: its rate, seeds, accuracy over seeds and sentences
    (the crossed design's interval) and runs. With ``seeds``, only the ranks with that many runs.
    A ValueError names the rate when fewer than two ranks ran at it. The gold ``labels`` of the
    split are read from the data unless given."""
    rows = []
    for runs in by_configuration(records).values():
        first = runs[0]
        if not _plain_lora_on_query_and_value(first) or (lr is not None and not np.isclose(first.config.lr, lr)):
            continue
        if seeds is not None and len(runs) < seeds:
            continue
        gold = evaluation_labels(first.config) if labels is None else labels
        rows.append(
            {
                "rank": with_defaults("lora", first.config.hparams)["rank"],
                "lr": first.config.lr,
                "seeds": len(runs),
                "accuracy": crossed_interval(correct(runs, gold)).interval,
                "runs": sorted(runs, key=lambda r: r.seed),
            }
        )
    rate = "any rate" if lr is None else f"lr {lr:g}"
    if len({row["rank"] for row in rows}) < 2:
        raise ValueError(
            f"fewer than two ranks of LoRA on query and value trained at {rate}: run the grid's ranks "
            "(experiments.yml) and studies/v2/rank_rate.yml first"
        )
    ranks = [row["rank"] for row in rows]
    if len(set(ranks)) != len(ranks):
        raise ValueError(f"a rank ran in two configurations at {rate}: pass the records of one series, or name its lr")
    return pd.DataFrame(rows).sort_values("rank").set_index("rank")


@dataclass(frozen=True)
class RankAnswer:
    """The rank question answered at one learning rate (every interval over seeds and sentences,
    the crossed design's, in points).

    ``steps`` maps (r, next r) to the next rank's accuracy minus r's; ``up`` and ``down`` list the
    steps resolved above and below zero; ``flat_from`` is the lowest rank from which on no rank
    is resolved above a lower one (nothing more is resolved); ``small_to_large`` is the mean of
    the ranks above ``SMALL_RANKS`` minus the mean of those up to it; ``slope`` the change per
    doubling of r."""

    lr: float | None  # None: each rank at its own rate (``rates``)
    rates: tuple[float, ...]
    ranks: tuple[int, ...]
    steps: dict[tuple[int, int], Interval]
    up: tuple[tuple[int, int], ...]
    down: tuple[tuple[int, int], ...]
    flat_from: int
    small_to_large: Interval
    slope: Interval

    @property
    def monotone(self) -> str:
        """ "no step down resolved" or "a step down resolved": what five seeds on 872 sentences
        can say of monotonicity (a step up that is not resolved is not a step down)."""
        return "a step down resolved" if self.down else "no step down resolved"


def rank_answer(records: list[Record], lr: float | None, seeds: int | None = None, labels=None) -> RankAnswer:
    """``RankAnswer`` for LoRA on query and value at learning rate ``lr`` (``rank_series``)."""
    series = rank_series(records, lr, seeds, labels)
    labels = evaluation_labels(series["runs"].iloc[0][0].config) if labels is None else labels
    arrays = {rank: correct(runs, labels) for rank, runs in series["runs"].items()}
    ranks = tuple(int(r) for r in series.index)

    def difference(high: int, low: int) -> Interval:
        return crossed_interval(arrays[high], arrays[low]).interval

    steps = {(a, b): difference(b, a) for a, b in zip(ranks, ranks[1:])}
    resolved_up = {(low, high) for low in ranks for high in ranks if high > low and difference(high, low).low > 0}
    flat_from = next(r for r in ranks if not any(low >= r for low, _ in resolved_up))
    small, large = [r for r in ranks if r <= SMALL_RANKS], [r for r in ranks if r > SMALL_RANKS]
    if not small or not large:
        raise ValueError(f"the ranks are {list(ranks)}: the step needs ranks on both sides of {SMALL_RANKS}")
    weights = [-1 / len(small) if r in small else 1 / len(large) for r in ranks]
    return RankAnswer(
        lr=None if lr is None else float(lr),
        rates=tuple(float(r) for r in series["lr"]),
        ranks=ranks,
        steps=steps,
        up=tuple(s for s, d in steps.items() if d.low > 0),
        down=tuple(s for s, d in steps.items() if d.high < 0),
        flat_from=flat_from,
        small_to_large=crossed_contrast([arrays[r] for r in ranks], weights).interval,
        slope=rank_slope(list(ranks), [arrays[r] for r in ranks]),
    )


def rank_sentence(answer: RankAnswer) -> str:
    """``rank_answer``'s answer in words: the slope, the step from small to larger ranks, the
    steps resolved, and the rank from which nothing more is resolved (every pair of ranks at or
    above it not told apart)."""

    def points(i: Interval) -> str:
        return f"{i.estimate:+.2f} points (95% interval {i.low:+.2f} to {i.high:+.2f})"

    def step_names(steps) -> str:
        return ", ".join(f"r = {a} to {b}" for a, b in steps)

    ranks = f"r = {', '.join(str(r) for r in answer.ranks)}"
    rate = f"At one learning rate, {format_lr(answer.lr)}" if answer.lr is not None else "Each rank at its own rate"
    up = f"resolved up: {step_names(answer.up)}" if answer.up else "none resolved up"
    down = f"resolved down: {step_names(answer.down)}" if answer.down else "none resolved down"
    return (
        f"{rate}, over {ranks}: accuracy changes by {points(answer.slope)} per "
        f"doubling of r, and the ranks above {SMALL_RANKS} are {points(answer.small_to_large)} above those up to "
        f"{SMALL_RANKS} on average. Of the {len(answer.steps)} steps from one rank to the next, {up}; {down}. "
        f"From r = {answer.flat_from} on, no rank is resolved above a lower one."
    )


def rank_steps_frame(answers: dict[str, RankAnswer]) -> pd.DataFrame:
    """A table of each series' steps from one rank to the next: the difference with its interval,
    one column per series (named by ``answers``' keys), "–" where a series lacks the step."""
    steps = sorted({s for a in answers.values() for s in a.steps})
    return pd.DataFrame(
        {name: [str(a.steps[s]) if s in a.steps else "–" for s in steps] for name, a in answers.items()},
        index=pd.Index([f"r = {a} → {b}" for a, b in steps], name="step"),
    )


def rank_conclusion(answers: dict[str, RankAnswer]) -> str:
    """What the rank series say together, in words: per series (named by ``answers``' keys) whether
    the step from the small ranks helps, from which rank nothing more is resolved, and whether a
    step down is."""

    def step(answer: RankAnswer) -> str:
        i = answer.small_to_large
        verdict = "helps" if i.low > 0 else "hurts" if i.high < 0 else "is not resolved"
        return f"going from r ≤ {SMALL_RANKS} to the higher ranks {verdict} ({i.low:+.2f} to {i.high:+.2f} points)"

    return (
        "; ".join(
            f"{name}, {step(a)}, from r = {a.flat_from} on no rank is resolved above a lower one, and {a.monotone}"
            for name, a in answers.items()
        )
        + "."
    )
