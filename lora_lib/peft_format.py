"""Adapters in PEFT's format, both ways: where users of PEFT already are.

``to_peft(model, folder)`` writes a LoRA or DoRA model as a PEFT adapter folder
(``adapter_config.json`` and ``adapter_model.safetensors``), which
``PeftModel.from_pretrained(base, folder)`` loads with the same logits, ``base`` being the model
``load_model`` gives with the adapter's head. A PiSSA model trains on a residual of the
pretrained weights, which PEFT's base model does not have, so it is written as PEFT writes one
(``path_initial_model_for_weight_conversion``): a plain LoRA of twice the rank on the
pretrained weights, ``A' = [A; A0]`` and ``B' = [B, -B0]``, whose update ``s (B A - B0 A0)`` is
exactly the trained model's change to ``W0``. ``from_peft(folder, model)`` does the reverse for a
PEFT LoRA adapter. PEFT itself writes and reads the files (it is needed for both: ``pip install
peft``), so the format is always the one PEFT expects. What has no PEFT LoRA equivalent here
(bottleneck adapters, (IA)^3's placement) is refused with a ValueError.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from .lora import LoRALinear
from .merging import has_merged_layers
from .models import load_model
from .registry import apply_method, head_modules
from .variants import DoRALinear

CONVERTIBLE = {"lora": False, "dora": True, "pissa": False}  # method -> use_dora


def _peft():
    try:
        import peft
    except ImportError as err:
        raise ModuleNotFoundError("reading and writing PEFT's adapter format needs PEFT: pip install peft") from err
    return peft


def _bare(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every LoRA layer replaced by the frozen layer it wraps (for
    PiSSA, with the pretrained weight restored: the residual plus ``s B0 A0``)."""
    bare = copy.deepcopy(model)
    for name, module in list(bare.named_modules()):
        if isinstance(module, LoRALinear):
            parent, _, child = name.rpartition(".")
            if hasattr(module, "pissa_A0"):
                with torch.no_grad():
                    initial = module.scaling * (module.pissa_B0 @ module.pissa_A0)
                    module.base_layer.weight.add_(initial.to(module.base_layer.weight.dtype))
            setattr(bare.get_submodule(parent) if parent else bare, child, module.base_layer)
    del bare.applied_method
    return bare


def _pairs(ours: nn.Module, peft_model) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(our tensor, PEFT's tensor) for every trained tensor of a LoRA-family model."""
    inner = peft_model.base_model.model
    pairs = []
    for name, module in ours.named_modules():
        if isinstance(module, LoRALinear):
            theirs = inner.get_submodule(name)
            a, b = module.lora_A, module.lora_B
            if hasattr(module, "pissa_A0"):  # the rank-2r delta on W0: s [B, -B0] [A; A0]
                a, b = torch.cat([a, module.pissa_A0]), torch.cat([b, -module.pissa_B0], dim=1)
            pairs += [(a, theirs.lora_A["default"].weight), (b, theirs.lora_B["default"].weight)]
            if isinstance(module, DoRALinear):
                pairs.append((module.magnitude, theirs.lora_magnitude_vector["default"].weight))
    for name in head_modules(ours):
        theirs = inner.get_submodule(name).modules_to_save["default"]
        pairs += list(zip(ours.get_submodule(name).parameters(), theirs.parameters()))
    return pairs


def _config(method: str, hparams: dict, heads: tuple[str, ...]):
    targets = hparams["targets"]
    # PiSSA goes out at twice the rank; alpha grows so that the scale alpha / r (or alpha / sqrt(r)) stays
    widen = 2 if method == "pissa" else 1
    alpha = hparams["alpha"] * (widen**0.5 if hparams["use_rslora"] else widen)
    return _peft().LoraConfig(
        r=hparams["rank"] * widen,
        lora_alpha=alpha,
        target_modules=[targets] if isinstance(targets, str) else list(targets),
        lora_dropout=hparams["dropout"],
        use_rslora=hparams["use_rslora"],
        use_dora=CONVERTIBLE[method],
        modules_to_save=[name.rpartition(".")[2] for name in heads],
    )


def to_peft(model: nn.Module, folder: str | Path) -> Path:
    """Write ``model`` (LoRA, DoRA or PiSSA applied, unmerged) as a PEFT adapter folder; returns
    the folder. A PiSSA model goes out as a plain LoRA of twice its rank on the pretrained weights."""
    applied = getattr(model, "applied_method", None)
    if applied is None:
        raise ValueError("the model has no method applied; call apply_method(model, 'lora', ...) first")
    if applied["method"] not in CONVERTIBLE:
        raise ValueError(
            f"method {applied['method']!r} has no PEFT LoRA equivalent to write; PEFT's format holds "
            f"{' and '.join(CONVERTIBLE)} adapters"
        )
    if has_merged_layers(model):
        raise ValueError("the model has merged layers; call unmerge_adapters(model) before exporting it")
    peft_model = _peft().get_peft_model(
        _bare(model), _config(applied["method"], applied["hparams"], head_modules(model))
    )
    with torch.no_grad():
        for mine, theirs in _pairs(model, peft_model):
            theirs.copy_(mine)
    peft_model.save_pretrained(str(folder))
    return Path(folder)


def from_peft(folder: str | Path, model: nn.Module | None = None) -> nn.Module:
    """The model a PEFT LoRA (or DoRA) adapter folder describes, as ``lora_lib`` layers.

    ``model`` is the base to load it on (default: ``load_model()[0]``, the packaged model with the
    mean head), with no method applied.
    """
    peft = _peft()
    folder = Path(folder)
    if not (folder / "adapter_config.json").is_file():
        raise FileNotFoundError(f"no PEFT adapter at {folder}: it has no adapter_config.json")
    config = peft.PeftConfig.from_pretrained(str(folder))
    unsupported = {
        "peft_type": config.peft_type != peft.PeftType.LORA,
        "init_lora_weights": isinstance(getattr(config, "init_lora_weights", True), str),
        "bias": getattr(config, "bias", "none") != "none",
        "rank_pattern": bool(getattr(config, "rank_pattern", {})),
        "alpha_pattern": bool(getattr(config, "alpha_pattern", {})),
        "target_modules as a regular expression": isinstance(getattr(config, "target_modules", None), str),
    }
    if any(unsupported.values()):
        raise ValueError(
            f"{folder} is not a plain PEFT LoRA adapter ({', '.join(k for k, v in unsupported.items() if v)}); "
            "only LoRA and DoRA with one rank and alpha convert"
        )
    model = load_model()[0] if model is None else model
    method = "dora" if config.use_dora else "lora"
    targets = tuple(sorted(config.target_modules))
    hparams = {
        "rank": config.r,
        "alpha": config.lora_alpha,
        "targets": targets,
        "dropout": config.lora_dropout,
        "use_rslora": config.use_rslora,
    }
    peft_model = peft.PeftModel.from_pretrained(copy.deepcopy(model), str(folder))
    apply_method(model, method, **hparams)
    with torch.no_grad():
        for mine, theirs in _pairs(model, peft_model):
            mine.copy_(theirs)
    return model
