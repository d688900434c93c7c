"""The floating-point operations of a training step, counted from a model's shapes and a batch's real tokens.

``trace_step(model)`` runs the model once on a two-token input and records every matrix
product a training step makes: which ``nn.Linear`` layers run (and LoRA's two low-rank
products), whether each runs once per token or once per sentence (the pooler and the
classifier), and, from autograd itself, which backward products the step computes. The
result, a ``StepFlops``, then counts any batch from its sentences' lengths alone
(``lengths_of(batch)``).

What is counted, as 2 FLOPs per multiply-add:

- every ``nn.Linear`` that the forward pass calls, with ``T`` tokens (or ``N`` sentences):
  ``2 T in out`` forward; in the backward ``2 T in out`` for the input's gradient when the
  input requires one (a frozen layer still passes gradients down to trainable ones below
  it) and ``2 T in out`` for the weight's gradient when the weight trains;
- ``LoRALinear``'s two products ``x A^T`` and ``(.) B^T`` the same way (the base layer is
  an ``nn.Linear`` and counts itself); a merged LoRA layer adds nothing;
- attention's ``Q K^T`` and ``P V``, per sentence with its own length ``l``: ``2 l^2 d``
  each forward (``d`` = heads x head size), and in the backward ``dQ`` and ``dK`` (when Q or
  K require a gradient), ``dP`` (when either does) and ``dV`` (when V does), ``2 l^2 d`` each.

Left out: the embedding look-ups, LayerNorm, softmax, GELU and tanh, dropout, the bias
additions and their gradients, the residual additions, the mean pooling, the loss, and the
optimizer's update (about ten elementwise operations per trained parameter). These are
O(tokens x hidden) or O(parameters) per step, against O(tokens x hidden^2) for the matrix
products. Padding is left out too: a padded position costs time but does no useful work,
so the count is the step's useful work, the numerator of a model-FLOPs utilisation (MFU).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lora_lib.lora import LoRALinear


@dataclass(frozen=True)
class Matmul:
    """One product ``x W^T`` with ``W`` of shape ``out_features x in_features``."""

    name: str
    in_features: int
    out_features: int
    per_token: bool  # False: once per sentence (the pooler, the classifier)
    input_grad: bool  # the backward computes the gradient of x
    weight_grad: bool  # the backward computes the gradient of W


@dataclass(frozen=True)
class Attention:
    """One self-attention block's ``Q K^T`` and ``P V``, ``width`` = heads x head size."""

    name: str
    width: int
    q_grad: bool
    k_grad: bool
    v_grad: bool


@dataclass(frozen=True)
class StepFlops:
    """The matrix products of one training step; counts FLOPs for a batch's sentence lengths."""

    matmuls: tuple[Matmul, ...]
    attentions: tuple[Attention, ...]

    def forward(self, lengths) -> int:
        """FLOPs of the forward pass over sentences of these real lengths."""
        tokens, sentences, squares = _sizes(lengths)
        linear = sum(2 * (tokens if m.per_token else sentences) * m.in_features * m.out_features for m in self.matmuls)
        return linear + sum(2 * 2 * squares * a.width for a in self.attentions)

    def backward(self, lengths) -> int:
        """FLOPs of the backward pass: the input and weight gradients that autograd computes."""
        tokens, sentences, squares = _sizes(lengths)
        linear = sum(
            2 * (tokens if m.per_token else sentences) * m.in_features * m.out_features * (m.input_grad + m.weight_grad)
            for m in self.matmuls
        )
        attention = sum(
            # dQ and dK; dP (needed for either of them); dV
            2 * squares * a.width * ((a.q_grad + a.k_grad) + (a.q_grad or a.k_grad) + a.v_grad)
            for a in self.attentions
        )
        return linear + attention

    def training(self, lengths) -> int:
        """FLOPs of one training step (forward and backward) on sentences of these lengths."""
        return self.forward(lengths) + self.backward(lengths)


def _sizes(lengths) -> tuple[int, int, int]:
    lengths = [int(n) for n in lengths]
    return sum(lengths), len(lengths), sum(n * n for n in lengths)


def lengths_of(batch) -> list[int]:
    """The real (unpadded) length of each sentence in a batch, from its attention mask."""
    return batch["attention_mask"].sum(dim=1).tolist()


def _is_self_attention(module: nn.Module) -> bool:
    return all(isinstance(getattr(module, name, None), nn.Module) for name in ("query", "key", "value"))


def trace_step(model: nn.Module) -> StepFlops:
    """Record the matrix products that a training step of ``model`` makes (see the module's docstring).

    Runs one forward pass on a single two-token sentence with gradients enabled, in eval
    mode (no dropout drawn), and restores the model's mode; nothing is trained.
    """
    matmuls: list[Matmul] = []
    attentions: list[str] = []
    outputs: dict[str, bool] = {}  # query/key/value module name -> its output requires a gradient
    names = {module: name for name, module in model.named_modules()}
    attention_parts = {
        module.get_submodule(part): f"{name}.{part}"
        for name, module in model.named_modules()
        if _is_self_attention(module)
        for part in ("query", "key", "value")
    }

    def on_linear(module, args, output):
        x = args[0]
        matmuls.append(
            Matmul(
                names[module],
                module.in_features,
                module.out_features,
                per_token=x.dim() > 2,
                input_grad=x.requires_grad,
                weight_grad=module.weight.requires_grad,
            )
        )

    def on_lora(module, args, output):
        if module.merged:
            return
        x, name = args[0], names[module]
        a, b = module.lora_A.requires_grad, module.lora_B.requires_grad
        per_token = x.dim() > 2
        matmuls.append(Matmul(f"{name}.lora_A", module.in_features, module.rank, per_token, x.requires_grad, a))
        matmuls.append(Matmul(f"{name}.lora_B", module.rank, module.out_features, per_token, x.requires_grad or a, b))

    def on_part(module, args, output):
        outputs[attention_parts[module]] = output.requires_grad

    def on_attention(module, args, output):
        attentions.append(names[module])

    handles = []
    for module in model.modules():
        if isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(on_linear))
        elif isinstance(module, LoRALinear):
            handles.append(module.register_forward_hook(on_lora))
        if module in attention_parts:
            handles.append(module.register_forward_hook(on_part))
        if _is_self_attention(module):
            handles.append(module.register_forward_hook(on_attention))
    was_training = model.training
    parameter = next(model.parameters())
    ids = torch.ones((1, 2), dtype=torch.long, device=parameter.device)
    try:
        model.eval()
        with torch.enable_grad():
            model(input_ids=ids, attention_mask=torch.ones_like(ids))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()

    return StepFlops(
        matmuls=tuple(matmuls),
        attentions=tuple(
            Attention(
                name,
                width=_width(model.get_submodule(name)),
                q_grad=outputs[f"{name}.query"],
                k_grad=outputs[f"{name}.key"],
                v_grad=outputs[f"{name}.value"],
            )
            for name in attentions
        ),
    )


def _width(attention: nn.Module) -> int:
    """Heads x head size of an attention block: its query's output width (a plain or a wrapped Linear)."""
    query = attention.query
    for candidate in (query, getattr(query, "base_layer", None)):
        if candidate is not None and hasattr(candidate, "out_features"):
            return candidate.out_features
    raise TypeError(f"cannot tell the width of {type(attention).__name__}'s query")
