"""GLUE SST-2: loading and checking the splits, tokenizing, and batching by length.

The splits come from a folder of GLUE TSV files (``data_dir``, else ``$SST2_DIR``), else
from the Hugging Face Hub (``nyu-mll/glue``, ``sst2``). Either way they are checked: the
columns, the labels (0 or 1) and the row counts. A bad file is named in the error; nothing
falls back to anything else.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
from datasets import Dataset, DatasetDict
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

from .config import MAX_LENGTH

FILES = {"train": "train.tsv", "validation": "dev.tsv"}
SST2_ROWS = {"train": 67_349, "validation": 872}
COLUMNS = ["sentence", "label"]
# The tuning split (``holdout_size`` training sentences) is always the same slice.
HOLDOUT_SEED = 0


class DataError(ValueError):
    """A data file that is missing or does not hold what SST-2 should."""


def read_glue_tsv(path: Path) -> dict[str, list]:
    """Read one GLUE SST-2 TSV file (tab-separated, a header line, no quoting)."""
    if not path.is_file():
        raise DataError(f"{path}: no such file; a GLUE SST-2 folder holds {' and '.join(FILES.values())}")
    sentences, labels = [], []
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header != COLUMNS:
            raise DataError(f"{path}: the header is {header!r}, expected the columns {COLUMNS!r} separated by a tab")
        for line, row in enumerate(reader, start=2):
            if len(row) != 2:
                raise DataError(f"{path}, line {line}: {len(row)} fields, expected 2 (sentence, label)")
            sentence, label = row
            if label not in ("0", "1"):
                raise DataError(f"{path}, line {line}: label {label!r}, expected 0 or 1")
            if not sentence.strip():
                raise DataError(f"{path}, line {line}: the sentence is empty")
            sentences.append(sentence)
            labels.append(int(label))
    return {"sentence": sentences, "label": labels}


def load_sst2(data_dir: str | Path | None = None, expected_rows: dict[str, int] | None = SST2_ROWS) -> DatasetDict:
    """The SST-2 ``train`` and ``validation`` splits, columns ``sentence`` and ``label``.

    ``data_dir`` (else ``$SST2_DIR``) is a folder with GLUE's ``train.tsv`` and ``dev.tsv``;
    with neither, the splits come from the Hugging Face Hub. ``expected_rows`` are the row
    counts to check (the full GLUE splits by default); pass ``None`` for a folder of your own
    smaller files.
    """
    if data_dir is None and os.environ.get("SST2_DIR"):
        data_dir = os.environ["SST2_DIR"]
    if data_dir is None:
        splits = _load_from_hub()
        source = {split: f"nyu-mll/glue sst2 {split}" for split in FILES}
    else:
        folder = Path(data_dir)
        if not folder.is_dir():
            raise DataError(
                f"SST-2 folder {folder} does not exist; point data_dir or SST2_DIR at the GLUE SST-2 folder"
            )
        splits = {split: read_glue_tsv(folder / name) for split, name in FILES.items()}
        source = {split: str(folder / name) for split, name in FILES.items()}
    for split, columns in splits.items():
        rows = len(columns["label"])
        if expected_rows is not None and rows != expected_rows[split]:
            raise DataError(
                f"{source[split]}: {rows:,} rows, expected {expected_rows[split]:,} for the full SST-2 {split} split"
            )
    return DatasetDict({split: Dataset.from_dict(columns) for split, columns in splits.items()})


def _load_from_hub() -> dict[str, dict[str, list]]:
    from datasets import load_dataset

    try:
        glue = load_dataset("nyu-mll/glue", "sst2")
    except Exception as err:  # the Hub client raises many kinds of errors when offline
        raise DataError(
            "could not load SST-2 from the Hugging Face Hub (nyu-mll/glue, sst2). Without the Hub, "
            "set SST2_DIR (or pass data_dir) to a folder holding GLUE's train.tsv and dev.tsv"
        ) from err
    return {split: {"sentence": glue[split]["sentence"], "label": glue[split]["label"]} for split in FILES}


def split_holdout(train: Dataset, size: int) -> tuple[Dataset, Dataset]:
    """Split a fixed, seeded slice of ``size`` sentences off the training set, for tuning.

    Returns ``(rest, holdout)``. The slice never depends on the run's seed, so every run of
    a hyperparameter search is scored on the same sentences, none of them from validation.
    """
    if not 0 < size < len(train):
        raise ValueError(f"holdout_size must be between 1 and {len(train) - 1}, got {size}")
    order = np.random.default_rng(HOLDOUT_SEED).permutation(len(train))
    return train.select(np.sort(order[size:])), train.select(np.sort(order[:size]))


def hold_out_sentences(train: Dataset, size: int, min_words: int = 8) -> tuple[Dataset, Dataset]:
    """Hold out ``size`` whole sentences for tuning, and drop every training phrase inside them.

    SST-2's training set holds every phrase of each review sentence's parse tree, so a slice
    of random phrases is mostly pieces of sentences that stay in training (``split_holdout``).
    Here the slice is whole sentences: phrases of at least ``min_words`` words that occur
    inside no other phrase, drawn in a fixed seeded order; and every training phrase that
    occurs inside a held-out sentence is dropped from training. Returns ``(rest, holdout)``;
    no held-out sentence then occurs inside a phrase of ``rest`` (``inside_any`` says so).
    """
    texts = [text.strip() for text in train["sentence"]]
    if not 0 < size < len(texts):
        raise ValueError(f"holdout_size must be between 1 and {len(texts) - 1}, got {size}")
    joined = "\n".join(f" {text} " for text in texts)
    chosen = []
    for i in np.random.default_rng(HOLDOUT_SEED).permutation(len(texts)):
        # Occurring once in the whole set: inside no other phrase, and no duplicate of one.
        if len(texts[i].split()) >= min_words and joined.count(f" {texts[i]} ") == 1:
            chosen.append(int(i))
            if len(chosen) == size:
                break
    if len(chosen) < size:
        raise ValueError(
            f"only {len(chosen)} whole sentences of at least {min_words} words; ask for a smaller holdout_size"
        )
    held = "\n".join(f" {texts[i]} " for i in chosen)
    keep = [i for i, text in enumerate(texts) if f" {text} " not in held]
    return train.select(keep), train.select(sorted(chosen))


# The tuning slices a run can be scored on, by ``RunConfig.eval_split``: each returns ``(rest, held out)``.
HOLDOUT_SPLITS = {"sentences": hold_out_sentences, "holdout": split_holdout}


def evaluation_split(splits: DatasetDict, eval_split: str, holdout_size: int) -> tuple[Dataset, Dataset]:
    """``(training set, evaluation split)`` of a run scored on ``eval_split``: a tuning slice held
    out of the training set (``HOLDOUT_SPLITS``), or the validation split."""
    if eval_split in HOLDOUT_SPLITS:
        return HOLDOUT_SPLITS[eval_split](splits["train"], holdout_size)
    return splits["train"], splits["validation"]


def inside_any(phrases: list[str], corpus: list[str]) -> np.ndarray:
    """For each phrase, whether it occurs word for word inside some phrase of ``corpus``.

    SST-2's training set holds the phrases of each sentence's parse tree, down to single
    words, so a slice held out from it is mostly pieces of sentences that stay in training:
    this measures how much.
    """
    joined = "\n".join(f" {text.strip()} " for text in corpus)
    return np.array([f" {text.strip()} " in joined for text in phrases], dtype=bool)


def subsample(train: Dataset, max_samples: int | None, seed: int) -> Dataset:
    """A seeded subset of ``max_samples`` training examples (all of them for ``None``)."""
    if max_samples is None or max_samples >= len(train):
        return train
    if max_samples < 1:
        raise ValueError(f"max_train_samples must be at least 1, got {max_samples}")
    order = np.random.default_rng(seed).permutation(len(train))
    return train.select(np.sort(order[:max_samples]))


def tokenize(dataset: Dataset | DatasetDict, tokenizer: PreTrainedTokenizerBase, max_length: int = MAX_LENGTH):
    """Tokenize (truncating at ``max_length``, no padding) and add each example's ``length``."""

    def encode(batch):
        encoded = tokenizer(batch["sentence"], truncation=True, max_length=max_length)
        encoded["length"] = [len(ids) for ids in encoded["input_ids"]]
        return encoded

    return dataset.map(encode, batched=True, remove_columns=["sentence"], desc="Tokenizing")


