"""The statistics the study's claims rest on, each small enough to check by hand.

- ``t_interval``: a configuration's mean accuracy over seeds, with its t-interval.
- ``welch_interval``: the difference of two configurations' means over seeds (no pairing).
- ``paired_bootstrap``: the difference of two configurations on the same sentences,
  resampling seeds and sentences together (the "pigeonhole" bootstrap: it counts the seed x
  sentence interaction about three times, so its intervals are too wide; the second study's
  first look, kept beside ``crossed_interval`` to show what changed).
- ``crossed_interval``: a configuration's accuracy, or the difference of two on the same
  sentences, with the interval that the crossed seeds x sentences design calls for: variance
  components by the method of moments, each counted once, and a t-quantile whose degrees of
  freedom (Satterthwaite) are few where the seeds' spread dominates.
- ``sign_flip_test``: a paired test clustered by sentence, for the same comparison (it replaced
  McNemar's test on predictions pooled over seed pairs, which treated every seed pair as
  independent: a sentence that flips for one pair tends to flip for the others).
- ``holm``: Holm's step-down adjustment of a family of p-values; ``holm_column`` the same over a
  table's column, family by family.
- ``rank_trend``: accuracy against log2(rank), and a one-way ANOVA over the ranks.
- ``rank_slope``: the same slope with the crossed design's interval over seeds and sentences.
- ``crossed_contrast``: any weighted sum of configurations (a difference, a step, a slope)
  with the crossed design's interval.

Accuracies are fractions (0 to 1) in, points (0 to 100) out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    """An estimate in points with its ``CONFIDENCE`` interval."""

    estimate: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.estimate:.2f} [{self.low:.2f}, {self.high:.2f}]"


def t_interval(accuracies, confidence: float = CONFIDENCE) -> Interval:
    """Mean over seeds, in points, with the t-interval (NaN ends for fewer than two seeds)."""
    values = np.asarray(accuracies, dtype=float) * 100
    if len(values) < 2:
        return Interval(float(values.mean()), np.nan, np.nan)
    half = stats.t.ppf((1 + confidence) / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return Interval(float(values.mean()), float(values.mean() - half), float(values.mean() + half))


def welch_interval(a, b, confidence: float = CONFIDENCE) -> Interval:
    """Mean of ``a`` minus mean of ``b`` (accuracies over seeds), in points, with Welch's t-interval."""
    a, b = np.asarray(a, dtype=float) * 100, np.asarray(b, dtype=float) * 100
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    gap = a.mean() - b.mean()
    if va + vb == 0:  # every seed of both agrees: no spread to put an interval on
        return Interval(float(gap), float(gap), float(gap))
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = stats.t.ppf((1 + confidence) / 2, dof) * np.sqrt(va + vb)
    return Interval(float(gap), float(gap - half), float(gap + half))


def paired_bootstrap(
    correct_a, correct_b, rounds: int = 10_000, seed: int = 0, confidence: float = CONFIDENCE
) -> Interval:
    """Accuracy of A minus accuracy of B, in points, over the same sentences.

    ``correct_a`` is a seeds x sentences array of 0/1 (whether each seed of A got each sentence
    right), ``correct_b`` the same for B (its own seeds, the same sentences in the same order).
    Each round draws the sentences with replacement (the same draw for A and B: the pairing)
    and the seeds with replacement, and takes the difference of the mean accuracies; the
    interval is the percentile interval of the rounds. With as many seeds on both sides, seed i
    of A is paired with seed i of B (the same batch order and head initialisation) and both
    draw the same seed indices; otherwise each side draws its own.
    """
    a, b = np.asarray(correct_a, dtype=float), np.asarray(correct_b, dtype=float)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(
            f"correct_a and correct_b must be seeds x sentences over the same sentences, "
            f"got shapes {a.shape} and {b.shape}"
        )
    means = _resampled_means([a, b], rounds, np.random.default_rng(seed))
    diffs = (means[:, 0] - means[:, 1]) * 100
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(diffs, [tail, 100 - tail])
    return Interval(float((a.mean() - b.mean()) * 100), float(low), float(high))


