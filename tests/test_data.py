import pytest
from conftest import write_tsv

from lora_lib.models import load_tokenizer
from lora_lib.study.data import (
    DataError,
    PadPerBatch,
    inside_any,
    load_sst2,
    padding_efficiency,
    split_holdout,
    subsample,
    tokenize,
)


def test_reads_glue_tsv_without_quoting(small_sst2):
    splits = load_sst2(small_sst2, expected_rows=None)
    assert len(splits["train"]) == 40 and len(splits["validation"]) == 2
    assert splits["train"][0] == {"sentence": 'it \'s a "great" film number 0 ', "label": 0}
    assert splits["validation"]["sentence"] == ["bad 'n boring", "lovely"]


def test_sst2_dir_from_the_environment(small_sst2, monkeypatch):
    monkeypatch.setenv("SST2_DIR", str(small_sst2))
    assert len(load_sst2(expected_rows=None)["validation"]) == 2


def test_full_row_counts_are_checked(small_sst2):
    with pytest.raises(DataError) as err:
        load_sst2(small_sst2)
    assert "train.tsv" in str(err.value)


@pytest.mark.parametrize(
    "text, line",
    [
        ("sentence\n", None),  # no label column
        ("sentence\tlabel\nfine\t2\n", 2),  # a label that is not 0 or 1
        ("sentence\tlabel\nfine\t1\nno label here\n", 3),  # one field
        ("sentence\tlabel\n \t1\n", 2),  # an empty sentence
        ("", None),  # no header
    ],
)
def test_malformed_files(small_sst2, text, line):
    write_tsv(small_sst2, "dev.tsv", text)
    with pytest.raises(DataError) as err:
        load_sst2(small_sst2, expected_rows=None)
    assert "dev.tsv" in str(err.value)
    if line is not None:
        assert f"line {line}" in str(err.value)


def test_missing_file_and_folder(small_sst2, tmp_path):
    (small_sst2 / "dev.tsv").unlink()
    with pytest.raises(DataError) as err:
        load_sst2(small_sst2, expected_rows=None)
    assert "dev.tsv" in str(err.value)
    with pytest.raises(DataError) as err:
        load_sst2(tmp_path / "nowhere")
    assert "nowhere" in str(err.value)


def test_no_folder_and_no_hub_says_how_to_fix_it(monkeypatch):
    monkeypatch.delenv("SST2_DIR", raising=False)
    with pytest.raises(DataError) as err:
        load_sst2()
    assert "SST2_DIR" in str(err.value)


def test_subsample_and_holdout_are_fixed_and_disjoint(small_sst2):
    train = load_sst2(small_sst2, expected_rows=None)["train"]
    rest, holdout = split_holdout(train, 10)
    assert len(rest) == 30 and len(holdout) == 10
    assert set(rest["sentence"]).isdisjoint(holdout["sentence"])
    assert split_holdout(train, 10)[1]["sentence"] == holdout["sentence"]
    assert subsample(rest, 5, seed=1)["sentence"] == subsample(rest, 5, seed=1)["sentence"]
    assert subsample(rest, 5, seed=1)["sentence"] != subsample(rest, 5, seed=2)["sentence"]
    assert subsample(rest, None, seed=1) is rest
    with pytest.raises(ValueError) as err:
        split_holdout(train, 40)  # all of it: nothing left to train on
    assert "holdout_size" in str(err.value)


def test_inside_any_matches_whole_words_only():
    corpus = ["a fine film ", "dull"]
    found = inside_any(["fine film", "film a", " dull ", "fin", "a fine film"], corpus)
    assert found.tolist() == [True, False, True, False, True]


def test_tokenize_without_padding_then_pad_per_batch(small_sst2):
    tokenizer = load_tokenizer()
    data = tokenize(load_sst2(small_sst2, expected_rows=None), tokenizer, max_length=8)
    assert data["validation"]["length"] == [len(tokenizer("bad 'n boring")["input_ids"]), 3]
    assert max(data["train"]["length"]) == 8  # truncated
    batch = PadPerBatch(tokenizer)([data["validation"][0], data["validation"][1]])
    assert batch["input_ids"].shape == (2, data["validation"]["length"][0])
    assert batch["labels"].tolist() == [0, 1] and "length" not in batch


@pytest.mark.slow
def test_real_sst2(sst2_dir):
    splits = load_sst2(sst2_dir)
    assert {s: len(d) for s, d in splits.items()} == {"train": 67_349, "validation": 872}
    assert set(splits["train"]["label"]) == {0, 1}
    assert sum(splits["validation"]["label"]) == 444  # GLUE's dev split: 444 positive, 428 negative
    # The held-out slice is mostly pieces of training sentences; validation sentences are not.
    rest, holdout = split_holdout(splits["train"], 2000)
    assert inside_any(holdout["sentence"], rest["sentence"]).sum() == 1779
    assert inside_any(splits["validation"]["sentence"], rest["sentence"]).sum() == 2


@pytest.mark.slow
def test_length_grouped_batches_are_mostly_real_tokens(sst2_dir):
    lengths = tokenize(load_sst2(sst2_dir)["train"], load_tokenizer())["length"]
    grouped = padding_efficiency(lengths, 32)
    padded_to_128 = padding_efficiency(lengths, 32, pad_to=128, grouped=False)
    assert grouped > 0.93 and padded_to_128 < 0.12
    assert grouped / padded_to_128 > 8
