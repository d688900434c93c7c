"""The key findings that the README and chapter 6 print, on a results table built by hand."""

import pandas as pd
from matplotlib.collections import PathCollection
import pytest

from lora_lib import report


def results(rows):
    """A ``load_results``-shaped frame: (run_id, method, rank, accuracy, trainable_pct, examples/s, MiB)."""
    return pd.DataFrame([
        {"run_id": run_id, "method": method, "rank": rank, "seed": int(run_id[-1]), "dev_accuracy": accuracy,
         "train_loss_tail": 0.2,
         "trainable": int(pct * 1e5), "trainable_pct": pct, "train_seconds": 600.0,
         "train_examples_per_second": speed, "peak_rss_mb": memory}
        for run_id, method, rank, accuracy, pct, speed, memory in rows])


GRID = results(
    [(f"full_s{s}", "full", None, a, 100.0, 100.0, 2000.0) for s, a in enumerate([0.90, 0.91, 0.92])]
    + [(f"lora_r8_s{s}", "lora", 8, a, 0.33, 150.0, 1500.0) for s, a in enumerate([0.90, 0.90, 0.90])]
    + [(f"lora_r64_s{s}", "lora", 64, a, 2.6, 140.0, 1550.0) for s, a in enumerate([0.89, 0.90, 0.91])]
    + [(f"bitfit_s{s}", "bitfit", None, a, 0.1, 160.0, 1400.0) for s, a in enumerate([0.85, 0.86, 0.87])]
    + [("lora_r4_s0", "lora", 4, 0.99, 0.2, 150.0, 1500.0)]
)


def test_findings_state_the_targets_rank_baselines_and_cost():
    lines = report.findings(report.summarize(GRID))
    assert lines[0] == "Full fine-tuning reaches 91.00 ± 1.00% (3 seeds), which meets the 90% target."
    # the one-run r=4 at 99% is not a result: r=8 is the best rank, 1.00 point below full
    assert lines[1] == ("The best LoRA rank, r = 8, reaches 90.00 ± 0.00% (3 seeds): 1.00 points below full "
                        "fine-tuning, training 0.33% of the parameters, so it meets the target of at most 1.0 point "
                        "below with under 1% trained.")
    assert lines[2] == ("Rank: r = 8: 90.00, r = 64: 90.00. The means span 0.00 points (highest at r = 8, lowest at "
                        "r = 8), against a seed-to-seed standard deviation of 0.50 points on average: a higher rank "
                        "does not clearly help.")
    assert lines[3] == "The other methods: BitFit 86.00 ± 1.00% (3 seeds) with 0.10% trained."
    assert lines[4] == ("Cost against full fine-tuning (100 examples/s, 2000 MiB peak): LoRA r=8 trains 1.50x as fast "
                        "in 0.75x the memory; the fastest and leanest is BitFit (1.60x, 0.70x the memory).")
    assert lines[5] == "Not yet results (fewer than 3 seeds, left out above): LoRA r=4 (1 of 3)."


@pytest.mark.parametrize("accuracies, verdict", [([0.89, 0.90, 0.91], "meets"), ([0.89, 0.90, 0.90], "misses")])
def test_the_full_fine_tuning_target_is_on_the_mean(accuracies, verdict):
    grid = results([(f"full_s{s}", "full", None, a, 100.0, 100.0, 2000.0) for s, a in enumerate(accuracies)])
    line = report.findings(report.summarize(grid))[0]
    assert f"which {verdict} the 90% target" in line
    assert line.endswith("Chapter 5 says what was tried to reach it.") == (verdict == "misses")


def test_a_lora_gap_over_a_point_or_over_one_percent_trained_misses():
    full = [(f"full_s{s}", "full", None, 0.92, 100.0, 100.0, 2000.0) for s in range(3)]
    far = results(full + [(f"lora_r8_s{s}", "lora", 8, 0.9099, 0.33, 150.0, 1500.0) for s in range(3)])
    big = results(full + [(f"lora_r8_s{s}", "lora", 8, 0.92, 1.2, 150.0, 1500.0) for s in range(3)])
    assert "1.01 points below full fine-tuning" in report.findings(report.summarize(far))[1]
    assert report.findings(report.summarize(far))[1].endswith(
        "so it misses the target of at most 1.0 point below with under 1% trained. "
        "Chapter 5 says what was tried to close the gap.")
    against = report.lora_against_full(report.summarize(far))
    assert against.best["group"] == against.best_small["group"] == "lora_r8"
    assert against.gap == against.gap_small == pytest.approx(1.01) and not against.met
    assert report.findings(report.summarize(big))[1].startswith(
        "The best LoRA rank, r = 8, reaches 92.00 ± 0.00% (3 seeds): level with full fine-tuning, training 1.20% of "
        "the parameters; no rank trains under 1%, so LoRA misses the target")


