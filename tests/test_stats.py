"""Each statistic of lora_lib.study.stats against a small example worked out by hand."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lora_lib.study import stats as study_stats
from lora_lib.study.stats import paired_bootstrap, rank_slope, rank_trend, t_interval, welch_interval

T_975_2 = 4.302652729749464  # t-table: the 97.5% quantile with 2 degrees of freedom
T_975_4 = 2.776445105197793  # ... and with 4


def approx(x):
    return pytest.approx(x, rel=1e-9, abs=1e-9)


def test_t_interval_by_hand():
    # 80, 90, 100 points: mean 90, standard deviation sqrt((100 + 0 + 100) / 2) = 10.
    result = t_interval([0.8, 0.9, 1.0])
    half = T_975_2 * 10 / math.sqrt(3)
    assert (result.estimate, result.low, result.high) == (approx(90), approx(90 - half), approx(90 + half))
    wider = t_interval([0.8, 0.9, 1.0], confidence=0.99)
    assert wider.low < result.low and wider.high > result.high


def test_t_interval_of_one_seed_has_no_ends():
    result = t_interval([0.85])
    assert result.estimate == approx(85) and math.isnan(result.low) and math.isnan(result.high)


def test_welch_interval_by_hand():
    # a: 80, 84 points (mean 82, variance 8); b: 70, 74, 78 (mean 74, variance 16).
    result = welch_interval([0.80, 0.84], [0.70, 0.74, 0.78])
    va, vb = 8 / 2, 16 / 3  # each variance over its sample size
    dof = (va + vb) ** 2 / (va**2 / 1 + vb**2 / 2)
    assert dof == approx(784 / 272)  # Welch-Satterthwaite, not the pooled test's 2 + 3 - 2 = 3
    half = stats.t.ppf(0.975, dof) * math.sqrt(va + vb)
    assert (result.estimate, result.low, result.high) == (approx(8), approx(8 - half), approx(8 + half))
    pooled_half = stats.t.ppf(0.975, 3) * math.sqrt(va + vb)
    assert result.high - result.estimate > pooled_half  # fewer degrees of freedom: wider


def test_welch_interval_with_no_spread_is_the_difference():
    result = welch_interval([0.9, 0.9], [0.85, 0.85, 0.85])
    assert (result.estimate, result.low, result.high) == (approx(5), approx(5), approx(5))


def test_rank_trend_on_a_perfect_log2_line():
    ranks = [1, 1, 2, 2, 4, 4, 8, 8, 16, 16]
    accuracies = [0.80 + 0.01 * math.log2(r) for r in ranks]  # one point per doubling, every seed alike
    result = rank_trend(ranks, accuracies)
    assert result.slope.estimate == pytest.approx(1.0)
    assert result.slope.low == pytest.approx(1.0) and result.slope.high == pytest.approx(1.0)
    assert result.trend_p < 1e-6


def test_rank_trend_and_anova_by_hand():
    # Ranks 1, 2, 4 (log2: 0, 1, 2), two seeds each: 80 and 82, 84 and 86, 85 and 87 points.
    result = rank_trend([1, 1, 2, 2, 4, 4], [0.80, 0.82, 0.84, 0.86, 0.85, 0.87])
    # Least squares: Sxx = 4, Sxy = 10, so the slope is 2.5 points per doubling; the residuals
    # (-1.5, 0.5, 0, 2, -1.5, 0.5) give s^2 = 9 / 4 and a standard error of 1.5 / sqrt(4) = 0.75.
    half = T_975_4 * 0.75
    assert result.slope.estimate == approx(2.5)
    assert (result.slope.low, result.slope.high) == (approx(2.5 - half), approx(2.5 + half))
    assert result.trend_p == approx(2 * stats.t.sf(2.5 / 0.75, 4))
    # ANOVA: group means 81, 85, 86 around 84: between 2 * (9 + 1 + 4) = 28 on 2 degrees of freedom, within
    # 6 * 1 = 6 on 3, so F = 14 / 2 = 7; with 2 numerator degrees of freedom, P(F > f) = (1 + 2f / 3)^(-3/2).
    assert result.anova_f == approx(7)
    assert result.anova_p == approx((1 + 14 / 3) ** -1.5)


def test_paired_bootstrap_when_every_seed_agrees():
    a = np.array([[1, 1, 1, 0]] * 3)  # 75% on every seed
    b = np.array([[1, 0, 1, 0]] * 2)  # 50%
    result = paired_bootstrap(a, b, rounds=2_000)
    assert result.estimate == approx(25)
    assert result.low <= result.estimate <= result.high
    # A right on every sentence and B on none: the same difference in every round.
    result = paired_bootstrap(np.ones((3, 5)), np.zeros((2, 5)), rounds=500)
    assert (result.estimate, result.low, result.high) == (approx(100), approx(100), approx(100))


def test_paired_bootstrap_over_seeds_by_hand():
    # One sentence: only the seeds vary. A's two seeds are right and wrong, so a round's mean of two drawn seeds
    # is 0, 50 or 100 points with probabilities 1/4, 1/2, 1/4: the 95% interval runs from 0 to 100.
    result = paired_bootstrap([[1], [0]], [[0]], rounds=4_000)
    assert (result.estimate, result.low, result.high) == (approx(50), approx(0), approx(100))


def test_paired_bootstrap_contains_its_estimate_and_repeats():
    rng = np.random.default_rng(1)
    a = (rng.random((3, 200)) < 0.9).astype(int)
    b = (rng.random((3, 200)) < 0.85).astype(int)
    result = paired_bootstrap(a, b, rounds=2_000)
    assert result.estimate == approx((a.mean() - b.mean()) * 100)
    assert result.low < result.estimate < result.high
    assert paired_bootstrap(a, b, rounds=2_000) == result
    # The same predictions on both sides: sentences and (with as many seeds a side) seeds are paired,
    # so every round's difference is 0.
    for same in (a[:1], a):
        identical = paired_bootstrap(same, same, rounds=500)
        assert (identical.estimate, identical.low, identical.high) == (0, 0, 0)
    # With unequal numbers of seeds, each side draws its own: the seeds' spread widens the interval.
    spread = paired_bootstrap(a, a[:2], rounds=2_000)
    assert spread.low < spread.estimate < spread.high


@pytest.mark.parametrize(
    "a, b",
    [(np.ones((3, 4)), np.ones((2, 5))), (np.ones(4), np.ones((2, 4)))],
    ids=["other sentences", "not seeds x sentences"],
)
def test_paired_bootstrap_refuses_a_shape_mismatch(a, b):
    with pytest.raises(ValueError) as err:
        paired_bootstrap(a, b)
    assert str(a.shape) in str(err.value) and str(b.shape) in str(err.value)


def test_the_bootstrap_interval_draws_seeds_and_sentences():
    from lora_lib.study.stats import bootstrap_interval

    # the seeds alone: as in the paired example by hand, 0 to 100
    seeds = bootstrap_interval([[1], [0]], rounds=4_000)
    assert (seeds.estimate, seeds.low, seeds.high) == (approx(50), approx(0), approx(100))
    # the sentences alone: one seed, 2,000 sentences, 85% right; the binomial half-width is
    # 1.96 * sqrt(0.85 * 0.15 / 2000) = 1.56 points
    one = np.array([[1] * 1700 + [0] * 300])
    result = bootstrap_interval(one, rounds=4_000)
    assert result.estimate == approx(85) and (result.high - result.low) / 2 == pytest.approx(1.56, rel=0.1)


def wrong_first(wrong: list[int], sentences: int = 200) -> np.ndarray:
    """Seeds x sentences of 0/1: seed i gets the first ``wrong[i]`` sentences wrong."""
    return np.array([[0] * w + [1] * (sentences - w) for w in wrong])


def test_rank_slope_is_rank_trends_slope_and_carries_the_sentences():
    ranks = [1, 2, 4, 8]
    # every seed of a rank alike: rank r gets 20, 16, 12, 8 of 200 wrong, 2 points per doubling
    correct = [wrong_first([w] * 3) for w in (20, 16, 12, 8)]
    slope = rank_slope(ranks, correct)
    runs = [(r, c.mean(axis=1)) for r, c in zip(ranks, correct)]
    trend = rank_trend([r for r, accs in runs for _ in accs], [a for _, accs in runs for a in accs])
    assert slope.estimate == approx(trend.slope.estimate) == approx(2.0)
    # the seeds agree, so over the seeds alone there is no spread; the sentences still give one
    assert trend.slope.high - trend.slope.low == approx(0)
    assert slope.low < 2.0 < slope.high and slope.high - slope.low > 0.5


def test_rank_slope_carries_the_seeds_spread():
    ranks = [1, 4, 16]
    # On 2,000 sentences the ranks disagree on few of them, and the seeds 4 to 12 points apart
    # dominate; the highest rank's seeds run the other way.
    offsets = np.array([-120, -40, 40, 120])
    agree = [wrong_first([w] * 4, sentences=2000) for w in (200, 160, 120)]
    disagree = [wrong_first(w + sign * offsets, sentences=2000) for w, sign in ((200, 1), (160, 1), (120, -1))]
    narrow, wide = rank_slope(ranks, agree), rank_slope(ranks, disagree)
    assert narrow.estimate == approx(wide.estimate) == approx(1.0)  # 20 of 2,000 per doubling
    assert wide.high - wide.low > 2 * (narrow.high - narrow.low)


def test_rank_slope_names_the_rank_whose_sentences_differ():
    with pytest.raises(ValueError, match="rank 4"):
        rank_slope([1, 4], [wrong_first([10, 10]), wrong_first([10, 10], sentences=150)])


def test_the_crossed_interval_counts_each_variance_component_once():
    # Independent cells (no seed or sentence effect): the mean of S x n Bernoulli(p) has variance
    # p (1 - p) / (S n). The crossed interval's standard error recovers it; the sentence term
    # carries it all (var_i of the seed-averaged correctness is p (1 - p) / S).
    rng = np.random.default_rng(0)
    seeds, n, p = 5, 4000, 0.8
    a = (rng.random((seeds, n)) < p).astype(float)
    result = study_stats.crossed_interval(a)
    assert result.se == pytest.approx(np.sqrt(p * (1 - p) / (seeds * n)) * 100, rel=0.05)
    assert result.interval.low < a.mean() * 100 < result.interval.high


def test_a_seed_main_effect_widens_the_interval_and_takes_the_few_seeds_degrees_of_freedom():
    rng = np.random.default_rng(1)
    shift = np.array([-0.06, -0.03, 0.0, 0.03, 0.06])[:, None]  # each seed moves every sentence
    a = (rng.random((5, 872)) < 0.85 + shift).astype(float)
    b = (rng.random((5, 872)) < 0.85).astype(float)
    plain, seeded = study_stats.crossed_interval(b), study_stats.crossed_interval(a)
    assert seeded.seed_variance > 10 * max(plain.seed_variance, 1e-9)
    assert seeded.se > plain.se and 4 <= seeded.dof < 10 < plain.dof


def test_the_crossed_interval_refuses_arrays_over_different_sentences():
    with pytest.raises(ValueError) as err:
        study_stats.crossed_interval(np.ones((3, 10)), np.ones((3, 11)))
    assert "correct_b" in str(err.value)


def test_the_sign_flip_test_counts_a_sentence_once_however_many_seeds_agree_on_it():
    rng = np.random.default_rng(2)
    base = (rng.random((1, 500)) < 0.8).astype(float)
    flips = np.zeros((1, 500))
    flips[0, :12] = 1  # twelve sentences only A gets right ...
    a, b = np.maximum(base, flips), base * (1 - flips)
    # ... with five identical seeds, pooled McNemar sees 60 discordant pairs; the sentences are 12.
    a5, b5 = np.repeat(a, 5, axis=0), np.repeat(b, 5, axis=0)
    assert int((a5 != b5).sum()) == 60
    p = study_stats.sign_flip_test(a5, b5, rounds=20_000)
    assert p == pytest.approx(2 * 0.5**12, abs=2e-3)  # all twelve signs alike: 2 / 4096
    assert study_stats.sign_flip_test(b5, b5) == 1.0


def test_holm_adjusts_step_down_and_keeps_the_order_given():
    adjusted = study_stats.holm([0.01, 0.04, 0.03, 0.5])
    assert adjusted.tolist() == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert study_stats.holm([0.2]).tolist() == [0.2]


def test_holm_column_adjusts_each_family_apart_and_leaves_untested_rows_empty():
    table = pd.DataFrame({"budget": [5, 5, 5, 10, 10], "p": [0.01, np.nan, 0.03, 0.02, None]}, index=list("abcde"))
    by_budget = study_stats.holm_column(table, by="budget")
    assert by_budget[["a", "c", "d"]].tolist() == pytest.approx([0.02, 0.03, 0.02])
    assert by_budget[["b", "e"]].isna().all()
    together = study_stats.holm_column(table)
    assert together[["a", "c", "d"]].tolist() == pytest.approx([0.03, 0.04, 0.04])


def test_a_contrast_of_two_is_the_crossed_difference_and_a_step_weighs_each_side():
    rng = np.random.default_rng(3)
    arrays = [(rng.random((5, 300)) < p).astype(float) for p in (0.80, 0.82, 0.86, 0.87)]
    pair = study_stats.crossed_interval(arrays[2], arrays[0])
    contrast = study_stats.crossed_contrast([arrays[2], arrays[0]], [1, -1])
    assert contrast == pair
    step = study_stats.crossed_contrast(arrays, [-0.5, -0.5, 0.5, 0.5])
    means = [a.mean() * 100 for a in arrays]
    assert step.interval.estimate == approx((means[2] + means[3] - means[0] - means[1]) / 2)
    # each side is a mean of two: its seed terms weigh a quarter each
    singles = [study_stats._seed_component(a)[0] for a in arrays]
    assert step.seed_variance == approx(sum(singles) / 4 * 1e4)


def test_a_contrast_names_the_array_over_other_sentences():
    with pytest.raises(ValueError, match="array 1"):
        study_stats.crossed_contrast([np.ones((3, 10)), np.ones((3, 11))], [1, -1])


def test_slope_weights_give_the_least_squares_slope_and_refuse_a_single_rank():
    from lora_lib.study.stats import slope_weights

    ranks, means = [2, 8, 64], np.array([84.0, 86.0, 88.0])
    assert slope_weights(ranks) @ means == pytest.approx(np.polyfit(np.log2(ranks), means, 1)[0])
    with pytest.raises(ValueError, match=r"\[8, 8\]"):
        slope_weights([8, 8])
