"""The result record: one JSON per finished run, a versioned schema, atomic writes.

A record is written last, after the run's adapter weights, and atomically (a temporary
file, then a rename), so a folder never holds a half-written record and a killed run
leaves none. ``load_results(folder)`` validates every record and returns a DataFrame.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pandas as pd

SCHEMA_VERSION = 1

# The keys every record has, and what each holds: a type, or a dict of required sub-keys.
SCHEMA = {
    "schema_version": int,
    "run_id": str,
    "method": str,
    "config": dict,
    "params": {"total": int, "trainable": int, "trainable_pct": float, "groups": dict},
    "metrics": {"eval_split": str, "dev_accuracy": float, "dev_loss": float},
    "cost": {
        "train_seconds": float,
        "train_examples": int,
        "train_tokens": int,
        "train_examples_per_second": float,
        "train_tokens_per_second": float,
        "peak_rss_mb": float,
    },
    "history": {"train": list, "eval": list},
    "environment": dict,
}


class RecordError(ValueError):
    """A result record that is not valid JSON or does not follow the schema."""


def validate_record(record, source: str = "record") -> dict:
    """Check ``record`` against the schema; raise ``RecordError`` naming ``source`` and the key."""
    if not isinstance(record, dict):
        raise RecordError(f"{source}: a record is a JSON object, got {type(record).__name__}")
    version = record.get("schema_version")
    if version != SCHEMA_VERSION:
        raise RecordError(
            f"{source}: schema_version is {version!r}, this lora_lib reads version {SCHEMA_VERSION}; "
            "rerun the experiment to write a current record"
        )
    _check(record, SCHEMA, source, "")
    accuracy = record["metrics"]["dev_accuracy"]
    if not 0.0 <= accuracy <= 1.0:
        raise RecordError(f"{source}: metrics.dev_accuracy is {accuracy}, expected a value in [0, 1]")
    return record


def _check(value: dict, schema: dict, source: str, prefix: str) -> None:
    for key, expected in schema.items():
        where = f"{prefix}{key}"
        if key not in value:
            raise RecordError(f"{source}: missing key {where!r}")
        if isinstance(expected, dict):
            if not isinstance(value[key], dict):
                raise RecordError(f"{source}: {where!r} is {type(value[key]).__name__}, expected an object")
            _check(value[key], expected, source, where + ".")
            continue
        ok = isinstance(value[key], expected) and not isinstance(value[key], bool)
        if expected is float:  # JSON writes 1.0 as 1.0, but 3 is a fine float too
            ok = isinstance(value[key], (int, float)) and not isinstance(value[key], bool) and math.isfinite(value[key])
        if not ok:
            raise RecordError(f"{source}: {where!r} is {value[key]!r}, expected {expected.__name__}")


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename: all or nothing."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_record(record: dict, folder: str | Path) -> Path:
    """Validate ``record`` and write it as ``<folder>/<run_id>.json``, atomically."""
    validate_record(record, source=f"record {record.get('run_id')!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{record['run_id']}.json"
    write_atomic(path, json.dumps(record, indent=1, sort_keys=False) + "\n")
    return path


def load_record(path: str | Path) -> dict:
    """Read and validate one record."""
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise RecordError(f"{path}: not valid JSON ({err})") from err
    validate_record(record, source=str(path))
    if path.stem != record["run_id"]:
        raise RecordError(f"{path}: the file name does not match its run_id {record['run_id']!r}")
    return record


def record_exists(folder: str | Path, run_id: str) -> bool:
    """Whether ``folder`` holds a valid record for ``run_id`` (a run to skip when resuming)."""
    path = Path(folder) / f"{run_id}.json"
    if not path.is_file():
        return False
    try:
        load_record(path)
    except RecordError:
        return False
    return True


def load_results(folder: str | Path, eval_split: str | None = None) -> pd.DataFrame:
    """One row per record in ``folder`` (every ``*.json``), sorted by run id; with ``eval_split``
    ("validation" for the grid), only the records scored on that split.

    Columns: ``run_id, method, model_name, rank, seed, lr, epochs, eval_split,
    dev_accuracy, dev_loss, total, trainable, trainable_pct, train_seconds,
    train_examples_per_second, train_tokens_per_second, peak_rss_mb, hparams``.
    """
    return results_table(load_records(folder, eval_split))


def load_records(folder: str | Path, eval_split: str | None = None) -> list[dict]:
    """Every record in ``folder`` (every ``*.json``, checked against the schema), by run id; with
    ``eval_split``, only the records scored on that split."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no results folder at {folder}")
    records = (load_record(path) for path in folder.glob("*.json"))
    return sorted((r for r in records if eval_split in (None, r["metrics"]["eval_split"])), key=lambda r: r["run_id"])


# The training loss a run ends on: the mean of its last logged losses (each already a mean over
# ``logging_steps`` steps), so that one noisy log does not stand for the end of training.
TAIL_LOGS = 10


def train_loss_tail(record: dict, logs: int = TAIL_LOGS) -> float:
    """Mean training loss over the record's last ``logs`` logged values (NaN if none were logged)."""
    losses = [entry["loss"] for entry in record["history"]["train"] if "loss" in entry][-logs:]
    return sum(losses) / len(losses) if losses else math.nan


def results_table(records: list[dict]) -> pd.DataFrame:
    """``load_results``'s table, from records already read."""
    rows = []
    for record in records:
        config = record["config"]
        rows.append(
            {
                "run_id": record["run_id"],
                "method": record["method"],
                "model_name": config.get("model_name"),
                "rank": config.get("hparams", {}).get("rank"),
                "seed": config.get("seed"),
                "lr": config.get("lr"),
                "epochs": config.get("epochs"),
                "eval_split": record["metrics"]["eval_split"],
                "dev_accuracy": record["metrics"]["dev_accuracy"],
                "dev_loss": record["metrics"]["dev_loss"],
                "train_loss_tail": train_loss_tail(record),
                **{k: record["params"][k] for k in ("total", "trainable", "trainable_pct")},
                **{k: record["cost"][k] for k in ("train_seconds", "train_examples_per_second",
                                                  "train_tokens_per_second", "peak_rss_mb")},
                "hparams": config.get("hparams", {}),
            }
        )
    columns = ["run_id", "method", "model_name", "rank", "seed", "lr", "epochs", "eval_split", "dev_accuracy",
               "dev_loss", "train_loss_tail", "total", "trainable", "trainable_pct", "train_seconds", "train_examples_per_second",
               "train_tokens_per_second", "peak_rss_mb", "hparams"]
    return pd.DataFrame(rows, columns=columns)
