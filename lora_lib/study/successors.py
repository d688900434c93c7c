"""The next study's search for LoRA's successors (``studies/v3/search_variants.yml``), read beside LoRA's.

- ``variant_name(record)``: "rsLoRA r=8", "LoRA+ r=8", "DoRA r=8", "PiSSA r=8" or "LoRA r=8".
- ``successor_search(variant_records, lora_records)``: per variant, the rates its stage 1 tried
  and their held-out accuracies, the best and where it sits, beside LoRA's own stage 1 at the same
  rank (from the second study's search), and how far the best rate moved from LoRA's.
"""

from __future__ import annotations

import pandas as pd

from lora_lib.registry import with_defaults

from .aggregate import format_lr
from .protocol import clean_search, edges, search_table
from .record import Record


def config_variant(method: str, hparams: dict | None, loraplus_ratio: float | None = None) -> str:
    """A LoRA-family configuration's name by what it changes: DoRA and PiSSA by method, rsLoRA
    by its scaling, LoRA+ by B's rate; plain LoRA otherwise (on its default weights)."""
    full = with_defaults(method, hparams)
    if method in ("dora", "pissa"):
        name = {"dora": "DoRA", "pissa": "PiSSA"}[method]
    elif method != "lora":
        raise ValueError(f"{method!r} is not of the LoRA family (lora, dora, pissa)")
    elif loraplus_ratio is not None:
        name = "LoRA+"
    else:
        name = "rsLoRA" if full["use_rslora"] else "LoRA"
    return f"{name} r={full['rank']}"


def variant_name(record: Record) -> str:
    """A LoRA-family run's name by what it changes (``config_variant``)."""
    try:
        return config_variant(record.method, record.config.hparams, record.config.loraplus_ratio)
    except ValueError as err:
        raise ValueError(f"run {record.run_id}: {err}") from None


def _stage_one(records: list[Record]) -> pd.DataFrame:
    """The runs of a stage 1 on the clean slice with the mean head at seed 0, in either precision
    (the next study's search runs in bf16), each named by ``variant_name``."""
    search = search_table(records, eval_split="sentences")
    search = search[(search["stage"] == 1) & (search["head"] == "mean") & (search["seed"] == 0)]
    by_id = {r.run_id: r for r in records}
    return search.assign(configuration=search["run_id"].map(lambda i: variant_name(by_id[i])))


def _best_rates(variant_records: list[Record], lora_records: list[Record]):
    """The variants' stage 1 (``_stage_one``), its ``edges`` per variant, and LoRA's own stage-1
    ``edges`` (plain LoRA at alpha = 16, named "LoRA r=8" for query and value), with a
    ValueError for a variant's rank that LoRA's search never tried."""
    if not variant_records:
        raise ValueError("no successor runs: run lora-sweep studies/v3/search_variants.yml first")
    searched = _stage_one(variant_records)
    variants = edges(searched)
    plain = clean_search(lora_records)
    lora = edges(plain[(plain["stage"] == 1) & (plain["method"] == "lora") & (plain["rule"] == "α = 16")])
    for name, row in variants.iterrows():
        if f"LoRA r={int(row['rank'])}" not in lora.index:
            raise ValueError(f"LoRA's search never tried LoRA r={int(row['rank'])}, to set {name} beside it")
    return searched, variants, lora


def best_rates(variant_records: list[Record], lora_records: list[Record]) -> dict[str, tuple[float, float]]:
    """Per variant of the successors' stage 1: its best rate, and LoRA's best stage-1 rate at the same rank."""
    _, variants, lora = _best_rates(variant_records, lora_records)
    return {
        name: (float(row["best"]), float(lora.loc[f"LoRA r={int(row['rank'])}", "best"]))
        for name, row in variants.iterrows()
    }


def successor_search(variant_records: list[Record], lora_records: list[Record]) -> pd.DataFrame:
    """One row per variant of ``variant_records`` (stage 1 on the clean slice): the rates tried,
    their precision and held-out accuracies (%), the best rate and its accuracy, where it sits, and LoRA's
    best stage-1 rate at the same rank on its default weights (from ``lora_records``, the second
    study's search) with the ratio of LoRA's best rate to the variant's. A ValueError names a
    rank that LoRA's search never tried."""
    searched, variants, lora = _best_rates(variant_records, lora_records)
    rows = []
    for name, row in variants.iterrows():
        reference = f"LoRA r={int(row['rank'])}"
        rows.append(
            {
                "variant": name,
                "precision": ", ".join(sorted(set(searched.loc[searched["configuration"] == name, "precision"]))),
                "rates tried": row["tried"],
                "held-out accuracy (%)": row["accuracies"],
                "best rate": format_lr(row["best"]),
                "best (%)": row["accuracy"],
                "best sits": row["edge"],
                "LoRA's best rate": format_lr(lora.loc[reference, "best"]),
                "LoRA's best (%)": lora.loc[reference, "accuracy"],
                "LoRA's rate ÷ this rate": round(lora.loc[reference, "best"] / row["best"], 2),
            }
        )
    return pd.DataFrame(rows).set_index("variant")
