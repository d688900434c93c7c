"""The fine-tuning methods: each one freezes, injects and unfreezes what it trains.

Each is one function registered with ``@register`` (see ``lora_lib.registry``); a method
that needs a layer of its own adds one ``InjectedLayer`` subclass. Every method trains the
classification head too, which ``apply_method`` unfreezes.

Parameter counts below are for ``bert-base-uncased`` (hidden ``h = 768``, ``L = 12``
layers, feed-forward ``d_ff = 3072``) with a 2-label head of ``2h + 2 = 1,538`` parameters.
"""

from __future__ import annotations

import re

from torch import nn

from .adapters import BottleneckAdapter, IA3Linear
from .layers import InjectedLayer, as_int
from .lora import LoRALinear
from .registry import HEAD, register
from .variants import DoRALinear, pissa_init_

# Module names in BERT-style encoders (BERT, RoBERTa, MiniLM, ...).
FFN_OUTPUT = re.compile(r"(^|\.)layer\.\d+\.output\.dense$")
# The output blocks (dense -> dropout -> LayerNorm(h + input)) after attention and after the feed-forward network.
ATTENTION_OUTPUT_BLOCK = re.compile(r"(^|\.)layer\.\d+\.attention\.output$")
FFN_OUTPUT_BLOCK = re.compile(r"(^|\.)layer\.\d+\.output$")
KEY_VALUE = re.compile(r"(^|\.)layer\.\d+\.attention\.self\.(key|value)$")


# --- the methods -------------------------------------------------------------------------


@register("full", "Full fine-tuning", "full fine-tuning: every weight of the model trains")
def _full(model: nn.Module) -> None:
    """Trains everything: 109,483,778 parameters for bert-base-uncased with a 2-label head."""
    model.requires_grad_(True)


@register("head", "Head only", "head only: the encoder is frozen, the classifier trains (a linear probe)")
def _head(model: nn.Module) -> None:
    """Trains the classifier alone: ``2h + 2`` = 1,538 for bert-base-uncased."""


@register("bitfit", "BitFit", "BitFit (Ben Zaken et al., 2021): every bias term and the classifier train")
def _bitfit(model: nn.Module) -> None:
    """Unfreezes every parameter named ``*.bias``.

    For bert-base-uncased: the embedding LayerNorm ``h``; per layer the query, key, value
    and attention-output biases ``4h``, two LayerNorm biases ``2h``, the intermediate bias
    ``d_ff`` and the output bias ``h``, so ``7h + d_ff`` = 8,448; the pooler bias ``h``.
    ``768 + 12 * 8,448 + 768 + 1,538`` = 104,450 with the head.
    """
    for name, param in model.named_parameters():
        if name.endswith(".bias"):
            param.requires_grad_(True)


@register("lora", "LoRA", "LoRA (Hu et al., 2021): a trainable low-rank update B A beside frozen weights")
def _lora(
    model: nn.Module,
    rank: int = 8,
    alpha: float = 16,
    targets: tuple[str, ...] = ("query", "value"),
    dropout: float = 0.0,
    use_rslora: bool = False,
) -> None:
    """Wraps every Linear whose name ends in one of ``targets`` in a ``LoRALinear``.

    Each wrapped ``in x out`` layer adds ``r * (in + out)`` parameters; on query and value of
    bert-base-uncased that is ``L * 2 * r * 2h = 12 * 2 * r * 1,536``: 294,912 at r = 8, so
    296,450 trainable with the head (38,402 / 75,266 / 148,994 / 296,450 / 591,362 for
    r = 1, 2, 4, 8, 16).
    """
    for name in _match_targets(model, targets):
        _replace(model, name, LoRALinear(model.get_submodule(name), rank, alpha, dropout, use_rslora))


