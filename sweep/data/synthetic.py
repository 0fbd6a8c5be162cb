"""Deterministic synthetic VQA: a visual-reasoning family and an OCR-like family.

Images are ``image_size`` x ``image_size`` RGB on a grid of 4 x 4 pixel cells, so a
ViT with 4-pixel patches sees exactly one object or letter per patch. Two kinds of
image, half each:

* scenes: 2-7 objects (4 shapes x 4 colours, repeats allowed) in random cells.
  Reasoning questions are functions of the whole set of objects that need
  computation on the visual evidence: count one colour, compare two colour
  counts, add two counts, name the most common colour, count distinct kinds. A
  bag of pooled features holds the evidence, so the token count matters little;
  the LLM has to compute on it, so its size matters.
* documents: one word of 3-4 distinct letters written on every other cell of a
  row. OCR questions ask for a letter by position, the letter after a given one,
  or the whole word, so they need to know *where* each letter is: the number of
  visual tokens matters.

Question designs that did *not* work on a CPU budget (kept out): counting under
attribute filters with 4-10 objects, and attribute binding across objects ("what
colour is the triangle", "which shape has the same colour as ..."). Tiny LLMs
trained from scratch for a few thousand steps stayed at the answer priors on
them whatever their size, even given oracle one-hot patch features.

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
MAX_OBJECTS = 7

FAMILIES: dict[str, tuple[str, ...]] = {
    "reasoning": ("count_colour", "more", "sum", "majority", "kinds"),
    "ocr": ("char_at", "next_char", "word"),
}
QTYPES: tuple[str, ...] = tuple(q for f in FAMILIES.values() for q in f)

_SPECIALS = ("<pad>", "<eos>")
_WORDS = (
    "what", "colour", "shape", "is", "how", "many", "most", "common", "are", "there", "more",
    "than", "or", "kinds", "of", "letter", "follows", "read", "the", "text", "?", "yes", "no",
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


def generate_split(seed: int, split: str, n_images: int, image_size: int = 32) -> Split:
    """Draw ``n_images`` images and their questions; a pure function of the arguments."""
    if image_size % CELL or image_size < 2 * POSITIONS * CELL:
        # A document needs room for a word of POSITIONS letters on every other cell.
        raise ValueError(
            f"image_size must be a multiple of {CELL} and at least {2 * POSITIONS * CELL}, got {image_size}"
        )
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
    """2-7 objects (shape and colour drawn with repeats) with a unique most common colour."""
    n = int(rng.integers(2, MAX_OBJECTS + 1))
    shapes = rng.integers(0, len(SHAPE_NAMES), size=n)
    while True:
        colours = rng.integers(0, len(COLOURS), size=n)
        counts = np.bincount(colours, minlength=len(COLOURS))
        if (counts == counts.max()).sum() == 1:
            break
    cells = rng.choice(grid * grid, size=n, replace=False)
    for cell, s, c in zip(cells, shapes, colours):
        _paint(rng, canvas, int(cell), grid, _SHAPES[s], COLOURS[COLOUR_NAMES[c]])
        labels[cell] = shape_label(int(s), int(c))
    kinds = len(set(zip(shapes.tolist(), colours.tolist())))
    c = int(rng.integers(len(COLOURS)))
    # Two colours with different counts (one exists: the most common colour is unique).
    while True:
        a, b = (int(x) for x in rng.choice(len(COLOURS), size=2, replace=False))
        if counts[a] != counts[b]:
            break
    d = int(rng.integers(len(COLOURS)))
    e = (d + 1 + int(rng.integers(len(COLOURS) - 1))) % len(COLOURS)
    name = COLOUR_NAMES
    return [
        ("count_colour", ["how", "many", name[c], "shape", "?"], [str(int(counts[c]))]),
        ("more", ["are", "there", "more", name[a], "than", name[b], "?"], ["yes" if counts[a] > counts[b] else "no"]),
        ("sum", ["how", "many", name[d], "or", name[e], "shape", "?"], [str(int(counts[d] + counts[e]))]),
        ("majority", ["what", "colour", "is", "most", "common", "?"], [name[int(counts.argmax())]]),
        ("kinds", ["how", "many", "kinds", "of", "shape", "?"], [str(kinds)]),
    ]


def _document(rng: np.random.Generator, canvas: np.ndarray, labels: np.ndarray, grid: int):
    length = int(rng.integers(3, POSITIONS + 1))
    letters = [int(x) for x in rng.choice(len(LETTERS), size=length, replace=False)]
    row = int(rng.integers(grid))
    start = int(rng.integers(0, grid - 2 * (length - 1)))
    white = (235, 235, 235)
    for k, letter in enumerate(letters):
        cell = row * grid + start + 2 * k
        _paint(rng, canvas, cell, grid, _GLYPHS[letter], white)
        labels[cell] = letter_label(letter)
    word = [LETTERS[x] for x in letters]
    k = int(rng.integers(length))
    j = int(rng.integers(length - 1))
    return [
        ("char_at", ["what", "is", "letter", str(k + 1), "?"], [word[k]]),
        ("next_char", ["what", "letter", "follows", word[j], "?"], [word[j + 1]]),
        ("word", ["read", "the", "text", "?"], word),
    ]


if __name__ == "__main__":
    demo = generate_split(seed=0, split="train", n_images=4)
    for q, a, t in zip(demo.questions, demo.answers, demo.qtypes):
        print(f"{t:10s} {' '.join(q):55s} -> {' '.join(a)}")
