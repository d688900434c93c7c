"""What a reader sees of the results: figures and tables, drawn from ``summarize``'s table.

Nothing here chooses a matplotlib backend: a notebook keeps its inline one, and the command
line (``lora_lib.study.report``) picks its own.
"""

from __future__ import annotations

import re

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from .aggregate import config_label, format_lr, label_of, method_order
from .record import Record
from .stats import Interval, t_interval

# Okabe-Ito: distinguishable with every common colour-vision deficiency; markers carry it in print.
COLORS = ["#000000", "#999999", "#E69F00", "#0072B2", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#F0E442"]
MARKERS = ["s", "X", "^", "o", "D", "P", "v", "*", "h"]
# The accuracy figures: what each plots on its x axis, its axis label, and whether that axis is logarithmic.
ACCURACY_AGAINST = {
    "accuracy_vs_params": ("trainable", "trainable parameters (log scale)", True),
    "accuracy_vs_time": ("train_minutes", "training time (minutes)", False),
    "accuracy_vs_memory": ("peak_rss_mb", "peak memory while training (MiB)", False),
}


def _style(method: str) -> dict:
    index = method_order(method)
    return {"color": COLORS[index % len(COLORS)], "marker": MARKERS[index % len(MARKERS)]}


def accuracy_plot(summary: pd.DataFrame, x: str, xlabel: str, log: bool = False) -> Figure:
    """Mean accuracy of each configuration against ``x``, with its seeds as hollow marks."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, rows in summary.groupby("method", sort=False):
        style = _style(method)
        rows = rows.sort_values(x)
        ax.errorbar(
            rows[x],
            rows["accuracy_mean"] * 100,
            yerr=rows["accuracy_std"].fillna(0) * 100,
            linestyle="-" if len(rows) > 1 else "none",
            capsize=3,
            markersize=7,
            label=label_of(method),
            **style,
        )
        # every seed as a small hollow mark, so the spread is seen and not only summarised
        seeds_x = [value for value, accs in zip(rows[x], rows["accuracies"]) for _ in accs]
        seeds_y = [acc * 100 for accs in rows["accuracies"] for acc in accs]
        ax.scatter(
            seeds_x,
            seeds_y,
            s=14,
            facecolors="none",
            edgecolors=style["color"],
            marker=style["marker"],
            linewidths=0.8,
            alpha=0.8,
        )
        if method == "lora":
            for _, row in rows.iterrows():
                ax.annotate(
                    f"r={int(row['rank'])}",
                    (row[x], row["accuracy_mean"] * 100),
                    textcoords="offset points",
                    xytext=(4, -12),
                    fontsize=8,
                    color=style["color"],
                )
    if log:
        ax.set_xscale("log")
    ax.set(xlabel=xlabel, ylabel="SST-2 validation accuracy (%)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower right")
    note = "mean ± std over seeds, each seed hollow" if (summary["runs"] > 1).any() else "single runs: no spread yet"
    ax.set_title(f"{int(summary['runs'].sum())} runs, {note}", fontsize=9)
    fig.tight_layout()
    return fig


def loss_curves(records: list[Record]) -> Figure:
    """The training loss against the epoch, one line per configuration: the mean over its seeds
    with a band of one standard deviation (seaborn), in its method's colour; LoRA's
    configurations in LoRA's colour, told apart by line style."""
    rows = []
    for record in records:
        curve = pd.DataFrame(record.history.train)
        if curve.empty:
            continue
        label = config_label(record.method, record.config.hparams)
        rows.append(curve[["epoch", "loss"]].assign(configuration=label, method=record.method))
    if not rows:
        raise ValueError("no run logged a training loss: the records hold no history")
    curves = pd.concat(rows, ignore_index=True)
    order = curves.drop_duplicates("configuration").sort_values("method", key=lambda m: m.map(method_order))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    dashes = ["", (4, 2), (1, 1), (6, 2, 1, 2), (3, 1, 1, 1), (8, 3)]
    lora_seen = 0
    for configuration, method in zip(order["configuration"], order["method"]):
        style = {"dashes": dashes[lora_seen % len(dashes)]} if method == "lora" else {}
        lora_seen += method == "lora"
        sns.lineplot(
            data=curves[curves["configuration"] == configuration],
            x="epoch",
            y="loss",
            errorbar="sd",
            color=_style(method)["color"],
            linewidth=1,
            label=configuration,
            ax=ax,
            **style,
        )
    ax.set(xlabel="epoch", ylabel="training loss, mean over seeds ± sd")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6.5, ncol=2)
    fig.tight_layout()
    return fig