def _resampled_means(arrays, rounds: int, rng: np.random.Generator) -> np.ndarray:
    """Rounds x arrays: each seeds x sentences array's mean accuracy in each bootstrap round.

    A round draws the sentences with replacement, the same draw for every array (the pairing),
    and each array's seeds with replacement: the same indices for every array where all have as
    many seeds (seed i stays paired across them), else each its own draw, in the arrays' order.
    """
    sentences = rng.integers(0, arrays[0].shape[1], size=(rounds, arrays[0].shape[1]))
    counts = {a.shape[0] for a in arrays}
    shared = rng.integers(0, arrays[0].shape[0], size=(rounds, arrays[0].shape[0])) if len(counts) == 1 else None
    draws = [shared if shared is not None else rng.integers(0, a.shape[0], size=(rounds, a.shape[0])) for a in arrays]
    means = np.empty((rounds, len(arrays)))
    for j, (a, seeds) in enumerate(zip(arrays, draws)):
        per_seed = np.stack([a[:, s].mean(axis=1) for s in sentences])  # rounds x seeds
        means[:, j] = np.take_along_axis(per_seed, seeds, axis=1).mean(axis=1)
    return means


def bootstrap_interval(correct, rounds: int = 10_000, seed: int = 0, confidence: float = CONFIDENCE) -> Interval:
    """Mean accuracy, in points, of a seeds x sentences array of 0/1, with the bootstrap
    interval that draws both the seeds and the sentences: the seeds' spread and the split's
    own sampling error together, which a t-interval over the seeds leaves out. It is
    ``paired_bootstrap`` against a configuration that gets every sentence wrong."""
    a = np.asarray(correct, dtype=float)
    return paired_bootstrap(a, np.zeros_like(a), rounds, seed, confidence)


@dataclass(frozen=True)
class RankTrend:
    """Accuracy (points) per doubling of the rank, with its interval, and the ANOVA over ranks."""

    slope: Interval
    trend_p: float
    anova_f: float
    anova_p: float


def rank_trend(ranks, accuracies, confidence: float = CONFIDENCE) -> RankTrend:
    """Fit accuracy (points) against log2(rank) over every run, and test the ranks with a one-way ANOVA.

    ``ranks`` and ``accuracies`` hold one entry per run (a rank repeated once per seed).
    """
    ranks, values = np.asarray(ranks, dtype=float), np.asarray(accuracies, dtype=float) * 100
    fit = stats.linregress(np.log2(ranks), values)
    half = stats.t.ppf((1 + confidence) / 2, len(values) - 2) * fit.stderr
    groups = [values[ranks == r] for r in np.unique(ranks)]
    anova = stats.f_oneway(*groups)
    return RankTrend(
        Interval(float(fit.slope), float(fit.slope - half), float(fit.slope + half)),
        float(fit.pvalue),
        float(anova.statistic),
        float(anova.pvalue),
    )


def rank_slope(ranks, correct, confidence: float = CONFIDENCE) -> Interval:
    """Accuracy's change per doubling of the rank, in points: the least-squares line through
    each rank's mean accuracy against log2(rank), with the crossed design's interval over seeds
    and sentences (``crossed_contrast`` with the line's weights), which ``rank_trend``'s
    interval over the seeds alone leaves out.

    ``correct`` holds one seeds x sentences array of 0/1 per entry of ``ranks``, all over the
    same sentences. With as many seeds at every rank the estimate is ``rank_trend``'s slope.
    """
    x = np.log2(np.asarray(ranks, dtype=float))
    arrays = [np.asarray(c, dtype=float) for c in correct]
    if len(arrays) != len(x) or len(set(x)) < 2:
        raise ValueError(
            f"rank_slope needs one seeds x sentences array per rank and two ranks or more, got ranks {list(ranks)}"
        )
    for rank, a in zip(ranks, arrays):
        if a.ndim != 2 or a.shape[1] != arrays[0].shape[1]:
            raise ValueError(
                f"rank {rank}'s array has shape {a.shape}: every rank must be seeds x the same "
                f"{arrays[0].shape[1]} sentences"
            )
    return crossed_contrast(arrays, slope_weights(ranks), confidence).interval


