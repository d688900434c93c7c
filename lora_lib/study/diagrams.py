"""The book's diagrams, drawn by code so that they change with the library: a LoRA layer."""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.patches import Circle, FancyArrowPatch, Rectangle

FROZEN, TRAINED, INK = "#BBBBBB", "#0072B2", "#333333"


def lora_layer(d: int = 384, k: int = 384, r: int = 8) -> Figure:
    """A LoRA layer: the input ``x`` goes through the frozen ``W0`` (d x k) and, beside it, through
    the trained ``A`` (r x k) and ``B`` (d x r), scaled by alpha / r; the two paths are summed.
    The boxes are drawn to their shapes' proportions (``r`` exaggerated to stay visible), and the
    caption's counts are ``d k`` frozen against ``r (d + k)`` trained."""
    fig, ax = plt.subplots(figsize=(7, 4.6))
    ax.set(xlim=(0, 10), ylim=(0, 7.2), aspect="equal")
    ax.axis("off")
    side, thin = 2.6, max(0.25, 2.6 * r / max(d, k) * 4)  # W0's side; A's and B's thin side

    def arrow(start, end):
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=12, color=INK, lw=1.2))

    def block(x, y, w, h, color, label, shape):
        ax.add_patch(Rectangle((x, y), w, h, fc=color, ec=INK, lw=1))
        ax.text(
            x + w / 2,
            y + h / 2,
            label,
            ha="center",
            va="center",
            fontsize=12,
            color="white" if color == TRAINED else INK,
        )
        return shape

    ax.text(5, 0.35, rf"input $x$  ($k = {k}$)", ha="center", va="center", fontsize=11)
    # the frozen path
    block(1.0, 1.6, side, side, FROZEN, r"$W_0$", None)
    ax.text(0.9, 1.6 + side / 2, "frozen\n" + r"$d \times k$", ha="right", va="center", fontsize=9, color=INK)
    # the trained path: A projects down to r, B projects up to d
    block(6.0, 1.6, side, thin, TRAINED, r"$A$", None)
    ax.text(6.0 + side + 0.15, 1.6 + thin / 2, r"$r \times k$", va="center", fontsize=9)
    block(6.0 + side / 2 - thin / 2, 2.6, thin, side * 0.62, TRAINED, "", None)
    ax.text(6.0 + side / 2 + thin / 2 + 0.15, 2.6 + side * 0.31, r"$B$,  $d \times r$", va="center", fontsize=9)
    ax.text(6.0 + side / 2 + 0.2, 4.75, r"$\times\ \alpha / r$", ha="left", va="center", fontsize=11)
    # the sum and the output
    ax.add_patch(Circle((5, 5.5), 0.32, fc="white", ec=INK, lw=1.2))
    ax.text(5, 5.5, "+", ha="center", va="center", fontsize=15)
    ax.text(5, 6.75, rf"$h = W_0 x + \frac{{\alpha}}{{r}} B A x$  ($d = {d}$)", ha="center", va="center", fontsize=11)
    arrow((4.2, 0.6), (1.0 + side / 2, 1.55))
    arrow((5.8, 0.6), (6.0 + side / 2, 1.55))
    arrow((6.0 + side / 2, 1.6 + thin), (6.0 + side / 2, 2.58))
    arrow((6.0 + side / 2, 2.6 + side * 0.62), (5.3, 5.45))
    arrow((1.0 + side / 2, 1.6 + side), (4.7, 5.45))
    arrow((5, 5.85), (5, 6.5))
    ax.text(
        0.1,
        6.3,
        f"frozen: d·k = {d * k:,}\ntrained: r(d + k) = {r * (d + k):,}",
        fontsize=9,
        va="center",
        color=INK,
    )
    fig.tight_layout()
    return fig
