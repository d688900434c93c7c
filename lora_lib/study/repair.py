"""Put version 2 records' predictions back in the evaluation split's order.

transformers 5 evaluates in length-grouped batches, in an order its sampler draws from the
run's seed, so version 2 records kept each run's predictions in that order. The order is
deterministic: ``get_length_grouped_indices`` of the split's token lengths, with the
evaluation batch size and a generator seeded with the run's seed. A repaired record is
checked before it is written: its predictions against the split's labels must give exactly
the accuracy it recorded. It is then written as version 3.

    python -m lora_lib.study.repair executed/tuning
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from transformers.trainer_pt_utils import get_length_grouped_indices

from lora_lib.models import load_model

from .record import SCHEMA_VERSION, Record, load_record, save_record
from .train import prepare_data


def split_order(record: Record, lengths: list[int], labels) -> Record:
    """``record`` with its predictions in the split's order, as version 3; ``ValueError`` if
    they do not then reproduce its accuracy."""
    grouped = get_length_grouped_indices(
        lengths, record.config.eval_batch_size, generator=torch.Generator().manual_seed(record.config.seed)
    )
    order = np.empty(len(grouped), dtype=int)
    order[np.asarray(grouped)] = np.arange(len(grouped))  # position in the split -> position in the record
    label = [record.predictions.label[i] for i in order]
    accuracy = float(np.mean(np.asarray(label) == np.asarray(labels)))
    if abs(accuracy - record.metrics.dev_accuracy) > 1e-9:
        raise ValueError(
            f"run {record.run_id}: reordered predictions give accuracy {accuracy:.4f}, "
            f"the record says {record.metrics.dev_accuracy:.4f}; left as it is"
        )
    predictions = record.predictions.model_copy(
        update={"label": label, "prob_positive": [record.predictions.prob_positive[i] for i in order]}
    )
    return record.model_copy(update={"predictions": predictions, "schema_version": SCHEMA_VERSION})


def repair_folder(folder: str | Path) -> list[str]:
    """Repair every version 2 record with predictions in ``folder``; return their run ids."""
    folder = Path(folder)
    records = [(p, load_record(p)) for p in sorted(folder.glob("*.json"))]
    todo = [(p, r) for p, r in records if r.schema_version == 2 and r.predictions is not None]
    splits: dict[tuple, tuple] = {}
    repaired = []
    for path, record in todo:
        config = record.config
        key = (config.model_name, config.eval_split, config.holdout_size, config.max_length, config.data_dir)
        if key not in splits:
            _, tokenizer = load_model(config.model_name, head="frozen-pooler")
            _, evaluation = prepare_data(config.model_copy(update={"max_train_samples": None}), tokenizer)
            splits[key] = (evaluation["length"], evaluation["label"])
        save_record(split_order(record, *splits[key]), path.parent)
        repaired.append(record.run_id)
    return repaired


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lora_lib.study.repair", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="a folder of records, e.g. executed/tuning")
    args = parser.parse_args(argv)
    repaired = repair_folder(args.folder)
    for run_id in repaired:
        print(run_id)
    print(f"{len(repaired)} record(s) put in the split's order")
    return 0


if __name__ == "__main__":
    sys.exit(main())
