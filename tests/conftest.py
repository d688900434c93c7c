import copy
import os

# The tests never reach the Hugging Face Hub: fail at once instead of retrying a dead network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from transformers import BertConfig, BertForSequenceClassification  # noqa: E402

from lora_lib.models import TINY_RANDOM, load_model  # noqa: E402

_LOADED = {}


def _cached(name, head="mean"):
    if (name, head) not in _LOADED:
        torch.manual_seed(0)
        _LOADED[name, head] = load_model(name, head=head)
    model, tokenizer = _LOADED[name, head]
    return copy.deepcopy(model).eval(), tokenizer


@pytest.fixture(params=[TINY_RANDOM, pytest.param(None, marks=pytest.mark.slow, id="default-model")])
def model_and_tokenizer(request):
    """A fresh copy of the tiny random BERT, and (marked slow) of the default packaged one."""
    return _cached(request.param)


@pytest.fixture
def tiny():
    return _cached(TINY_RANDOM)


@pytest.fixture
def tiny_pooler():
    """The tiny random BERT with its [CLS] pooler, frozen (the first study's head)."""
    return _cached(TINY_RANDOM, head="frozen-pooler")


@pytest.fixture
def base_twin():
    """Two identical copies of one model, for comparing a method against the plain model."""

    def make(name=TINY_RANDOM):
        model, tokenizer = _cached(name)
        return model, copy.deepcopy(model), tokenizer

    return make


@pytest.fixture
def bert_base_shape():
    """bert-base-uncased's architecture with a 2-label head, on the meta device: no weights."""

    def make():
        with torch.device("meta"):
            return BertForSequenceClassification(BertConfig(num_labels=2))

    return make


@pytest.fixture
def batch(tiny):
    _, tokenizer = tiny
    sentences = ["a gripping , funny film", "it 's dull and far too long", "not bad at all"]
    return dict(tokenizer(sentences, return_tensors="pt", padding=True))


def unavailable(what: str):
    """Skip a test whose input is missing here, or in CI fail it: CI provides every input."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} (CI must provide it before the tests run)")
    pytest.skip(what)


@pytest.fixture(scope="session")
def sst2_dir():
    """The real GLUE SST-2 folder from $SST2_DIR. CI always has it; elsewhere the test skips."""
    folder = os.environ.get("SST2_DIR")
    if not folder:
        unavailable("set SST2_DIR to the GLUE SST-2 folder to run the tests on real data")
    return folder


def write_tsv(folder, name, text):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")
    return folder / name


@pytest.fixture
def small_sst2(tmp_path):
    """A folder of small, well-formed GLUE SST-2 files (sentences with quote marks included)."""
    folder = tmp_path / "sst2"
    write_tsv(
        folder,
        "train.tsv",
        "sentence\tlabel\n" + "".join(f'it \'s a "great" film number {i} \t{i % 2}\n' for i in range(40)),
    )
    write_tsv(folder, "dev.tsv", "sentence\tlabel\nbad 'n boring\t0\nlovely\t1\n")
    return folder


def make_record(
    run_id="lora_r8_s0",
    method="lora",
    rank=8,
    seed=0,
    accuracy=0.9,
    lr=1e-3,
    trainable_pct=10.0,
    speed=32.0,
    memory=512.0,
    eval_split="validation",
    predictions=None,
    seconds=600.0,
    hparams=None,
    analysis=None,
    **config,
):
    """A record as ``run`` writes it (schema version 2), with made-up numbers. ``hparams``
    replaces the method's hyperparameters (else ``{"rank": rank}``)."""
    from lora_lib.study.config import RunConfig
    from lora_lib.study.record import SCHEMA_VERSION, Record

    if hparams is None:
        hparams = {"rank": rank} if rank is not None else {}
    return Record(
        schema_version=SCHEMA_VERSION,
        run_id=run_id,
        method=method,
        description=f"{method}, made up for a test",
        config=RunConfig(
            method=method, hparams=hparams, seed=seed, lr=lr, run_id=run_id, eval_split=eval_split, **config
        ),
        params={
            "total": 100_000,
            "trainable": int(trainable_pct * 1_000),
            "trainable_pct": trainable_pct,
            "groups": {},
        },
        metrics={"eval_split": eval_split, "dev_accuracy": accuracy, "dev_loss": 0.3},
        cost={
            "train_seconds": seconds,
            "train_examples": 64,
            "train_tokens": 900,
            "train_examples_per_second": speed,
            "train_tokens_per_second": 450.0,
            "peak_rss_mb": memory,
        },
        history={"train": [{"step": 1, "epoch": 0.5, "loss": 0.7, "learning_rate": lr}], "eval": []},
        environment={"cpu": "test"},
        predictions=predictions,
        analysis=analysis,
    )
