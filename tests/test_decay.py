"""Weight decay only where it belongs: not on biases, LayerNorm parameters or (IA)^3 vectors, in the library and in
the study's trainer."""

import pytest
import torch
from transformers import TrainingArguments

from lora_lib import METHODS, IA3Linear, LoRALinear, apply_method, load_model
from lora_lib.params import decay_parameter_names
from lora_lib.study.config import RunConfig
from lora_lib.study.train import _MeasuredTrainer, train

# Every method with its defaults, and the ones whose options change what trains.
CASES = [(m, {}) for m in METHODS] + [("houlsby", {"train_layernorm": True}), ("lora", {"rank": 2})]


def tiny(method, **hparams):
    torch.manual_seed(0)
    model, _ = load_model("tiny-random", head="pooler")
    return apply_method(model, method, **hparams)


def exempt(name, model):
    """Whether a parameter is one that decay must leave alone, judged from the modules that hold it."""
    owner = model.get_submodule(name.rpartition(".")[0])
    return name.endswith(".bias") or isinstance(owner, torch.nn.LayerNorm) or isinstance(owner, IA3Linear)


@pytest.mark.parametrize("method, hparams", CASES, ids=[f"{m}{'-' + '-'.join(h) if h else ''}" for m, h in CASES])
def test_decay_covers_the_trained_weights_and_nothing_else(method, hparams):
    model = tiny(method, **hparams)
    decayed = set(decay_parameter_names(model))
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert decayed == {name for name in trainable if not exempt(name, model)}
    assert not any(name.endswith(".bias") or "LayerNorm" in name or "ia3_vector" in name for name in decayed)
    assert {"classifier.weight", "bert.pooler.dense.weight"} <= decayed
    if method == "lora":
        lora = {
            f"{name}.{part}"
            for name, layer in model.named_modules()
            if isinstance(layer, LoRALinear)
            for part, _ in layer.named_parameters()
            if part.startswith(("lora_A", "lora_B"))
        }
        assert lora and lora <= decayed
    if method == "ia3":
        vectors = {name for name in trainable if name.endswith("ia3_vector")}
        assert vectors and not vectors & decayed
    if hparams.get("train_layernorm"):
        assert any("LayerNorm" in name for name in trainable)  # trained, but not decayed


def test_the_trainer_decays_exactly_those(tmp_path):
    model = tiny("ia3")
    args = TrainingArguments(output_dir=str(tmp_path), weight_decay=0.5, use_cpu=True, report_to=[])
    trainer = _MeasuredTrainer(model=model, args=args)
    optimizer = trainer.create_optimizer()
    names = {id(p): name for name, p in model.named_parameters()}
    by_decay = {}
    for group in optimizer.param_groups:
        by_decay.setdefault(group["weight_decay"], set()).update(names[id(p)] for p in group["params"])
    assert by_decay[0.5] == set(decay_parameter_names(model))
    assert by_decay[0.0] == {n for n, p in model.named_parameters() if p.requires_grad} - by_decay[0.5]
    assert any(name.endswith("ia3_vector") for name in by_decay[0.0])


def _trained(sst2_dir, tmp_path, method, weight_decay, lr=0.5):
    config = RunConfig(
        model_name="tiny-random",
        method=method,
        head="pooler",
        lr=lr,
        weight_decay=weight_decay,
        warmup_ratio=0.0,
        max_steps=1,
        batch_size=16,
        max_train_samples=64,
        logging_steps=1,
        data_dir=sst2_dir,
        output_dir=str(tmp_path),
    )
    _, model = train(config)
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


@pytest.mark.slow
def test_decay_leaves_ia3_vectors_alone_in_a_run_and_shrinks_lora(sst2_dir, tmp_path):
    """One step at a large rate (one, so that no parameter's gradient can depend on how another was decayed):
    the (IA)^3 vectors come out the same with and without decay (decay alone would pull them from 1 toward 0),
    while LoRA's A and the classifier's weight shrink by the factor 1 - lr * weight_decay."""
    lr, wd = 0.5, 0.5
    decayed, plain = (_trained(sst2_dir, tmp_path, "ia3", d, lr) for d in (wd, 0.0))
    vectors = [name for name in decayed if name.endswith("ia3_vector")]
    assert vectors
    for name in vectors:
        assert not torch.equal(plain[name], torch.ones_like(plain[name])), "the vectors must train"
        assert torch.equal(decayed[name], plain[name]), name
    assert not torch.equal(decayed["classifier.weight"], plain["classifier.weight"])
    assert all(torch.equal(decayed[name], plain[name]) for name in decayed if name.endswith(".bias"))

    decayed, plain = (_trained(sst2_dir, tmp_path, "lora", d, lr) for d in (wd, 0.0))
    lora_a = [name for name in decayed if ".lora_A" in name]
    lora_b = [name for name in decayed if ".lora_B" in name]
    assert lora_a and lora_b
    for name in lora_a:  # B starts at zero, so A has no gradient in the first step: decay alone moves it
        torch.testing.assert_close(decayed[name], (1 - lr * wd) * plain[name])
    for name in lora_b:  # and decay of a zero matrix is zero
        assert torch.equal(decayed[name], plain[name]), name
