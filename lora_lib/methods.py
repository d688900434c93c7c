"""Fine-tuning methods as a registry: each one freezes, injects and unfreezes what it trains.

``apply_method(model, "lora", rank=8)`` turns a ``*ForSequenceClassification`` model into
the model that a method trains. Every method trains the classification head
(``classifier``), PEFT's and AdapterHub's convention. Adding a method is one function
decorated with ``@register``.

Parameter counts below are for ``bert-base-uncased`` (hidden ``h = 768``, ``L = 12``
layers, feed-forward ``d_ff = 3072``) with a 2-label head of ``2h + 2 = 1,538`` parameters.
"""

from __future__ import annotations

import inspect
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import safe_open, save_file
from torch import nn

from .adapters import BottleneckAdapter, IA3Linear
from .lora import LoRALinear

HEAD = "classifier"
INJECTED = (LoRALinear, BottleneckAdapter, IA3Linear)

# Module names in BERT-style encoders (BERT, RoBERTa, MiniLM, ...).
ATTENTION_OUTPUT = re.compile(r"(^|\.)layer\.\d+\.attention\.output\.dense$")
FFN_OUTPUT = re.compile(r"(^|\.)layer\.\d+\.output\.dense$")
KEY_VALUE = re.compile(r"(^|\.)layer\.\d+\.attention\.self\.(key|value)$")


@dataclass(frozen=True)
class Method:
    """One registry entry: a name, a one-line description and the function that applies it."""

    name: str
    description: str
    apply: Callable[..., None]

    @property
    def defaults(self) -> dict:
        """The method's hyperparameters and their defaults, read from ``apply``'s signature."""
        params = list(inspect.signature(self.apply).parameters.values())[1:]
        return {p.name: p.default for p in params}


METHODS: dict[str, Method] = {}


def register(name: str, description: str):
    """Add ``fn(model, *, hparam=default, ...)`` to the registry under ``name``."""

    def decorator(fn):
        METHODS[name] = Method(name, description, fn)
        return fn

    return decorator