def test_a_big_rank_near_full_does_not_hide_a_small_rank_that_misses():
    grid = results([(f"full_s{s}", "full", None, 0.92, 100.0, 100.0, 2000.0) for s in range(3)]
                   + [(f"lora_r64_s{s}", "lora", 64, 0.915, 2.5, 150.0, 1500.0) for s in range(3)]
                   + [(f"lora_r8_s{s}", "lora", 8, 0.905, 0.33, 150.0, 1500.0) for s in range(3)]
                   + [(f"lora_r4_s{s}", "lora", 4, 0.90, 0.17, 150.0, 1500.0) for s in range(3)])
    against = report.lora_against_full(report.summarize(grid))
    assert (against.best["group"], against.best_small["group"]) == ("lora_r64", "lora_r8")
    assert (against.gap, against.gap_small) == (pytest.approx(0.5), pytest.approx(1.5)) and not against.met
    assert report.findings(report.summarize(grid))[1] == (
        "The best LoRA rank, r = 64, reaches 91.50 ± 0.00% (3 seeds): 0.50 points below full fine-tuning, training "
        "2.50% of the parameters; the best under 1% trained, r = 8 (0.33%), reaches 90.50 ± 0.00% (3 seeds): 1.50 "
        "points below full fine-tuning, so LoRA misses the target of at most 1.0 point below with under 1% trained. "
        "Chapter 5 says what was tried to close the gap.")
    assert "(highest at r = 64, lowest at r = 4)" in report.findings(report.summarize(grid))[2]
    closer = grid.assign(dev_accuracy=grid["dev_accuracy"].where(grid["run_id"].str[:7] != "lora_r8", 0.912))
    assert report.lora_against_full(report.summarize(closer)).met


def test_the_head_alone_is_named_cheapest_and_the_encoder_methods_separately():
    head = results([(f"head_s{s}", "head", None, 0.68, 0.0034, 190.0, 1000.0) for s in range(3)])
    lines = report.findings(report.summarize(pd.concat([GRID, head])))
    assert "; Head only 68.00 ± 0.00% (3 seeds) with 0.003% trained." in lines[3]
    assert lines[4].endswith("the fastest and leanest is Head only (1.90x, 0.50x the memory); of the methods that adapt "
                             "the encoder, the fastest and leanest is BitFit (1.60x, 0.70x the memory).")


def test_lora_against_full_waits_for_both_to_have_their_seeds():
    full = [(f"full_s{s}", "full", None, 0.92, 100.0, 100.0, 2000.0) for s in range(3)]
    two_seeds = [(f"lora_r8_s{s}", "lora", 8, 0.92, 0.33, 150.0, 1500.0) for s in range(2)]
    assert report.lora_against_full(report.summarize(results(full + two_seeds))) is None
    assert report.lora_against_full(report.summarize(results(full[:2] + two_seeds))) is None
    against = report.lora_against_full(report.summarize(results(full + two_seeds)), seeds=2)
    assert (against.best["group"], against.gap, against.met) == ("lora_r8", pytest.approx(0.0), True)


def test_with_no_complete_configuration_only_the_pending_ones_are_named():
    grid = results([("full_s0", "full", None, 0.89, 100.0, 100.0, 2000.0),
                    ("lora_r8_s0", "lora", 8, 0.87, 0.33, 150.0, 1500.0)])
    assert report.findings(report.summarize(grid)) == [
        "Not yet results (fewer than 3 seeds, left out above): Full fine-tuning (1 of 3), LoRA r=8 (1 of 3)."]


def test_every_seed_is_kept_and_drawn():
    summary = report.summarize(GRID)
    assert summary.set_index("group").loc["full", "accuracies"] == (0.90, 0.91, 0.92)
    fig = report.accuracy_plot(summary, "trainable", "trainable parameters", log=True)
    hollow = [c for c in fig.axes[0].collections
              if isinstance(c, PathCollection) and not len(c.get_facecolors())]
    drawn = sorted(y for c in hollow for _, y in c.get_offsets())
    assert drawn == pytest.approx(sorted(GRID["dev_accuracy"] * 100))
