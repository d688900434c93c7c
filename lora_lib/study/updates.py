"""What the trained updates look like: chapter 6's computations on the study's records.

- ``lora_adapters(records, folder, rank)``: the learned updates of the grid's LoRA runs at one
  rank, by seed, read from their adapter files.
- ``top_direction_overlap(small, large)``: the LoRA paper's subspace similarity of the top
  directions, for every pair of seeds, and ``overlap_summary`` against the random baseline.
- ``similarity_figure``, ``spectra`` and ``spectrum_figure``: the paper's section 7 on our runs.
- ``full_update_energy(records, ranks)``: how much of full fine-tuning's update a rank-``r``
  approximation keeps, beside a matrix with no low-rank structure.
- ``amplification_table(updates_by_rank, weights)``: the paper's section 7.3, how much the
  learned update amplifies the directions of the pretrained weight it shares, and
  ``update_norms(updates_by_rank, records)``: the size of LoRA's update beside full fine-tuning's.
- ``published()`` and ``against_papers(summary)``: the papers' SST-2 numbers, and our gaps
  to full fine-tuning beside theirs.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from lora_lib.analysis import (
    amplification,
    energy_captured,
    lora_updates,
    normalised_spectrum,
    random_energy_captured,
    random_projection_norm,
    random_subspace_similarity,
    similarity_grid,
    subspace_similarity,
)

from .aggregate import config_label, label_of
from .record import Record, by_configuration

Updates = dict[str, dict]  # module name -> {"A", "B", "delta"}, as lora_updates returns it


def lora_adapters(records: list[Record], folder: str | Path, rank: int, targets=None) -> dict[int, Updates]:
    """``{seed: updates}`` of the LoRA runs at ``rank`` on ``targets`` (None: query and value)
    among ``records`` (scored on the validation split), read from their adapter files in ``folder``."""
    wanted = label_of("lora", rank, targets)
    runs = [
        r
        for r in records
        if r.method == "lora"
        and config_label(r.method, r.config.hparams) == wanted
        and r.metrics.eval_split == "validation"
    ]
    if not runs:
        raise ValueError(f"no run of {wanted} among the records: run the grid first")
    missing = [r.run_id for r in runs if not r.adapter_file or not (Path(folder) / r.adapter_file).is_file()]
    if missing:
        raise FileNotFoundError(f"the adapter files of {', '.join(missing)} are not in {folder}")
    return {r.seed: lora_updates(Path(folder) / r.adapter_file) for r in sorted(runs, key=lambda r: r.seed)}


def _mean_phi(a: Updates, b: Updates, i: int, j: int) -> float:
    return float(np.mean([subspace_similarity(a[name]["A"], b[name]["A"], i, j) for name in sorted(a)]))


def top_direction_overlap(small: dict[int, Updates], large: dict[int, Updates], i: int = 1, j: int = 1) -> pd.DataFrame:
    """phi(i, j) between the runs at two ranks, for every pair of seeds, averaged over the
    adapted matrices; ``same seed`` marks the pairs that saw the batches in the same order."""
    rows = [
        {"seed (small)": s, "seed (large)": t, "same seed": s == t, "phi": _mean_phi(small[s], large[t], i, j)}
        for s, t in itertools.product(small, large)
    ]
    return pd.DataFrame(rows)


def overlap_summary(small: dict[int, Updates], large: dict[int, Updates], i: int = 1, j: int = 1) -> pd.DataFrame:
    """phi(i, j), mean over matrices and pairs of runs: the two ranks trained with the same seed,
    with different seeds, the smaller rank against itself across seeds, and random subspaces
    of the same dimensions (the baseline a shared direction is measured against). Missing
    cells (the random baseline has no runs) are empty."""
    first = next(iter(next(iter(small.values())).values()))["A"]
    r_small, d = first.shape
    r_large = next(iter(next(iter(large.values())).values()))["A"].shape[0]
    pairs = top_direction_overlap(small, large, i, j)
    seeds = pd.Series([_mean_phi(small[s], small[t], i, i) for s, t in itertools.combinations(small, 2)], dtype=float)
    groups = [
        (f"r = {r_small} and r = {r_large}, same seed", pairs[pairs["same seed"]]["phi"]),
        (f"r = {r_small} and r = {r_large}, different seeds", pairs[~pairs["same seed"]]["phi"]),
        (f"r = {r_small}, two different seeds", seeds),
    ]
    phi = f"φ({i}, {j})"
    rows = [
        {"compared": name, "pairs of runs": len(v), phi: v.mean(), "lowest pair": v.min(), "highest pair": v.max()}
        for name, v in groups
    ]
    rows.append({"compared": f"random subspaces of R^{d} (expected)", phi: random_subspace_similarity(d, i, j)})
    table = pd.DataFrame(rows).set_index("compared").round(4)
    table = table.astype(object).where(table.notna(), "")
    table["pairs of runs"] = table["pairs of runs"].map(lambda n: n if n == "" else int(n))
    return table


def similarity_figure(small: Updates, large: Updates, names: list[str]) -> Figure:
    """The paper's figure 3 on our runs: phi(i, j) for each matrix in ``names``."""
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        phi = similarity_grid(small[name]["A"], large[name]["A"])
        rows, cols = phi.shape
        image = ax.imshow(phi, aspect="auto", cmap="viridis", vmin=0, vmax=1, extent=(0.5, cols + 0.5, rows + 0.5, 0.5))
        ax.set(xlabel=f"j (r = {cols})", ylabel=f"i (r = {rows})", title=matrix_title(name), yticks=range(1, rows + 1))
    fig.colorbar(image, ax=axes[0].tolist(), label="φ(i, j)")
    return fig


