"""One run: load the model, apply a method, train, evaluate, measure, and write the record.

``run(config)`` goes through transformers' ``Trainer`` (its logging, its length-grouped
sampler, bf16 autocast): what users of transformers know. The benchmark
``benchmarks/throughput.py`` measures what it costs against a plain PyTorch loop.
"""

from __future__ import annotations

import gc
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import SequentialSampler
from transformers import Trainer, TrainerCallback, TrainingArguments, set_seed

from lora_lib import METHODS, apply_method, count_parameters, load_model, save_adapter
from lora_lib.analysis import query_value_weights, update_singular_values
from lora_lib.models import resolve_head
from lora_lib.params import decay_parameter_names
from lora_lib.variants import loraplus_param_groups

from .config import RunConfig
from .data import PadPerBatch, evaluation_split, hold_out_sentences, load_sst2, subsample, tokenize
from .machine import bf16_supported, environment, peak_rss_mb, reset_peak_rss, resolve_device
from .record import SCHEMA_VERSION, CurvePoint, Predictions, Record, SplitScore, save_record


class NaNLossError(FloatingPointError):
    """The training loss became NaN or infinite; the run stops and writes no record."""


class RecordExistsError(FileExistsError):
    """A record for this run id is already in the output folder."""


class _History(TrainerCallback):
    """Keeps the loss curve and the evaluations, prints progress as plain lines (which reach a
    terminal through ``papermill --log-output``), and stops the run on a NaN loss."""

    def __init__(self, progress: bool = True):
        self.train, self.eval, self.progress, self.start = [], [], progress, time.perf_counter()

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "loss" in logs:
            if not math.isfinite(logs["loss"]):
                raise NaNLossError(
                    f"the training loss is {logs['loss']} at step {state.global_step}; the run stops without a "
                    "record. Try a smaller learning rate."
                )
            self.train.append(
                {
                    "step": state.global_step,
                    "epoch": round(state.epoch or 0.0, 4),
                    "loss": logs["loss"],
                    "learning_rate": logs.get("learning_rate"),
                }
            )
            if self.progress:
                elapsed = time.perf_counter() - self.start
                left = elapsed / state.global_step * (state.max_steps - state.global_step)
                print(
                    f"step {state.global_step}/{state.max_steps}  loss {logs['loss']:.4f}  "
                    f"elapsed {elapsed / 60:.1f} min  left ~{left / 60:.1f} min",
                    flush=True,
                )
        if "eval_accuracy" in logs:
            self.eval.append(
                {
                    "step": state.global_step,
                    "epoch": round(state.epoch or 0.0, 4),
                    "accuracy": logs["eval_accuracy"],
                    "loss": logs["eval_loss"],
                }
            )
            if self.progress:
                print(f"evaluation at step {state.global_step}: accuracy {logs['eval_accuracy']:.4f}", flush=True)


class _Accuracy:
    """``compute_metrics`` for the Trainer; keeps the last evaluation's per-example predictions."""

    predictions: Predictions | None = None

    def __call__(self, eval_pred) -> dict:
        logits, labels = eval_pred
        probs = torch.softmax(torch.as_tensor(logits, dtype=torch.float32), dim=-1)[:, 1].numpy()
        predicted = np.argmax(logits, axis=-1)
        self.predictions = Predictions(label=predicted.tolist(), prob_positive=probs.round(6).tolist())
        return {"accuracy": float((predicted == labels).mean())}


class _Curve(TrainerCallback):
    """Evaluates on each of ``splits`` at the steps in ``steps`` (``RunConfig.curve_every``),
    keeping every sentence's predicted label, the training time so far and the machine's load.

    Each split is evaluated sorted by length, which pads far less than the split's own order
    (a quarter of a run's time went to its curve's padding), and its predictions are put back in
    the split's order."""

    def __init__(self, trainer: _MeasuredTrainer, splits: dict, steps: set[int], progress: bool = True):
        self.trainer, self.steps, self.progress = trainer, steps, progress
        orders = {name: np.argsort(dataset["length"], kind="stable") for name, dataset in splits.items()}
        self.splits = {name: (dataset.select(orders[name]), orders[name]) for name, dataset in splits.items()}
        self.points: list[CurvePoint] = []
        self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step not in self.steps:
            return
        trainer = self.trainer
        # An evaluation's log clears the step's flags: the training loss due at this step would go unlogged.
        flags = {flag: getattr(control, flag) for flag in ("should_log", "should_evaluate", "should_save")}
        scores = {}
        for name, (by_length, order) in self.splits.items():
            metrics = trainer.evaluate(eval_dataset=by_length, metric_key_prefix=f"curve_{name}")
            labels = np.empty(len(order), dtype=int)
            labels[order] = trainer.accuracy.predictions.label
            labels = "".join(map(str, labels))
            scores[name] = SplitScore(
                accuracy=metrics[f"curve_{name}_accuracy"], loss=metrics[f"curve_{name}_loss"], predicted=labels
            )
        seconds = time.perf_counter() - self.start - trainer.eval_seconds
        self.points.append(
            CurvePoint(
                step=state.global_step,
                epoch=round(state.epoch or 0.0, 4),
                train_seconds=seconds,
                load_average=os.getloadavg()[0],
                splits=scores,
            )
        )
        for flag, value in flags.items():
            setattr(trainer.control, flag, value)
        if self.progress:
            said = ", ".join(f"{name} {score.accuracy:.4f}" for name, score in scores.items())
            print(f"curve at step {state.global_step} (epoch {state.epoch:.2f}): {said}", flush=True)
        return trainer.control


