"""The clean tuning slice (lora_lib.study.data.hold_out_sentences): whole sentences held out, and every training
phrase inside them dropped, so that nothing of the slice is seen in training."""

import pytest
from datasets import Dataset

from lora_lib.study.data import hold_out_sentences, inside_any, load_sst2

# Made-up sentences, each followed by phrases of its parse tree, as SST-2's training set holds them.
WHOLE = {
    "the film is a gripping tale of love and loss": ["a gripping tale", "gripping", "love and loss", "the film"],
    "an utterly dull script sinks every scene it touches": ["utterly dull", "dull", "every scene"],
    # a sentence of 9 words inside a longer one is a phrase, not a whole sentence
    "sadly , a long and winding road to nowhere at all .": [
        "a long and winding road to nowhere at all",
        "winding road",
    ],
}
# Phrases that a held-out sentence does not contain: too short to be held out, unrelated, a word that only looks
# like part of one ("scenes" is not "scene"), and a long line that occurs twice (so is not one sentence's alone).
OTHERS = ["a quiet little gem", "quiet", "charming", "a slow burn", "scenes"] + [
    "a duplicated line that appears twice in the data"
] * 2


def training_set():
    texts = [text for whole, parts in WHOLE.items() for text in (whole, *parts)] + OTHERS
    return Dataset.from_dict({"sentence": texts, "label": [len(text) % 2 for text in texts]})


def test_every_whole_sentence_held_out():
    train = training_set()
    rest, holdout = hold_out_sentences(train, size=len(WHOLE))
    assert sorted(holdout["sentence"]) == sorted(WHOLE)
    assert sorted(rest["sentence"]) == sorted(OTHERS)  # every phrase of a held-out sentence is gone
    for part in (holdout, rest):  # each sentence keeps its label
        assert part["label"] == [len(text) % 2 for text in part["sentence"]]


@pytest.mark.parametrize("size", [1, 2])
def test_held_out_sentences_are_whole_and_unseen(size):
    train = training_set()
    rest, holdout = hold_out_sentences(train, size=size)
    held, kept = holdout["sentence"], rest["sentence"]
    assert len(held) == size and set(held) <= set(WHOLE)
    for sentence in held:  # a whole sentence: inside no other phrase of the training set
        others = [t for t in train["sentence"] if t != sentence]
        assert not inside_any([sentence], others)[0]
        assert len(sentence.split()) >= 8
    assert not inside_any(held, kept).any()  # nothing held out is seen in training
    assert not inside_any(kept, held).any()  # no kept phrase is part of a held-out sentence
    # What is dropped is exactly what a held-out sentence contains; everything else stays.
    expected = [t for t in train["sentence"] if not inside_any([t], held)[0]]
    assert kept == expected
    assert set(OTHERS) <= set(kept)
    for whole in set(WHOLE) - set(held):  # the sentences not held out keep their phrases
        assert {whole, *WHOLE[whole]} <= set(kept)
    assert hold_out_sentences(train, size=size)[1]["sentence"] == held  # a fixed slice, whatever the run


@pytest.mark.parametrize("size", [0, 19, 100])
def test_a_slice_as_large_as_the_set_is_refused(size):
    train = training_set()
    assert size == 0 or size >= len(train)
    with pytest.raises(ValueError) as err:
        hold_out_sentences(train, size=size)
    assert "holdout_size" in str(err.value)


def test_more_sentences_than_there_are_is_refused():
    with pytest.raises(ValueError):
        hold_out_sentences(training_set(), size=len(WHOLE) + 1)
    with pytest.raises(ValueError):
        hold_out_sentences(training_set(), size=1, min_words=20)


@pytest.mark.slow
def test_the_real_slice_has_no_overlap(sst2_dir):
    train = load_sst2(sst2_dir)["train"]
    rest, holdout = hold_out_sentences(train, size=1000)
    assert len(holdout) == 1000 and len(rest) + len(holdout) < len(train)
    assert not inside_any(holdout["sentence"], rest["sentence"]).any()
    assert not inside_any(rest["sentence"], holdout["sentence"]).any()