def search_curves(search: pd.DataFrame, panels: dict[str, list[str]]) -> Figure:
    """Held-out accuracy against the learning rate (log scale), a line per configuration, one
    panel per entry of ``panels`` (title: configurations); each line's best rate is filled.
    ``search`` holds one stage of the search: the stages' schedules differ, so their points
    would not lie on one curve."""
    if "stage" in search and search["stage"].nunique() > 1:
        raise ValueError(f"search_curves draws one stage of the search, got stages {sorted(search['stage'].unique())}")
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4), sharey=True, squeeze=False)
    for ax, (title, configurations) in zip(axes[0], panels.items()):
        for index, configuration in enumerate(configurations):
            rows = search[search["configuration"] == configuration].sort_values("lr")
            if rows.empty:
                raise ValueError(f"no search run of {configuration!r}: run lora-sweep studies/v2/search.yml")
            color, marker = COLORS[index % len(COLORS)], MARKERS[index % len(MARKERS)]
            ax.plot(rows["lr"], rows["accuracy"], color=color, marker=marker, mfc="white", label=configuration)
            best = rows.loc[rows["accuracy"].idxmax()]
            ax.plot(best["lr"], best["accuracy"], color=color, marker=marker, markersize=9, linestyle="none")
        ax.set(xscale="log", title=title, xlabel="learning rate (log scale)")
        ax.xaxis.set_minor_formatter(NullFormatter())  # the minor labels overlap on a short range
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    axes[0][0].set_ylabel("held-out accuracy (%)")
    fig.tight_layout()
    return fig


