"""How often the study's 95% intervals cover the truth, measured on simulated studies.

Each simulated study has the records' own structure: the sentences, each with the probability
that a configuration gets it right (the seed-averaged correctness of two configurations'
runs, a pair per sentence), redrawn with replacement in every study (the sentences' sampling
error), and as many seeds per configuration as the records, each seed shifting every
probability on the logit scale (the seeds' spread: by default the one the records show). Each
study's 0/1 correctness is drawn from those probabilities, which is where the seed x sentence
interaction comes from. The truth is the population's accuracy (or difference), over all
sentences and seeds. ``python -m lora_lib.study.coverage executed`` prints the coverage of the
crossed design's intervals (``stats.crossed_interval``) beside the pigeonhole bootstrap's
(``stats.paired_bootstrap``) for LoRA r=8 against full fine-tuning.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np
from scipy.special import expit, logit

from .stats import CONFIDENCE, Interval, _seed_component, crossed_interval, paired_bootstrap


@dataclass(frozen=True)
class Coverage:
    """The share of simulated studies whose interval held the true accuracy of A and the true
    difference A - B, out of ``studies``."""

    accuracy: float
    difference: float
    studies: int


def population(correct_a: np.ndarray, correct_b: np.ndarray, seed_sd: float | None = None):
    """Per-sentence probabilities of A and B (2 x sentences) from their seeds x sentences arrays
    of 0/1, and each one's logit-scale seed spread: the one that gives the seed variance the
    arrays show, or, with ``seed_sd``, the one that gives a seed spread of that many points."""
    q = np.clip(np.stack([correct_a.mean(axis=0), correct_b.mean(axis=0)]), 1e-4, 1 - 1e-4)
    slope = np.mean(q * (1 - q), axis=1)  # a logit shift t moves the accuracy by about t * mean(q (1 - q))
    if seed_sd is None:
        spread = [np.sqrt(_seed_component(c)[0] * len(c)) for c in (correct_a, correct_b)]
    else:
        spread = [seed_sd / 100] * 2
    return q, np.array(spread) / slope


def _simulate(q, taus, seeds: int, rng) -> np.ndarray:
    """One study: the sentences drawn from the population, ``seeds`` seeds a configuration:
    2 x seeds x sentences of 0/1."""
    sentences = rng.integers(0, q.shape[1], q.shape[1])
    shifts = rng.normal(0, taus[:, None], size=(2, seeds))
    p = expit(logit(q[:, sentences])[:, None, :] + shifts[:, :, None])
    return (rng.random(p.shape) < p).astype(float)


def _truth(q, taus, rng) -> np.ndarray:
    """The population's accuracy of A and B (fractions), averaging the seed shift by Monte Carlo."""
    shifts = rng.normal(0, taus[:, None], size=(2, 4000))
    return expit(logit(q)[:, :, None] + shifts[:, None, :]).mean(axis=(1, 2))


def crossed(a, b) -> Interval:
    """The study's interval: the crossed design's (``stats.crossed_interval``)."""
    return crossed_interval(a, b).interval


def pigeonhole(a, b, rounds: int = 300) -> Interval:
    """The second study's first look: the bootstrap that resamples seeds and sentences together."""
    return paired_bootstrap(a, np.zeros_like(a) if b is None else b, rounds=rounds, seed=1)


def coverage(correct_a, correct_b, interval=crossed, studies: int = 1000, seed_sd=None, seed: int = 0) -> Coverage:
    """The coverage of ``interval`` (a function of A's and B's simulated arrays, B None for A's
    accuracy alone) in ``studies`` studies simulated from the records' arrays of A and B."""
    a, b = np.asarray(correct_a, dtype=float), np.asarray(correct_b, dtype=float)
    q, taus = population(a, b, seed_sd)
    rng = np.random.default_rng(seed)
    accuracy_a, accuracy_b = _truth(q, taus, rng) * 100
    hits = np.zeros(2)
    for _ in range(studies):
        sim_a, sim_b = _simulate(q, taus, len(a), rng)
        accuracy, difference = interval(sim_a, None), interval(sim_a, sim_b)
        hits += [
            accuracy.low <= accuracy_a <= accuracy.high,
            difference.low <= accuracy_a - accuracy_b <= difference.high,
        ]
    return Coverage(float(hits[0] / studies), float(hits[1] / studies), studies)


SPREADS = {"the records' seed spread": None, "a seed spread of 1 point": 1.0}


def study_coverage(records, a: str = "LoRA r=8", b: str = "Full fine-tuning", studies: int = 1000) -> dict:
    """For the records' configurations labelled ``a`` and ``b``: per seed spread of ``SPREADS``,
    the coverage of the crossed design's intervals over ``studies`` simulated studies and the
    pigeonhole bootstrap's over 100 (it resamples, so it costs 300 rounds a study)."""
    from .aggregate import config_label
    from .paired import correct, evaluation_labels
    from .record import by_configuration

    named = {config_label(runs[0].method, runs[0].config.hparams): runs for runs in by_configuration(records).values()}
    missing = [name for name in (a, b) if name not in named]
    if missing:
        raise ValueError(f"study_coverage has no configuration {missing[0]!r} in the records: pass the grid's records")
    labels = evaluation_labels(named[b][0].config)
    arrays = correct(named[a], labels), correct(named[b], labels)
    return {
        spread: {
            "crossed": coverage(*arrays, crossed, studies, sd),
            "pigeonhole": coverage(*arrays, pigeonhole, 100, sd, seed=1),
        }
        for spread, sd in SPREADS.items()
    }


def main(argv: list[str] | None = None) -> None:
    from .record import load_records

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="the grid's records (executed)")
    parser.add_argument("--studies", type=int, default=1000, help="simulated studies for the crossed intervals")
    args = parser.parse_args(argv)
    results = study_coverage(load_records(args.folder, eval_split="validation"), studies=args.studies)
    print(f"coverage of {CONFIDENCE:.0%} intervals, LoRA r=8's accuracy and its difference to full fine-tuning")
    for spread, methods in results.items():
        ours, old = methods["crossed"], methods["pigeonhole"]
        print(
            f"{spread}: crossed design {ours.accuracy:.1%} and {ours.difference:.1%} ({ours.studies} studies); "
            f"pigeonhole bootstrap {old.accuracy:.1%} and {old.difference:.1%} ({old.studies} studies)"
        )


if __name__ == "__main__":
    main()
