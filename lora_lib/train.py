"""One run: load the model, apply a method, train, evaluate, measure, and write the record.

``run(config)`` goes through transformers' ``Trainer`` (its progress bar, its logging, its
length-grouped sampler, bf16 autocast): what users of transformers know. The benchmark
``benchmarks/throughput.py`` measures what it costs against a plain PyTorch loop on the
same batches.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import Trainer, TrainerCallback, TrainingArguments, set_seed

from . import __version__
from .analysis import query_value_weights, update_singular_values
from .data import MAX_LENGTH, PadPerBatch, load_sst2, split_holdout, subsample, tokenize
from .methods import METHODS, apply_method, check_method, save_adapter
from .models import load_model
from .params import count_parameters
from .results import SCHEMA_VERSION, save_record

PRECISIONS = ("fp32", "bf16")
DEVICES = ("auto", "cpu", "cuda")
EVAL_SPLITS = ("validation", "holdout")


@dataclass
class RunConfig:
    """Everything a run depends on. Unknown keys are an error (see ``from_dict``)."""

    method: str = "lora"
    hparams: dict = field(default_factory=dict)  # the method's hyperparameters, e.g. {"rank": 8}
    model_name: str | None = None  # None: the packaged default model
    lr: float = 5e-4
    epochs: float = 1.0
    max_steps: int | None = None  # overrides epochs when set
    batch_size: int = 32
    eval_batch_size: int = 128
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    seed: int = 0
    max_train_samples: int | None = None
    eval_split: str = "validation"  # "holdout": a fixed slice of train, for tuning
    holdout_size: int = 2000
    max_length: int = MAX_LENGTH
    precision: str = "fp32"
    device: str = "auto"
    logging_steps: int = 50
    data_dir: str | None = None  # None: $SST2_DIR, else the Hub
    output_dir: str = "executed"  # relative: to the repository root (see resolve_output_dir)
    run_id: str | None = None  # None: derived, e.g. "lora_r8_s0"

    @classmethod
    def from_dict(cls, values: dict) -> "RunConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise TypeError(f"unknown config key(s) {', '.join(unknown)}; a run config takes: {', '.join(sorted(known))}")
        return cls(**values)

    def __post_init__(self):
        check_method(self.method, self.hparams)
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {self.device!r}")
        if self.eval_split not in EVAL_SPLITS:
            raise ValueError(f"eval_split must be one of {EVAL_SPLITS}, got {self.eval_split!r}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if self.max_steps is None and not self.epochs > 0:
            raise ValueError(f"epochs must be > 0 (or set max_steps), got {self.epochs!r}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, got {self.max_steps!r}")
        if self.run_id is None:
            self.run_id = default_run_id(self.method, self.hparams, self.seed)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def default_run_id(method: str, hparams: dict, seed: int) -> str:
    """``lora_r8_s0``, ``houlsby_s1``: the method, LoRA's rank, and the seed."""
    rank = f"_r{hparams.get('rank', METHODS['lora'].defaults['rank'])}" if method == "lora" else ""
    return f"{method}{rank}_s{seed}"


def resolve_output_dir(output_dir: str | Path, start: str | Path | None = None) -> Path:
    """A relative ``output_dir`` is relative to the repository root, found upward from
    ``start`` (the working directory), so ``executed`` means the same folder whether a
    notebook runs from the root or from ``book/``. Outside a checkout: relative to ``start``."""
    output_dir = Path(output_dir)
    here = Path(start or Path.cwd()).resolve()
    if output_dir.is_absolute():
        return output_dir
    for folder in (here, *here.parents):
        if (folder / "lora_lib").is_dir() and (folder / "book").is_dir():
            return folder / output_dir
    return here / output_dir


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for, but torch sees no CUDA device; use device='cpu' or 'auto'")
    return device


def bf16_supported(device: str) -> bool:
    if device == "cuda":
        return torch.cuda.is_bf16_supported()
    # bf16 autocast runs on any CPU, but only these instructions make it fast rather than slow.
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


class NaNLossError(FloatingPointError):
    """The training loss became NaN or infinite; the run stops and writes no record."""


class _History(TrainerCallback):
    """Keeps the loss curve and the evaluations, and stops the run on a NaN loss."""

    def __init__(self):
        self.train, self.eval = [], []

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "loss" in logs:
            if not math.isfinite(logs["loss"]):
                raise NaNLossError(
                    f"the training loss is {logs['loss']} at step {state.global_step}; the run stops without a "
                    "record. Try a smaller learning rate."
                )
            self.train.append(
                {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4), "loss": logs["loss"],
                 "learning_rate": logs.get("learning_rate")}
            )
        if "eval_accuracy" in logs:
            self.eval.append(
                {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4),
                 "accuracy": logs["eval_accuracy"], "loss": logs["eval_loss"]}
            )


class _MeasuredTrainer(Trainer):
    """A Trainer that counts the examples and real tokens it trains on, and keeps the
    evaluations it runs between epochs out of the training time."""

    eval_seconds = 0.0
    train_examples = 0
    train_tokens = 0

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


def _accuracy(eval_pred) -> dict:
    logits, labels = eval_pred
    return {"accuracy": float((np.argmax(logits, axis=-1) == labels).mean())}