def differences_plot(table: pd.DataFrame, reference: str, target: float | None = None) -> Figure:
    """``paired.against_reference``'s differences as a forest plot: a row per configuration
    (the reference's left out), its paired difference in points with the 95% interval over
    seeds and sentences, a line at zero and, with ``target``, one at the target."""
    rows = table[table["difference"].notna()]
    if rows.empty:
        raise ValueError(f"no configuration to set beside {reference!r}")
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.4))
    y = np.arange(len(rows))[::-1]
    for position, (_, row) in zip(y, rows.iterrows()):
        interval, style = row["difference"], _style(row["method"])
        ax.errorbar(
            interval.estimate,
            position,
            xerr=[[interval.estimate - interval.low], [interval.high - interval.estimate]],
            capsize=3,
            markersize=7,
            color=style["color"],
            marker=style["marker"],
        )
    ax.axvline(0, color="black", linewidth=0.8)
    if target is not None:
        ax.axvline(target, color="#D55E00", linestyle="--", linewidth=1, label=f"target ({target:+g} point)")
        ax.legend(fontsize=8, loc="lower left")
    ax.set_yticks(y, list(rows.index))
    ax.set_xlabel(f"accuracy minus {reference}'s (points), 95% interval over seeds and sentences")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def rank_plot(series: dict[str, pd.DataFrame]) -> Figure:
    """LoRA's accuracy against its rank (log2 axis), one line per rank series (``ranks.rank_series``'s
    tables, named by ``series``' keys), each rank's mean with its 95% interval over seeds and
    sentences, and each point's learning rate written beside it where a series changes rate."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for k, (name, rows) in enumerate(series.items()):
        ranks = np.asarray(rows.index, dtype=float) * 2 ** (0.06 * (k - (len(series) - 1) / 2))  # side by side
        means = np.array([i.estimate for i in rows["accuracy"]])
        errors = np.array(
            [[i.estimate - i.low for i in rows["accuracy"]], [i.high - i.estimate for i in rows["accuracy"]]]
        )
        ax.errorbar(ranks, means, yerr=errors, capsize=3, marker=MARKERS[k + 3], color=COLORS[k + 3], label=name)
        if rows["lr"].nunique() > 1:
            for x, y, lr in zip(ranks, means, rows["lr"]):
                ax.annotate(
                    f"{lr:g}", (x, y), textcoords="offset points", xytext=(6, -12), fontsize=7, color=COLORS[k + 3]
                )
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(set().union(*[set(rows.index) for rows in series.values()])))
    ax.get_xaxis().set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("LoRA rank r on query and value (log scale)")
    ax.set_ylabel("validation accuracy (%), 95% interval")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def _format_count(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(n)


def _accuracy_text(row, plus_minus: str = "±") -> str:
    if np.isnan(row["accuracy_std"]):
        return f"{row['accuracy_mean'] * 100:.2f} (1 run)"
    return f"{row['accuracy_mean'] * 100:.2f} {plus_minus} {row['accuracy_std'] * 100:.2f}"


def _interval_text(accuracies) -> str:
    ci = t_interval(accuracies)
    return "" if np.isnan(ci.low) else f"{ci.low:.2f}–{ci.high:.2f}"


def results_frame(summary: pd.DataFrame) -> pd.DataFrame:
    """The results table as a reader reads it: labels, accuracy with its spread and its 95%
    interval over the seeds, formatted counts."""
    return pd.DataFrame(
        {
            "method": summary["label"],
            "accuracy (%)": summary.apply(_accuracy_text, axis=1),
            "95% interval": summary["accuracies"].map(_interval_text),
            "runs": summary["runs"],
            "trainable": summary["trainable"].map(_format_count),
            "trainable %": summary["trainable_pct"].map("{:.3f}".format),
            "time (min)": summary["train_minutes"].map("{:.1f}".format),
            "memory (MiB)": summary["peak_rss_mb"].map("{:.0f}".format),
        }
    )


def paired_results_frame(table: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """The second study's results table as a reader reads it: ``paired.against_reference``'s
    accuracy over seeds and sentences and difference to the reference, each with its 95%
    interval, the difference's sign-flip p and Holm's over the family, beside ``summarize``'s
    counts and costs of the same configurations (the median training time per run)."""
    cost = summary.set_index("label")
    cost = cost.loc[table.index]

    return pd.DataFrame(
        {
            "method": table.index,
            "accuracy (%)": table["accuracy over seeds and sentences"].map(interval_text).values,
            "difference (points)": table["difference"].map(interval_text).values,
            "p": table["p"].map(p_text).values,
            "Holm p": table["Holm p"].map(p_text).values,
            "seeds": table["seeds"].values,
            "trainable": cost["trainable"].map(_format_count).values,
            "trainable %": cost["trainable_pct"].map("{:.3f}".format).values,
            "time (min)": cost["train_minutes"].map("{:.1f}".format).values,
            "memory (MiB)": cost["peak_rss_mb"].map("{:.0f}".format).values,
        }
    )


def interval_text(value: Interval | None) -> str:
    """An estimate with its interval, "88.52 (87.96 to 89.08)"; empty where there is none."""
    return "" if value is None else f"{value.estimate:.2f} ({value.low:.2f} to {value.high:.2f})"


def estimate_text(estimate: float | None, interval: Interval | None, seeds: int, sign: bool = False) -> str:
    """An estimate with its interval where it has one, "88.88 (2 seeds)" where it has not
    (too few seeds for one); a difference (``sign``) with its sign. Empty where there is no estimate."""
    if estimate is None or pd.isna(estimate):
        return ""
    form = "+.2f" if sign else ".2f"
    if interval is None:
        return f"{estimate:{form}} ({seeds} seed{'s' if seeds != 1 else ''})"
    return f"{interval.estimate:{form}} ({interval.low:{form}} to {interval.high:{form}})"


def comparison_frame(table: pd.DataFrame) -> pd.DataFrame:
    """A table of ``protocol``'s comparisons (precision, schedule) as a reader reads it: every
    interval as ``interval_text`` gives it and the column "p" as ``p_text``; the rest as it is."""
    shown = table.map(lambda v: interval_text(v) if isinstance(v, Interval) else v)
    if "p" in shown.columns:
        shown["p"] = table["p"].map(p_text)
    return shown


def targets_frame(table: pd.DataFrame) -> pd.DataFrame:
    """``long_runs.judge_targets`` as a reader reads it: each target's configuration, its estimate
    with its interval (or its seeds, where there are too few for one), the verdict, and the
    estimate's distance from the threshold (points)."""
    return pd.DataFrame(
        {
            "configuration": table["configuration"],
            "estimate (95% interval)": [
                estimate_text(row["estimate"], row["interval"], row["seeds"], sign=bool(row["difference"]))
                for _, row in table.iterrows()
            ],
            "verdict": table["verdict"],
            "by": table["by"].map(lambda v: "" if pd.isna(v) else f"{v:+.2f}"),
        },
        index=table.index,
    )


