"""The method registry: each fine-tuning method is one function, registered under a name.

``apply_method(model, "lora", rank=8)`` turns a ``*ForSequenceClassification`` model into the
model that a method trains: it freezes everything, lets the method inject its layers and
unfreeze what it trains, then unfreezes the classification head, which every method trains
(PEFT's and AdapterHub's convention). A method's hyperparameters and their defaults are the
keyword arguments of its function; nothing else lists them.
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

HEAD = "classifier"


@dataclass(frozen=True)
class Method:
    """One registry entry: a name, a display label, a one-line description and its function."""

    name: str
    label: str
    description: str
    apply: Callable[..., None]

    @property
    def defaults(self) -> dict:
        """The method's hyperparameters and their defaults, read from ``apply``'s signature."""
        params = list(inspect.signature(self.apply).parameters.values())[1:]
        return {p.name: p.default for p in params}


METHODS: dict[str, Method] = {}


def register(name: str, label: str, description: str):
    """Add ``fn(model, *, hparam=default, ...)`` to the registry under ``name``.

    ``label`` is how tables and figures name the method (``"LoRA"``, ``"(IA)³"``).
    """

    def decorator(fn):
        if name in METHODS:
            raise ValueError(f"a method named {name!r} is registered already")
        METHODS[name] = Method(name, label, description, fn)
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


def with_defaults(method: str, hparams: dict | None) -> dict:
    """``hparams`` completed by ``method``'s defaults: what the method trains with (an unknown
    method's ``hparams`` as they are)."""
    given = dict(hparams or {})
    return {**METHODS[method].defaults, **given} if method in METHODS else given


def hyperparameters() -> dict[str, dict[str, object]]:
    """Every hyperparameter name that some method takes, with each method's default for it."""
    names: dict[str, dict[str, object]] = {}
    for method in METHODS.values():
        for name, default in method.defaults.items():
            names.setdefault(name, {})[method.name] = default
    return names


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
    full_hparams = with_defaults(method, hparams)
    model.requires_grad_(False)
    spec.apply(model, **full_hparams)
    for name in head_modules(model):
        model.get_submodule(name).requires_grad_(True)
    model.applied_method = {"method": method, "hparams": _jsonable(full_hparams)}
    return model


def head_modules(model: nn.Module) -> tuple[str, ...]:
    """The modules that form the model's head, which every method trains (``load_model`` sets
    them; a model from elsewhere has its ``classifier`` alone)."""
    return getattr(model, "head_modules", (HEAD,))


def _jsonable(hparams: dict) -> dict:
    """Hyperparameters as JSON keeps them: tuples as lists, numpy integers as ints."""

    def plain(v):
        if isinstance(v, tuple):
            return list(v)
        return int(v) if isinstance(v, numbers.Integral) and not isinstance(v, bool) else v

    return {k: plain(v) for k, v in hparams.items()}