def check_method(method: str, hparams: dict) -> None:
    """Refuse an unknown method, or a hyperparameter that ``method`` does not take."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; known methods: {', '.join(METHODS)}")
    defaults = METHODS[method].defaults
    unknown = sorted(set(hparams) - set(defaults))
    if unknown:
        takes = ", ".join(f"{k}={v!r}" for k, v in defaults.items()) or "no hyperparameters"
        raise TypeError(f"method {method!r} does not take {', '.join(unknown)}; it takes {takes}")


def apply_method(model: nn.Module, method: str, **hparams) -> nn.Module:
    """Prepare ``model`` (in place) for training with ``method``; returns the model.

    Unknown methods and hyperparameters that a method does not take are errors, never
    ignored. The applied method and its full hyperparameters are kept on the model as
    ``model.applied_method`` so that saved adapters can say what they belong to.
    """
    check_method(method, hparams)
    if getattr(model, "applied_method", None) is not None:
        raise ValueError(
            f"this model already has method {model.applied_method['method']!r} applied; "
            "load a fresh model to apply another"
        )
    if not isinstance(getattr(model, HEAD, None), nn.Module):
        raise ValueError(
            f"apply_method expects a sequence-classification model with a {HEAD!r} head "
            f"(for example BertForSequenceClassification), got {type(model).__name__}"
        )
    spec = METHODS[method]
    full_hparams = {**spec.defaults, **hparams}
    model.requires_grad_(False)
    spec.apply(model, **full_hparams)
    getattr(model, HEAD).requires_grad_(True)
    model.applied_method = {"method": method, "hparams": _jsonable(full_hparams)}
    return model


def _jsonable(hparams: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in hparams.items()}


# --- the methods -------------------------------------------------------------------------


@register("full", "full fine-tuning: every weight of the model trains")
def _full(model: nn.Module) -> None:
    """Trains everything: 109,483,778 parameters for bert-base-uncased with a 2-label head."""
    model.requires_grad_(True)


@register("head", "head only: the encoder is frozen, the classifier trains (a linear probe)")
def _head(model: nn.Module) -> None:
    """Trains the classifier alone: ``2h + 2`` = 1,538 for bert-base-uncased."""


@register("bitfit", "BitFit (Ben Zaken et al., 2021): every bias term and the classifier train")
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


@register("lora", "LoRA (Hu et al., 2021): a trainable low-rank update B A beside frozen weights")
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


def _adapter_size(model: nn.Module, reduction_factor: int, bottleneck: int | None) -> int:
    hidden = model.config.hidden_size
    if bottleneck is not None:
        return bottleneck
    if isinstance(reduction_factor, bool) or not isinstance(reduction_factor, int) or reduction_factor < 1:
        raise ValueError(f"reduction_factor must be a positive integer, got {reduction_factor!r}")
    size = hidden // reduction_factor
    if size < 1:
        raise ValueError(
            f"reduction_factor {reduction_factor} leaves a bottleneck of {hidden} // {reduction_factor} = 0 "
            f"for hidden size {hidden}; use a factor of at most {hidden}, or pass bottleneck="
        )
    return size


def _add_adapters(model, pattern, reduction_factor, bottleneck, activation, train_layernorm) -> None:
    size = _adapter_size(model, reduction_factor, bottleneck)
    names = [name for name, module in model.named_modules() if pattern.search(name)]
    if not names:
        raise ValueError(f"no module of {type(model).__name__} matches {pattern.pattern}: not a BERT-style encoder")
    for name in names:
        _replace(model, name, BottleneckAdapter(model.get_submodule(name), size, activation))
    if train_layernorm:
        for module in model.modules():
            if isinstance(module, nn.LayerNorm):
                module.requires_grad_(True)


@register("houlsby", "Houlsby adapters (2019): bottleneck adapters after attention and after the feed-forward block")
def _houlsby(
    model: nn.Module,
    reduction_factor: int = 16,
    bottleneck: int | None = None,
    activation: str = "swish",
    train_layernorm: bool = False,
) -> None:
    """Two bottleneck adapters per layer, as in Houlsby et al. (2019), figure 2.

    One after the attention output projection, one after the feed-forward output
    projection; each before the dropout, the residual sum and the LayerNorm that follow.
    With ``m = h // reduction_factor`` one adapter has ``2hm + m + h`` parameters; for
    bert-base-uncased and factor 16 (``m = 48``) that is 74,544, and
    ``2 * L * 74,544 + 1,538`` = 1,790,594 trainable. ``train_layernorm=True`` also trains
    the LayerNorms, as the paper did (AdapterHub keeps them frozen, and so do we by default).
    The activation is AdapterHub's default for this configuration.
    """
    _add_adapters(model, ATTENTION_OUTPUT, reduction_factor, bottleneck, activation, train_layernorm)
    _add_adapters(model, FFN_OUTPUT, reduction_factor, bottleneck, activation, train_layernorm=False)


@register("pfeiffer", "Pfeiffer adapters (2021): one bottleneck adapter per layer, after the feed-forward block")
def _pfeiffer(
    model: nn.Module,
    reduction_factor: int = 16,
    bottleneck: int | None = None,
    activation: str = "relu",
    train_layernorm: bool = False,
) -> None:
    """One bottleneck adapter per layer, after the feed-forward output projection.

    Pfeiffer et al. (2021, AdapterFusion) compared where to put adapters and kept a single
    one after the feed-forward block, where Houlsby puts the second: it does about as well
    as Houlsby's two with half the parameters and half the added latency. Here it sits
    exactly there: after the output projection of the feed-forward block
    (``layer.N.output.dense``), before its dropout, residual sum and LayerNorm, so Houlsby
    and Pfeiffer differ only in the adapter after attention. (AdapterHub's ``SeqBnConfig``
    also applies the block's residual sum and LayerNorm before the adapter,
    ``original_ln_before=True``; the parameter count is the same.) The activation is
    AdapterHub's default for this configuration.
    ``L * (2hm + m + h) + 1,538`` = 896,066 trainable for bert-base-uncased, factor 16.
    """
    _add_adapters(model, FFN_OUTPUT, reduction_factor, bottleneck, activation, train_layernorm)


@register("ia3", "(IA)^3 (Liu et al., 2022): learned vectors rescale keys, values and the feed-forward activation")
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
    parent = name.rpartition(".")[0]
    return bool(parent) and isinstance(model.get_submodule(parent), INJECTED)


def _match_targets(model: nn.Module, targets) -> list[str]:
    if isinstance(targets, str):
        targets = (targets,)
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


def _mergeable_layers(model: nn.Module) -> list[nn.Module]:
    injected = [m for m in model.modules() if isinstance(m, INJECTED)]
    blocking = [m for m in injected if not m.mergeable]
    if blocking:
        raise ValueError(
            f"{type(blocking[0]).__name__} layers have a non-linearity between their projections and "
            "cannot be folded into the base weights; only LoRA and (IA)^3 merge"
        )
    if not injected:
        raise ValueError("nothing to merge: the model has no LoRA or (IA)^3 layers")
    return injected


def merge_lora(model: nn.Module, safe: bool = False) -> nn.Module:
    """Fold every mergeable update (LoRA and (IA)^3) into its base weights, in place.

    Merging twice is a no-op. Bottleneck adapters cannot be merged and raise an error.
    """
    for layer in _mergeable_layers(model):
        layer.merge(safe=safe)
    return model


def unmerge_lora(model: nn.Module) -> nn.Module:
    """Take every merged update back out of its base weights, in place."""
    for layer in _mergeable_layers(model):
        layer.unmerge()
    return model


# --- saving and loading what was trained ---------------------------------------------------


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The trained parameters only (LoRA matrices, adapters, vectors, biases, the head)."""
    return {name: param.detach() for name, param in model.named_parameters() if param.requires_grad}