def curve_steps(train_size: int, batch_size: int, epochs: float, every: float) -> list[int]:
    """The steps at which a run of ``epochs`` evaluates its curve, every ``every`` epochs: the
    nearest step to each multiple, and the last step."""
    per_epoch = math.ceil(train_size / batch_size)
    last = math.ceil(per_epoch * epochs)
    steps = {round(k * every * per_epoch) for k in range(1, int(epochs / every + 1e-9) + 1)}
    return sorted({step for step in steps if 0 < step <= last} | {last})


class _MeasuredTrainer(Trainer):
    """Counts the examples and real tokens it trains on, and keeps evaluation out of the training time."""

    eval_seconds = 0.0
    train_examples = 0
    train_tokens = 0

    loraplus_ratio: float | None = None  # LoRA+: B's rate over A's
    accuracy: _Accuracy | None = None  # the compute_metrics, whose last predictions a curve point keeps

    def get_decay_parameter_names(self, model) -> list[str]:
        return decay_parameter_names(model)

    def create_optimizer(self, model=None):
        if self.loraplus_ratio is None or self.optimizer is not None:
            return super().create_optimizer(model)
        optimizer_cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, self.model)
        groups = loraplus_param_groups(self.model, self.args.learning_rate, self.loraplus_ratio, self.args.weight_decay)
        self.optimizer = optimizer_cls(groups, **kwargs)
        return self.optimizer

    def _get_eval_sampler(self, eval_dataset):
        # transformers 5 groups evaluation batches by length too, in an order set by the seed;
        # the record keeps each sentence's prediction in the split's own order.
        return SequentialSampler(eval_dataset)

    def training_step(self, model, inputs, num_items_in_batch=None):
        self.train_examples += len(inputs["input_ids"])
        self.train_tokens += int(inputs["attention_mask"].sum())
        return super().training_step(model, inputs, num_items_in_batch)

    def evaluate(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return super().evaluate(*args, **kwargs)
        finally:
            self.eval_seconds += time.perf_counter() - start


def prepare_data(config: RunConfig, tokenizer):
    """The tokenized training set and evaluation split that ``config`` asks for."""
    train, evaluation, _ = prepare_splits(config, tokenizer)
    return train, evaluation


def prepare_splits(config: RunConfig, tokenizer):
    """``(training set, evaluation split, curve splits)``, tokenized. The curve splits (a run with
    ``curve_every``) are the clean tuning slice, whose sentences leave the training set, and the
    validation split; ``{}`` otherwise."""
    splits = load_sst2(config.data_dir)
    train, evaluation = evaluation_split(splits, config.eval_split, config.holdout_size)
    curve = {}
    if config.curve_every is not None:
        train, held_out = hold_out_sentences(train, config.holdout_size)
        curve = {"sentences": held_out, "validation": evaluation}
    train = subsample(train, config.max_train_samples, config.seed)

    def encode(dataset):
        return tokenize(dataset, tokenizer, config.max_length)

    evaluation = encode(evaluation)
    curve = {name: evaluation if name == "validation" else encode(dataset) for name, dataset in curve.items()}
    return encode(train), evaluation, curve


def run(config: RunConfig | dict, overwrite: bool = False) -> Record:
    """Train and evaluate one configuration, write its files, and return its record.

    Writes ``<output_dir>/<run_id>.safetensors`` (the trained parameters only; none for full
    fine-tuning, whose weights are never saved) and then ``<output_dir>/<run_id>.json``, both
    atomically: a run that fails or is killed before the end leaves no record. An existing
    record is never replaced unless ``overwrite`` is set.
    """
    config = config if isinstance(config, RunConfig) else RunConfig(**config)
    folder = Path(config.output_dir)
    if (folder / f"{config.run_id}.json").exists() and not overwrite:
        raise RecordExistsError(
            f"{folder / config.run_id}.json exists already; choose another run_id or output_dir, or pass "
            "overwrite=True (papermill: -p overwrite True) to replace it"
        )
    record, model = train(config)
    folder.mkdir(parents=True, exist_ok=True)
    if record.method != "full":
        record.adapter_file = save_adapter(model, folder / f"{record.run_id}.safetensors").name
    save_record(record, folder)
    return record


def training_arguments(config: RunConfig, device: str, scratch: str) -> TrainingArguments:
    return TrainingArguments(
        output_dir=scratch,
        learning_rate=config.lr,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps if config.max_steps is not None else -1,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.eval_batch_size,
        # transformers reads a warmup_steps below 1 as a share of the run's steps
        warmup_steps=config.warmup_steps if config.warmup_steps is not None else config.warmup_ratio,
        weight_decay=config.weight_decay,
        lr_scheduler_type="constant_with_warmup" if config.lr_schedule == "constant" else "linear",
        train_sampling_strategy="group_by_length",
        seed=config.seed,
        bf16=config.precision == "bf16",
        use_cpu=device == "cpu",
        eval_strategy="epoch" if config.max_steps is None and config.curve_every is None else "no",
        save_strategy="no",
        logging_steps=config.logging_steps,
        logging_nan_inf_filter=False,
        report_to=[],
        dataloader_num_workers=0,
        disable_tqdm=not sys.stderr.isatty(),  # a notebook's tqdm is a widget no terminal sees
        # Keep the "length" column for the length-grouped sampler; the collator drops it.
        remove_unused_columns=False,
        **({"optim": config.optim} if config.optim is not None else {}),
    )


def train(config: RunConfig | dict) -> tuple[Record, torch.nn.Module]:
    """Train and evaluate one configuration; return ``(record, trained model)``, writing nothing."""
    config = config if isinstance(config, RunConfig) else RunConfig(**config)
    device = resolve_device(config.device)
    if config.precision == "bf16" and not bf16_supported(device):
        raise RuntimeError(f"precision 'bf16' was asked for, but this {device} has no fast bf16; use precision='fp32'")

    set_seed(config.seed)  # before the model: the head and LoRA's A are drawn from it
    model, tokenizer = load_model(config.model_name, head=config.head)
    apply_method(model, config.method, **config.hparams)
    params = count_parameters(model)
    train_set, eval_set, curve_sets = prepare_splits(config, tokenizer)
    # A full fine-tuning run keeps the spectrum of its query and value updates (chapter 6):
    # a few kilobytes in the record, where the weights themselves would be megabytes.
    before = query_value_weights(model) if config.method == "full" else None
    history, accuracy = _History(), _Accuracy()
    with tempfile.TemporaryDirectory() as scratch:
        trainer = _MeasuredTrainer(
            model=model,
            args=training_arguments(config, device, scratch),
            train_dataset=train_set,
            eval_dataset=eval_set,
            data_collator=PadPerBatch(tokenizer),
            compute_metrics=accuracy,
            callbacks=[history],
        )
        trainer.loraplus_ratio, trainer.accuracy = config.loraplus_ratio, accuracy
        curve = None
        if curve_sets:
            steps = curve_steps(len(train_set), config.batch_size, config.epochs, config.curve_every)
            curve = _Curve(trainer, curve_sets, set(steps))
            trainer.add_callback(curve)
        # Measure the training's memory, not the data preparation's (the same for every method).
        gc.collect()
        peak_window = "training" if reset_peak_rss() else "process"
        load_start = os.getloadavg()[0]
        start = time.perf_counter()
        if curve is not None:
            curve.start = start
        trainer.train()
        train_seconds = time.perf_counter() - start - trainer.eval_seconds
        load_end = os.getloadavg()[0]
        # The evaluation after the last epoch is the final one; evaluate only if there was none.
        if not history.eval or history.eval[-1]["step"] != trainer.state.global_step:
            trainer.evaluate()
    final = history.eval[-1]
    if not math.isfinite(final["loss"]):
        raise NaNLossError(f"the evaluation loss is {final['loss']}; the run writes no record")
    examples, tokens = trainer.train_examples, trainer.train_tokens
    record = Record(
        schema_version=SCHEMA_VERSION,
        run_id=config.run_id,
        method=config.method,
        description=METHODS[config.method].description,
        config=config.model_copy(
            update={
                "hparams": model.applied_method["hparams"],
                "head": resolve_head(config.head, model.name_or_path or None),
            }
        ),
        params=params,
        metrics={"eval_split": config.eval_split, "dev_accuracy": final["accuracy"], "dev_loss": final["loss"]},
        cost={
            "train_seconds": train_seconds,
            "train_examples": examples,
            "train_tokens": tokens,
            "train_examples_per_second": examples / train_seconds,
            "train_tokens_per_second": tokens / train_seconds,
            "train_steps": trainer.state.global_step,
            "peak_rss_mb": peak_rss_mb(),
            "peak_rss_window": peak_window,
            "device": device,
            "precision": config.precision,
            # Other work on the machine slows a run: the 1-minute load average as training
            # started and ended (a run alone on it holds about its torch threads' worth).
            "load_average_start": load_start,
            "load_average_end": load_end,
            "eval_seconds": trainer.eval_seconds,  # the evaluations during training (a curve's points)
        },
        history={"train": history.train, "eval": history.eval},
        environment=environment(),
        predictions=accuracy.predictions,
        analysis={"full_update_singular_values": update_singular_values(before, model)} if before else None,
        curve=curve.points if curve is not None else None,
    )
    return record, model