def slope_weights(ranks) -> np.ndarray:
    """The least-squares slope against log2(rank) as weights on each rank's mean accuracy: the
    slope is ``slope_weights(ranks) @ means``, so a slope, or a difference of two series'
    slopes, is a ``crossed_contrast``."""
    x = np.log2(np.asarray(ranks, dtype=float))
    if len(set(x)) < 2:
        raise ValueError(f"a slope against log2(rank) needs two ranks or more, got ranks {list(ranks)}")
    return (x - x.mean()) / ((x - x.mean()) ** 2).sum()


@dataclass(frozen=True)
class Crossed:
    """An accuracy or a difference in points, with its interval from the crossed design: the
    standard error, the t-quantile's degrees of freedom, and the variance that the seeds and
    the sentences each contribute to the estimate (points squared)."""

    interval: Interval
    se: float
    dof: float
    seed_variance: float
    sentence_variance: float

    @property
    def p_value(self) -> float:
        """Two-sided p-value of the estimate against 0 (for a difference: no difference)."""
        if self.se == 0:
            return 0.0 if self.interval.estimate else 1.0
        return float(2 * stats.t.sf(abs(self.interval.estimate) / self.se, self.dof))


def _seed_component(correct: np.ndarray) -> tuple[float, float]:
    """The seed main effect's share of the variance of the mean of a seeds x sentences array,
    by the method of moments (two-way ANOVA without replication), truncated at zero, and its
    mean square's degrees of freedom.

    ``MS_seed = n * var(seed means)`` estimates ``sigma_e^2 + n sigma_seed^2`` and ``MS_error``
    (the interaction) estimates ``sigma_e^2``, so ``sigma_seed^2 / S = (MS_seed - MS_error) / (n S)``.
    """
    seeds, n = correct.shape
    if seeds < 2:
        return 0.0, 1.0
    seed_means, sentence_means = correct.mean(axis=1), correct.mean(axis=0)
    ms_seed = n * seed_means.var(ddof=1)
    residual = correct - seed_means[:, None] - sentence_means[None, :] + correct.mean()
    ms_error = (residual**2).sum() / ((seeds - 1) * (n - 1))
    return max(0.0, (ms_seed - ms_error) / (n * seeds)), float(seeds - 1)


def crossed_interval(correct_a, correct_b=None, confidence: float = CONFIDENCE) -> Crossed:
    """Accuracy of A (or A minus B on the same sentences), in points, with its interval.

    ``correct_a`` (and ``correct_b``) are seeds x sentences arrays of 0/1. Each configuration's
    correctness is ``mu + seed_s + sentence_i + interaction_si``: the seeds and the sentences
    are crossed, and resampling both (the "pigeonhole" bootstrap) counts the interaction about
    three times (Owen 2007). Here each part is counted once. For the mean of ``d_i``, the
    per-sentence difference of the seed-averaged correctness (A's alone for an accuracy):

        Var = sigma_seed,A^2 / S_A + sigma_seed,B^2 / S_B + var_i(d_i) / n

    where ``var_i(d_i)`` carries the sentences' effect and the interaction, and each seed
    component comes from its own array (``_seed_component``). The seeds of A and B are taken as
    independent runs. The interval is the estimate +- t * sqrt(Var), with Satterthwaite's
    degrees of freedom: S - 1 for a seed term, n - 1 for the sentence term, so that five seeds
    whose spread dominates get the t-quantile of four degrees of freedom. It is
    ``crossed_contrast`` with the weights 1 and -1.
    """
    a = np.asarray(correct_a, dtype=float)
    b = None if correct_b is None else np.asarray(correct_b, dtype=float)
    if a.ndim != 2 or (b is not None and (b.ndim != 2 or b.shape[1] != a.shape[1])):
        raise ValueError(
            "correct_a and correct_b must be seeds x sentences arrays over the same sentences, got shapes "
            f"{a.shape} and {None if b is None else b.shape}"
        )
    return crossed_contrast([a] if b is None else [a, b], [1.0] if b is None else [1.0, -1.0], confidence)