@register("dora", "DoRA", "DoRA (Liu et al., 2024): a learned magnitude times the direction of W0 + B A")
def _dora(
    model: nn.Module,
    rank: int = 8,
    alpha: float = 16,
    targets: tuple[str, ...] = ("query", "value"),
    dropout: float = 0.0,
    use_rslora: bool = False,
) -> None:
    """LoRA's layers as ``DoRALinear``: LoRA's ``r * (in + out)`` per wrapped layer, plus its
    ``out`` magnitudes; on query and value of bert-base-uncased at r = 8, 294,912 + 12 * 2 * 768
    = 313,344, and 314,882 with the head."""
    for name in _match_targets(model, targets):
        _replace(model, name, DoRALinear(model.get_submodule(name), rank, alpha, dropout, use_rslora))


@register("pissa", "PiSSA", "PiSSA (Meng et al., 2024): LoRA started from W0's top-r singular directions")
def _pissa(
    model: nn.Module,
    rank: int = 8,
    alpha: float = 16,
    targets: tuple[str, ...] = ("query", "value"),
    dropout: float = 0.0,
    use_rslora: bool = False,
) -> None:
    """LoRA with ``pissa_init_`` on every wrapped layer: the counts are LoRA's."""
    for name in _match_targets(model, targets):
        layer = LoRALinear(model.get_submodule(name), rank, alpha, dropout, use_rslora)
        _replace(model, name, pissa_init_(layer))


def _adapter_size(model: nn.Module, reduction_factor: int, bottleneck: int | None) -> int:
    hidden = model.config.hidden_size
    if bottleneck is not None:
        return bottleneck
    reduction_factor = as_int(reduction_factor, "reduction_factor")
    if reduction_factor < 1:
        raise ValueError(f"reduction_factor must be a positive integer, got {reduction_factor!r}")
    size = hidden // reduction_factor
    if size < 1:
        raise ValueError(
            f"reduction_factor {reduction_factor} leaves a bottleneck of {hidden} // {reduction_factor} = 0 "
            f"for hidden size {hidden}; use a factor of at most {hidden}, or pass bottleneck="
        )
    return size


def _add_adapters(model, pattern, reduction_factor, bottleneck, activation, train_layernorm, after_add_norm) -> None:
    size = _adapter_size(model, reduction_factor, bottleneck)
    names = [name for name, module in model.named_modules() if pattern.search(name)]
    if not names:
        raise ValueError(f"no module of {type(model).__name__} matches {pattern.pattern}: not a BERT-style encoder")
    for name in names:
        _replace(model, name, BottleneckAdapter(model.get_submodule(name), size, activation, after_add_norm))
    if train_layernorm:
        for module in model.modules():
            if isinstance(module, nn.LayerNorm):
                module.requires_grad_(True)


@register(
    "houlsby",
    "Houlsby",
    "Houlsby adapters (2019): bottleneck adapters after attention and after the feed-forward block",
)
def _houlsby(
    model: nn.Module,
    reduction_factor: int = 16,
    bottleneck: int | None = None,
    activation: str = "swish",
    train_layernorm: bool = False,
) -> None:
    """Two bottleneck adapters per layer, as in Houlsby et al. (2019), figure 2.

    One in the attention's output block, one in the feed-forward network's; each reads the
    sublayer's output (projection, then dropout) and adds to it before the residual sum and
    the LayerNorm: ``LayerNorm(h + a(h) + r)``. That is AdapterHub's ``DoubleSeqBnConfig``
    (``original_ln_before=False``, ``residual_before_ln=True``, ``original_ln_after=True``).
    With ``m = h // reduction_factor`` one adapter has ``2hm + m + h`` parameters; for
    bert-base-uncased and factor 16 (``m = 48``) that is 74,544, and
    ``2 * L * 74,544 + 1,538`` = 1,790,594 trainable. ``train_layernorm=True`` also trains
    the LayerNorms, as the paper did (AdapterHub keeps them frozen, and so do we by default).
    The activation is AdapterHub's default for this configuration.
    """
    _add_adapters(model, ATTENTION_OUTPUT_BLOCK, reduction_factor, bottleneck, activation, False, False)
    # The LayerNorms last: wrapping a block freezes it, LayerNorm included.
    _add_adapters(model, FFN_OUTPUT_BLOCK, reduction_factor, bottleneck, activation, train_layernorm, False)


