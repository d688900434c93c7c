"""The successors' search set beside LoRA's: names, best rates, edges and the ratio of rates."""

import pytest
from conftest import make_record

from lora_lib.study.successors import successor_search, variant_name

STAGE_1 = {"eval_split": "sentences", "holdout_size": 1000, "max_train_samples": 10000, "head": "mean", "epochs": 1}


def search_run(name, method, lr, accuracy, rank=8, loraplus_ratio=None, precision="fp32", **hparams):
    return make_record(
        f"{name}_r{rank}_lr{lr:g}_s0",
        method=method,
        lr=lr,
        accuracy=accuracy,
        hparams={"rank": rank, "alpha": 16, **hparams},
        loraplus_ratio=loraplus_ratio,
        precision=precision,
        **STAGE_1,
    )


def test_each_variant_is_set_beside_lora_at_its_rank():
    lora = [search_run("search_lora", "lora", lr, acc) for lr, acc in ((1e-3, 0.839), (2e-3, 0.843), (4e-3, 0.839))]
    lora += [
        search_run("search_weights_q", "lora", 2e-3, 0.9, rank=8, targets=["query"])
    ]  # other weights: not LoRA r=8
    variants = [
        *(
            search_run("search_rslora", "lora", lr, acc, use_rslora=True)
            for lr, acc in ((2.5e-4, 0.83), (5e-4, 0.845), (1e-3, 0.84))
        ),
        *(
            search_run("search_loraplus", "lora", lr, acc, loraplus_ratio=16)
            for lr, acc in ((1.25e-4, 0.85), (2.5e-4, 0.84))
        ),
        search_run("search_dora", "dora", 2e-3, 0.842, precision="bf16"),
    ]
    assert [variant_name(r) for r in variants[2:]] == ["rsLoRA r=8", "LoRA+ r=8", "LoRA+ r=8", "DoRA r=8"]
    table = successor_search(variants, lora)
    assert list(table.index) == ["LoRA+ r=8", "rsLoRA r=8", "DoRA r=8"]  # registry order, then by name
    rs = table.loc["rsLoRA r=8"]
    assert (rs["best rate"], rs["best sits"], rs["LoRA's best rate"]) == ("5e-4", "inside", "2e-3")
    assert rs["LoRA's rate ÷ this rate"] == pytest.approx(4.0)
    assert table.loc["LoRA+ r=8", "best sits"] == "lowest"
    assert table.loc["DoRA r=8", "best sits"] == "one rate"
    assert (table.loc["DoRA r=8", "precision"], table.loc["rsLoRA r=8", "precision"]) == ("bf16", "fp32")


def test_a_rank_lora_never_tried_is_named():
    lora = [search_run("search_lora", "lora", 1e-3, 0.84)]
    with pytest.raises(ValueError, match="LoRA r=64"):
        successor_search([search_run("search_rslora", "lora", 1e-3, 0.84, rank=64, use_rslora=True)], lora)
    with pytest.raises(ValueError, match="search_variants.yml"):
        successor_search([], lora)
