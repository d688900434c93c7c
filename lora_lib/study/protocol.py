"""The learning-rate search as the book shows it: what was tried, what won, what the grid uses.

Every function takes the search's records (``executed/tuning/``) or the table
``search_table`` makes of them; configurations are told apart by their configuration
(stage, method, rank, targets, scaling), never by their run ids.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from lora_lib.registry import METHODS, with_defaults

from . import paired
from .aggregate import config_label, format_lr, label_of, method_order
from .config import RunConfig
from .data import HOLDOUT_SPLITS, inside_any, load_sst2
from .rates import rate_for_rank
from .record import Record
from .stats import t_interval

LORA_DEFAULTS = METHODS["lora"].defaults


def stage_of(config: RunConfig) -> int:
    """Stage 1 trains on a subset for a short schedule; stage 2 on the whole grid's schedule."""
    return 1 if config.max_train_samples is not None else 2


def scaling_rule(config: RunConfig) -> str:
    """How a LoRA configuration scales its update with the rank."""
    hparams = {**LORA_DEFAULTS, **config.hparams}
    if hparams["use_rslora"]:
        return "α / √r (rsLoRA)"
    return "α = 2r (scaling 2)" if hparams["alpha"] == 2 * hparams["rank"] != LORA_DEFAULTS["alpha"] else "α = 16"


def search_table(records: list[Record], eval_split: str = "holdout") -> pd.DataFrame:
    """One row per search run scored on ``eval_split`` (the first study's search: "holdout"): its
    stage, configuration, learning rate and held-out accuracy (%)."""
    rows = []
    for r in (r for r in records if r.metrics.eval_split == eval_split):
        hparams = with_defaults(r.method, r.config.hparams)
        rows.append(
            {
                "run_id": r.run_id,
                "stage": stage_of(r.config),
                "method": r.method,
                "rank": hparams.get("rank"),
                "configuration": config_label(r.method, r.config.hparams),
                "rule": scaling_rule(r.config) if r.method == "lora" else None,
                "lr": r.config.lr,
                "head": r.config.head,
                "seed": r.config.seed,
                "precision": r.config.precision,
                "epochs": r.config.epochs,
                "accuracy": round(r.metrics.dev_accuracy * 100, 2),
                "trainable": r.params.trainable,
            }
        )
    return pd.DataFrame(rows)


# Stage 1 of the second study's search ran in fp32; stage 2 checks each configuration's best two
# rates at the grid's schedule (all of the clean training set, 1.5 epochs) in bf16, which costs
# half and ranks rates a factor of two apart as fp32 would (precision.yml: 0.03 and 0.18 points
# between the precisions on average).
STAGE_1 = {"precision": "fp32"}
STAGE_2 = {"precision": "bf16", "epochs": 1.5}


def clean_search(records: list[Record]) -> pd.DataFrame:
    """The second study's search (``search.yml``): the runs scored on the clean slice of held-out
    sentences with the mean head, at the search's one seed, stage 1 as ``STAGE_1`` and stage 2
    as ``STAGE_2`` set them (other comparisons' runs, at another schedule or precision, left
    out). The head comparison's mean-head runs at that seed are the same configurations, and count."""
    search = search_table(records, eval_split="sentences")
    keep = (search["head"] == "mean") & (search["seed"] == 0)
    for stage, settings in ((1, STAGE_1), (2, STAGE_2)):
        matches = search["stage"] == stage
        for setting, value in settings.items():
            matches &= search[setting] == value
        keep &= (search["stage"] != stage) | matches
    return search[keep].reset_index(drop=True)


def _order(row) -> tuple:
    """Registry order, then LoRA's rank, then the configuration's name."""
    return method_order(row["method"]), row["rank"] if pd.notna(row["rank"]) else 0, row.name


def _plain(search: pd.DataFrame, ranks=(8,)) -> pd.DataFrame:
    """The search rows of each method's own configuration (LoRA: query and value, α = 16, at
    ``ranks``; None: LoRA at α = 16 on any rank and targets)."""
    lora_ok = search["rule"] == "α = 16"
    if ranks is not None:
        lora_ok &= search["configuration"].isin([label_of("lora", r) for r in ranks])
    return search[(search["method"] != "lora") | lora_ok]


