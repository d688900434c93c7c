"""One run: a record that validates, repeatable, nothing written by a run that does not finish."""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch
from conftest import make_record
from transformers import set_seed

from lora_lib import load_adapter, load_model
from lora_lib.study import train as train_module
from lora_lib.study.config import RunConfig
from lora_lib.study.machine import resolve_device
from lora_lib.study.record import SCHEMA_VERSION, load_record, save_record
from lora_lib.study.train import NaNLossError, RecordExistsError, run, train


def tiny_config(tmp_path, **overrides):
    return RunConfig(
        **{
            "model_name": "tiny-random",
            "method": "lora",
            "hparams": {"rank": 4},
            "lr": 1e-3,
            "max_steps": 6,
            "batch_size": 16,
            "max_train_samples": 96,
            "logging_steps": 2,
            "output_dir": str(tmp_path),
            **overrides,
        }
    )


def test_tiny_run_writes_a_record_that_validates(sst2_dir, tmp_path):
    record = run(tiny_config(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lora_r4_s0.json", "lora_r4_s0.safetensors"]
    assert load_record(tmp_path / "lora_r4_s0.json") == record
    assert record.schema_version == SCHEMA_VERSION and record.adapter_file == "lora_r4_s0.safetensors"
    hparams = {"rank": 4, "alpha": 16, "targets": ["query", "value"], "dropout": 0.0, "use_rslora": False}
    assert record.config.hparams == hparams
    assert record.metrics.eval_split == "validation" and 0 <= record.metrics.dev_accuracy <= 1
    cost = record.cost
    assert cost.train_steps == 6 and cost.train_examples == 6 * 16
    assert cost.train_tokens > cost.train_examples and cost.peak_rss_mb > 0
    assert [h["step"] for h in record.history.train] == [2, 4, 6]
    # the default head, the study's: a classifier on the mean of the token states, and no pooler
    assert record.config.head == "mean"
    # layers x (query, value) x (A + B), then the classifier
    assert record.params.trainable == 2 * 2 * (4 * 32 + 32 * 4) + (2 * 32 + 2)
    assert record.environment["torch"] == torch.__version__
    # one prediction per validation sentence, which agree with the accuracy
    labels = [int(line.rsplit("\t", 1)[1]) for line in open(f"{sst2_dir}/dev.tsv").read().splitlines()[1:]]
    predicted = record.predictions.label
    assert len(predicted) == len(record.predictions.prob_positive) == len(labels) == 872
    assert sum(p == y for p, y in zip(predicted, labels)) / len(labels) == pytest.approx(record.metrics.dev_accuracy)
    assert all((p >= 0.5) == (label == 1) for p, label in zip(record.predictions.prob_positive, predicted))

    set_seed(record.config.seed)  # the tiny model's frozen weights are drawn at load, as in the run
    model, tokenizer = load_model("tiny-random", head=record.config.head)
    load_adapter(model, tmp_path / "lora_r4_s0.safetensors")
    assert model.applied_method == {"method": "lora", "hparams": hparams}
    # the predictions are in the split's order: the saved model's probabilities for the first
    # validation sentences, one at a time, are the record's first ones
    sentences = [line.rsplit("\t", 1)[0] for line in open(f"{sst2_dir}/dev.tsv").read().splitlines()[1:6]]
    model.eval()
    with torch.no_grad():
        probs = [torch.softmax(model(**tokenizer(s, return_tensors="pt")).logits, -1)[0, 1].item() for s in sentences]
    assert probs == pytest.approx(record.predictions.prob_positive[:5], abs=1e-5)


def test_a_run_never_replaces_a_record_unless_asked(small_sst2, tmp_path):
    runs = tmp_path / "runs"
    config = tiny_config(runs, data_dir=str(small_sst2), max_steps=2)
    save_record(make_record(config.run_id), runs)
    before = (runs / f"{config.run_id}.json").read_bytes()
    with pytest.raises(RecordExistsError) as err:
        run(config)
    assert "overwrite" in str(err.value)
    assert (runs / f"{config.run_id}.json").read_bytes() == before
    assert [p.name for p in runs.iterdir()] == [f"{config.run_id}.json"]


def test_overwrite_replaces_the_record(sst2_dir, tmp_path):
    config = tiny_config(tmp_path, max_steps=2, max_train_samples=32)
    save_record(make_record(config.run_id, accuracy=0.123), tmp_path)
    record = run(config, overwrite=True)
    assert load_record(tmp_path / f"{config.run_id}.json") == record and record.metrics.dev_accuracy != 0.123


def test_full_fine_tuning_saves_no_weights(sst2_dir, tmp_path):
    record = run(tiny_config(tmp_path, method="full", hparams={}, max_steps=2))
    assert record.adapter_file is None
    assert [p.name for p in tmp_path.iterdir()] == ["full_s0.json"]
    # Instead of the weights, the record keeps the spectrum of each query and value update.
    spectra = record.analysis["full_update_singular_values"]
    assert sorted(spectra) == [
        f"bert.encoder.layer.{i}.attention.self.{m}.weight" for i in range(2) for m in ("query", "value")
    ]
    assert all(len(s) == 32 and s == sorted(s, reverse=True) and s[0] > 0 for s in spectra.values())


@pytest.mark.slow
def test_same_config_and_seed_same_result(sst2_dir, tmp_path):
    first, _ = train(tiny_config(tmp_path))
    second, _ = train(tiny_config(tmp_path))
    other_seed, _ = train(tiny_config(tmp_path, seed=1))
    assert first.metrics == second.metrics and first.predictions == second.predictions
    assert [h["loss"] for h in first.history.train] == [h["loss"] for h in second.history.train]
    assert [h["loss"] for h in first.history.train] != [h["loss"] for h in other_seed.history.train]
    assert list(tmp_path.iterdir()) == []  # train() writes nothing


@pytest.mark.parametrize("model_name", ["tiny-random", pytest.param(None, marks=pytest.mark.slow, id="default-model")])
@pytest.mark.parametrize("method", ["lora", "houlsby", "bitfit"])
def test_frozen_weights_are_bit_identical_after_training(sst2_dir, tmp_path, model_name, method):
    record, model = train(tiny_config(tmp_path, model_name=model_name, method=method, hparams={}, max_steps=3))
    set_seed(0)
    fresh, _ = load_model(model_name)
    fresh_params = dict(fresh.named_parameters())
    frozen = [(n, p) for n, p in model.named_parameters() if not p.requires_grad]
    assert len(frozen) > 0
    for name, param in frozen:
        assert torch.equal(param, fresh_params[name.replace(".base_layer", "")]), name
    trained = [n for n, p in model.named_parameters() if p.requires_grad]
    assert (
        sum(
            not torch.equal(p, fresh_params[n])
            for n, p in model.named_parameters()
            if n in fresh_params and n in trained
        )
        > 0
    )


@pytest.mark.slow
def test_default_model_few_steps_on_real_sst2(sst2_dir, tmp_path):
    config = tiny_config(
        tmp_path, model_name=None, hparams={"rank": 8}, max_steps=4, batch_size=32, max_train_samples=None
    )
    record = run(config)
    assert load_record(tmp_path / "lora_r8_s0.json").params.trainable == 74_498
    assert record.params.trainable_pct < 1
    assert record.cost.train_examples == 128


def test_nan_loss_stops_the_run_and_writes_nothing(sst2_dir, tmp_path, monkeypatch):
    real_apply = train_module.apply_method

    def apply_then_break(model, method, **hparams):
        real_apply(model, method, **hparams)
        model.classifier.register_forward_hook(lambda module, args, out: out * float("nan"))
        return model

    monkeypatch.setattr(train_module, "apply_method", apply_then_break)
    with pytest.raises(NaNLossError) as err:
        run(tiny_config(tmp_path))
    assert "step 2" in str(err.value)  # the first logged step
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_killed_run_leaves_no_record(sst2_dir, tmp_path):
    config = tiny_config(tmp_path, max_steps=100_000).model_dump()
    code = f"from lora_lib.study.train import run; run({config!r})"
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    training = threading.Event()

    def watch():
        for line in process.stdout:
            if line.startswith(b"step "):  # the progress line that training prints
                training.set()

    threading.Thread(target=watch, daemon=True).start()
    try:
        assert training.wait(timeout=120), "the run never started training"
        time.sleep(0.5)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert list(tmp_path.iterdir()) == []


def test_cuda_when_there_is_none():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(RuntimeError) as err:
        resolve_device("cuda")
    assert "cuda" in str(err.value)


def test_epochs_evaluate_after_each_epoch_and_the_last_is_final(sst2_dir, tmp_path):
    record, _ = train(tiny_config(tmp_path, max_steps=None, epochs=2, max_train_samples=64))
    evals = record.history.eval
    assert [(e["step"], e["epoch"]) for e in evals] == [(4, 1.0), (8, 2.0)]
    assert record.metrics.dev_accuracy == evals[-1]["accuracy"] and record.metrics.dev_loss == evals[-1]["loss"]
    assert record.cost.train_examples == 2 * 64


def test_a_loraplus_run_trains_b_at_its_ratio_and_names_its_rate(sst2_dir, tmp_path, monkeypatch):
    seen = {}
    create = train_module._MeasuredTrainer.create_optimizer

    def spy(self, model=None):
        optimizer = create(self, model)
        seen["rates"] = sorted({group["lr"] for group in optimizer.param_groups})
        return optimizer

    monkeypatch.setattr(train_module._MeasuredTrainer, "create_optimizer", spy)
    record, _ = train(tiny_config(tmp_path, loraplus_ratio=16, data_dir=sst2_dir))
    assert seen["rates"] == [1e-3, 1.6e-2] and record.config.loraplus_ratio == 16
    with pytest.raises(ValueError) as err:  # the study searched no rate for LoRA+: lr must be said
        RunConfig(method="lora", loraplus_ratio=16)
    assert "lr" in str(err.value) and "loraplus_ratio" in str(err.value)
