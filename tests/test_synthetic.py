"""The synthetic VQA generator: deterministic by seed, answers consistent with the pixels' labels."""

from __future__ import annotations

import numpy as np
import pytest

from sweep.data import synthetic as syn


def test_same_seed_same_data_other_seed_other_data() -> None:
    a = syn.generate_split(seed=3, split="train", n_images=20)
    b = syn.generate_split(seed=3, split="train", n_images=20)
    c = syn.generate_split(seed=4, split="train", n_images=20)
    assert np.array_equal(a.images, b.images) and a.questions == b.questions and a.answers == b.answers
    assert not np.array_equal(a.images, c.images)
    assert a.answers != c.answers


def test_splits_differ_and_cover_every_question_type() -> None:
    train = syn.generate_split(seed=0, split="train", n_images=10)
    test = syn.generate_split(seed=0, split="test", n_images=10)
    assert not np.array_equal(train.images, test.images)
    assert set(train.qtypes) == set(syn.QTYPES)
    assert {syn.family_of(q) for q in syn.QTYPES} == {"reasoning", "ocr"}
    assert len(train.questions) == len(train.image_index) == len(train.answers)
    for words in train.questions + train.answers:
        assert syn.tokenize(words)  # every word is in the vocabulary


def test_answers_follow_from_the_cell_labels() -> None:
    split = syn.generate_split(seed=1, split="train", n_images=40)
    factors = syn.factor_labels(split.cell_labels)  # (N, P, 3): shape, colour, letter
    checked = 0
    for i, (qtype, question, answer) in enumerate(zip(split.qtypes, split.questions, split.answers)):
        f = factors[split.image_index[i]]
        colours = np.bincount(f[:, 1], minlength=len(syn.COLOURS) + 1)[1:]
        if qtype == "count_colour":
            assert int(answer[0]) == colours[syn.COLOUR_NAMES.index(question[2])]
            checked += 1
        elif qtype == "majority":
            assert answer == [syn.COLOUR_NAMES[int(colours.argmax())]]
            checked += 1
        elif qtype == "word":
            letters = [syn.LETTERS[k - 1] for k in f[:, 2] if k]
            assert answer == letters  # row-major order = reading order on one line
            checked += 1
    assert checked >= 40


def test_yes_no_balanced_and_images_in_range() -> None:
    split = syn.generate_split(seed=0, split="train", n_images=400)
    more = [a[0] for a, t in zip(split.answers, split.qtypes) if t == "more"]
    assert 0.4 < more.count("yes") / len(more) < 0.6
    assert split.images.dtype == np.uint8 and split.images.shape[1:] == (32, 32, 3)
    assert split.cell_labels.max() < syn.N_LABELS


def test_too_small_images_are_refused() -> None:
    with pytest.raises(ValueError, match="image_size"):
        syn.generate_split(seed=0, split="train", n_images=2, image_size=16)