def chosen_rates(search: pd.DataFrame, ranks=(8,)) -> pd.DataFrame:
    """Each configuration's best rate: from stage 2 where it tried two rates or more, else from stage 1."""
    # stage 2 chooses only where it tried two rates or more; the lowest of tied rates last, as edges takes it
    rows = _plain(search, ranks)
    rows = rows[(rows["stage"] == 1) | (rows.groupby(["configuration", "stage"])["lr"].transform("nunique") > 1)]
    rows = rows.sort_values(["stage", "accuracy", "lr"], ascending=[True, True, False])
    best = rows.groupby(["configuration", "stage"]).tail(1).drop_duplicates("configuration", keep="last")
    return best.set_index("configuration")[["stage", "lr", "accuracy"]]


def grid_rates(search: pd.DataFrame, ranks=(1, 2, 4, 8, 16, 32, 64)) -> pd.DataFrame:
    """The rate each configuration of the grid takes, and where it comes from: its own search
    (stage 2 where it ran, else stage 1), or for a LoRA rank on query and value that was not
    searched, the rate of the searched rank nearest in log2 (``rate_for_rank``). Methods in
    registry order, LoRA's ranks on query and value before its other targets."""
    chosen = chosen_rates(search, ranks=None)
    first = search.drop_duplicates("configuration").set_index("configuration")
    plain = {label_of("lora", r): r for r in {*ranks, *search["rank"].dropna().astype(int)}}
    searched = {plain[c]: lr for c, lr in chosen["lr"].items() if c in plain}
    rows = [
        {
            "configuration": c,
            "method": first.loc[c, "method"],
            "rank": first.loc[c, "rank"],
            "lr": row["lr"],
            "from": f"searched (stage {int(row['stage'])})",
        }
        for c, row in chosen.iterrows()
    ]
    for rank in ranks:
        if label_of("lora", rank) not in chosen.index:
            nearest, lr = rate_for_rank(searched, rank)
            rows.append(
                {
                    "configuration": label_of("lora", rank),
                    "method": "lora",
                    "rank": rank,
                    "lr": lr,
                    "from": f"the rate of r={nearest}",
                }
            )
    frame = pd.DataFrame(rows)
    frame["variant"] = ~frame["configuration"].isin(list(plain))
    frame["order"] = frame["method"].map(method_order)
    frame = frame.sort_values(["order", "variant", "rank", "configuration"], na_position="first")
    return frame.set_index("configuration")[["lr", "from"]]


def edges(search: pd.DataFrame, stage: int = 1) -> pd.DataFrame:
    """Per configuration of a stage: the rates tried, their held-out accuracies (%) in the same
    order, the best one and where it sits among them.
    A best rate at the lowest or highest tried (or tied with the best there) is on an edge:
    the range is extended that way."""
    rows = []
    for configuration, runs in search[search["stage"] == stage].groupby("configuration", sort=False):
        runs = runs.sort_values("lr")
        best = runs.loc[runs["accuracy"].idxmax()]  # the lowest of tied rates
        top = runs["accuracy"] == best["accuracy"]
        # an edge that ties the best counts as the best sitting there
        position = [name for name, at in (("lowest", top.iloc[0]), ("highest", top.iloc[-1])) if at]
        position = " and ".join(position) or "inside"
        rows.append(
            {
                "configuration": configuration,
                "method": best["method"],
                "rank": best["rank"],
                "tried": ", ".join(format_lr(lr) for lr in runs["lr"]),
                "accuracies": ", ".join(f"{a:.1f}" for a in runs["accuracy"]),
                "best": best["lr"],
                "accuracy": best["accuracy"],
                "edge": position if len(runs) > 1 else "one rate",
            }
        )
    frame = pd.DataFrame(rows).set_index("configuration", drop=False)
    frame = frame.loc[sorted(frame.index, key=lambda c: _order(frame.loc[c]))]
    return frame.drop(columns="configuration")


def next_rate(search: pd.DataFrame, configuration: str) -> dict[str, object]:
    """The rate to try next for ``configuration`` at the grid's schedule: where stage 2's better
    rate sat on one edge of those it tried, the nearest rate beyond that edge that stage 1 tried
    on the short schedule. Gives the ``edge``, stage 2's ``best`` rate, the ``next`` one and each
    one's stage-1 accuracy (``best_short``, ``next_short``)."""
    second = edges(search, stage=2)
    if configuration not in second.index:
        raise ValueError(f"{configuration!r} has no stage-2 runs: run its two best rates at the grid's schedule")
    edge, best = second.loc[configuration, "edge"], second.loc[configuration, "best"]
    if edge not in ("lowest", "highest"):
        raise ValueError(
            f"stage 2's best rate for {configuration!r} sits {edge!r}, not on one edge: there is no rate beyond it"
        )
    short = search[(search["configuration"] == configuration) & (search["stage"] == 1)].set_index("lr")["accuracy"]
    beyond = [lr for lr in short.index if (lr < best if edge == "lowest" else lr > best)]
    if not beyond or best not in short.index:
        raise ValueError(
            f"stage 1 tried no rate {'below' if edge == 'lowest' else 'above'} {format_lr(best)} for "
            f"{configuration!r}: extend its search (search.yml) that way"
        )
    following = max(beyond) if edge == "lowest" else min(beyond)
    return {
        "edge": edge,
        "best": best,
        "next": following,
        "best_short": short[best],
        "next_short": short[following],
    }


