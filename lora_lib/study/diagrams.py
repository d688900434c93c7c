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


METHOD_COLORS = {
    "LoRA": "#0072B2",
    "Houlsby": "#009E73",
    "Pfeiffer": "#CC79A7",
    "(IA)³": "#D55E00",
    "BitFit": "#E69F00",
}


def layer_methods() -> Figure:
    """One BERT layer, input at the bottom, with where each method of chapter 4 acts: the three
    projections feeding the attention, the two residual connections, and a tag per method."""
    fig, ax = plt.subplots(figsize=(8.4, 7))
    ax.set(xlim=(0, 10.5), ylim=(-0.4, 10.6))
    ax.axis("off")

    def box(x, y, w, text, color="#f2f2f2"):
        ax.add_patch(Rectangle((x, y), w, 0.7, fc=color, ec="#444444", lw=1))
        ax.text(x + w / 2, y + 0.35, text, ha="center", va="center", fontsize=10)

    def tag(x, y, text, method):
        ax.text(
            x,
            y,
            text,
            ha="left",
            va="center",
            fontsize=9,
            color="white",
            bbox={"boxstyle": "round,pad=0.25", "fc": METHOD_COLORS[method], "ec": "none"},
        )

    def arrow(start, end, **style):
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=10, color=INK, lw=1, **style))

    box(1.5, 0, 4, "input hidden states $h$")
    for x, name in [(0.6, r"query $W_q$"), (2.55, r"key $W_k$"), (4.5, r"value $W_v$")]:
        box(x, 1.4, 1.6, name)
        arrow((3.5, 0.72), (x + 0.8, 1.38))
        arrow((x + 0.8, 2.12), (3.5 + (x - 2.55) * 0.35, 3.38))
    tag(0.45, 2.45, r"LoRA  $+\frac{\alpha}{r}BA$", "LoRA")
    tag(2.6, 2.45, r"(IA)³  $\ell_k \odot$", "(IA)³")
    tag(4.55, 2.45, r"LoRA  $+\frac{\alpha}{r}BA$", "LoRA")
    tag(4.55, 2.95, r"(IA)³  $\ell_v \odot$", "(IA)³")
    box(1.5, 3.4, 4, r"$\mathrm{softmax}(QK^\top/\sqrt{d})\,V$")
    box(1.5, 4.6, 4, "attention output (dense)")
    tag(6.3, 4.95, "Houlsby adapter 1", "Houlsby")
    box(1.5, 5.8, 4, "add & LayerNorm")
    box(1.5, 7.0, 4, "intermediate (dense) + GELU")
    tag(6.3, 7.35, r"(IA)³  $\ell_{ff} \odot$ the activation", "(IA)³")
    box(1.5, 8.2, 4, "output (dense)")
    tag(6.3, 8.55, "Houlsby adapter 2", "Houlsby")
    box(1.5, 9.4, 4, "add & LayerNorm")
    tag(6.3, 9.95, "Pfeiffer adapter (after it)", "Pfeiffer")
    for y0, y1 in [(4.1, 4.58), (5.3, 5.78), (6.5, 6.98), (7.7, 8.18), (8.9, 9.38)]:
        arrow((3.5, y0), (3.5, y1))
    # the residual connections: the layer's input to the first Add & Norm, its output to the second
    arrow((1.5, 0.35), (1.5, 6.15), connectionstyle="bar,fraction=-0.12", linestyle="--")
    arrow((1.5, 6.15), (1.5, 9.75), connectionstyle="bar,fraction=-0.15", linestyle="--")
    ax.text(0.15, 3.2, "residual", rotation=90, fontsize=8, color=INK, va="center")
    ax.text(
        6.3,
        0.35,
        "BitFit: every bias of every dense layer and LayerNorm",
        fontsize=9,
        va="center",
        color="white",
        bbox={"boxstyle": "round,pad=0.25", "fc": METHOD_COLORS["BitFit"], "ec": "none"},
    )
    fig.tight_layout()
    return fig