def prepare_data(config: RunConfig, tokenizer):
    """The tokenized training set and evaluation split that ``config`` asks for."""
    splits = load_sst2(config.data_dir)
    train = splits["train"]
    if config.eval_split == "holdout":
        train, evaluation = split_holdout(train, config.holdout_size)
    else:
        evaluation = splits["validation"]
    train = subsample(train, config.max_train_samples, config.seed)
    return tokenize(train, tokenizer, config.max_length), tokenize(evaluation, tokenizer, config.max_length)


def run(config: RunConfig | dict) -> dict:
    """Train and evaluate one configuration, write its files, and return its record.

    Writes ``<output_dir>/<run_id>.safetensors`` (the trained parameters only; none for
    full fine-tuning, whose weights are never saved) and then ``<output_dir>/<run_id>.json``,
    both atomically: a run that fails or is killed before the end leaves no record.
    """
    record, model = train(config)
    folder = resolve_output_dir(record["config"]["output_dir"])
    folder.mkdir(parents=True, exist_ok=True)
    if record["method"] != "full":
        record["adapter_file"] = save_adapter(model, folder / f"{record['run_id']}.safetensors").name
    save_record(record, folder)
    return record


def train(config: RunConfig | dict):
    """Train and evaluate one configuration; return ``(record, trained model)``, writing nothing."""
    if isinstance(config, dict):
        config = RunConfig.from_dict(config)
    device = resolve_device(config.device)
    if config.precision == "bf16" and not bf16_supported(device):
        raise RuntimeError(f"precision 'bf16' was asked for, but this {device} has no fast bf16; use precision='fp32'")

    set_seed(config.seed)  # before the model: the head and LoRA's A are drawn from it
    model, tokenizer = load_model(config.model_name)
    apply_method(model, config.method, **config.hparams)
    params = count_parameters(model)
    train_set, eval_set = prepare_data(config, tokenizer)

    # A full fine-tuning run keeps the spectrum of its query and value updates (chapter 6):
    # a few kilobytes in the record, where the weights themselves would be megabytes.
    before = query_value_weights(model) if config.method == "full" else None
    history = _History()
    with tempfile.TemporaryDirectory() as scratch:
        args = TrainingArguments(
            output_dir=scratch,
            learning_rate=config.lr,
            num_train_epochs=config.epochs,
            max_steps=config.max_steps if config.max_steps is not None else -1,
            per_device_train_batch_size=config.batch_size,
            per_device_eval_batch_size=config.eval_batch_size,
            warmup_steps=config.warmup_ratio,
            weight_decay=config.weight_decay,
            lr_scheduler_type="linear",
            train_sampling_strategy="group_by_length",
            seed=config.seed,
            bf16=config.precision == "bf16",
            use_cpu=device == "cpu",
            eval_strategy="epoch" if config.max_steps is None else "no",
            save_strategy="no",
            logging_steps=config.logging_steps,
            logging_nan_inf_filter=False,
            report_to=[],
            dataloader_num_workers=0,
            # Keep the "length" column for the length-grouped sampler; the collator drops it.
            remove_unused_columns=False,
        )
        trainer = _MeasuredTrainer(
            model=model, args=args, train_dataset=train_set, eval_dataset=eval_set,
            data_collator=PadPerBatch(tokenizer), compute_metrics=_accuracy, callbacks=[history],
        )
        # Measure the training's memory, not the data preparation's (the same for every method).
        gc.collect()
        peak_window = "training" if reset_peak_rss() else "process"
        start = time.perf_counter()
        trainer.train()
        train_seconds = time.perf_counter() - start - trainer.eval_seconds
        examples, tokens = trainer.train_examples, trainer.train_tokens
        # The evaluation after the last epoch is the final one; evaluate only if there was none.
        if not history.eval or history.eval[-1]["step"] != trainer.state.global_step:
            trainer.evaluate()
    final = history.eval[-1]
    if not math.isfinite(final["loss"]):
        raise NaNLossError(f"the evaluation loss is {final['loss']}; the run writes no record")

    record = {
        "schema_version": SCHEMA_VERSION,
        "run_id": config.run_id,
        "method": config.method,
        "description": METHODS[config.method].description,
        "config": {**config.to_dict(), "hparams": model.applied_method["hparams"]},
        "params": params,
        "metrics": {"eval_split": config.eval_split, "dev_accuracy": final["accuracy"], "dev_loss": final["loss"]},
        "cost": {
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
        },
        "history": {"train": history.train, "eval": history.eval},
        "environment": environment(),
        "adapter_file": None,
    }
    if before is not None:
        record["analysis"] = {"full_update_singular_values": update_singular_values(before, model)}
    return record, model


def reset_peak_rss() -> bool:
    """Start a new peak-memory window for this process (Linux); False where it can't."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """The peak resident memory of this process, in MiB: since ``reset_peak_rss`` on Linux,
    else since the process started."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / (1024 if sys.platform == "darwin" else 1)  # bytes on macOS, KiB on Linux


def environment() -> dict:
    """What the numbers were measured on."""
    import transformers

    return {
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda_device": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "lora_lib": __version__,
        "git_commit": _git_commit(),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str | None:
    """The commit of the lora_lib checkout, with ``+dirty`` for uncommitted changes."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+dirty" if dirty else "")