@register(
    "pfeiffer", "Pfeiffer", "Pfeiffer adapters (2021): one bottleneck adapter per layer, after the feed-forward block"
)
def _pfeiffer(
    model: nn.Module,
    reduction_factor: int = 16,
    bottleneck: int | None = None,
    activation: str = "relu",
    train_layernorm: bool = False,
) -> None:
    """One bottleneck adapter per layer, after the feed-forward block's Add & Norm.

    Pfeiffer et al. (2021, AdapterFusion) compared where to put adapters and kept a single
    one per layer, after the feed-forward block: it does about as well as Houlsby's two with
    half the parameters and half the added latency. As AdapterHub's ``SeqBnConfig`` places
    it (``original_ln_before=True``, ``residual_before_ln=True``, ``original_ln_after=True``):
    the adapter reads the block's output after its residual sum and LayerNorm, its skip
    connection takes the sublayer's output ``h``, and the block's residual sum and LayerNorm
    apply again: ``LayerNorm(h + a(LayerNorm(h + r)) + r)``. The activation is AdapterHub's
    default for this configuration. The count does not depend on the place:
    ``L * (2hm + m + h) + 1,538`` = 896,066 trainable for bert-base-uncased, factor 16.
    """
    _add_adapters(model, FFN_OUTPUT_BLOCK, reduction_factor, bottleneck, activation, train_layernorm, True)


@register("ia3", "(IA)³", "(IA)³ (Liu et al., 2022): learned vectors rescale keys, values and the FFN activation")
def _ia3(model: nn.Module) -> None:
    """Rescales the key and value projections' outputs and the feed-forward activation.

    As the paper defines it: ``l_k`` and ``l_v`` (length ``h``) multiply the keys and
    values, ``l_ff`` (length ``d_ff``) multiplies the feed-forward activation after its
    non-linearity, that is the input of the feed-forward output projection. All start at
    ones. ``L * (2h + d_ff) + 1,538 = 12 * 4,608 + 1,538`` = 56,834 trainable for
    bert-base-uncased. (PEFT's default for BERT also rescales the attention output.)
    """
    keys_values = [name for name, _ in model.named_modules() if KEY_VALUE.search(name)]
    ffn_outputs = [name for name, _ in model.named_modules() if FFN_OUTPUT.search(name)]
    if not keys_values or not ffn_outputs:
        raise ValueError(f"{type(model).__name__} has no BERT-style key, value and feed-forward layers for (IA)^3")
    for name in keys_values:
        _replace(model, name, IA3Linear(model.get_submodule(name), position="output"))
    for name in ffn_outputs:
        _replace(model, name, IA3Linear(model.get_submodule(name), position="input"))


# --- helpers -------------------------------------------------------------------------------


def linear_layer_names(model: nn.Module) -> list[str]:
    """The names of the model's ``nn.Linear`` layers outside the head: what LoRA can target."""
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and not _in_head(name) and not _inside_injected(model, name)
    ]


def _in_head(name: str) -> bool:
    return name == HEAD or name.startswith(HEAD + ".")


def _inside_injected(model: nn.Module, name: str) -> bool:
    parts = name.split(".")
    return any(isinstance(model.get_submodule(".".join(parts[:i])), InjectedLayer) for i in range(1, len(parts)))


def _match_targets(model: nn.Module, targets) -> list[str]:
    if isinstance(targets, str):  # "query,value", as a notebook parameter or a grid file writes it
        targets = tuple(t.strip() for t in targets.split(",") if t.strip())
    if not targets:
        raise ValueError("targets is empty; name at least one Linear layer, for example ('query', 'value')")
    linears = linear_layer_names(model)
    matched = []
    for target in targets:
        hits = [name for name in linears if name == target or name.endswith("." + target)]
        if not hits:
            kinds = sorted({re.sub(r"\.\d+\.", ".N.", name) for name in linears})
            raise ValueError(
                f"LoRA target {target!r} matches no Linear layer of {type(model).__name__}. "
                f"Targets match the end of a module name; the Linear layers are: {', '.join(kinds)}"
            )
        matched += [name for name in hits if name not in matched]
    return matched


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)
