"""Figures and tables from a folder of result records.

    python -m lora_lib.report executed --out <folder>

Writes the training loss curves, accuracy against trainable parameters, against training
time and against peak memory (PNG and SVG), and the results table as LaTeX, markdown and
CSV. Runs that differ only in their seed form one row, reported as mean and standard
deviation over the seeds; a row of a single run says so.
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .results import load_records, results_table  # noqa: E402

METHOD_NAMES = {
    "full": "Full fine-tuning",
    "head": "Head only",
    "bitfit": "BitFit",
    "lora": "LoRA",
    "houlsby": "Houlsby",
    "pfeiffer": "Pfeiffer",
    "ia3": "(IA)^3",
}
METHOD_ORDER = list(METHOD_NAMES)
# Okabe-Ito: distinguishable with every common colour-vision deficiency; markers carry it in print.
COLORS = ["#000000", "#999999", "#E69F00", "#0072B2", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#F0E442"]
MARKERS = ["s", "X", "^", "o", "D", "P", "v", "*", "h"]
FIGURES = ("loss_curves", "accuracy_vs_params", "accuracy_vs_time", "accuracy_vs_memory")


def group_of(run_id: str) -> str:
    """Runs that differ only in their seed share a group: ``lora_r8_s1`` -> ``lora_r8``."""
    return re.sub(r"_s\d+$", "", run_id)


def label_of(method: str, rank) -> str:
    name = METHOD_NAMES.get(method, method)
    return f"{name} r={int(rank)}" if method == "lora" and pd.notna(rank) else name


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration: accuracy mean and std over seeds, parameters, cost."""
    if results.empty:
        raise ValueError("no records to report on")
    frame = results.assign(group=results["run_id"].map(group_of))
    rows = []
    for group, runs in frame.groupby("group", sort=False):
        first = runs.iloc[0]
        rows.append({
            "group": group,
            "method": first["method"],
            "rank": first["rank"],
            "label": label_of(first["method"], first["rank"]),
            "runs": len(runs),
            "seeds": ",".join(str(s) for s in sorted(runs["seed"])),
            "accuracy_mean": runs["dev_accuracy"].mean(),
            "accuracy_std": runs["dev_accuracy"].std(ddof=1) if len(runs) > 1 else np.nan,
            "accuracies": tuple(runs.sort_values("seed")["dev_accuracy"]),
            "train_loss_tail": runs["train_loss_tail"].mean(),
            "trainable": int(first["trainable"]),
            "trainable_pct": first["trainable_pct"],
            "train_minutes": runs["train_seconds"].mean() / 60,
            "examples_per_second": runs["train_examples_per_second"].mean(),
            "peak_rss_mb": runs["peak_rss_mb"].mean(),
        })
    summary = pd.DataFrame(rows)
    order = summary["method"].map(lambda m: METHOD_ORDER.index(m) if m in METHOD_ORDER else len(METHOD_ORDER))
    return summary.assign(_order=order).sort_values(["_order", "rank", "group"]).drop(columns="_order").reset_index(drop=True)


def _style(method: str) -> dict:
    index = METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER)
    return {"color": COLORS[index % len(COLORS)], "marker": MARKERS[index % len(MARKERS)]}


def accuracy_plot(summary: pd.DataFrame, x: str, xlabel: str, log: bool = False):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, rows in summary.groupby("method", sort=False):
        style = _style(method)
        rows = rows.sort_values(x)
        ax.errorbar(rows[x], rows["accuracy_mean"] * 100, yerr=rows["accuracy_std"].fillna(0) * 100,
                    linestyle="-" if len(rows) > 1 else "none", capsize=3, markersize=7,
                    label=METHOD_NAMES.get(method, method), **style)
        # every seed as a small hollow mark, so the spread is seen and not only summarised
        seeds_x = [value for value, accs in zip(rows[x], rows["accuracies"]) for _ in accs]
        seeds_y = [acc * 100 for accs in rows["accuracies"] for acc in accs]
        ax.scatter(seeds_x, seeds_y, s=14, facecolors="none", edgecolors=style["color"], marker=style["marker"],
                   linewidths=0.8, alpha=0.8)
        if method == "lora":
            for _, row in rows.iterrows():
                ax.annotate(f"r={int(row['rank'])}", (row[x], row["accuracy_mean"] * 100), textcoords="offset points",
                            xytext=(4, -12), fontsize=8, color=style["color"])
    if log:
        ax.set_xscale("log")
    ax.set(xlabel=xlabel, ylabel="SST-2 validation accuracy (%)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower right")
    note = "mean ± std over seeds, each seed hollow" if (summary["runs"] > 1).any() else "single runs: no spread yet"
    ax.set_title(f"{int(summary['runs'].sum())} runs, {note}", fontsize=9)
    fig.tight_layout()
    return fig


