"""The study's report on the command line: figures, tables and the README's results section.

    lora-report executed --out report [--readme README.md]

Writes the training loss curves, accuracy against trainable parameters, against training
time and against peak memory (PNG and SVG), and the results table as LaTeX, markdown and
CSV, from the records scored on the validation split. Runs that differ only in their seed
form one row. Records that keep their predictions (the second study's) are set against full
fine-tuning on the same sentences, with intervals over seeds and sentences and a figure of
the differences; the first study's are reported as mean and standard deviation over seeds.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import pandas as pd

from lora_lib.files import write_atomic

from .aggregate import summarize
from .findings import findings as seed_findings
from .findings import paired_findings
from .paired import against_reference
from .record import RANK_RATE, Record, load_records, results_table
from .render import (
    ACCURACY_AGAINST,
    accuracy_plot,
    differences_plot,
    latex_table,
    loss_curves,
    markdown_table,
    paired_results_frame,
    results_frame,
)

README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"


@dataclass(frozen=True)
class Results:
    """What the report says of a folder of records: the results table made for reading, the
    findings as sentences, and how its accuracies are stated."""

    runs: int
    configurations: int
    summary: pd.DataFrame  # ``summarize``'s table of the records, which the figures draw
    frame: pd.DataFrame
    findings: list[str]
    stated: str
    paired: pd.DataFrame | None  # ``against_reference``'s table, where the records allow pairing


def results_of(records: list[Record], labels=None, rank_records: list[Record] | None = None) -> Results:
    """The records' results. Where every record keeps its predictions and full fine-tuning is
    among them, each configuration is set against full fine-tuning on the same sentences, with
    intervals over seeds and sentences (``paired``); otherwise (the first study's records) the
    intervals are over the seeds alone. ``labels`` stands in for the evaluation split's;
    ``rank_records`` are further ranks at one rate for the rank's finding (``paired_findings``)."""
    summary = summarize(results_table(records))
    count = int(summary["runs"].sum()), len(summary)
    if all(r.predictions is not None for r in records) and (summary["method"] == "full").any():
        table = against_reference(records, labels=labels)
        stated = (
            "SST-2 validation accuracy and the paired difference to full fine-tuning, each with its 95% "
            "interval over seeds and sentences (the crossed design's variance components, each counted once, "
            "with a t-quantile for the few seeds: `lora_lib.study.stats.crossed_interval`); p is the "
            "sentence-clustered sign-flip test's, Holm p its adjustment over the 16 comparisons with full "
            "fine-tuning; time is the median per run"
        )
        findings = paired_findings(table, summary, int(table["seeds"].max()), records, labels, rank_records)
        return Results(*count, summary, paired_results_frame(table, summary), findings, stated, table)
    stated = "SST-2 validation accuracy as mean ± standard deviation over seeds, with the mean's 95% t-interval"
    return Results(*count, summary, results_frame(summary), seed_findings(summary), stated, None)


def write_report(
    folder: str | Path, out: str | Path, readme: str | Path | None = None, labels=None
) -> dict[str, list[Path]]:
    """Write every figure (PNG and SVG) and the table (LaTeX, markdown, CSV) into ``out``, from
    the records in ``folder`` scored on the validation split (``results_of``); with ``readme``,
    rewrite its results section from the same results (``update_readme``)."""
    folder, out = Path(folder), Path(out)
    records = load_records(folder, eval_split="validation")
    if not records:
        raise ValueError(f"{folder} holds no result records; run book/train.ipynb or the sweep first")
    rank_folder = folder / RANK_RATE
    rank_records = load_records(rank_folder, eval_split="validation") if rank_folder.is_dir() else None
    results = results_of(records, labels, rank_records or None)
    summary = results.summary
    out.mkdir(parents=True, exist_ok=True)
    figures = {"loss_curves": loss_curves(records)}
    figures |= {name: accuracy_plot(summary, *axis) for name, axis in ACCURACY_AGAINST.items()}
    if results.paired is not None:
        figures["differences"] = differences_plot(results.paired, "full fine-tuning")
    written = {"figures": [], "tables": []}
    for name, fig in figures.items():
        for ext in ("png", "svg"):
            path = out / f"{name}.{ext}"
            # No date and fixed element ids: an unchanged figure is an unchanged file in git.
            with plt.rc_context({"svg.hashsalt": "lora-tuning"}):
                fig.savefig(path, dpi=150, metadata={"Date": None} if ext == "svg" else None)
            written["figures"].append(path)
        plt.close(fig)
    for name, text in (
        ("results_table.tex", latex_table(results.frame)),
        ("results_table.md", markdown_table(results.frame)),
    ):
        write_atomic(out / name, text)
        written["tables"].append(out / name)
    csv = summary.drop(columns=["group", "run_ids"]).assign(
        accuracies=summary["accuracies"].map(lambda accs: ";".join(f"{a:.4f}" for a in accs))
    )
    write_atomic(out / "summary.csv", csv.to_csv(index=False))
    written["tables"].append(out / "summary.csv")
    if readme is not None:
        update_readme(readme, results, figures=out, source=folder)
        written["readme"] = [Path(readme)]
    return written


README_FIGURES = {
    "differences": "Each configuration's SST-2 accuracy minus full fine-tuning's, with its 95% interval",
    "accuracy_vs_params": "SST-2 accuracy against trainable parameters",
    "accuracy_vs_time": "SST-2 accuracy against training time",
}


def update_readme(
    readme: str | Path, results: Results, figures: str | Path | None = None, source: str | Path = "executed"
) -> None:
    """Rewrite the part of ``readme`` between the results markers from ``results_of`` the
    records in ``source``; with ``figures`` (the folder ``write_report`` wrote), show its
    figures too. The text names ``source`` and the command that wrote it."""
    readme = Path(readme)

    def near_readme(path) -> str:
        return Path(os.path.relpath(Path(path).resolve(), readme.resolve().parent)).as_posix()

    command = f"lora-report {near_readme(source)} --out {near_readme(figures or 'report')} --readme {readme.name}"
    text = readme.read_text(encoding="utf-8")
    if README_START not in text or README_END not in text:
        raise ValueError(f"{readme} has no {README_START} ... {README_END} markers to write the results between")
    body = (
        f"{results.runs} runs in {results.configurations} configurations, generated from "
        f"`{near_readme(source)}/` by `{command}`; {results.stated}.\n\n"
        f"{markdown_table(results.frame)}\n" + "".join(f"- {line}\n" for line in results.findings)
    )
    if figures is not None:
        where = near_readme(figures)
        body += "".join(
            f"\n![{alt}]({where}/{name}.png)\n"
            for name, alt in README_FIGURES.items()
            if (Path(figures) / f"{name}.png").is_file()
        )
    head, rest = text.split(README_START, 1)
    tail = rest.split(README_END, 1)[1]
    write_atomic(readme, f"{head}{README_START}\n{body.strip()}\n{README_END}{tail}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Figures and tables from a folder of result records.")
    parser.add_argument("folder", help="the folder of records, e.g. executed")
    parser.add_argument("--out", required=True, help="where to write the figures and tables")
    parser.add_argument("--readme", help="also rewrite this file's results section (between the results markers)")
    args = parser.parse_args(argv)
    matplotlib.use("Agg")  # files only: no display needed
    try:
        written = write_report(args.folder, args.out, readme=args.readme)
    except (ValueError, FileNotFoundError) as err:  # RecordError is a ValueError
        parser.error(str(err))
    for paths in written.values():
        for path in paths:
            print(path)


if __name__ == "__main__":
    main()