def load_adapter_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """Copy a state from ``adapter_state_dict`` into a model with the same method applied.

    Missing keys, unexpected keys and shape mismatches are errors that name the keys.
    """
    if any(getattr(m, "merged", False) for m in model.modules()):
        raise ValueError("the model has merged layers; call unmerge_lora(model) before loading an adapter")
    expected = {name: p for name, p in model.named_parameters() if p.requires_grad}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = [
        f"{k}: saved {tuple(state[k].shape)}, model {tuple(expected[k].shape)}"
        for k in sorted(set(expected) & set(state))
        if state[k].shape != expected[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {', '.join(missing[:5])}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected[:5])}")
    if wrong_shape:
        problems.append(f"shape mismatches ({len(wrong_shape)}): {'; '.join(wrong_shape[:5])}")
    if problems:
        raise ValueError(
            "the adapter state does not fit this model (was it saved with another method, rank "
            "or base model?): " + " | ".join(problems)
        )
    with torch.no_grad():
        for name, param in expected.items():
            param.copy_(state[name])
    return model


def save_adapter(model: nn.Module, path: str | Path) -> Path:
    """Write the trained parameters to a safetensors file, with the method in its metadata."""
    if getattr(model, "applied_method", None) is None:
        raise ValueError("the model has no method applied; call apply_method(model, ...) first")
    path = Path(path)
    tensors = {name: t.contiguous() for name, t in adapter_state_dict(model).items()}
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        save_file(tensors, str(tmp), metadata={"applied_method": json.dumps(model.applied_method)})
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_adapter(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a file written by ``save_adapter`` into a freshly loaded base model.

    A model with no method applied gets the file's method applied first (as PEFT's
    ``PeftModel.from_pretrained`` does); a model with another method applied is an error.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no adapter file at {path}")
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
        state = {key: f.get_tensor(key) for key in f.keys()}
    if "applied_method" not in metadata:
        raise ValueError(f"{path} has no 'applied_method' metadata: it was not written by lora_lib.save_adapter")
    saved = json.loads(metadata["applied_method"])
    current = getattr(model, "applied_method", None)
    if current is None:
        apply_method(model, saved["method"], **saved["hparams"])
    elif current != saved:
        raise ValueError(f"{path} holds {saved}, but the model has {current} applied")
    return load_adapter_state_dict(model, state)
