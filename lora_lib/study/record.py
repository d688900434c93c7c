"""The result record: one JSON per finished run, typed, versioned and validated on load.

``Record`` is the one definition: ``train`` builds it, ``save_record`` writes it (atomically,
last, so a killed run leaves none), ``load_record`` validates it, and ``results_table``
flattens records into the table that every summary starts from. Version 1 records (the
first study) are read as they are: version 2 added the per-example predictions and the
config's ``head``, which every version 1 run had as ``"frozen-pooler"``. Version 3 keeps the
predictions in the evaluation split's order: version 2's came in the length-grouped order of
transformers 5's evaluation sampler (``python -m lora_lib.study.repair FOLDER`` puts them back).
Version 4 (the third study) adds ``curve``: evaluations during training, each with every
sentence's predicted label as a string of 0s and 1s (a thousand sentences in a kilobyte);
earlier records have none.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lora_lib.files import write_atomic

from .config import RunConfig

SCHEMA_VERSION = 4
READABLE_VERSIONS = (1, 2, 3, 4)
# The training loss a run ends on: the mean of its last logged losses (each already a mean over
# ``logging_steps`` steps), so that one noisy log does not stand for the end of training.
TAIL_LOGS = 10
# The first study's records, archived in this subfolder of the records' folder when the second
# study's grid began, so that the second study's tables never mix them in.
ARCHIVE = "v1"
# The records that the results chapters, the landing page and the README report (relative to the
# repository, and to book/, which links executed/): the second study's grid.
REPORTED = "executed"
# LoRA's ranks above 16 at the rate of the grid's lower ranks (studies/v2/rank_rate.yml), in this
# subfolder of the grid's records: they join the grid's rank series only, never its tables.
RANK_RATE = "rank_rate"


class RecordError(ValueError):
    """A result record that is not valid JSON or does not follow the schema."""


class _Part(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)  # a NaN or infinite number is not a result


class Params(_Part):
    total: int
    trainable: int
    trainable_pct: float
    groups: dict[str, dict[str, int]]


class Metrics(_Part):
    eval_split: str
    dev_accuracy: float = Field(ge=0, le=1)
    dev_loss: float


class Cost(_Part):
    train_seconds: float
    train_examples: int
    train_tokens: int
    train_examples_per_second: float
    train_tokens_per_second: float
    peak_rss_mb: float


class History(_Part):
    train: list[dict]
    eval: list[dict]


class Predictions(BaseModel):
    """Each evaluation sentence's predicted label and probability of the positive class, in
    the order of the evaluation split: what paired comparisons between runs need."""

    model_config = ConfigDict(extra="forbid")

    label: list[int]
    prob_positive: list[float]

    @field_validator("prob_positive")
    @classmethod
    def _probabilities(cls, values: list[float]) -> list[float]:
        if any(not 0.0 <= p <= 1.0 for p in values):
            raise ValueError("every probability must be in [0, 1]")
        return values


class SplitScore(BaseModel):
    """One evaluation of a curve on one split: its accuracy and loss, and each sentence's
    predicted label in the split's order, as ``"0110..."``."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    accuracy: float = Field(ge=0, le=1)
    loss: float
    predicted: str = Field(pattern=r"^[01]+$")

    def labels(self) -> list[int]:
        return [int(c) for c in self.predicted]


class CurvePoint(BaseModel):
    """The evaluations after ``step`` steps, ``train_seconds`` of training (evaluations
    excluded), with the machine's 1-minute load average then."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    step: int = Field(ge=1)
    epoch: float
    train_seconds: float = Field(ge=0)
    load_average: float
    splits: dict[str, SplitScore]


class Record(BaseModel):
    """One finished run."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int
    run_id: str
    method: str
    description: str
    config: RunConfig
    params: Params
    metrics: Metrics
    cost: Cost
    history: History
    environment: dict
    adapter_file: str | None = None
    analysis: dict | None = None
    predictions: Predictions | None = None
    curve: list[CurvePoint] | None = None

    @model_validator(mode="before")
    @classmethod
    def _read_version_1(cls, data):
        """Version 1 records predate the choice of head: they all read the frozen, untrained pooler."""
        if isinstance(data, dict) and data.get("schema_version") == 1 and isinstance(data.get("config"), dict):
            data = {**data, "config": {"head": "frozen-pooler", **data["config"]}}
        return data

    @field_validator("schema_version")
    @classmethod
    def _readable(cls, version: int) -> int:
        if version not in READABLE_VERSIONS:
            raise ValueError(f"this lora_lib reads schema versions {READABLE_VERSIONS}, got {version}")
        return version

    @property
    def seed(self) -> int:
        return self.config.seed

    def group_key(self) -> str:
        """Runs with the same key differ only in their seed."""
        return self.config.group_key()

    def train_loss_tail(self, logs: int = TAIL_LOGS) -> float:
        """Mean training loss over the last ``logs`` logged values (NaN if none were logged)."""
        losses = [entry["loss"] for entry in self.history.train if "loss" in entry][-logs:]
        return sum(losses) / len(losses) if losses else math.nan

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json", exclude_none=False), indent=1) + "\n"


