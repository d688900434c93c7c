"""lora_lib: LoRA from scratch, adapter baselines, and the SST-2 study that compares them."""

from .adapters import BottleneckAdapter, IA3Linear
from .lora import LoRALinear
from .methods import (
    METHODS,
    adapter_state_dict,
    apply_method,
    load_adapter,
    load_adapter_state_dict,
    merge_lora,
    save_adapter,
    unmerge_lora,
)
from .models import load_model
from .params import count_parameters

__version__ = "0.1.0"

__all__ = [
    "METHODS",
    "BottleneckAdapter",
    "IA3Linear",
    "LoRALinear",
    "adapter_state_dict",
    "apply_method",
    "count_parameters",
    "load_adapter",
    "load_adapter_state_dict",
    "load_model",
    "merge_lora",
    "save_adapter",
    "unmerge_lora",
]
