"""The result record: written atomically, validated on load, v1 records still read, flattened into one table."""

import json
import math
from pathlib import Path

import pytest
from conftest import make_record

from lora_lib.study.record import (
    ARCHIVE,
    READABLE_VERSIONS,
    SCHEMA_VERSION,
    Predictions,
    Record,
    RecordError,
    load_record,
    load_records,
    load_results,
    record_exists,
    results_table,
    save_record,
)

REPO = Path(__file__).resolve().parent.parent
FIRST_STUDY = REPO / "executed" / ARCHIVE


def test_write_and_read_back(tmp_path):
    record = make_record()
    path = save_record(record, tmp_path)
    assert path == tmp_path / "lora_r8_s0.json"
    assert load_record(path) == record
    assert record_exists(tmp_path, "lora_r8_s0") and not record_exists(tmp_path, "lora_r4_s0")
    assert [p.name for p in tmp_path.iterdir()] == ["lora_r8_s0.json"]  # no temporary file left


def test_a_record_round_trips_with_its_predictions(tmp_path):
    predictions = Predictions(label=[1, 0, 1], prob_positive=[0.9, 0.2, 0.51])
    record = make_record(predictions=predictions)
    path = save_record(record, tmp_path)
    written = json.loads(path.read_text())
    assert written["schema_version"] == SCHEMA_VERSION == max(READABLE_VERSIONS)
    assert written["predictions"] == {"label": [1, 0, 1], "prob_positive": [0.9, 0.2, 0.51]}
    loaded = load_record(path)
    assert loaded == record and loaded.predictions == predictions


def test_the_v1_records_of_the_study_load():
    v1 = json.loads((FIRST_STUDY / "lora_r8_s0.json").read_text())
    assert v1["schema_version"] == 1 and "predictions" not in v1
    record = load_record(FIRST_STUDY / "lora_r8_s0.json")
    assert record.schema_version == 1 and record.predictions is None
    assert record.metrics.dev_accuracy == v1["metrics"]["dev_accuracy"]
    assert record.config.hparams["rank"] == 8 and record.seed == 0
    records = load_records(FIRST_STUDY)
    assert len(records) >= 39 and {r.schema_version for r in records} >= {1}


@pytest.mark.parametrize("version", [0, max(READABLE_VERSIONS) + 1])
def test_an_unknown_schema_version_is_refused(tmp_path, version):
    data = json.loads(make_record().to_json())
    data["schema_version"] = version
    (tmp_path / "lora_r8_s0.json").write_text(json.dumps(data))
    with pytest.raises(RecordError) as err:
        load_record(tmp_path / "lora_r8_s0.json")
    assert "schema_version" in str(err.value)


def test_load_results_one_row_per_record(tmp_path):
    save_record(make_record("lora_r8_s0", accuracy=0.9), tmp_path)
    save_record(make_record("lora_r8_s1", accuracy=0.8, seed=1), tmp_path)
    save_record(make_record("full_s0", method="full", rank=None, accuracy=0.92), tmp_path)
    frame = load_results(tmp_path)
    assert frame["run_id"].tolist() == ["full_s0", "lora_r8_s0", "lora_r8_s1"]
    assert frame["dev_accuracy"].tolist() == [0.92, 0.9, 0.8]
    assert frame.loc[1, "rank"] == 8 and frame.loc[2, "seed"] == 1 and frame.loc[0, "trainable"] == 10_000
    assert frame["train_loss_tail"].tolist() == [0.7, 0.7, 0.7]
    # the two LoRA seeds share a group, full fine-tuning has its own
    assert frame.loc[1, "group"] == frame.loc[2, "group"] != frame.loc[0, "group"]


def test_the_end_of_training_loss_is_the_mean_of_the_last_logs():
    record = make_record()
    record.history.train = (
        [{"step": 50 * i, "loss": 1.0} for i in range(1, 6)]
        + [{"step": 300 + 50 * i, "loss": 0.1 * i} for i in range(1, 11)]
        + [{"step": 900, "train_runtime": 12.0}]
    )  # the summary log has no loss
    assert record.train_loss_tail() == pytest.approx(0.55)
    assert record.train_loss_tail(logs=2) == pytest.approx(0.95)
    assert results_table([record])["train_loss_tail"].tolist() == [pytest.approx(0.55)]
    record.history.train = []
    assert math.isnan(record.train_loss_tail())


def test_load_results_keeps_only_the_split_asked_for(tmp_path):
    save_record(make_record("lora_r8_s0", accuracy=0.9), tmp_path)
    save_record(make_record("lora_r8_lr0.002_s0", accuracy=0.95, eval_split="holdout"), tmp_path)
    assert load_results(tmp_path)["run_id"].tolist() == ["lora_r8_lr0.002_s0", "lora_r8_s0"]
    assert load_results(tmp_path, eval_split="validation")["run_id"].tolist() == ["lora_r8_s0"]
    assert load_results(tmp_path, eval_split="holdout")["dev_accuracy"].tolist() == [0.95]


def _drop(*keys):
    def change(record):
        *parents, last = keys
        for key in parents:
            record = record[key]
        record.pop(last)

    return change


def _set(value, *keys):
    def change(record):
        *parents, last = keys
        for key in parents:
            record = record[key]
        record[last] = value

    return change


@pytest.mark.parametrize(
    "change, field",
    [
        (_drop("metrics"), "metrics"),
        (_drop("metrics", "dev_accuracy"), "dev_accuracy"),
        (_set("ten", "params", "trainable"), "trainable"),
        (_set(float("nan"), "cost", "train_seconds"), "train_seconds"),
        (_set(float("inf"), "metrics", "dev_loss"), "dev_loss"),
        (_set([], "history"), "history"),
        (_set(91.0, "metrics", "dev_accuracy"), "dev_accuracy"),  # a percentage, not a share
        (_set(1.5, "predictions", "prob_positive", 0), "prob_positive"),
        (_set({"rank": 8, "ranks": 8}, "config", "hparams"), "ranks"),  # not a hyperparameter of LoRA
        (_set("prefix", "config", "method"), "prefix"),  # not a registered method
    ],
)
def test_a_bad_record_is_named_with_its_file_and_field(tmp_path, change, field):
    data = json.loads(make_record(predictions=Predictions(label=[1], prob_positive=[0.9])).to_json())
    change(data)
    path = tmp_path / "lora_r8_s0.json"
    path.write_text(json.dumps(data))
    for read in (load_record, lambda p: load_results(p.parent)):
        with pytest.raises(RecordError) as err:
            read(path)
        assert "lora_r8_s0.json" in str(err.value) and field in str(err.value)
    assert not record_exists(tmp_path, "lora_r8_s0")


def test_not_json_and_wrong_name(tmp_path):
    (tmp_path / "broken.json").write_text('{"schema_version": 1,')
    with pytest.raises(RecordError) as err:
        load_record(tmp_path / "broken.json")
    assert "broken.json" in str(err.value)
    (tmp_path / "other.json").write_text(make_record("lora_r8_s0").to_json())
    with pytest.raises(RecordError) as err:
        load_record(tmp_path / "other.json")
    assert "other.json" in str(err.value) and "lora_r8_s0" in str(err.value)


def test_a_non_finite_number_is_no_record():
    with pytest.raises(ValueError) as err:
        Record.model_validate(
            {
                **json.loads(make_record().to_json()),
                "metrics": {"eval_split": "validation", "dev_accuracy": 0.9, "dev_loss": float("inf")},
            }
        )
    assert "dev_loss" in str(err.value)


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_results(tmp_path / "executed")
    assert "executed" in str(err.value)
