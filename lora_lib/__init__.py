"""lora_lib: LoRA from scratch and the adapter baselines it is compared with.

The library: injected layers (``LoRALinear``, ``BottleneckAdapter``, ``IA3Linear``), the method
registry (``apply_method``), merging, adapter-only save and load, parameter counting and
model loading. It knows nothing of SST-2 or of the study; ``lora_lib.study`` builds on it.
"""

from . import methods as _methods  # noqa: F401  (registers the methods)
from .adapters import BottleneckAdapter, IA3Linear
from .checkpoint import adapter_state_dict, from_adapter, load_adapter, load_adapter_state_dict, save_adapter
from .layers import InjectedLayer
from .lora import LoRALinear
from .merging import merge_adapters, unmerge_adapters
from .models import load_model
from .params import count_parameters
from .registry import METHODS, apply_method, register
from .variants import DoRALinear, loraplus_param_groups, pissa_init_

__version__ = "0.3.0"

__all__ = [
    "METHODS",
    "BottleneckAdapter",
    "DoRALinear",
    "IA3Linear",
    "InjectedLayer",
    "LoRALinear",
    "adapter_state_dict",
    "apply_method",
    "count_parameters",
    "from_adapter",
    "load_adapter",
    "load_adapter_state_dict",
    "load_model",
    "loraplus_param_groups",
    "merge_adapters",
    "pissa_init_",
    "register",
    "save_adapter",
    "unmerge_adapters",
]
