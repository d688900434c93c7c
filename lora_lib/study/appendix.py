"""The book's appendix: an index of every run, and run pages titled by what they ran.

- ``run_index(folder)``: one row per record under ``folder`` (``executed/``): the grid's runs,
  the learning-rate search's (``tuning/``), the first study's (``v1/``, archived) and the runs
  a changed grid replaced (``superseded/``), with the method as the registry labels it, the hyperparameters that
  differ from the method's defaults, the learning rate in scientific notation, the seed, the
  accuracy and the training time.
- ``grid_progress(grid_file, index)``: how many of a grid's runs have finished, in a sentence.
- ``IndexTable(frame)``: that table as the book shows it, a link to each run's page in the
  HTML and a plain table (run ids as text) in the PDF, which carries no run pages.
- ``retitle_notebook(path, record)``: replace the template's title and prose at the top of an
  executed notebook by the run's own title (``# lora_r8_s0: LoRA r=8, lr 2e-3, seed 0``) and a
  line linking the template; leave every code cell and output as papermill wrote them.

    python -m lora_lib.study.appendix executed        # retitle every executed notebook
"""

from __future__ import annotations

import argparse
import html
import sys
from pathlib import Path

import nbformat
import pandas as pd

from lora_lib.registry import METHODS

from .aggregate import config_label, format_lr, method_order
from .config import RunConfig
from .grid import expand
from .record import ARCHIVE, RANK_RATE, Record, load_record, load_records

# The sets of runs, in the order the appendix shows them, and the subfolder each lives in: the
# grid's at the top, its ranks at one rate, the search's, the third study's search, rate check and
# grid, the first study's (archived), and runs a changed grid replaced (under any of them).
NEXT_STUDY = "v3"
NEXT_TUNING = f"{NEXT_STUDY}/tuning"
SETS = {
    "grid": None,
    "rank rate": RANK_RATE,
    "tuning": "tuning",
    "next tuning": NEXT_TUNING,
    "next rate check": f"{NEXT_STUDY}/rates",
    "next grid": NEXT_STUDY,
    "v1": ARCHIVE,
    "superseded": "superseded",
}
# What a run's page says under its title: where the notebook came from. The link is relative to
# the book's source folder, so that it holds wherever the sweep puts (or later moves) the run.
TEMPLATE_LINK = "/train.md"
INTRO = (
    "The [training notebook]({template}) as papermill ran it with this run's parameters (the cell "
    "`# Parameters` below), outputs as they came out; the record is `{run_id}.json` beside it."
)
# Sphinx leaves a page with this file-wide metadata out of the search index (myst-nb passes a
# notebook's metadata on as the page's): 98 run pages would otherwise drown every search.
NOSEARCH = "nosearch"
# The template's cell of default parameters: papermill's injected cell below it is what the run set.
HIDDEN_TAG = "remove-cell"

# Run settings that the index shows in their own columns, or that do not change a result.
# (holdout_size is in "scored on", where it matters.)
SHOWN_ELSEWHERE = {
    "method",
    "hparams",
    "holdout_size",
    "lr",
    "epochs",
    "max_steps",
    "max_train_samples",
    "eval_split",
    "curve_every",
    "seed",
    "run_id",
    "output_dir",
    "data_dir",
    "device",
    "logging_steps",
    "eval_batch_size",
}
# The widest a column of names that wrap at spaces gets in the PDF, in characters.
WRAPPED_WIDTH = 15
NARROWEST = 10  # and the narrowest any column gets (a rate like 1.2e-4 must not break at its hyphen)
COLUMNS = [
    "set",
    "run",
    "method",
    "hyperparameters",
    "lr",
    "training",
    "scored on",
    "seed",
    "accuracy (%)",
    "time (min)",
    "page",
]