def selected_frame(table: pd.DataFrame) -> pd.DataFrame:
    """``long_runs.selected_table`` as a reader reads it: each configuration's seeds and epochs,
    where its checkpoints were selected, its validation accuracy there and at the end, and its
    difference to full fine-tuning at the selected checkpoints with the p-values."""
    return pd.DataFrame(
        {
            "seeds": table["seeds"],
            "epochs": table["epochs"].map("{:g}".format),
            "selected at epoch": table["selected epoch"].map("{:.2f}".format),
            "accuracy at selected (%)": [
                estimate_text(a, i, n) for a, i, n in zip(table["accuracy"], table["interval"], table["seeds"])
            ],
            "accuracy at end (%)": [
                estimate_text(a, i, n) for a, i, n in zip(table["at end"], table["end interval"], table["seeds"])
            ],
            "difference (points)": [
                estimate_text(d, i, n, sign=True)
                for d, i, n in zip(table["difference"], table["difference interval"], table["seeds"])
            ],
            "p": table["p"].map(p_text),
            "Holm p": table["Holm p"].map(p_text),
        },
        index=table.index,
    ).rename_axis("configuration")


def budget_frame(table: pd.DataFrame, value: str = "accuracy", planned=()) -> pd.DataFrame:
    """``long_runs.equal_compute`` (budgets in minutes) or ``long_runs.successors_table`` (in
    epochs) as a configurations x budgets table of the accuracy (%) or of the ``"difference"`` to
    the reference (points), each cell with its interval; a cell marked "ended" is a configuration
    one of whose runs had stopped before that budget (it reports its whole run). A configuration
    of ``planned`` with no run yet gets a row that says so."""
    if value not in ("accuracy", "difference"):
        raise ValueError(f"value must be 'accuracy' or 'difference', got {value!r}")
    unit = "minutes" if "minutes" in table.columns else "epochs"
    rows = table if value == "accuracy" or table.empty else table[table["difference"].notna()]

    def cell(row) -> str:
        interval = row["interval" if value == "accuracy" else "difference interval"]
        text = estimate_text(row[value], interval, row["seeds"], sign=value == "difference")
        return text + (", ended" if row["stopped"] else "")

    def name(budget) -> str:
        return f"{budget:g} min" if unit == "minutes" else f"{budget:g} epoch{'s' if budget != 1 else ''}"

    missing = [label for label in planned if rows.empty or label not in set(rows["configuration"])]
    if rows.empty and not missing:
        return pd.DataFrame({"state": ["no counted run has reached a budget yet"]})
    budgets = [name(b) for b in sorted(rows[unit].unique())] if not rows.empty else ["runs"]
    if rows.empty:
        wide = pd.DataFrame(index=pd.Index([], name="configuration"), columns=budgets)
    else:
        frame = rows.assign(cell=rows.apply(cell, axis=1), budget=rows[unit].map(name))
        order = list(dict.fromkeys(rows["configuration"]))
        wide = frame.pivot(index="configuration", columns="budget", values="cell").reindex(order).fillna("")
        wide = wide[budgets]
    for label in missing:
        wide.loc[label] = ["not run yet"] + [""] * (len(budgets) - 1)
    return wide.rename_axis(columns=None)


