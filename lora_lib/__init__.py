"""lora_lib: LoRA from scratch, adapter baselines, and the SST-2 study that compares them.

The public names below are imported on first use, so that ``python -m lora_lib.<module>``
runs each command-line module once, and ``import lora_lib`` stays cheap.
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "LoRALinear": "lora",
    "BottleneckAdapter": "adapters",
    "IA3Linear": "adapters",
    "METHODS": "methods",
    "apply_method": "methods",
    "adapter_state_dict": "methods",
    "load_adapter_state_dict": "methods",
    "save_adapter": "methods",
    "load_adapter": "methods",
    "merge_lora": "methods",
    "unmerge_lora": "methods",
    "load_model": "models",
    "count_parameters": "params",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'lora_lib' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