def pooler_comparison(search: pd.DataFrame) -> pd.DataFrame:
    """LoRA r = 8 on query and value, with and without a rank-8 update on the pooler, per rate."""
    rows = search[
        (search["stage"] == 1) & search["configuration"].str.startswith("LoRA r=8") & (search["rule"] == "α = 16")
    ]
    table = rows.pivot_table(index="lr", columns="configuration", values="accuracy").dropna()
    return table.assign(difference=table.iloc[:, 1] - table.iloc[:, 0])


def scaling_comparison(search: pd.DataFrame) -> pd.DataFrame:
    """Held-out accuracy (%) of the three scaling rules at r = 1 and 64, with r = 8 (where they agree)."""
    rules = search[(search["method"] == "lora") & (search["stage"] == 1) & search["rank"].isin([1, 64])]
    lr = rules["lr"].iloc[0]
    table = rules[rules["lr"] == lr].pivot_table(index="rule", columns="rank", values="accuracy")
    at_r8 = search[
        (search["configuration"] == "LoRA r=8")
        & (search["stage"] == 1)
        & (search["lr"] == lr)
        & (search["rule"] == "α = 16")
    ]["accuracy"]
    table[8] = at_r8.iloc[0]
    return table[sorted(table.columns)].rename(columns=lambda r: f"r = {int(r)}")


def slice_overlap(eval_split: str, holdout_size: int, data_dir: str | None = None) -> dict[str, float]:
    """What a tuning slice (``eval_split``: "holdout", random phrases; "sentences", whole held-out
    sentences) holds: its size, the training phrases it drops, how much of it, and of validation,
    occurs word for word inside a phrase left in training, and the mean words per item of each."""
    splits = load_sst2(data_dir)
    train, validation = splits["train"], splits["validation"]["sentence"]
    rest, holdout = HOLDOUT_SPLITS[eval_split](train, holdout_size)
    in_train = inside_any(holdout["sentence"], rest["sentence"])

    def words(texts):
        return sum(len(t.split()) for t in texts) / len(texts)

    return {
        "size": len(holdout),
        "dropped": len(train) - len(rest) - len(holdout),
        "in_train": int(in_train.sum()),
        "in_train_pct": in_train.mean() * 100,
        "validation_size": len(validation),
        "validation_in_train": int(inside_any(validation, rest["sentence"]).sum()),
        "words": words(holdout["sentence"]),
        "validation_words": words(validation),
    }


def head_comparison(records: list[Record]) -> pd.DataFrame:
    """The head comparison on the clean tuning slice: each method and head at each learning
    rate, mean held-out accuracy (%) over its seeds. A run counts only beside its twin, the same
    configuration and seed with the other head, so that the search's own mean-head runs (also
    scored on held-out sentences) never tip one side."""
    candidates = [r for r in records if r.metrics.eval_split == "sentences" and r.config.head in ("mean", "pooler")]

    def twin_key(config: RunConfig) -> tuple[str, int]:
        return config.group_key(ignoring=("head",)), config.seed

    heads_of: dict[tuple[str, int], set[str]] = {}
    for r in candidates:
        heads_of.setdefault(twin_key(r.config), set()).add(r.config.head)
    rows = [
        {
            "method": label_of(r.method),
            "head": r.config.head,
            "lr": r.config.lr,
            "accuracy": r.metrics.dev_accuracy * 100,
            "trainable": r.params.trainable,
        }
        for r in candidates
        if len(heads_of[twin_key(r.config)]) == 2
    ]
    if not rows:
        raise ValueError(
            "no pair of runs scored on held-out sentences with the mean and the pooler head: "
            "run lora-sweep studies/v2/heads.yml"
        )
    frame = pd.DataFrame(rows)
    return (
        frame.groupby(["method", "head", "lr"], sort=False)
        .agg(accuracy=("accuracy", "mean"), seeds=("accuracy", "size"), trainable=("trainable", "first"))
        .reset_index()
    )