def rank_frame(table: pd.DataFrame, series=(), ranks=()) -> pd.DataFrame:
    """``long_runs.rank_table`` as a reader reads it: each series' rate, each rank's accuracy (%)
    with its interval (or its seeds, where it has too few for one), and the change per doubling
    of r (points) with its interval. The ``series`` and ``ranks`` planned that have no run yet
    get a row or a column that says so."""
    ran = sorted(int(c[2:]) for c in table.columns if c.startswith("r=") and not c.endswith(" seeds"))
    columns = sorted(set(ran) | set(ranks))
    table = table.reindex(list(table.index) + [name for name in series if name not in table.index])

    def accuracy(row, rank) -> str:
        value = row.get(f"r={rank}")
        if value is None or (not isinstance(value, Interval) and pd.isna(value)):
            return "not run yet"
        seeds = int(row[f"r={rank} seeds"])
        if isinstance(value, Interval):
            return estimate_text(value.estimate, value, seeds)
        return estimate_text(value, None, seeds)

    def slope(row) -> str:
        if pd.isna(row["rate"]):
            return ""
        value = row["per doubling"]
        return estimate_text(value.estimate, value, 0, sign=True) if isinstance(value, Interval) else "no interval yet"

    return pd.DataFrame(
        {
            "rate": [format_lr(r) if pd.notna(r) else "" for r in table["rate"]],
            **{f"r = {rank} (%)": [accuracy(row, rank) for _, row in table.iterrows()] for rank in columns},
            "per doubling of r (points)": [slope(row) for _, row in table.iterrows()],
        },
        index=table.index,
    ).rename_axis(index=None)


def p_text(p) -> str:
    """A p-value for a table: three decimals, or an upper bound below 0.001; empty where there is none."""
    if p is None or pd.isna(p):
        return ""
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def uncertainty_frame(table: pd.DataFrame) -> pd.DataFrame:
    """``paired.against_reference``'s two intervals of each configuration's mean accuracy side by
    side, with their widths in points: over the seeds alone, and over seeds and sentences, which
    adds the sampling error of the evaluation split's sentences (the crossed design's interval),
    and the pigeonhole bootstrap's of the first look; then the same three intervals of its
    difference to the reference configuration, where the table has them ("–" on the
    reference's own row)."""

    def ends(value) -> str:
        return "–" if value is None else f"{value.low:.2f} to {value.high:.2f}"

    def width(value) -> float:
        return value.high - value.low

    seeds, both = table["accuracy over seeds"], table["accuracy over seeds and sentences"]
    frame = pd.DataFrame(
        {
            "seeds": table["seeds"],
            "mean (%)": seeds.map(lambda value: value.estimate),
            "over seeds": seeds.map(ends),
            "width": seeds.map(width),
            "over seeds and sentences": both.map(ends),
            "width with sentences": both.map(width),
        },
        index=table.index,
    )
    if "accuracy (bootstrap)" in table:
        frame["width, first look"] = table["accuracy (bootstrap)"].map(width)
    if "difference over seeds" in table:
        frame["difference over seeds"] = table["difference over seeds"].map(ends)
        frame["difference over seeds and sentences"] = table["difference"].map(ends)
    if "difference (bootstrap)" in table:
        frame["difference, first look"] = table["difference (bootstrap)"].map(ends)
    return frame


def markdown_table(frame: pd.DataFrame) -> str:
    """A results table made for reading (``results_frame``, ``paired_results_frame``) as a
    GitHub markdown table (the README's)."""
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def latex_table(frame: pd.DataFrame) -> str:
    """A results table made for reading (``results_frame``, ``paired_results_frame``) as a
    booktabs LaTeX table."""
    frame = frame.assign(method=frame["method"].str.replace("(IA)³", "(IA)$^3$", regex=False))
    frame["accuracy (%)"] = frame["accuracy (%)"].str.replace("±", r"$\pm$", regex=False)
    frame.columns = [c.replace("%", r"\%") for c in frame.columns]
    return frame.to_latex(index=False, escape=False, column_format="l" + "r" * (len(frame.columns) - 1))


