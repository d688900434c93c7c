"""Saving and loading what a method trained: adapter-only safetensors files.

The file holds the trained parameters only (LoRA's matrices, adapters, vectors, biases, the
head) and, in its metadata, the method and hyperparameters that made them, so that
``load_adapter`` can rebuild the model from the base checkpoint alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import safe_open, save_file
from torch import nn

from .files import write_atomic
from .merging import has_merged_layers
from .registry import apply_method


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The trained parameters only (LoRA matrices, adapters, vectors, biases, the head)."""
    return {name: param.detach() for name, param in model.named_parameters() if param.requires_grad}


def load_adapter_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """Copy a state from ``adapter_state_dict`` into a model with the same method applied.

    Missing keys, unexpected keys and shape mismatches are errors that name the keys.
    """
    if has_merged_layers(model):
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
    metadata = {"applied_method": json.dumps(model.applied_method), "head": getattr(model, "head_kind", "") or ""}
    return write_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


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
