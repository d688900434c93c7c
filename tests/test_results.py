import json
import math

import pytest

from lora_lib.results import (
    SCHEMA_VERSION,
    RecordError,
    load_record,
    load_results,
    record_exists,
    save_record,
    train_loss_tail,
    validate_record,
)


def make_record(run_id="lora_r8_s0", accuracy=0.9, method="lora", rank=8, seed=0):
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "method": method,
        "config": {"method": method, "hparams": {"rank": rank}, "seed": seed, "lr": 1e-3, "epochs": 1.0, "model_name": None},
        "params": {"total": 100, "trainable": 10, "trainable_pct": 10.0, "groups": {}},
        "metrics": {"eval_split": "validation", "dev_accuracy": accuracy, "dev_loss": 0.3},
        "cost": {"train_seconds": 2.0, "train_examples": 64, "train_tokens": 900, "train_examples_per_second": 32.0,
                 "train_tokens_per_second": 450.0, "peak_rss_mb": 512.0},
        "history": {"train": [{"step": 1, "epoch": 0.5, "loss": 0.7, "learning_rate": 1e-3}], "eval": []},
        "environment": {"cpu": "test"},
    }


def test_write_and_read_back(tmp_path):
    record = make_record()
    path = save_record(record, tmp_path)
    assert path.name == "lora_r8_s0.json"
    assert load_record(path) == record
    assert record_exists(tmp_path, "lora_r8_s0") and not record_exists(tmp_path, "lora_r4_s0")
    assert [p.name for p in tmp_path.iterdir()] == ["lora_r8_s0.json"]  # no temporary file left


def test_load_results_one_row_per_record(tmp_path):
    save_record(make_record("lora_r8_s0", 0.9), tmp_path)
    save_record(make_record("lora_r8_s1", 0.8, seed=1), tmp_path)
    save_record(make_record("full_s0", 0.92, method="full", rank=None), tmp_path)
    frame = load_results(tmp_path)
    assert frame["run_id"].tolist() == ["full_s0", "lora_r8_s0", "lora_r8_s1"]
    assert frame["dev_accuracy"].tolist() == [0.92, 0.9, 0.8]
    assert frame.loc[1, "rank"] == 8 and frame.loc[2, "seed"] == 1 and frame.loc[0, "trainable"] == 10
    assert frame["train_loss_tail"].tolist() == [0.7, 0.7, 0.7]


def test_the_end_of_training_loss_is_the_mean_of_the_last_logs():
    record = make_record()
    record["history"]["train"] = ([{"step": 50 * i, "loss": 1.0} for i in range(1, 6)]
                                  + [{"step": 300 + 50 * i, "loss": 0.1 * i} for i in range(1, 11)]
                                  + [{"step": 900, "train_runtime": 12.0}])  # the summary log has no loss
    assert train_loss_tail(record) == pytest.approx(0.55)
    assert train_loss_tail(record, logs=2) == pytest.approx(0.95)
    record["history"]["train"] = []
    assert math.isnan(train_loss_tail(record))


def test_load_results_keeps_only_the_split_asked_for(tmp_path):
    save_record(make_record("lora_r8_s0", 0.9), tmp_path)
    tuning = make_record("lora_r8_lr0.002_s0", 0.95)
    tuning["metrics"]["eval_split"] = "holdout"
    save_record(tuning, tmp_path)
    assert load_results(tmp_path)["run_id"].tolist() == ["lora_r8_lr0.002_s0", "lora_r8_s0"]
    assert load_results(tmp_path, eval_split="validation")["run_id"].tolist() == ["lora_r8_s0"]
    assert load_results(tmp_path, eval_split="holdout")["dev_accuracy"].tolist() == [0.95]


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r: r.pop("metrics"), r"missing key 'metrics'"),
        (lambda r: r["metrics"].pop("dev_accuracy"), r"missing key 'metrics.dev_accuracy'"),
        (lambda r: r["params"].update(trainable="10"), r"'params.trainable' is '10', expected int"),
        (lambda r: r["cost"].update(train_seconds=float("nan")), r"'cost.train_seconds' is nan, expected float"),
        (lambda r: r.update(history=[]), r"'history' is list, expected an object"),
        (lambda r: r.update(schema_version=0), r"schema_version is 0, this lora_lib reads version 1; rerun"),
        (lambda r: r["metrics"].update(dev_accuracy=91.0), r"metrics.dev_accuracy is 91.0, expected a value in \[0, 1\]"),
    ],
)
def test_bad_records_are_named(tmp_path, change, message):
    record = make_record()
    change(record)
    path = tmp_path / "lora_r8_s0.json"
    path.write_text(json.dumps(record))
    with pytest.raises(RecordError, match=f"lora_r8_s0.json: {message}"):
        load_results(tmp_path)
    with pytest.raises(RecordError):
        validate_record(record)
    assert not record_exists(tmp_path, "lora_r8_s0")


def test_not_json_and_wrong_name(tmp_path):
    (tmp_path / "broken.json").write_text('{"schema_version": 1,')
    with pytest.raises(RecordError, match=r"broken.json: not valid JSON"):
        load_record(tmp_path / "broken.json")
    (tmp_path / "other.json").write_text(json.dumps(make_record("lora_r8_s0")))
    with pytest.raises(RecordError, match=r"other.json: the file name does not match its run_id 'lora_r8_s0'"):
        load_record(tmp_path / "other.json")


def test_an_invalid_record_is_never_written(tmp_path):
    record = make_record()
    record["metrics"]["dev_loss"] = float("inf")
    with pytest.raises(RecordError, match="'metrics.dev_loss' is inf"):
        save_record(record, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no results folder at"):
        load_results(tmp_path / "executed")