def _aligned_decimals(frame: pd.DataFrame, most: int = 3) -> pd.DataFrame:
    """Each float column as text with one number of decimals (the most any of its values needs,
    up to ``most``), so that 0.8 prints as 0.80 beside 1.53."""

    def decimals(value: float) -> int:
        text = f"{value:.{most}f}".rstrip("0")
        return len(text.split(".")[1]) if "." in text else 0

    out = frame.copy()
    for column in out.columns:
        values = out[column]
        if pd.api.types.is_float_dtype(values):
            places = max((decimals(v) for v in values.dropna()), default=0)
            out[column] = values.map(lambda v, p=places: "" if pd.isna(v) else f"{v:.{p}f}")
    return out


# A number with its interval, "-3.99 [-5.74, -2.24]" or "+0.79 (+0.03 to +1.54)": the interval never split.
_BOUND = re.compile(r"^[<>≤≥] \d[\d.]*$")
_RANGE = re.compile(r"^[+\-−]?\d[\d.]* to [+\-−]?\d[\d.]*$")
NBSP = "\u00a0"
_ESTIMATE = re.compile(r"^[+\-−]?\d[\d.,]*%? [\[(][^\[\]()]*[\])](, \w+)?$")


def unbreakable_intervals(frame: pd.DataFrame) -> pd.DataFrame:
    """Each cell that holds an estimate and its interval with non-breaking spaces inside the
    interval, so that neither a browser nor LaTeX breaks a line inside it (the PDF split
    "-5.83 to -" / "2.22)"); a narrow column may still set the interval under its estimate.
    A bound, "< 0.001", and an interval alone, "85.34 to 89.29", are one unit too."""

    def bind(cell):
        if isinstance(cell, str) and (_BOUND.match(cell) or _RANGE.match(cell)):  # "< 0.001", "85.34 to 89.29"
            return cell.replace(" ", NBSP)
        if not (isinstance(cell, str) and _ESTIMATE.match(cell)):
            return cell
        estimate, interval = cell.split(" ", 1)
        return estimate + " " + interval.replace(" ", NBSP)

    return frame.map(bind)


class Table:
    """A DataFrame shown as a GitHub-flavoured markdown table: glued into a numbered, captioned
    ``{table}`` directive, it is an HTML table in the web book and a LaTeX table in the PDF."""

    def __init__(self, frame: pd.DataFrame, index: bool = True):
        self.frame, self.index = frame, index

    def _repr_markdown_(self) -> str:
        frame = unbreakable_intervals(_aligned_decimals(self.frame))
        return frame.to_markdown(index=self.index, disable_numparse=True)

    def __repr__(self) -> str:
        return self.frame.to_string(index=self.index)


def accuracy_explorer(summary: pd.DataFrame, results: pd.DataFrame) -> dict[str, str]:
    """Accuracy against trainable parameters as one output in two forms: an interactive plotly
    figure for the web book (hover a point for its run, seed and learning rate) and the static
    ``accuracy_plot`` for the PDF. Show it with ``IPython.display.display(bundle, raw=True)``."""
    import base64
    import io

    import plotly.graph_objects as go

    runs = results.merge(summary[["group", "label"]], on="group")
    figure = go.Figure()
    for method, rows in runs.groupby("method", sort=False):
        style = _style(method)
        figure.add_scatter(
            x=rows["trainable"],
            y=rows["dev_accuracy"] * 100,
            mode="markers",
            name=label_of(method),
            marker=dict(color=style["color"], size=8, opacity=0.75),
            customdata=rows[["run_id", "label", "seed", "lr"]].values,
            hovertemplate="%{customdata[0]}<br>%{customdata[1]}, seed %{customdata[2]}<br>learning rate "
            "%{customdata[3]:.1e}<br>accuracy %{y:.2f}%<br>%{x:,} trained<extra></extra>",
        )
    figure.update_layout(
        xaxis=dict(type="log", title="trainable parameters (log scale)"),
        yaxis_title="SST-2 validation accuracy (%)",
        template="plotly_white",
        height=460,
        margin=dict(l=60, r=20, t=30, b=50),
    )
    static = accuracy_plot(summary, *ACCURACY_AGAINST["accuracy_vs_params"])
    buffer = io.BytesIO()
    static.savefig(buffer, format="png", dpi=110)
    plt.close(static)
    return {
        "text/html": figure.to_html(full_html=False, include_plotlyjs=True, config={"responsive": True}),
        "image/png": base64.b64encode(buffer.getvalue()).decode(),
    }


