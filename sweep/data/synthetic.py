"""Deterministic synthetic VQA: a visual-reasoning family and an OCR-like family.

Images are ``image_size`` x ``image_size`` RGB (64 in the mini study) on a grid of
4 x 4 pixel cells, so a ViT with 4-pixel patches sees exactly one object or letter
(part) per patch. Two kinds of image, half each:

* scenes: a block of (grid / BLOCKS)^2 cells holding 2-10 objects (4 shapes x 4
  colours, repeats allowed), repeated BLOCKS x BLOCKS times over the image. Every
  token of a sqrt(V) x sqrt(V) average pooling with V <= BLOCKS^2 = 16 covers whole
  blocks, so it holds the same colour counts: the visual facts survive pooling to
  one token. Reasoning questions are functions of the block's colour counts: count
  one colour, compare two counts, add two, subtract two, name the most common
  colour. Telling 0-10 objects apart in a pooled token and computing on the
  counts is the LLM's work, so its size matters and the token count does not.
* documents: one word of 3-4 distinct letters, each letter drawn on a square of
  (grid / 8)^2 cells, on every other column of a coarse 8-column grid: one letter
  per token at V = 16, two at V = 4, all four mixed with background at V = 1. OCR
  questions ask for a letter by position or for the whole word, so they need the
  letters kept apart: the number of visual tokens matters.

Question designs that did *not* work on a CPU budget (kept out): counting under
attribute filters with 4-10 objects, and attribute binding across objects ("what
colour is the triangle", "which shape has the same colour as ..."): tiny LLMs
trained from scratch for a few thousand steps stayed at the answer priors on them
whatever their size, even given oracle one-hot patch features. Shapes do not
survive pooling well (an earlier linear probe read a block cell's shape from the
pooled token at 0.55 accuracy, against 1.0 per patch), so no question asks for them.
Objects scattered over the whole image made reasoning depend on V (adding counts
over 16 tokens is harder than reading one); blocks of 4 cells (32-pixel images)
made every LLM size solve it. "What letter follows x" was learnt or not by the
same LLM size depending on the rest of the data, so it was dropped.

Every image also has a per-cell label (background / shape x colour / letter) for
pretraining the vision tower. Everything is drawn from ``numpy.random.default_rng``
seeded by (seed, split), so a split is a pure function of its arguments. Run
``python -m sweep.data.synthetic`` to print a few questions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CELL = 4
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 90, 240),
    "yellow": (230, 210, 40),
}
SHAPE_BITMAPS: dict[str, tuple[str, ...]] = {
    "circle": (".##.", "####", "####", ".##."),
    "square": ("####", "#..#", "#..#", "####"),
    "triangle": ("#...", "##..", "###.", "####"),
    "cross": ("#..#", ".##.", ".##.", "#..#"),
}
COLOUR_NAMES = tuple(COLOURS)
SHAPE_NAMES = tuple(SHAPE_BITMAPS)
LETTERS = tuple("abcdefghijklmnop")
POSITIONS = 4
# A scene is a block of (grid / BLOCKS)^2 cells repeated BLOCKS x BLOCKS times, so that
# every token of a sqrt(V) x sqrt(V) pooling with V <= BLOCKS^2 covers whole blocks.
BLOCKS = 4
MAX_OBJECTS = 10
# Image sizes are multiples of this: whole letters on the coarse grid, whole scene blocks.
IMAGE_UNIT = CELL * 2 * POSITIONS

FAMILIES: dict[str, tuple[str, ...]] = {
    "reasoning": ("count_colour", "more", "sum", "majority", "diff"),
    "ocr": ("char_at", "word"),
}
QTYPES: tuple[str, ...] = tuple(q for f in FAMILIES.values() for q in f)

_SPECIALS = ("<pad>", "<eos>")
_WORDS = (
    "what", "colour", "shape", "is", "how", "many", "most", "common", "are", "there", "more",
    "than", "or", "kinds", "of", "letter", "follows", "read", "the", "text", "?", "yes", "no",
    "minus",
)
VOCAB: tuple[str, ...] = (
    _SPECIALS + _WORDS + COLOUR_NAMES + LETTERS + tuple(str(i) for i in range(MAX_OBJECTS + 1))
)
TOKEN_ID: dict[str, int] = {w: i for i, w in enumerate(VOCAB)}
PAD, EOS = TOKEN_ID["<pad>"], TOKEN_ID["<eos>"]

# Per-cell labels: 0 background, then shape x colour, then letters.
N_LABELS = 1 + len(SHAPE_NAMES) * len(COLOUR_NAMES) + len(LETTERS)
# The same labels factored into (shape, colour, letter), each with 0 = none: what
# the vision tower is pretrained on, so its features keep the factors apart.
FACTOR_SIZES = (1 + len(SHAPE_NAMES), 1 + len(COLOUR_NAMES), 1 + len(LETTERS))


def _bitmap(rows: tuple[str, ...]) -> np.ndarray:
    return np.array([[c == "#" for c in row] for row in rows], dtype=bool)


def _letter_glyphs() -> np.ndarray:
    """One fixed 4x4 glyph per letter: a fixed 'font', the same for every data seed.

    Glyphs differ from each other (and from the shape bitmaps) in at least 4 pixels,
    so a small ViT can tell them apart.
    """
    rng = np.random.default_rng(1234)
    taken = [_bitmap(b).ravel() for b in SHAPE_BITMAPS.values()]
    glyphs: list[np.ndarray] = []
    while len(glyphs) < len(LETTERS):
        g = rng.random(CELL * CELL) < 0.5
        if 6 <= g.sum() <= 11 and all((g != t).sum() >= 4 for t in taken):
            glyphs.append(g)
            taken.append(g)
    return np.stack(glyphs).reshape(len(LETTERS), CELL, CELL)


_SHAPES = np.stack([_bitmap(b) for b in SHAPE_BITMAPS.values()])
_GLYPHS = _letter_glyphs()


def shape_label(shape: int, colour: int) -> int:
    """Per-cell label of a shape of a colour (both as indices)."""
    return 1 + shape * len(COLOUR_NAMES) + colour


def letter_label(letter: int) -> int:
    """Per-cell label of a letter (as an index into LETTERS)."""
    return 1 + len(SHAPE_NAMES) * len(COLOUR_NAMES) + letter


def factor_labels(labels: np.ndarray) -> np.ndarray:
    """Joint per-cell labels (...,) -> factored labels (..., 3): shape, colour, letter (0 = none)."""
    table = np.zeros((N_LABELS, 3), dtype=np.int64)
    for s in range(len(SHAPE_NAMES)):
        for c in range(len(COLOUR_NAMES)):
            table[shape_label(s, c)] = (s + 1, c + 1, 0)
    for k in range(len(LETTERS)):
        table[letter_label(k)] = (0, 0, k + 1)
    return table[labels]


@dataclass
class Split:
    """One split: images, per-cell labels, and the questions asked about them."""

    images: np.ndarray  # (N, H, W, 3) uint8
    cell_labels: np.ndarray  # (N, G*G) int64, row-major grid
    image_index: np.ndarray  # (M,) which image each question is about
    questions: list[list[str]]
    answers: list[list[str]]
    qtypes: list[str]

    def family(self, i: int) -> str:
        """The family of question ``i``."""
        return family_of(self.qtypes[i])


def family_of(qtype: str) -> str:
    """The family a question type belongs to."""
    for family, qtypes in FAMILIES.items():
        if qtype in qtypes:
            return family
    raise KeyError(f"unknown question type {qtype!r}; known: {QTYPES}")


def tokenize(words: list[str]) -> list[int]:
    """Word-level token ids (every word of the generator is in VOCAB)."""
    return [TOKEN_ID[w] for w in words]


def image_size_problem(image_size: int) -> str | None:
    """Why the generator cannot draw ``image_size``-pixel images, or None."""
    if image_size <= 0 or image_size % IMAGE_UNIT:
        return (f"must be a positive multiple of {IMAGE_UNIT} (cells of {CELL} pixels, {2 * POSITIONS} coarse "
                f"columns of letters, {BLOCKS} x {BLOCKS} scene blocks), got {image_size}")
    return None


def generate_split(seed: int, split: str, n_images: int, image_size: int = 64) -> Split:
    """Draw ``n_images`` images and their questions; a pure function of the arguments."""
    problem = image_size_problem(image_size)
    if problem:
        raise ValueError(f"image_size {problem}")
    grid = image_size // CELL
    split_key = {"train": 1, "test": 2}.get(split)
    if split_key is None:
        split_key = sum(map(ord, split)) + 100
    rng = np.random.default_rng([seed, split_key])
    images = np.empty((n_images, image_size, image_size, 3), dtype=np.uint8)
    labels = np.zeros((n_images, grid * grid), dtype=np.int64)
    out = Split(images, labels, np.zeros(0, dtype=np.int64), [], [], [])
    index: list[int] = []
    for i in range(n_images):
        canvas = _background(rng, image_size)
        if i % 2 == 0:
            qa = _scene(rng, canvas, labels[i], grid)
        else:
            qa = _document(rng, canvas, labels[i], grid)
        images[i] = canvas
        for qtype, question, answer in qa:
            index.append(i)
            out.questions.append(question)
            out.answers.append(answer)
            out.qtypes.append(qtype)
    out.image_index = np.asarray(index, dtype=np.int64)
    return out


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    base = rng.uniform(0, 60)
    noise = rng.normal(0, 10, size=(size, size, 3))
    return np.clip(base + noise, 0, 255)


def _paint(rng: np.random.Generator, canvas: np.ndarray, cell: int, grid: int, mask: np.ndarray, rgb) -> None:
    r, c = divmod(cell, grid)
    block = canvas[r * CELL : (r + 1) * CELL, c * CELL : (c + 1) * CELL]
    shade = rng.uniform(0.75, 1.0) * np.asarray(rgb, dtype=float)
    block[mask] = np.clip(shade + rng.normal(0, 12, size=(int(mask.sum()), 3)), 0, 255)


def _scene(rng: np.random.Generator, canvas: np.ndarray, labels: np.ndarray, grid: int):
    """A block of objects with a unique most common colour, repeated BLOCKS x BLOCKS times.

    Every pooled token (V = 1, 4, 16) covers whole blocks, so it holds the same
    facts: the questions (about one block's colour counts) survive pooling to one
    token, and what they need is computation on the counts, the LLM's part.
    """
    tile = grid // BLOCKS
    n = int(rng.integers(2, min(MAX_OBJECTS, tile * tile) + 1))
    shapes = rng.integers(0, len(SHAPE_NAMES), size=n)
    while True:
        colours = rng.integers(0, len(COLOURS), size=n)
        counts = np.bincount(colours, minlength=len(COLOURS))
        if (counts == counts.max()).sum() == 1:
            break
    spots = rng.choice(tile * tile, size=n, replace=False)
    for spot, s, c in zip(spots, shapes, colours):
        dr, dc = divmod(int(spot), tile)
        for r0 in range(0, grid, tile):
            for c0 in range(0, grid, tile):
                cell = (r0 + dr) * grid + c0 + dc
                _paint(rng, canvas, cell, grid, _SHAPES[s], COLOURS[COLOUR_NAMES[c]])
                labels[cell] = shape_label(int(s), int(c))
    c = int(rng.integers(len(COLOURS)))
    # Two colours with different counts (one exists: the most common colour is unique).
    while True:
        a, b = (int(x) for x in rng.choice(len(COLOURS), size=2, replace=False))
        if counts[a] != counts[b]:
            break
    hi, lo = (a, b) if counts[a] > counts[b] else (b, a)
    d = int(rng.integers(len(COLOURS)))
    e = (d + 1 + int(rng.integers(len(COLOURS) - 1))) % len(COLOURS)
    name = COLOUR_NAMES
    return [
        ("count_colour", ["how", "many", name[c], "shape", "?"], [str(int(counts[c]))]),
        ("more", ["are", "there", "more", name[a], "than", name[b], "?"], ["yes" if counts[a] > counts[b] else "no"]),
        ("sum", ["how", "many", name[d], "or", name[e], "shape", "?"], [str(int(counts[d] + counts[e]))]),
        ("majority", ["what", "colour", "is", "most", "common", "?"], [name[int(counts.argmax())]]),
        ("diff", ["how", "many", name[hi], "minus", name[lo], "?"], [str(int(counts[hi] - counts[lo]))]),
    ]


def _document(rng: np.random.Generator, canvas: np.ndarray, labels: np.ndarray, grid: int):
    length = int(rng.integers(3, POSITIONS + 1))
    letters = [int(x) for x in rng.choice(len(LETTERS), size=length, replace=False)]
    # Letters are written size x size cells large on a coarse grid of 2 * POSITIONS
    # columns, on every other coarse cell of a row: one letter per token at V =
    # POSITIONS^2, whatever the image size.
    size = grid // (2 * POSITIONS)
    coarse = grid // size
    row = int(rng.integers(coarse))
    start = int(rng.integers(0, coarse - 2 * (length - 1)))
    white = (235, 235, 235)
    for k, letter in enumerate(letters):
        for i in range(size):
            for j in range(size):
                cell = (row * size + i) * grid + (start + 2 * k) * size + j
                _paint(rng, canvas, cell, grid, _GLYPHS[letter], white)
                labels[cell] = letter_label(letter)
    word = [LETTERS[x] for x in letters]
    k = int(rng.integers(length))
    return [
        ("char_at", ["what", "is", "letter", str(k + 1), "?"], [word[k]]),
        ("word", ["read", "the", "text", "?"], word),
    ]


if __name__ == "__main__":
    demo = generate_split(seed=0, split="train", n_images=4)
    for q, a, t in zip(demo.questions, demo.answers, demo.qtypes):
        print(f"{t:10s} {' '.join(q):55s} -> {' '.join(a)}")