def best_head(comparison: pd.DataFrame) -> pd.DataFrame:
    """Per method and head, the best learning rate's mean accuracy, side by side, with the difference."""
    best = comparison.sort_values("accuracy").groupby(["method", "head"], sort=False).tail(1)
    table = best.pivot_table(index="method", columns="head", values="accuracy", sort=False).round(2)
    trained = best.pivot_table(index="method", columns="head", values="trainable", sort=False)
    table["mean − pooler (points)"] = (table["mean"] - table["pooler"]).round(2)
    table["trained with mean"] = trained["mean"].map("{:,.0f}".format)
    table["trained with pooler"] = trained["pooler"].map("{:,.0f}".format)
    return table.rename_axis(None, axis=1)


def pooler_statistics(model) -> dict[str, float]:
    """How trained the checkpoint's pooler looks beside an attention matrix: its bias and the
    spread of its weights, against the first layer's query weights."""
    pooler = model.bert.pooler.dense
    query = model.bert.encoder.layer[0].attention.self.query
    with torch.no_grad():
        return {
            "pooler_bias_max": float(pooler.bias.abs().max()),
            "pooler_weight_std": float(pooler.weight.std()),
            "query_weight_std": float(query.weight.std()),
        }


# bf16 becomes the grid's precision only if, for every configuration compared, the 95% interval
# of bf16's accuracy minus fp32's lies above -PRECISION_MARGIN points (the size of the study's
# LoRA target); stated in precision.yml before its runs.
PRECISION_MARGIN = 1.0


def _twins(records: list[Record], setting: str, candidate, baseline) -> list[tuple[list[Record], list[Record]]]:
    """Configurations run on the clean slice at the grid's schedule with ``setting`` at both
    ``candidate`` and ``baseline``, all else equal: per configuration, (candidate runs, baseline runs)."""
    runs = [
        r
        for r in records
        if r.metrics.eval_split == "sentences" and r.config.head == "mean" and stage_of(r.config) == 2
    ]
    groups: dict[str, dict[object, list[Record]]] = {}
    for r in runs:
        value = getattr(r.config, setting)
        groups.setdefault(r.config.group_key(ignoring=(setting,)), {}).setdefault(value, []).append(r)
    return [(group[candidate], group[baseline]) for group in groups.values() if {candidate, baseline} <= set(group)]


def _twin_row(candidate: list[Record], baseline: list[Record], names: tuple[str, str], data_dir, labels) -> dict:
    """One configuration's row of a twin comparison: each side's mean held-out accuracy with its
    t-interval over seeds, the difference with the crossed design's interval over seeds and
    sentences (an ``Interval``, which prints as the estimate and its ends) and, beside it, the
    pigeonhole bootstrap's that the first look judged by (column "... first look"), and the
    sign-flip test's p. The two sides' seeds count as independent runs, although seed i of
    each shares its batch order and head: that only widens the interval."""
    first = baseline[0]
    comparison = paired.compare(candidate, baseline, data_dir, labels)
    return {
        "configuration": config_label(first.method, first.config.hparams),
        "lr": format_lr(first.config.lr),
        "seeds": f"{len(baseline)} / {len(candidate)}",
        f"{names[1]} (%)": str(t_interval([r.metrics.dev_accuracy for r in baseline])),
        f"{names[0]} (%)": str(t_interval([r.metrics.dev_accuracy for r in candidate])),
        f"{names[0]} − {names[1]} (points)": comparison.difference,
        f"{names[0]} − {names[1]}, first look": comparison.bootstrap,
        "p": round(comparison.p_value, 3),
    }


def twin_disagreements(records: list[Record], setting: str, candidate, baseline) -> pd.DataFrame:
    """For each configuration run with ``setting`` at both ``candidate`` and ``baseline`` (as
    ``precision_comparison`` pairs them), how many held-out predictions differ between the two
    runs of each seed: a row per configuration, a column per seed that ran both ways."""
    rows = {}
    for cand, base in _twins(records, setting, candidate, baseline):
        by_seed = {r.config.seed: r for r in base}
        first = base[0]
        rows[config_label(first.method, first.config.hparams)] = {
            r.config.seed: int(
                np.sum(np.asarray(r.predictions.label) != np.asarray(by_seed[r.config.seed].predictions.label))
            )
            for r in cand
            if r.config.seed in by_seed
        }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("configuration")