def loss_curves(records: list[dict]):
    """The training loss of every run against the epoch, one colour per method."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    seen = set()
    for record in sorted(records, key=lambda r: r["run_id"]):
        curve = pd.DataFrame(record["history"]["train"])
        if curve.empty:
            continue
        method = record["method"]
        rank = record["config"].get("hparams", {}).get("rank")
        label = label_of(method, rank)
        style = _style(method)
        ax.plot(curve["epoch"], curve["loss"], color=style["color"], alpha=0.7, linewidth=1,
                linestyle="-" if method != "lora" else ["-", "--", ":", "-."][int(np.log2(rank or 1)) % 4],
                label=None if label in seen else label)
        seen.add(label)
    ax.set(xlabel="epoch", ylabel="training loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def _format_count(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(n)


def _accuracy_text(row, plus_minus: str) -> str:
    if np.isnan(row["accuracy_std"]):
        return f"{row['accuracy_mean'] * 100:.2f} (1 run)"
    return f"{row['accuracy_mean'] * 100:.2f} {plus_minus} {row['accuracy_std'] * 100:.2f}"


def markdown_table(summary: pd.DataFrame) -> str:
    lines = ["| method | accuracy (%) | runs | trainable | trainable % | time (min) | memory (MiB) |",
             "|---|---|---|---|---|---|---|"]
    for _, row in summary.iterrows():
        lines.append(f"| {row['label']} | {_accuracy_text(row, '±')} | {row['runs']} | {_format_count(row['trainable'])} "
                     f"| {row['trainable_pct']:.3f} | {row['train_minutes']:.1f} | {row['peak_rss_mb']:.0f} |")
    return "\n".join(lines) + "\n"


def latex_table(summary: pd.DataFrame) -> str:
    def tex(text: str) -> str:
        return text.replace("(IA)^3", "(IA)$^3$").replace("r=", "$r$=").replace("%", r"\%").replace("_", r"\_")

    lines = [r"\begin{tabular}{lrrrrrr}", r"\toprule",
             r"Method & Accuracy (\%) & Runs & Trainable & Trainable \% & Time (min) & Memory (MiB) \\", r"\midrule"]
    plus_minus, end = r"$\pm$", r" \\"
    for _, row in summary.iterrows():
        lines.append(f"{tex(row['label'])} & {_accuracy_text(row, plus_minus)} & {row['runs']} & "
                     f"{_format_count(row['trainable'])} & {row['trainable_pct']:.3f} & {row['train_minutes']:.1f} & "
                     f"{row['peak_rss_mb']:.0f}{end}")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def write_report(folder: str | Path, out: str | Path, readme: str | Path | None = None) -> dict[str, list[Path]]:
    """Write every figure (PNG and SVG) and the table (LaTeX, markdown, CSV) into ``out``, from
    the records in ``folder`` scored on the validation split; with ``readme``, rewrite its
    results section from the same table (``update_readme``)."""
    folder, out = Path(folder), Path(out)
    records = load_records(folder, eval_split="validation")
    if not records:
        raise ValueError(f"{folder} holds no result records; run book/train.ipynb or the sweep first")
    results = results_table(records)
    summary = summarize(results)
    out.mkdir(parents=True, exist_ok=True)
    figures = {
        "loss_curves": loss_curves(records),
        "accuracy_vs_params": accuracy_plot(summary, "trainable", "trainable parameters (log scale)", log=True),
        "accuracy_vs_time": accuracy_plot(summary, "train_minutes", "training time (minutes)"),
        "accuracy_vs_memory": accuracy_plot(summary, "peak_rss_mb", "peak memory while training (MiB)"),
    }
    written = {"figures": [], "tables": []}
    for name, fig in figures.items():
        for ext in ("png", "svg"):
            path = out / f"{name}.{ext}"
            # No date and fixed element ids: an unchanged figure is an unchanged file in git.
            with plt.rc_context({"svg.hashsalt": "lora-tuning"}):
                fig.savefig(path, dpi=150, metadata={"Date": None} if ext == "svg" else None)
            written["figures"].append(path)
        plt.close(fig)
    for name, text in (("results_table.tex", latex_table(summary)), ("results_table.md", markdown_table(summary))):
        (out / name).write_text(text)
        written["tables"].append(out / name)
    summary.assign(accuracies=summary["accuracies"].map(lambda accs: ";".join(f"{a:.4f}" for a in accs))).to_csv(
        out / "summary.csv", index=False)
    written["tables"].append(out / "summary.csv")
    if readme is not None:
        update_readme(readme, summary, figures=out)
        written["readme"] = [Path(readme)]
    return written


# The study's targets (issue 7): mean SST-2 validation accuracy over three seeds.
FULL_TARGET, LORA_MAX_GAP_POINTS, LORA_MAX_TRAINABLE_PCT, SEEDS_PER_RESULT = 0.90, 1.0, 1.0, 3


def meets_full_target(accuracy_mean: float) -> bool:
    """Whether full fine-tuning's mean accuracy reaches ``FULL_TARGET``, judged on the number as
    reported (a percentage with two decimals)."""
    return round(accuracy_mean * 100, 2) >= FULL_TARGET * 100


def points_below(reference: pd.Series, rows: pd.Series | pd.DataFrame) -> float | pd.Series:
    """How many points the mean accuracy of ``rows`` (one summary row, or a table of them) is
    below ``reference``'s: the gaps that the LoRA target and chapter 5 judge."""
    return (reference["accuracy_mean"] - rows["accuracy_mean"]) * 100


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
    lora, full = done[done["method"] == "lora"], done[done["group"] == "full"]
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
    full = done.loc["full"] if "full" in done.index else None
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
        rest = done.drop(index="full")
        cost = [f"Cost against full fine-tuning ({full['examples_per_second']:.0f} examples/s, "
                f"{full['peak_rss_mb']:.0f} MiB peak): "]
        if not lora.empty:
            r8 = lora.loc["lora_r8"] if "lora_r8" in lora.index else lora.loc[lora["accuracy_mean"].idxmax()]
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


