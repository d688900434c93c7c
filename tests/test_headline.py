"""The landing page's numbers: a difference said as its interval allows, and cost as ratios."""

import pandas as pd
import pytest

from lora_lib.study.headline import headline, said
from lora_lib.study.stats import Interval


def test_a_difference_is_said_as_its_interval_allows():
    assert said(Interval(-2.0, -3.27, -0.81)).side == "below"
    assert said(Interval(-2.0, -3.27, -0.81)).text == "below full fine-tuning by 0.8 to 3.3 points"
    assert said(Interval(1.0, 0.2, 1.8)).side == "above"
    middle = said(Interval(0.9, -0.03, 1.77), "LoRA r=8")
    assert middle.side == "not distinguishable" and "-0.0 to +1.8" in middle.text


def _table():
    rows = {
        "Full fine-tuning": (100.0, Interval(89.4, 87.5, 91.2), None),
        "LoRA r=8": (0.33, Interval(87.3, 85.3, 89.3), Interval(-2.0, -3.3, -0.8)),
        "Pfeiffer": (0.5, Interval(88.0, 86.0, 90.0), Interval(-1.4, -2.6, -0.2)),
        "LoRA r=64": (2.6, Interval(88.2, 86.2, 90.2), Interval(-1.2, -2.2, 0.1)),
    }
    table = pd.DataFrame(
        {
            "trainable (%)": [v[0] for v in rows.values()],
            "seeds": 5,
            "accuracy over seeds and sentences": [v[1] for v in rows.values()],
            "difference": [v[2] for v in rows.values()],
        },
        index=list(rows),
    )
    summary = pd.DataFrame(
        {
            "label": list(rows),
            "train_minutes": [15.0, 10.0, 9.0, 10.0],
            "peak_rss_mb": [1800.0, 1500.0, 1450.0, 1550.0],
            "trainable": [22_000_000, 74_000, 110_000, 590_000],
        }
    )
    return table, summary


def test_the_headline_names_the_closest_and_the_cost_ratios():
    table, summary = _table()
    numbers = headline(table, summary, {"LoRA r=8": 300 * 2**10})
    assert numbers["closest"] == "LoRA r=64"  # its interval reaches highest, and holds zero
    assert numbers["closest_gap"].startswith("not distinguishable from full fine-tuning")
    assert (numbers["n_below"], numbers["n_compared"]) == ("2", "3")
    assert numbers["time_ratio"] == "1.5" and numbers["memory_share"] == "83%"
    assert numbers["full_stored"] == "83.9 MiB" and numbers["stored_ratio"] == "286"


def test_the_headline_needs_the_primary_configuration_and_its_file():
    table, summary = _table()
    with pytest.raises(ValueError, match="LoRA r=8"):
        headline(table.drop(index="LoRA r=8"), summary, {"LoRA r=8": 1})
    with pytest.raises(ValueError, match="stored_bytes"):
        headline(table, summary, {})
