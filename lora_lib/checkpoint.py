"""Saving and loading what a method trained: adapter-only safetensors files.

The file holds the trained parameters only (LoRA's matrices, adapters, vectors, biases, the
head) and, in its metadata, the method and hyperparameters that made them, the head and the
base model, so that ``from_adapter(path)`` rebuilds the trained model in one call, as PEFT's
``AutoPeftModel.from_pretrained`` does. (Files written before the base model was recorded,
the first two studies' among them, were trained on the default packaged model: a file that
was not fails to load there with the shapes that differ.)
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import safe_open, save_file
from torch import nn

from .files import write_atomic
from .merging import has_merged_layers
from .models import TINY_RANDOM, load_model
from .registry import apply_method


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The trained parameters only (LoRA matrices, adapters, vectors, biases, the head)."""
    return {name: param.detach() for name, param in model.named_parameters() if param.requires_grad}


def load_adapter_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """Copy a state from ``adapter_state_dict`` into a model with the same method applied.

    Missing keys, unexpected keys and shape mismatches are errors that name the keys.
    """
    if has_merged_layers(model):
        raise ValueError("the model has merged layers; call unmerge_adapters(model) before loading an adapter")
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
    metadata = {
        "applied_method": json.dumps(model.applied_method),
        "head": getattr(model, "head_kind", "") or "",
        "model": getattr(model, "model_name", None) or "",  # "": the default packaged model
    }
    return write_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def read_adapter(path: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """The metadata and tensors of a file written by ``save_adapter``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no adapter file at {path}")
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
        state = {key: f.get_tensor(key) for key in f.keys()}
    if "applied_method" not in metadata:
        raise ValueError(f"{path} has no 'applied_method' metadata: it was not written by lora_lib.save_adapter")
    return metadata, state


def from_adapter(path: str | Path) -> tuple[nn.Module, object]:
    """``(model, tokenizer)``: the base model an adapter file was trained on, with its head and its
    method applied and its trained parameters loaded, ready to classify.

    ``model, tokenizer = from_adapter("executed/lora_r8_s0.safetensors")``
    """
    metadata, state = read_adapter(path)
    name = metadata.get("model") or None
    if name == TINY_RANDOM:
        raise ValueError(
            f"{path} was trained on the tiny random BERT, whose base weights are drawn anew at each load; "
            "seed torch as in training, then load_adapter(load_model('tiny-random')[0], path)"
        )
    # A file that names no head is the first study's, which read the frozen pooler.
    model, tokenizer = load_model(name, head=metadata.get("head") or "frozen-pooler")
    return _load_into(model, path, metadata, state), tokenizer


def load_adapter(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a file written by ``save_adapter`` into a freshly loaded base model.

    A model with no method applied gets the file's method applied first (as PEFT's
    ``PeftModel.from_pretrained`` does); a model with another method applied is an error.
    """
    return _load_into(model, path, *read_adapter(path))


def _load_into(model: nn.Module, path, metadata: dict, state: dict[str, torch.Tensor]) -> nn.Module:
    """``load_adapter`` on a file already read (``path`` only names it in errors)."""
    saved = json.loads(metadata["applied_method"])
    head, model_head = metadata.get("head") or None, getattr(model, "head_kind", None)
    if head and model_head and head != model_head:
        raise ValueError(
            f"{path} was trained with head {head!r}, but the model has head {model_head!r}; "
            f"load it with load_model(name, head={head!r})"
        )
    current = getattr(model, "applied_method", None)
    if current is None:
        apply_method(model, saved["method"], **saved["hparams"])
    elif current != saved:
        raise ValueError(f"{path} holds {saved}, but the model has {current} applied")
    return load_adapter_state_dict(model, state)