def save_record(record: Record, folder: str | Path) -> Path:
    """Write ``record`` as ``<folder>/<run_id>.json``, atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return write_atomic(folder / f"{record.run_id}.json", record.to_json())


def load_record(path: str | Path) -> Record:
    """Read and validate one record; a bad file raises ``RecordError`` naming it and the field."""
    path = Path(path)
    try:
        record = Record.model_validate_json(path.read_bytes())
    except (ValidationError, TypeError) as err:  # TypeError: a hyperparameter its method does not take
        raise RecordError(f"{path}: not a valid run record: {err}") from err
    if path.stem != record.run_id:
        raise RecordError(f"{path}: the file name does not match its run_id {record.run_id!r}")
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


def load_records(folder: str | Path, eval_split: str | None = None) -> list[Record]:
    """Every record in ``folder`` (every ``*.json``), by run id; with ``eval_split``, only the
    records scored on that split."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no results folder at {folder}")
    records = (load_record(path) for path in folder.glob("*.json"))
    return sorted((r for r in records if eval_split in (None, r.metrics.eval_split)), key=lambda r: r.run_id)


def by_configuration(records: list[Record]) -> dict[str, list[Record]]:
    """The records grouped by ``Record.group_key`` (runs that differ only in their seed), each
    configuration in the order its first record came."""
    groups: dict[str, list[Record]] = {}
    for record in records:
        groups.setdefault(record.group_key(), []).append(record)
    return groups


COLUMNS = {
    "run_id": "the run's id",
    "group": "the configuration without its seed (runs with the same group differ only in their seed)",
    "method": "the registry's name of the method",
    "model_name": "the base model (None: the packaged default)",
    "rank": "LoRA's rank (None for other methods)",
    "seed": "the run's seed",
    "lr": "the peak learning rate",
    "epochs": "the epochs trained",
    "eval_split": "validation, or holdout for a tuning run",
    "dev_accuracy": "accuracy on the evaluation split (0 to 1)",
    "dev_loss": "loss on the evaluation split",
    "train_loss_tail": f"the mean of the last {TAIL_LOGS} logged training losses",
    "total": "parameters in the model",
    "trainable": "parameters trained",
    "trainable_pct": "100 * trainable / total",
    "train_seconds": "training time, evaluation excluded",
    "train_examples_per_second": "training throughput",
    "train_tokens_per_second": "training throughput in real (unpadded) tokens",
    "peak_rss_mb": "peak resident memory while training (MiB)",
    "hparams": "the method's hyperparameters, defaults included",
}


def results_table(records: list[Record]) -> pd.DataFrame:
    """One row per record; the columns are ``COLUMNS``."""
    rows = [
        {
            "run_id": r.run_id,
            "group": r.group_key(),
            "method": r.method,
            "model_name": r.config.model_name,
            "rank": r.config.hparams.get("rank"),
            "seed": r.config.seed,
            "lr": r.config.lr,
            "epochs": r.config.epochs,
            "eval_split": r.metrics.eval_split,
            "dev_accuracy": r.metrics.dev_accuracy,
            "dev_loss": r.metrics.dev_loss,
            "train_loss_tail": r.train_loss_tail(),
            "total": r.params.total,
            "trainable": r.params.trainable,
            "trainable_pct": r.params.trainable_pct,
            "train_seconds": r.cost.train_seconds,
            "train_examples_per_second": r.cost.train_examples_per_second,
            "train_tokens_per_second": r.cost.train_tokens_per_second,
            "peak_rss_mb": r.cost.peak_rss_mb,
            "hparams": r.config.hparams,
        }
        for r in records
    ]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def load_results(folder: str | Path, eval_split: str | None = None) -> pd.DataFrame:
    """``results_table`` of the records in ``folder``."""
    return results_table(load_records(folder, eval_split))