def precision_comparison(records: list[Record], data_dir: str | None = None, labels=None) -> pd.DataFrame:
    """bf16 autocast against fp32 at the grid's schedule on the clean slice: per configuration
    run in both, the columns of ``_twin_row``, and whether bf16 is within ``PRECISION_MARGIN``
    points by the crossed design's interval ("within the margin") and by the first look's
    bootstrap ("first look: within"); speed is the benchmark's to measure (these runs shared the
    machine with other work). The gold ``labels`` of the slice are read from the data unless given."""
    rows = [
        _twin_row(bf16, fp32, ("bf16", "fp32"), data_dir, labels)
        for bf16, fp32 in _twins(records, "precision", "bf16", "fp32")
    ]
    if not rows:
        raise ValueError(
            "no configuration ran in both fp32 and bf16 on the clean slice: run lora-sweep studies/v2/precision.yml"
        )
    for row in rows:
        row["within the margin"] = "yes" if row["bf16 − fp32 (points)"].low > -PRECISION_MARGIN else "no"
        row["first look: within"] = "yes" if row["bf16 − fp32, first look"].low > -PRECISION_MARGIN else "no"
    return pd.DataFrame(rows).set_index("configuration")


LOOKS = {"calibrated": "", "first look": "first look: "}  # the column prefix each look's verdicts have


def _look(look: str) -> str:
    if look not in LOOKS:
        raise ValueError(f"unknown look {look!r}: choose one of {', '.join(LOOKS)}")
    return LOOKS[look]


def precision_decision(
    comparison: pd.DataFrame, needed=("Full fine-tuning", "LoRA r=8"), look: str = "calibrated"
) -> str:
    """The grid's precision from ``precision_comparison``'s table, by the rule stated in
    precision.yml: bf16 if every configuration in ``needed`` stays within the margin, judged by
    the crossed design's intervals or, with ``look="first look"``, by the bootstrap's."""
    column = "within the margin" if look == "calibrated" else _look(look) + "within"
    missing = [c for c in needed if c not in comparison.index]
    if missing:
        return f"fp32 for now: {', '.join(missing)} has not run in both precisions"
    outside = [c for c in needed if comparison.loc[c, column] != "yes"]
    if outside:
        return f"fp32: the difference leaves the margin for {', '.join(outside)}"
    return "bf16: the difference stays within the margin for " + " and ".join(needed)


def _schedule_names(longer: float, shorter: float) -> tuple[str, str]:
    return f"{longer:g} epochs", f"{shorter:g} epochs"


def schedule_comparison(
    records: list[Record], longer: float = 3.0, shorter: float = 1.5, data_dir: str | None = None, labels=None
) -> pd.DataFrame:
    """``longer`` epochs against ``shorter`` ones on the clean slice, all else equal (the
    precision too), per configuration run at both: the columns of ``_twin_row``, and whether the
    longer schedule is better, worse, or not told apart from the shorter by the crossed design's
    interval (column "verdict") and by the first look's bootstrap ("first look: verdict")."""
    names = _schedule_names(longer, shorter)
    rows = [_twin_row(a, b, names, data_dir, labels) for a, b in _twins(records, "epochs", longer, shorter)]
    if not rows:
        raise ValueError(
            f"no configuration ran for both {names[0]} and {names[1]} on the clean slice: "
            "run lora-sweep studies/v2/schedule.yml"
        )
    for row in rows:
        for column, interval in (
            ("verdict", f"{names[0]} − {names[1]} (points)"),
            ("first look: verdict", f"{names[0]} − {names[1]}, first look"),
        ):
            difference = row[interval]
            row[column] = "better" if difference.low > 0 else "worse" if difference.high < 0 else "not told apart"
    return pd.DataFrame(rows).set_index("configuration")


def schedule_decision(
    comparison: pd.DataFrame,
    longer: float = 3.0,
    shorter: float = 1.5,
    needed=("Full fine-tuning", "LoRA r=8"),
    look: str = "calibrated",
) -> str:
    """The grid's number of epochs from ``schedule_comparison``'s table, by the rule stated in
    schedule.yml: the longer schedule only if it is better for a configuration of ``needed``
    and worse for none; otherwise the shorter, which costs half. Judged by the crossed design's
    intervals or, with ``look="first look"``, by the bootstrap's."""
    long_name, short_name = _schedule_names(longer, shorter)
    missing = [c for c in needed if c not in comparison.index]
    if missing:
        return f"{short_name} for now: {', '.join(missing)} has not run at both schedules"
    verdicts = comparison.loc[list(needed), _look(look) + "verdict"]
    better, worse = list(verdicts.index[verdicts == "better"]), list(verdicts.index[verdicts == "worse"])
    if better and not worse:
        return f"{long_name}: better for {' and '.join(better)}, worse for none"
    if worse:
        return f"{short_name}: {long_name} are worse for {' and '.join(worse)}"
    return f"{short_name}: {long_name} are not told apart from {short_name} for {' or '.join(needed)}"