def matrix_title(name: str) -> str:
    """``bert.encoder.layer.5.attention.self.value`` -> ``layer 6 value`` (layers counted from 1)."""
    parts = name.split(".")
    layer = parts[parts.index("layer") + 1] if "layer" in parts else "?"
    return f"layer {int(layer) + 1} {parts[-1]}" if layer.isdigit() else name


def last_layer(updates: Updates) -> list[str]:
    """The adapted matrices of the last adapted layer (its query and value)."""

    def layer(name):
        parts = name.split(".")
        return int(parts[parts.index("layer") + 1])

    top = max(layer(name) for name in updates)
    return sorted(name for name in updates if layer(name) == top)


def spectra(updates_by_rank: dict[int, Updates]) -> pd.DataFrame:
    """``sigma_k / sigma_1`` of each learned update ``(alpha / r) B A``, mean over the matrices,
    for k up to the rank: one column per rank."""
    columns = {
        f"r = {rank}": pd.Series(
            np.mean([normalised_spectrum(u["delta"], rank) for u in updates.values()], axis=0), index=range(1, rank + 1)
        )
        for rank, updates in updates_by_rank.items()
    }
    return pd.DataFrame(columns).rename_axis("k")


def top_energy(updates: Updates, k: int) -> float:
    """The share of each learned update's energy in its top ``k`` directions, mean over matrices."""
    return float(
        np.mean(
            [energy_captured(np.linalg.svd(u["delta"].double().numpy(), compute_uv=False), k) for u in updates.values()]
        )
    )


def spectrum_figure(spectra_table: pd.DataFrame) -> Figure:
    """The normalised singular values of the learned updates, one line per rank."""
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for (column, values), style, color in zip(
        spectra_table.items(), ["-o", "--s", ":^", "-.v"], ["#0072B2", "#D55E00", "#009E73", "#CC79A7"]
    ):
        values = values.dropna()
        ax.plot(values.index, values, style, color=color, markersize=3, label=column)
    ax.set(xscale="log", xlabel="singular value index k", ylabel=r"$\sigma_k / \sigma_1$ (mean over matrices)")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    return fig


def full_update_energy(records: list[Record], ranks=(1, 2, 4, 8, 16, 32, 64)) -> pd.DataFrame:
    """The share (%) of full fine-tuning's update to each query and value matrix that its best
    rank-``r`` approximation keeps, mean over the matrices, one row per full fine-tuning run
    (from the spectra its record keeps), then a Gaussian matrix of the same shape."""
    runs = [r for r in records if r.method == "full" and r.analysis and "full_update_singular_values" in r.analysis]
    if not runs:
        raise ValueError("no full fine-tuning record keeps its update's spectrum: run the grid first")
    rows = {}
    for record in sorted(runs, key=lambda r: r.run_id):
        spectra_ = record.analysis["full_update_singular_values"].values()
        rows[record.run_id] = {rank: 100 * np.mean([energy_captured(s, rank) for s in spectra_]) for rank in ranks}
    size = len(next(iter(runs[0].analysis["full_update_singular_values"].values())))
    rows[f"random {size} x {size} matrix"] = {
        k: 100 * v for k, v in random_energy_captured((size, size), ranks).items()
    }
    return pd.DataFrame.from_dict(rows, orient="index").rename(columns=lambda rank: f"r = {rank}")