README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"


def findings_markdown(summary: pd.DataFrame) -> str:
    """``findings`` as a markdown bullet list (the book's chapter 6 and the README show it)."""
    return "".join(f"- {line}\n" for line in findings(summary))


def update_readme(readme: str | Path, summary: pd.DataFrame | None, figures: str | Path | None = None) -> None:
    """Rewrite the part of ``readme`` between the results markers from ``summarize``'s table of
    the grid (None: no runs yet); with ``figures`` (the folder ``write_report`` wrote), show its
    accuracy figures too."""
    readme = Path(readme)
    text = readme.read_text(encoding="utf-8")
    if README_START not in text or README_END not in text:
        raise ValueError(f"{readme} has no {README_START} ... {README_END} markers to write the results between")
    if summary is None:
        body = "No runs of the grid are recorded in `executed/` yet."
    else:
        body = (f"{int(summary['runs'].sum())} runs in {len(summary)} configurations, generated from `executed/` by "
                f"`python -m lora_lib.report executed --out report --readme README.md`; SST-2 validation accuracy "
                f"as mean ± std over seeds.\n\n{markdown_table(summary)}\n{findings_markdown(summary)}")
        if figures is not None:
            where = Path(os.path.relpath(Path(figures).resolve(), readme.resolve().parent)).as_posix()
            body += "".join(f"\n![{alt}]({where}/{name}.png)\n" for name, alt in (
                ("accuracy_vs_params", "SST-2 accuracy against trainable parameters"),
                ("accuracy_vs_time", "SST-2 accuracy against training time")))
    head, rest = text.split(README_START, 1)
    tail = rest.split(README_END, 1)[1]
    readme.write_text(f"{head}{README_START}\n{body.strip()}\n{README_END}{tail}", encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Figures and tables from a folder of result records.")
    parser.add_argument("folder", help="the folder of records, e.g. executed")
    parser.add_argument("--out", required=True, help="where to write the figures and tables")
    parser.add_argument("--readme", help="also rewrite this file's results section (between the results markers)")
    args = parser.parse_args(argv)
    try:
        written = write_report(args.folder, args.out, readme=args.readme)
    except (ValueError, FileNotFoundError) as err:  # RecordError is a ValueError
        parser.error(str(err))
    for paths in written.values():
        for path in paths:
            print(path)


if __name__ == "__main__":
    main()