def hyperparameter_text(record: Record) -> str:
    """What a run changed from the defaults, beyond what the index's other columns show: the
    method's hyperparameters against the registry's defaults (LoRA's rank and targets left out:
    the label has them), then the run's other settings against ``RunConfig``'s (``batch_size``, ``head``,
    ...): ``alpha=32; use_rslora=True``; ``""`` where all are defaults."""
    defaults = METHODS[record.method].defaults if record.method in METHODS else {}
    changed = {
        name: value
        for name, value in record.config.hparams.items()
        if not (name in ("rank", "targets") and record.method == "lora") and value != _listed(defaults.get(name))
    }
    config = record.config.model_dump()
    changed |= {
        name: config[name]
        for name, field in RunConfig.model_fields.items()
        if name not in SHOWN_ELSEWHERE and config[name] != _listed(field.get_default(call_default_factory=True))
    }
    return "; ".join(f"{k}={', '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in changed.items())


def _listed(value):
    return list(value) if isinstance(value, tuple) else value


def run_title(record: Record) -> str:
    """A run page's title: its id, then what it ran."""
    config = record.config
    return (
        f"{record.run_id}: {config_label(record.method, config.hparams)}, lr {format_lr(config.lr)}, seed {config.seed}"
    )


def _training(record: Record) -> str:
    config = record.config
    epochs = f"{config.epochs:g} epoch{'' if config.epochs == 1 else 's'}"
    if config.max_steps is not None:
        epochs = f"{config.max_steps} steps"
    return epochs if config.max_train_samples is None else f"{epochs} of {config.max_train_samples:,}"


def _scored_on(record: Record) -> str:
    """The evaluation split, with its size where the run held it out of the training set."""
    split = record.metrics.eval_split
    if record.config.curve_every is not None:  # a learning curve: both, the held-out sentences choosing
        return f"sentences ({record.config.holdout_size:,}) and validation, every {record.config.curve_every:g} epoch"
    return split if split == "validation" else f"{split} ({record.config.holdout_size:,})"


def _set_of(where: Path, folder: Path) -> str | None:
    """Which set the records in ``where``, a folder under ``folder``, belong to (``None``: not
    one the appendix shows)."""
    parts = where.relative_to(folder).parts
    if "superseded" in parts:
        return "superseded"
    if not parts:
        return "grid"
    return next((name for name, sub in SETS.items() if sub == "/".join(parts)), None)


def run_records(folder: str | Path) -> list[tuple[str, Path, Record]]:
    """``(set, record path, record)`` for every record under ``folder``: the grid's at its top,
    the search's in ``tuning/``, the first study's in ``v1/``, the replaced ones anywhere under
    a ``superseded/``."""
    folder = Path(folder)
    places = sorted({folder, *(p.parent for p in folder.rglob("*.json"))})
    found = [(where, _set_of(where, folder)) for where in places]
    return [
        (name, where / f"{r.run_id}.json", r) for where, name in found if name is not None for r in load_records(where)
    ]


def run_index(folder: str | Path, book_path: str = "executed") -> pd.DataFrame:
    """One row per run under ``folder``, in the appendix's order (set, method, rank,
    hyperparameters, training, learning rate, seed); ``page`` is the run's page as the book
    names it, ``book_path`` being where the book sees ``folder``."""
    folder = Path(folder)
    rows = []
    for set_name, path, record in run_records(folder):
        config = record.config
        rows.append(
            {
                "set": set_name,
                "run": record.run_id,
                "method": config_label(record.method, config.hparams),
                "hyperparameters": hyperparameter_text(record),
                "lr": format_lr(config.lr),
                "training": _training(record),
                "scored on": _scored_on(record),
                "seed": config.seed,
                "accuracy (%)": round(record.metrics.dev_accuracy * 100, 2),
                "time (min)": round(record.cost.train_seconds / 60, 1),
                "page": f"{book_path}/{path.relative_to(folder).with_suffix('').as_posix()}",
                "_order": (
                    list(SETS).index(set_name),
                    method_order(record.method),
                    config.hparams.get("rank") or 0,
                    config.epochs,
                    config.lr,
                    config.seed,
                    record.run_id,
                ),
            }
        )
    if not rows:
        raise ValueError(f"no run records under {folder}: run the sweep first")
    rows.sort(key=lambda row: row.pop("_order"))
    return pd.DataFrame(rows, columns=COLUMNS)


def grid_progress(grid_file: str | Path, index: pd.DataFrame, set_name: str = "grid") -> str:
    """How far a grid has got, as a sentence: its runs with a record among ``run_index``'s
    ``set_name`` set, and any run of the set that the file no longer lists."""
    planned = {run.run_id for run in expand(grid_file).runs}
    done = set(index.loc[index["set"] == set_name, "run"])
    name = Path(grid_file).name
    text = (
        f"All {len(planned)} runs of `{name}` have finished."
        if planned <= done
        else f"{len(planned & done)} of the {len(planned)} runs of `{name}` have finished; the others have not run yet."
    )
    if done - planned:
        text += f" {len(done - planned)} run(s) here are no longer in `{name}`: {', '.join(sorted(done - planned))}."
    return text


class IndexTable:
    """``run_index``'s table in both formats: in the HTML each run id links to its page; the
    PDF, which carries no run pages, gets a markdown table (rendered as a LaTeX table) with
    the ids as text. ``prefix`` is the path from the showing page to the book's root.

    A column with the same value in every row (the grid's training, the search's seed) is
    left out of the table and said once, above it, to keep the table narrow.
    """

    KEEP = ("run", "method", "accuracy (%)")  # shown even where every row has the same value

    def __init__(self, frame: pd.DataFrame, prefix: str = ""):
        if frame.empty:
            raise ValueError("no runs to show")
        self.frame, self.prefix = frame.reset_index(drop=True), prefix

    @classmethod
    def of_set(cls, index: pd.DataFrame, name: str, prefix: str = "") -> IndexTable:
        """The rows of one set (``grid``, ``tuning``, ``v1`` or ``superseded``) of ``run_index``'s table."""
        return cls(index[index["set"] == name], prefix)

    @classmethod
    def by_split(cls, index: pd.DataFrame, name: str, prefix: str = "") -> list[IndexTable]:
        """One table per evaluation split within a set: runs scored on the same slice are the
        ones to compare (the learning-rate search's held-out slice, another search's)."""
        rows = index[index["set"] == name]
        return [cls(part, prefix) for _, part in rows.groupby("scored on", sort=False)]

    def _text(self) -> pd.DataFrame:
        frame = self.frame.drop(columns=["page"])
        return frame.assign(
            hyperparameters=frame["hyperparameters"].replace("", "defaults"),
            **{
                "accuracy (%)": frame["accuracy (%)"].map("{:.2f}".format),
                "time (min)": frame["time (min)"].map("{:.1f}".format),
            },
        ).astype(str)

    def common(self) -> dict[str, str]:
        """The columns with one value for every row (and more than one row), and that value."""
        frame = self._text()
        if len(frame) < 2:
            return {}
        return {c: frame[c].iloc[0] for c in frame.columns if c not in self.KEEP and frame[c].nunique() == 1}

    def _common_line(self) -> str:
        common = {k: v for k, v in self.common().items() if k != "set"}  # the heading names the set
        return "Common to every run below: " + "; ".join(f"{k}: {v}" for k, v in common.items()) + "." if common else ""

    def shown(self) -> pd.DataFrame:
        """The table as displayed: every column but the common ones."""
        return self._text().drop(columns=list(self.common()))

    def _repr_html_(self) -> str:
        frame = self.shown().map(html.escape)
        frame["run"] = [
            f'<a href="{html.escape(self.prefix + page)}.html">{html.escape(run)}</a>'
            for run, page in zip(self.frame["run"], self.frame["page"])
        ]
        # Ids, rates and numbers are never broken across lines; words may be.
        for column in frame.columns.intersection(["run", "lr", "seed", "accuracy (%)", "time (min)"]):
            frame[column] = '<span style="white-space: nowrap">' + frame[column] + "</span>"
        line = self._common_line()
        table = frame.to_html(index=False, escape=False, border=0, classes="run-index")
        # A reference table, read by looking a run up: smaller type, so that it fits the page.
        table = table.replace("<table ", '<table style="font-size: 0.8em" ', 1)
        table = table.replace('<tr style="text-align: right;">', '<tr style="text-align: left;">', 1)
        return (f"<p>{html.escape(line)}</p>\n" if line else "") + table

    def latex_colspec(self) -> str:
        """Column widths for the PDF, in proportion to each column's longest entry (names and
        hyperparameters, which wrap at spaces, capped) plus a margin: without them LaTeX sets a
        long table's columns at their natural width, wider than the page."""
        frame = self.shown()
        widths = []
        for column in frame.columns:
            longest = max([len(column.split()[0]), *frame[column].str.len()])
            if column in ("method", "hyperparameters"):
                longest = min(longest, WRAPPED_WIDTH)
            widths.append(max(NARROWEST, 2 + longest))
        return "".join(rf"\X{{{w}}}{{{sum(widths)}}}" for w in widths)  # no rules between columns: booktabs

    def _repr_markdown_(self) -> str:
        """The PDF's table: MyST markdown (the appendix pages render it so) with the column
        widths for LaTeX, then the table."""
        frame = self.shown()
        cells = frame.map(lambda v: v.replace("|", r"\|").replace("_", r"\_"))
        numeric = [pd.api.types.is_numeric_dtype(self.frame[c]) for c in frame.columns]
        lines = [
            "| " + " | ".join(frame.columns) + " |",
            "|" + "|".join("---:" if right else "---" for right in numeric) + "|",
        ]
        lines += ["| " + " | ".join(row) + " |" for row in cells.itertuples(index=False)]
        line = self._common_line()
        colspec = f"```{{tabularcolumns}} {self.latex_colspec()}\n```\n\n"
        small = "```{raw} latex\n\\begingroup\\small\n```\n\n", "\n```{raw} latex\n\\endgroup\n```\n"
        return (f"{line}\n\n" if line else "") + small[0] + colspec + "\n".join(lines) + "\n" + small[1]

    def __repr__(self) -> str:
        return self.shown().to_string(index=False)


def heading(record: Record, template: str = TEMPLATE_LINK) -> str:
    """The first markdown cell of a run's page."""
    return f"# {run_title(record)}\n\n" + INTRO.format(template=template, run_id=record.run_id)


def retitle_notebook(path: str | Path, record: Record, template: str = TEMPLATE_LINK) -> bool:
    """Give the executed notebook at ``path`` the run's title, in place; ``True`` if it changed.

    Only the first markdown cell's text, the notebook's search metadata and the template's
    default-parameter cell's tags change: the code, the outputs and papermill's metadata (whose
    ``parameters`` the sweep compares with the grid) stay as they are. Running it again changes
    nothing.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    notebook = nbformat.reads(text, as_version=4)
    first = next((cell for cell in notebook.cells if cell.cell_type == "markdown"), None)
    if first is None:
        first = nbformat.v4.new_markdown_cell("")
        notebook.cells.insert(0, first)
    first.source = heading(record, template)
    notebook.metadata[NOSEARCH] = True
    for cell in notebook.cells:
        tags = cell.metadata.get("tags", [])
        if cell.cell_type == "code" and "parameters" in tags and HIDDEN_TAG not in tags:
            cell.metadata["tags"] = [*tags, HIDDEN_TAG]
    nbformat.validate(notebook)
    new = nbformat.writes(notebook)
    if new.rstrip("\n") == text.rstrip("\n"):
        return False
    path.write_text(new + ("\n" if text.endswith("\n") else ""), encoding="utf-8")
    return True


def retitle_folder(folder: str | Path) -> list[Path]:
    """``retitle_notebook`` on every executed notebook under ``folder`` that has its record
    beside it; returns the notebooks that changed."""
    changed = []
    for _, record_path, record in run_records(folder):
        notebook = record_path.with_suffix(".ipynb")
        if notebook.is_file() and retitle_notebook(notebook, record):
            changed.append(notebook)
    return changed


def retitle_after_run(notebook: str | Path, record_path: str | Path) -> bool:
    """What the sweep calls on a finished run's notebook, before moving it into place."""
    return retitle_notebook(notebook, load_record(record_path))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lora_lib.study.appendix",
        description="Title every executed notebook by its run (id, method, learning rate, seed).",
    )
    parser.add_argument("folder", help="the folder of runs, e.g. executed")
    args = parser.parse_args(argv)
    try:
        changed = retitle_folder(args.folder)
    except (ValueError, FileNotFoundError) as err:
        parser.error(str(err))
    for path in changed:
        print(path)
    print(f"{len(changed)} notebook(s) retitled")
    return 0


if __name__ == "__main__":
    sys.exit(main())
