"""Check lora_lib's Houlsby and Pfeiffer adapters against AdapterHub's, with copied weights.

AdapterHub (the ``adapters`` package) pins transformers 4.x, which this project's own
environment does not allow, so run this in a separate virtual environment that sees the
project's other packages:

    python -m venv --system-site-packages /tmp/adenv
    /tmp/adenv/bin/pip install adapters
    /tmp/adenv/bin/python scripts/compare_adapterhub.py

It builds a tiny random BERT classifier twice, adds AdapterHub's ``DoubleSeqBnConfig``
(Houlsby) or ``SeqBnConfig`` (Pfeiffer) to one copy and lora_lib's ``houlsby`` or
``pfeiffer`` to the other, gives our adapters random weights (a stand-in for training, so
that the adapters move the output), copies them into AdapterHub's, and compares the last
hidden states and the logits: in evaluation mode, and in training mode with dropout under
the same random seed (which also pins the adapter's place relative to the block's dropout).
As a control, our adapters in the other place must not match. Exits non-zero on a mismatch.
"""

from __future__ import annotations

import copy
import logging
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import adapters  # noqa: E402
import transformers  # noqa: E402
from adapters import DoubleSeqBnConfig, SeqBnConfig  # noqa: E402
from transformers import BertConfig, BertForSequenceClassification  # noqa: E402

from lora_lib import BottleneckAdapter, apply_method  # noqa: E402

TOLERANCE = 1e-5
# A tiny BERT; hidden 64 at AdapterHub's reduction factor 16 gives a bottleneck of 4.
CONFIG = dict(
    vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, num_labels=2
)
CASES = {"houlsby": DoubleSeqBnConfig, "pfeiffer": SeqBnConfig}


def tiny_bert() -> BertForSequenceClassification:
    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(**CONFIG, attn_implementation="eager"))


def copy_adapters(ours: torch.nn.Module, theirs: torch.nn.Module, name: str) -> int:
    """Give our adapters random weights and copy them into AdapterHub's; return how many adapters."""
    torch.manual_seed(1)
    copied = 0
    with torch.no_grad():
        for module_name, module in ours.named_modules():
            if not isinstance(module, BottleneckAdapter):
                continue
            for param in (*module.adapter_down.parameters(), *module.adapter_up.parameters()):
                param.copy_(torch.randn_like(param) * 0.5)
            their = theirs.get_submodule(module_name).adapters[name]
            their.adapter_down[0].weight.copy_(module.adapter_down.weight)
            their.adapter_down[0].bias.copy_(module.adapter_down.bias)
            their.adapter_up.weight.copy_(module.adapter_up.weight)
            their.adapter_up.bias.copy_(module.adapter_up.bias)
            copied += 1
    return copied


def outputs(model, batch, training: bool):
    model.train(training)
    torch.manual_seed(2)  # the same dropout masks for both models in training mode
    with torch.no_grad():
        out = model(**batch, output_hidden_states=True)
    return out.hidden_states[-1], out.logits


def largest_difference(a, b) -> float:
    return max((x - y).abs().max().item() for x, y in zip(a, b))


def main() -> int:
    print(f"adapters {adapters.__version__}, transformers {transformers.__version__}, torch {torch.__version__}")
    input_ids = torch.randint(1, CONFIG["vocab_size"], (3, 12), generator=torch.Generator().manual_seed(0))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 8:] = 0  # a padded sentence
    batch = {"input_ids": input_ids, "attention_mask": attention_mask}
    failures = 0
    for method, config_class in CASES.items():
        config = config_class()
        flags = {
            k: config[k]
            for k in ("mh_adapter", "output_adapter", "original_ln_before", "original_ln_after", "residual_before_ln")
        }
        print(f"\n{method} against AdapterHub's {config_class.__name__}: {flags}, {config['non_linearity']}")
        plain = tiny_bert()
        theirs = copy.deepcopy(plain)
        adapters.init(theirs)
        theirs.add_adapter("ours", config=config)
        logging.getLogger("adapters").setLevel(logging.ERROR)  # activating warns "none are activated" on its way
        theirs.set_active_adapters("ours")
        ours = apply_method(copy.deepcopy(plain), method)
        # The control: the same adapters in the other place (before or after the Add & Norm).
        other = copy.deepcopy(ours)
        for module in other.modules():
            if isinstance(module, BottleneckAdapter):
                module.after_add_norm = not module.after_add_norm
        copied = copy_adapters(ours, theirs, "ours")
        copy_adapters(other, copy.deepcopy(theirs), "ours")  # the same draws: the same weights as ours
        expected = 2 * CONFIG["num_hidden_layers"] if method == "houlsby" else CONFIG["num_hidden_layers"]
        if copied != expected:
            print(f"  FAIL: {copied} adapters, expected {expected}")
            failures += 1
        for training in (False, True):
            mode = "training (dropout)" if training else "evaluation"
            reference = outputs(theirs, batch, training)
            moved = largest_difference(reference, outputs(plain, batch, training))
            gap = largest_difference(outputs(ours, batch, training), reference)
            control = largest_difference(outputs(other, batch, training), reference)
            ok = gap <= TOLERANCE and moved > 1e-2 and control > 1e-2
            failures += not ok
            print(
                f"  {mode:>18}: largest difference {gap:.2e} (tolerance {TOLERANCE:.0e}); the adapters move the "
                f"output by {moved:.2e}; in the other place they differ by {control:.2e}: "
                f"{'equal' if ok else 'FAIL'}"
            )
    print("\nall equal" if not failures else f"\n{failures} comparison(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