def amplification_table(updates_by_rank: dict[int, Updates], weights: dict[str, torch.Tensor]) -> pd.DataFrame:
    """The LoRA paper's table 7 on our runs, one row per rank, each a mean over the adapted
    matrices: ``||ΔW||_F``; ``||U^T W V^T||_F`` with ``U``, ``V`` the update's top-``r`` singular
    directions, and with random ones; ``||W||_F``; and the amplification factor
    ``||ΔW||_F / ||U^T W V^T||_F`` of those means. ``weights`` maps each adapted module's name to its
    pretrained weight (``name`` or ``name.weight``)."""
    rows = {}
    for rank, updates in updates_by_rank.items():
        cells = []
        for name, update in updates.items():
            weight = weights[name] if name in weights else weights[f"{name}.weight"]
            cell = amplification(update["delta"], weight, rank)
            cell["weight_along_random"] = random_projection_norm(weight, rank)
            cells.append(cell)
        frame = pd.DataFrame(cells)
        rows[f"r = {rank}"] = {
            "norm of ΔW": frame["delta_norm"].mean(),
            "W along ΔW's directions": frame["weight_along_delta"].mean(),
            "W along random directions": frame["weight_along_random"].mean(),
            "norm of W": frame["weight_norm"].mean(),
            # a ratio of the means: a mean of ratios is ruled by the matrices whose W hardly
            # meets the update's directions
            "amplification": frame["delta_norm"].mean() / frame["weight_along_delta"].mean(),
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def update_norms(updates_by_rank: dict[int, Updates], records: list[Record]) -> pd.Series:
    """``||ΔW||_F`` of the query and value updates, mean over the matrices: LoRA's at each rank
    (one run each), then each full fine-tuning run's, from the spectrum its record keeps."""
    sizes = {
        f"LoRA r = {rank}": float(np.mean([float(u["delta"].double().norm()) for u in updates.values()]))
        for rank, updates in updates_by_rank.items()
    }
    runs = [r for r in records if r.method == "full" and r.analysis and "full_update_singular_values" in r.analysis]
    if not runs:
        raise ValueError("no full fine-tuning record keeps its update's spectrum: run the grid first")
    for record in sorted(runs, key=lambda r: r.run_id):
        spectra_ = record.analysis["full_update_singular_values"].values()
        sizes[f"full fine-tuning ({record.run_id})"] = float(np.mean([np.sqrt(np.sum(np.square(s))) for s in spectra_]))
    return pd.Series(sizes, name="norm of ΔW")


# The papers' SST-2 numbers: the only numbers in the book that no record here produced.
PUBLISHED = [
    ("LoRA paper, Table 2", "RoBERTa-base", "full fine-tuning", 94.8, "125M"),
    ("LoRA paper, Table 2", "RoBERTa-base", "BitFit", 93.7, "0.1M"),
    ("LoRA paper, Table 2", "RoBERTa-base", "adapters (Rücklé et al.)", 94.7, "0.9M"),
    ("LoRA paper, Table 2", "RoBERTa-base", "LoRA", 95.1, "0.3M"),
    ("LoRA paper, Table 2", "RoBERTa-large", "full fine-tuning", 96.4, "355M"),
    ("LoRA paper, Table 2", "RoBERTa-large", "LoRA", 96.2, "0.8M"),
    ("Houlsby et al., Table 1", "BERT-large", "full fine-tuning", 94.9, "100%"),
    ("Houlsby et al., Table 1", "BERT-large", "adapters (size 8-256)", 94.0, "3.6%"),
]
# How each source reports: what makes its numbers comparable, or not, with ours.
# The LoRA paper's section 7.3 and Table 7, GPT-3's query matrix of layer 48 at r=4: the
# amplification factor its text states, 21.5 = 6.91 / 0.32, and the norms of W along the
# update's top 4 directions (0.32) and along random ones (0.02).
PAPER_AMPLIFICATION = {"rank": 4, "factor": 21.5, "along_update": 0.32, "along_random": 0.02}

# Which of the papers' methods each of this study's methods is set against: its own kind.
PAPER_KIND = {"lora": "LoRA", "bitfit": "BitFit", "houlsby": "adapters", "pfeiffer": "adapters"}

REPORTING = {
    "LoRA paper, Table 2": "validation; median of 5 seeds, each at its best epoch; a dense classification head trained",
    "Houlsby et al., Table 1": "GLUE test server; one model per task, its adapter size and rate chosen on validation",
}
# How this study's head is described where its numbers are set beside the papers'.
HEAD_DESCRIPTIONS = {
    "mean": "a linear classifier on the mean of the token states, which every method trains",
    "pooler": "a linear classifier on BERT's pooler, both trained by every method",
    "frozen-pooler": "a linear classifier on BERT's pooler, which only full fine-tuning trains",
}


def published() -> pd.DataFrame:
    """The papers' SST-2 accuracies, with the size of what each method trains."""
    frame = pd.DataFrame(PUBLISHED, columns=["source", "model", "method", "SST-2 accuracy (%)", "trained"])
    return frame.set_index(["source", "model", "method"])


def reporting(records: list[Record]) -> pd.DataFrame:
    """How each source's numbers were obtained: the papers', and this study's from its
    ``records`` (scored on the validation split): its seeds, epochs and head."""
    seeds = max(len(runs) for runs in by_configuration(records).values())
    epochs = ", ".join(f"{e:g}" for e in sorted({r.config.epochs for r in records}))
    heads = "; ".join(HEAD_DESCRIPTIONS.get(h, f"the {h!r} head") for h in sorted({r.config.head for r in records}))
    this_study = f"validation; mean of {seeds} seeds at the end of training ({epochs} epochs); {heads}"
    return pd.DataFrame({"how the number is reported": REPORTING | {"this study": this_study}}).rename_axis("source")


def against_papers(table: pd.DataFrame, configurations: list[str]) -> pd.DataFrame:
    """The difference to full fine-tuning (points; negative: below it, as in chapter 5) of every
    method in the papers (from ``published()``) and of ``configurations`` in this study, from
    ``table`` (``paired.against_reference``'s) with the 95% interval over seeds and sentences."""
    accuracy = published()["SST-2 accuracy (%)"]
    rows = []
    for (source, model), methods in accuracy.groupby(level=["source", "model"], sort=False):
        full = methods.xs("full fine-tuning", level="method").iloc[0]
        for (_, _, method), value in methods.drop("full fine-tuning", level="method").items():
            rows.append((source, model, method, round(value - full, 2), "–"))  # the papers give none
    for name in configurations:
        difference = table.loc[name, "difference"]  # this configuration minus full fine-tuning
        rows.append(
            (
                "this study",
                "MiniLM-L6",
                name,
                round(difference.estimate, 2),
                f"{difference.low:+.2f} to {difference.high:+.2f}",
            )
        )
    columns = ["source", "model", "method", "difference to full (points)", "95% interval"]
    return pd.DataFrame(rows, columns=columns).set_index(["source", "model", "method"])


def papers_within(table: pd.DataFrame, configurations: list[str]) -> pd.DataFrame:
    """Where each paper's gap to full fine-tuning lies against this study's 95% interval (over
    seeds and sentences, from ``paired.against_reference``'s ``table``) for a method of the
    same kind (``PAPER_KIND``): "inside" it, "above" it (the paper's method closer to full
    fine-tuning than ours could be) or "below" it; one row per pair, none for a configuration
    whose kind the papers did not run."""
    gaps = against_papers(table, [])["difference to full (points)"]
    rows = []
    for name in configurations:
        kind = PAPER_KIND.get(table.loc[name, "method"])
        ours = table.loc[name, "difference"]
        for (source, model, method), gap in gaps.items():
            if kind and method.startswith(kind):
                where = "above" if gap > ours.high else "below" if gap < ours.low else "inside"
                rows.append((name, f"{source}, {model}, {method}", gap, where))
    return pd.DataFrame(rows, columns=["configuration", "paper", "paper's gap", "where"])


def papers_sentence(within: pd.DataFrame) -> str:
    """``papers_within``'s pairs as a sentence: for each of this study's configurations, how many
    of the papers' gaps for its kind of method lie above, inside and below its interval."""
    parts = []
    for name, pairs in within.groupby("configuration", sort=False):
        counts = pairs["where"].value_counts()
        where = ", ".join(f"{counts[w]} {w}" for w in ("above", "inside", "below") if w in counts)
        gaps = ", ".join(f"{g:+.1f}" for g in pairs["paper's gap"])
        parts.append(f"{name}: {where} ({gaps})")
    return "; ".join(parts) + "." if parts else "No configuration here has a method of its kind in the papers."
