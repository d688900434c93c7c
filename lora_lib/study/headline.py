"""What the study found, in a reader's terms: how close each method comes, and what it costs.

- ``said(interval)``: a difference as its interval allows it to be said (``Said``): "below full
  fine-tuning by 0.8 to 3.3 points", "above ... by", or "not distinguishable from ... (-0.3 to
  +1.8 points)"; the side is the structured verdict the sentence is made from.
- ``headline(table, summary, stored_bytes)``: the landing page's numbers, from
  ``paired.against_reference``'s table and ``summarize``'s costs: LoRA r=8's and the closest
  parameter-efficient configuration's gap to full fine-tuning, and the cost of each against full
  fine-tuning's as ratios (median training time, peak memory, what is stored per task).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .stats import Interval

PRIMARY = "LoRA r=8"  # the configuration the study named before its grid ran
REFERENCE = "Full fine-tuning"
FP32_BYTES = 4


@dataclass(frozen=True)
class Said:
    """A difference's interval as a reader is told it: ``side`` is "below", "above" or "not
    distinguishable"; ``text`` the words (the ends in points, one decimal)."""

    side: str
    low: float
    high: float
    text: str


def said(interval: Interval, reference: str = "full fine-tuning") -> Said:
    """``interval`` (A minus the reference, in points) as its ends allow it to be said."""
    low, high = interval.low, interval.high
    if high < 0:
        return Said("below", low, high, f"below {reference} by {-high:.1f} to {-low:.1f} points")
    if low > 0:
        return Said("above", low, high, f"above {reference} by {low:.1f} to {high:.1f} points")
    return Said(
        "not distinguishable", low, high, f"not distinguishable from {reference} ({low:+.1f} to {high:+.1f} points)"
    )


def _mib(n_bytes: float) -> str:
    return f"{n_bytes / 2**20:.1f} MiB" if n_bytes >= 2**20 else f"{n_bytes / 2**10:.0f} KiB"


def headline(table: pd.DataFrame, summary: pd.DataFrame, stored_bytes: dict[str, int]) -> dict[str, str]:
    """The landing page's numbers as text. ``stored_bytes`` maps a configuration's label to the
    size of the file a run of it stores (its adapter's safetensors); full fine-tuning stores a
    whole copy of the model, its trained parameters in fp32. Every configuration must have as many
    seeds as the most complete one; the closest is the parameter-efficient configuration whose
    interval's upper end is highest."""
    finished = table[table["seeds"] == table["seeds"].max()]
    missing = [name for name in (PRIMARY, REFERENCE) if name not in finished.index]
    if missing:
        raise ValueError(f"headline needs {' and '.join(missing)} with all seeds in the table")
    others = finished[finished["difference"].notna()]
    closest = others["difference"].map(lambda i: i.high).idxmax()
    cost = summary.set_index("label")
    if PRIMARY not in stored_bytes:
        raise ValueError(f"headline needs the size of a {PRIMARY} adapter file in stored_bytes")
    full_bytes = cost.loc[REFERENCE, "trainable"] * FP32_BYTES
    numbers = {
        "full_accuracy": f"{finished.loc[REFERENCE, 'accuracy over seeds and sentences'].estimate:.1f}",
        "primary_trainable": f"{finished.loc[PRIMARY, 'trainable (%)']:.2f}%",
        "primary_accuracy": f"{finished.loc[PRIMARY, 'accuracy over seeds and sentences'].estimate:.1f}",
        "primary_gap": said(finished.loc[PRIMARY, "difference"]).text,
        "closest": closest,
        "closest_trainable": f"{finished.loc[closest, 'trainable (%)']:.2f}%",
        "closest_gap": said(finished.loc[closest, "difference"]).text,
        "n_below": str(int(sum(said(d).side == "below" for d in others["difference"]))),
        "n_compared": str(len(others)),
        "primary_minutes": f"{cost.loc[PRIMARY, 'train_minutes']:.1f}",
        "full_minutes": f"{cost.loc[REFERENCE, 'train_minutes']:.1f}",
        "time_ratio": f"{cost.loc[REFERENCE, 'train_minutes'] / cost.loc[PRIMARY, 'train_minutes']:.1f}",
        "memory_share": f"{cost.loc[PRIMARY, 'peak_rss_mb'] / cost.loc[REFERENCE, 'peak_rss_mb']:.0%}",
        "primary_stored": _mib(stored_bytes[PRIMARY]),
        "full_stored": _mib(full_bytes),
        "stored_ratio": f"{full_bytes / stored_bytes[PRIMARY]:.0f}",
    }
    return numbers