def _seed_curve(ax, frame: pd.DataFrame, x: str, color, label: str, width: float = 1.4, band: float = 0.2) -> None:
    """One configuration's mean curve with its band: solid while every seed that reached its first
    point is in the mean, dashed from the last such point on."""
    every = (frame["seeds"] >= frame["seeds"].iloc[0]).to_numpy().nonzero()[0]
    last = int(every.max()) + 1 if len(every) else 1
    ax.plot(frame[x][:last], frame["accuracy"][:last], color=color, linewidth=width, label=label)
    if last < len(frame):
        rest = frame.iloc[last - 1 :]
        ax.plot(rest[x], rest["accuracy"], color=color, linewidth=width * 0.75, linestyle="--")
    ax.fill_between(frame[x], frame["accuracy"] - frame["sd"], frame["accuracy"] + frame["sd"], color=color, alpha=band)


def learning_curves(
    curves: pd.DataFrame,
    x: str = "epoch",
    split_label: str = "validation accuracy (%)",
    reference: str = "Full fine-tuning",
    columns: int = 3,
) -> Figure:
    """``curves.mean_curves``'s accuracy against ``x`` ("epoch" or "minutes" of training) as small
    multiples: a panel per configuration in its method's colour, with ``reference`` in grey behind
    it, each with a band of one standard deviation over seeds. Where fewer of a configuration's
    seeds reached a point than reached its first (seed 0 trained on alone), its line is dashed."""
    if x not in ("epoch", "minutes"):
        raise ValueError(f"x must be 'epoch' or 'minutes', got {x!r}")
    if curves.empty:
        raise ValueError("no curve to draw: the records hold no learning curves")
    groups = dict(list(curves.groupby("configuration", sort=False)))
    base = groups.pop(reference, None) if len(groups) > 1 else None
    panels = list(groups.items())
    key = 1 if base is not None else 0  # a panel of its own for the key
    rows = -(-(len(panels) + key) // columns)
    fig, axes = plt.subplots(
        rows, min(columns, len(panels) + key), figsize=(7, 2.3 * rows), sharex=True, sharey=True, squeeze=False
    )
    for ax, (configuration, frame) in zip(axes.flat, panels):
        if base is not None:
            _seed_curve(ax, base, x, "0.55", reference, width=1.0, band=0.15)
        _seed_curve(ax, frame, x, _style(frame["method"].iloc[0])["color"], configuration)
        ax.set_title(configuration, fontsize=8.5)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8, labelbottom=True)
    spare = list(axes.flat[len(panels) :])
    if base is not None:
        spare[0].axis("off")
        spare[0].legend(
            handles=[
                plt.Line2D([], [], color="0.55", label=reference),
                plt.Line2D([], [], color="0.2", label="the configuration:\nmean over its seeds"),
                plt.Line2D([], [], color="0.2", linestyle="--", label="fewer of its seeds"),
            ],
            loc="center",
            fontsize=8,
            frameon=False,
        )
        spare = spare[1:]
    for ax in spare:
        ax.remove()
    fig.supxlabel("epoch" if x == "epoch" else "minutes of training on this machine", fontsize=9)
    fig.supylabel(split_label, fontsize=9)
    fig.tight_layout()
    return fig