class PadPerBatch(DataCollatorWithPadding):
    """Pads each batch to its own longest sequence; drops the ``length`` column the sampler used."""

    def __call__(self, features):
        return super().__call__([{k: v for k, v in f.items() if k != "length"} for f in features])


def padding_efficiency(
    lengths, batch_size: int, pad_to: int | None = None, grouped: bool = True, seed: int = 0
) -> float:
    """The share of real tokens in the batches one epoch makes (the rest is padding).

    ``grouped`` batches as transformers' ``LengthGroupedSampler`` does (shuffled
    mega-batches of 50 batches, each sorted by length); ``pad_to`` pads every batch to that
    length instead of to its longest sequence, as the reference study's pipeline did.
    """
    import torch
    from transformers.trainer_pt_utils import LengthGroupedSampler

    lengths = list(lengths)
    if grouped:
        order = list(LengthGroupedSampler(batch_size, lengths=lengths, generator=torch.Generator().manual_seed(seed)))
    else:
        order = np.random.default_rng(seed).permutation(len(lengths)).tolist()
    real = padded = 0
    for start in range(0, len(order), batch_size):
        batch = [lengths[i] for i in order[start : start + batch_size]]
        real += sum(batch)
        padded += len(batch) * (pad_to or max(batch))
    return real / padded
