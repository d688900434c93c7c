"""``RunConfig``: the one definition of a run's knobs and their defaults.

The training notebook's parameters, the keys of a grid file and the sweep's checks all come
from here, and its defaults are the study's: the mean head, 1.5 epochs, and each method's
searched rate (``lora_lib.study.rates``), so that ``RunConfig(method="houlsby")`` is the
study's Houlsby run. A run is described flat, as papermill passes it (``method=lora, rank=8, lr=1e-3``):
``RunConfig.parameters()`` lists those names with their defaults, and
``RunConfig.from_parameters(**flat)`` turns them into a checked configuration. The method's
hyperparameters (``rank``, ``reduction_factor``, ...) are whatever the method registry's
functions take; ``None`` means the method's own default.
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lora_lib.registry import METHODS, check_method, hyperparameters, with_defaults

from .rates import study_rate

MAX_LENGTH = 128


class RunConfig(BaseModel):
    """Everything a run depends on. Unknown keys and out-of-range values are errors."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    method: str = "lora"
    hparams: dict = Field(default_factory=dict)  # the method's hyperparameters, e.g. {"rank": 8}
    model_name: str | None = None  # None: the packaged default model
    # What the classifier reads (lora_lib.models): the mean of the token states, which the study
    # chose for every method (chapter 3); pooler is BERT's [CLS] pooler, trained with the head.
    head: Literal["auto", "mean", "pooler", "frozen-pooler"] = "mean"
    # None: the rate the study chose for this method and configuration (lora_lib.study.rates).
    lr: float | None = Field(None, gt=0)
    epochs: float = Field(1.5, gt=0)  # the study's schedule: 1.5 epochs over SST-2's training set
    # LoRA+ (lora_lib.variants.loraplus_param_groups): B learns at this multiple of lr; None: at lr.
    loraplus_ratio: float | None = Field(None, ge=1)
    max_steps: int | None = Field(None, ge=1)  # stops after this many steps instead of after `epochs`
    batch_size: int = Field(32, ge=1)
    eval_batch_size: int = Field(128, ge=1)
    warmup_ratio: float = Field(0.06, ge=0, lt=1)
    # Warm up over this many steps instead of a share of the run: a run made longer then starts
    # the same way (the third study's curves, whose rate stays constant after the warm-up).
    warmup_steps: int | None = Field(None, ge=0)
    # After the warm-up the rate decays linearly to zero at the run's end, or stays constant.
    lr_schedule: Literal["linear", "constant"] = "linear"
    weight_decay: float = Field(0.01, ge=0)
    seed: int = 0
    max_train_samples: int | None = Field(None, ge=1)  # None: the whole training set
    # For tuning, a fixed slice of the training set instead: "sentences", whole sentences with every
    # training phrase inside them dropped (lora_lib.study.data.hold_out_sentences); "holdout", random
    # phrases, which overlap training (the first study's search).
    eval_split: Literal["validation", "sentences", "holdout"] = "validation"
    holdout_size: int = Field(1000, ge=1)
    # A learning curve (the third study): every this many epochs, evaluate on the clean tuning
    # slice (``holdout_size`` whole training sentences, taken out of training as eval_split
    # "sentences" does) and on the validation split, keeping each sentence's prediction. None: no curve.
    curve_every: float | None = Field(None, gt=0)
    max_length: int = Field(MAX_LENGTH, ge=8)
    precision: Literal["fp32", "bf16"] = "fp32"
    # The AdamW implementation: None is transformers' default (torch's fused AdamW since torch 2.8;
    # the for-loop one before), "adamw_torch_fused" or "adamw_torch" (for-loop on CPU, foreach on GPU).
    optim: Literal["adamw_torch_fused", "adamw_torch"] | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    logging_steps: int = Field(50, ge=1)
    data_dir: str | None = None  # None: $SST2_DIR, else the Hub
    output_dir: str = "runs"  # where the record and adapter go, relative to the working directory
    run_id: str | None = None  # None: derived, e.g. "lora_r8_s0"

    @model_validator(mode="after")
    def _check(self) -> RunConfig:
        check_method(self.method, self.hparams)
        if self.lr is None and self.loraplus_ratio is not None:
            raise ValueError("the study chose no learning rate for LoRA+ (loraplus_ratio): pass lr, A's rate")
        if self.curve_every is not None and self.eval_split != "validation":
            raise ValueError(
                "curve_every evaluates on the held-out sentences and on the validation split, and reports "
                f"the validation split at the end: set eval_split='validation', not {self.eval_split!r}"
            )
        if self.curve_every is not None and self.max_steps is not None:
            raise ValueError("curve_every is a share of an epoch: set epochs, not max_steps")
        if self.lr is None:
            self.lr = study_rate(self.method, self.hparams)
        if self.run_id is None:
            defaults = METHODS[self.method].defaults
            rank = f"_r{self.hparams.get('rank', defaults['rank'])}" if "rank" in defaults else ""
            self.run_id = f"{self.method}{rank}_s{self.seed}"
        return self

    # --- the flat form: notebook parameters and grid keys ------------------------------------

    @classmethod
    def parameters(cls) -> dict[str, object]:
        """The flat parameter names and their defaults: every field but ``hparams``, then every
        method hyperparameter with ``None`` (the method's own default)."""
        fields = {name: field.get_default(call_default_factory=True) for name, field in cls.model_fields.items()}
        del fields["hparams"]
        return {**fields, **dict.fromkeys(hyperparameters())}

    @classmethod
    def from_parameters(cls, **flat) -> RunConfig:
        """A configuration from flat parameters, as the notebook and a grid entry give them.

        A hyperparameter that the method does not take is an error, not ignored; a
        comma-separated string stands for a list where the method's default is a tuple
        (``targets="query,value"``).
        """
        known = cls.parameters()
        unknown = sorted(set(flat) - set(known))
        if unknown:
            raise TypeError(f"unknown run parameter(s) {', '.join(unknown)}; a run takes: {', '.join(known)}")
        names = hyperparameters()
        given = {k: v for k, v in flat.items() if k in names and v is not None}
        method = flat.get("method", known["method"])
        check_method(method, given)
        defaults = METHODS[method].defaults
        hparams = {
            k: [part.strip() for part in v.split(",") if part.strip()]
            if isinstance(defaults[k], tuple) and isinstance(v, str)
            else v
            for k, v in given.items()
        }
        return cls(**{k: v for k, v in flat.items() if k not in names}, hparams=hparams)

    def group_key(self, ignoring: tuple[str, ...] = ()) -> str:
        """What runs that differ only in their seed share: the configuration without its seed,
        its name and where it was written; and without the fields in ``ignoring`` too, for runs
        compared across them (the head, the precision)."""
        fields = self.model_dump(exclude={"seed", "run_id", "output_dir", "data_dir", "device", *ignoring})
        fields["hparams"] = with_defaults(self.method, self.hparams)
        return json.dumps(fields, sort_keys=True, default=list)
