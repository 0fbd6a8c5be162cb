"""AI2D: multiple-choice questions on grade-school science diagrams.

We read the original AI2D release (``ai2d-all.zip``) plus its official test-id list,
the files every other AI2D copy is converted from::

    ai2d_test_ids.csv                 one diagram id per line (e.g. 1034); the test split
    questions/<id>.png.json           {"imageName": "<id>.png", "questions": {
                                         "<question text>": {"answerTexts": [4 options],
                                         "correctAnswer": <index>, "abcLabel": bool,
                                         "questionId": "<id>.png-0"}, ...}}
    images/<id>.png

``split="test"`` (default) loads the questions of the diagrams in the test-id list
(3,088 questions, the set lmms-eval's ``ai2d`` task and the LLaVA papers use);
``split="all"`` loads every question file.

Prompt (lmms-eval ``tasks/ai2d/ai2d.yaml``, format ``mcq``): the question, the
options as ``A. ...`` lines, and "Answer with the option's letter from the given
choices directly."; 16 new tokens at most.

Score: lmms-eval's ``flexible-extract`` filter, then its ``exact_match`` with
``ignore_case`` and ``ignore_punctuation`` (``ai2d_correct``): a reply that starts
with optional spaces, a capital letter and a period (``"B. the sun"``) becomes that
letter; any other reply is kept whole. Both it and the gold letter are then
lower-cased and stripped of ASCII punctuation (``string.punctuation``), and must
be equal: ``"b"``, ``"(B)"``, ``"B)"`` and ``"**B**"`` are right, while ``" B"``,
``"B "``, ``"The answer is B."``, ``"Answer: B"``, ``"B: blue"`` and the option's
text are wrong. (Whitespace is kept; the reference compares numpy strings, so
trailing NUL characters are dropped and lower-casing never lengthens a reply,
``"İ"`` becoming ``"i"``.) Sub-scores: accuracy on questions that refer to letter
labels drawn in the diagram (``abc_label/true``, the harder part) and on the rest
(``abc_label/false``); ``unparsed`` is the share of replies that read as no
option letter of the question.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence
from pathlib import Path

from sweep.errors import SweepError
from sweep.evals.benchmarks.base import (
    LETTER_ANSWER,
    Benchmark,
    EvalItem,
    aligned,
    grouped_accuracy,
    lettered,
    mean,
)

_LEADING_LETTER = re.compile(r"^\s*([A-Z])\.")
_NO_PUNCTUATION = str.maketrans("", "", string.punctuation)


def exact_match_text(text: str) -> str:
    """lmms-eval's ``exact_match`` normalisation with ``ignore_case`` and ``ignore_punctuation``.

    The reference runs it on numpy string arrays: trailing NUL characters are
    padding there, and ``np.char.lower`` keeps each string's width, so a
    lower-case form that grows (``"İ"`` -> ``"i̇"``) is cut back to it.
    """
    width = len(text)
    lowered = text.rstrip("\x00").lower()[:width]
    return lowered.translate(_NO_PUNCTUATION).rstrip("\x00")


def ai2d_reading(reply: str) -> str:
    """What lmms-eval compares for a reply: its ``flexible-extract`` filter, then ``exact_match_text``."""
    found = _LEADING_LETTER.match(reply)
    return exact_match_text(found.group(1) if found else reply)


def ai2d_correct(reply: str, gold_letter: str) -> bool:
    """lmms-eval's AI2D verdict for one reply."""
    return ai2d_reading(reply) == exact_match_text(gold_letter)


class AI2D(Benchmark):
    """AI2D questions of the test diagrams (or of all diagrams)."""

    name = "ai2d"
    prompt_template = "{question}\n{choices}\n" + LETTER_ANSWER
    prompt_source = "lmms-eval tasks/ai2d/ai2d.yaml (prompt_format mcq)"
    reference = "lmms-eval tasks/ai2d (flexible-extract filter + exact_match, ignore_case, ignore_punctuation)"
    max_new_tokens = 16
    path_options = frozenset({"test_ids"})

    def __init__(self, root: str | Path, split: str = "test", test_ids: str = "ai2d_test_ids.csv") -> None:
        super().__init__(root)
        if split not in ("test", "all"):
            raise SweepError("eval.ai2d.split", f"{split!r} is not an AI2D split here", "use 'test' or 'all'")
        self.split, self.test_ids = split, test_ids

    def _question_files(self) -> list[Path]:
        folder = self.root / "questions"
        if not folder.is_dir():
            raise self._bad("questions/", "is missing; unpack ai2d-all.zip into root")
        if self.split == "all":
            return sorted(folder.glob("*.json"))
        lines = self._file(self.test_ids).read_text(encoding="utf-8").split()
        # The list is bare ids, one a line; tolerate a header or stray text.
        ids = [line.strip() for line in lines if line.strip().isdigit()]
        return [self._file(f"questions/{i}.png.json") for i in ids]

    def load(self) -> list[EvalItem]:
        items = []
        for path in self._question_files():
            where = f"questions/{path.name}"
            data = self._read_json(where)
            image = self._get(data, "imageName", str, where)
            questions = self._get(data, "questions", dict, where)
            for k, (text, q) in enumerate(questions.items()):
                qwhere = f"{where}.questions[{text!r}]"
                options = [str(o) for o in self._get(q, "answerTexts", list, qwhere)]
                answer = self._get(q, "correctAnswer", int, qwhere)
                if not 0 <= answer < len(options):
                    raise self._bad(f"{qwhere}.correctAnswer", f"is {answer}, but there are {len(options)} options")
                items.append(
                    EvalItem(
                        id=str(q.get("questionId", f"{image}-{k}")),
                        prompt=f"{text}\n{lettered(options)}\n{LETTER_ANSWER}",
                        target=chr(ord("A") + answer),
                        image_path=self.root / "images" / image,
                        meta={"options": options, "abc_label": bool(q.get("abcLabel", False))},
                    )
                )
        return items

    def score(self, items: Sequence[EvalItem], predictions: Mapping[str, str] | Sequence[str]) -> dict[str, float]:
        pairs = aligned(items, predictions)
        hits, unread = [], []
        for it, pred in pairs:
            reading = ai2d_reading(pred)
            letters = {exact_match_text(chr(ord("A") + i)) for i in range(len(it.meta["options"]))}
            hits.append((it, reading == exact_match_text(it.target)))
            unread.append(reading not in letters)
        scores = {"score": mean([h for _, h in hits]), "n": float(len(hits)), "unparsed": mean(unread)}
        groups = [("true" if it.meta["abc_label"] else "false", h) for it, h in hits]
        scores.update(grouped_accuracy(groups, "abc_label"))
        return scores