def crossed_contrast(correct, weights, confidence: float = CONFIDENCE) -> Crossed:
    """A weighted sum of configurations' accuracies, in points, with the crossed design's interval.

    ``correct`` holds one seeds x sentences array of 0/1 per configuration, all over the same
    sentences, and ``weights`` one weight each: ``[1, -1]`` is a difference, ``[-1/2, -1/2,
    1/5, ...]`` the mean of some ranks against others, least-squares weights a slope. With
    ``d_i = sum_k w_k * mean_s(correct_k)[s, i]``, the variance of its mean is
    ``sum_k w_k^2 sigma_seed,k^2 / S_k + var_i(d_i) / n``: each configuration's seed main effect
    once, and the sentences with every interaction once, as ``crossed_interval`` explains.
    """
    arrays = [np.asarray(c, dtype=float) for c in correct]
    weights = np.asarray(weights, dtype=float)
    if len(arrays) != len(weights) or not arrays:
        raise ValueError(
            f"crossed_contrast needs one weight per array, got {len(arrays)} arrays and {len(weights)} weights"
        )
    for k, a in enumerate(arrays):
        if a.ndim != 2 or a.shape[1] != arrays[0].shape[1]:
            raise ValueError(
                f"array {k} has shape {a.shape}: every array must be seeds x the same {arrays[0].shape[1]} sentences"
            )
    d = sum(w * a.mean(axis=0) for w, a in zip(weights, arrays))
    n = len(d)
    terms = [(w**2 * t, dof) for w, (t, dof) in zip(weights, map(_seed_component, arrays))]
    sentence_term = d.var(ddof=1) / n
    variance = sum(t for t, _ in terms) + sentence_term
    pieces = [(t, dof) for t, dof in terms if t > 0] + [(sentence_term, n - 1.0)]
    dof = variance**2 / sum(t**2 / k for t, k in pieces) if variance > 0 else float(n - 1)
    se = float(np.sqrt(variance)) * 100
    half = float(stats.t.ppf((1 + confidence) / 2, dof)) * se
    estimate = float(d.mean()) * 100
    return Crossed(
        Interval(estimate, estimate - half, estimate + half),
        se,
        float(dof),
        float(sum(t for t, _ in terms)) * 1e4,
        float(sentence_term) * 1e4,
    )


def sign_flip_test(correct_a, correct_b, rounds: int = 10_000, seed: int = 0) -> float:
    """Two-sided p-value that A and B are equally accurate, clustered by sentence.

    Each sentence's difference of seed-averaged correctness ``d_i`` is one unit: under the null
    that A and B are exchangeable on every sentence, each ``d_i`` is as likely to carry either
    sign, so the test flips the signs of all of them at random and counts how often the sum is at
    least as far from 0 as the one observed. A sentence that one configuration gets right and the
    other wrong for every seed counts once, not once per seed pair (as pooled McNemar counts it).
    """
    a, b = np.asarray(correct_a, dtype=float), np.asarray(correct_b, dtype=float)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"correct_a and correct_b must be seeds x the same sentences, got {a.shape} and {b.shape}")
    d = a.mean(axis=0) - b.mean(axis=0)
    d = d[d != 0]  # a sentence with no difference flips to itself
    if not len(d):
        return 1.0
    signs = np.random.default_rng(seed).choice([-1.0, 1.0], size=(rounds, len(d)))
    extreme = np.abs(signs @ d) >= abs(d.sum()) - 1e-12
    return float((extreme.sum() + 1) / (rounds + 1))


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjusted p-values, in the order given: the family's chance of any false
    verdict stays at most the level at which an adjusted p-value is read."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p)
    adjusted = np.empty_like(p)
    running = 0.0
    for position, index in enumerate(order):
        running = max(running, min(1.0, (len(p) - position) * p[index]))
        adjusted[index] = running
    return adjusted


def holm_column(table: pd.DataFrame, column: str = "p", by: str | None = None) -> pd.Series:
    """``holm`` over the rows of ``table`` that have a p-value in ``column``, each group of ``by``
    a family of its own (the whole table is one without it); NaN on the rows without one."""
    p = pd.to_numeric(table[column], errors="coerce").astype(float)
    adjusted = pd.Series(np.nan, index=table.index, dtype=float)
    families = [p] if by is None else [p[group.index] for _, group in table.groupby(by, sort=False)]
    for family in families:
        tested = family.dropna()
        if len(tested):
            adjusted.loc[tested.index] = holm(tested.to_numpy())
    return adjusted
