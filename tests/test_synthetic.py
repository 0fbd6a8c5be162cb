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


def _pooled(labels: np.ndarray, grid: int, v: int) -> np.ndarray:
    """Per-cell labels (grid*grid,) -> (V, cells per token): the cells each sqrt(V) x sqrt(V) token averages."""
    side = int(round(v ** 0.5))
    step = grid // side
    cells = labels.reshape(grid, grid)
    return np.stack([cells[r:r + step, c:c + step].ravel() for r in range(0, grid, step) for c in range(0, grid, step)])


def test_answers_follow_from_the_cell_labels() -> None:
    split = syn.generate_split(seed=1, split="train", n_images=40)
    grid = split.images.shape[1] // syn.CELL
    factors = syn.factor_labels(split.cell_labels)  # (N, P, 3): shape, colour, letter
    checked = 0
    for i, (qtype, question, answer) in enumerate(zip(split.qtypes, split.questions, split.answers)):
        f = factors[split.image_index[i]]
        # Scenes: the questions are about one block; the image holds BLOCKS^2 copies of it.
        colours = np.bincount(f[:, 1], minlength=len(syn.COLOURS) + 1)[1:] // syn.BLOCKS**2
        if qtype == "count_colour":
            assert int(answer[0]) == colours[syn.COLOUR_NAMES.index(question[2])]
            checked += 1
        elif qtype == "majority":
            assert answer == [syn.COLOUR_NAMES[int(colours.argmax())]]
            checked += 1
        elif qtype == "diff":
            hi, lo = (syn.COLOUR_NAMES.index(w) for w in (question[2], question[4]))
            assert int(answer[0]) == colours[hi] - colours[lo] > 0
            checked += 1
        elif qtype == "word":
            # Letters are size x size cells: read the top row of the word, one cell per letter.
            size = grid // (2 * syn.POSITIONS)
            rows = np.nonzero(f[:, 2].reshape(grid, grid).any(1))[0]
            assert len(rows) == size
            top = f[:, 2].reshape(grid, grid)[rows[0]]
            letters = [syn.LETTERS[k - 1] for k in top[top > 0][::size]]
            assert answer == letters
            checked += 1
    assert checked >= 40


@pytest.mark.parametrize("image_size", [32, 64])
def test_every_pooled_token_holds_a_whole_scene_block_and_at_most_one_letter_at_v16(image_size: int) -> None:
    """The design the study's contrast rests on: reasoning facts survive pooling to one token; letters need V = 16."""
    split = syn.generate_split(seed=2, split="test", n_images=20, image_size=image_size)
    grid = image_size // syn.CELL
    colour = syn.factor_labels(split.cell_labels)[..., 1]
    letter = syn.factor_labels(split.cell_labels)[..., 2]
    for i in range(len(split.images)):
        if letter[i].any():  # a document: each V = 16 token covers (part of) at most one letter
            tokens = _pooled(letter[i], grid, 16)
            assert all(len(set(t[t > 0].tolist())) <= 1 for t in tokens)
            assert sum(bool(t.any()) for t in tokens) == len(set(letter[i][letter[i] > 0].tolist()))
            continue
        for v in (1, 4, 16):  # a scene: every token's colour counts are the same, per block
            tokens = _pooled(colour[i], grid, v)
            counts = [np.bincount(t, minlength=len(syn.COLOURS) + 1)[1:] * v for t in tokens]
            assert all(np.array_equal(c, counts[0]) for c in counts)


def test_yes_no_balanced_and_images_in_range() -> None:
    split = syn.generate_split(seed=0, split="train", n_images=400)
    more = [a[0] for a, t in zip(split.answers, split.qtypes) if t == "more"]
    assert 0.4 < more.count("yes") / len(more) < 0.6
    assert split.images.dtype == np.uint8 and split.images.shape[1:] == (64, 64, 3)
    assert split.cell_labels.max() < syn.N_LABELS


@pytest.mark.parametrize("image_size", [16, 48, 66])
def test_image_sizes_without_whole_blocks_and_letters_are_refused(image_size: int) -> None:
    with pytest.raises(ValueError, match="image_size"):
        syn.generate_split(seed=0, split="train", n_images=2, image_size=image_size)
