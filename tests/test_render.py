"""Tables as a reader reads them: intervals and p-values in one form across the book."""

import numpy as np
import pandas as pd

from lora_lib.study import render
from lora_lib.study.stats import Interval


def test_a_comparison_shows_each_interval_as_the_book_does_and_leaves_other_cells_alone():
    table = pd.DataFrame(
        {
            "seeds": ["3 / 3", "5 / 5"],
            "bf16 − fp32 (points)": [Interval(-0.03, -0.10, 0.03), Interval(-0.18, -0.81, 0.45)],
            "p": [1.0, 0.0004],
            "verdict": ["yes", "no"],
        },
        index=["Full fine-tuning", "LoRA r=8"],
    )
    shown = render.comparison_frame(table)
    assert shown.loc["LoRA r=8", "bf16 − fp32 (points)"] == render.interval_text(Interval(-0.18, -0.81, 0.45))
    assert shown["p"].tolist() == [render.p_text(1.0), render.p_text(0.0004)]
    assert shown[["seeds", "verdict"]].equals(table[["seeds", "verdict"]])
    assert isinstance(table.iloc[0, 1], Interval)  # the table given is left as it was
    assert render.comparison_frame(table.assign(p=np.nan))["p"].tolist() == ["", ""]
