"""MMMU (validation): college-level multiple-choice and open questions in 30 subjects.

Two layouts under ``root`` are read; ``validation.jsonl`` wins when both are there.

1. A JSON-lines export of the hub rows, images as files (no extra dependency)::

    validation.jsonl   one row a line: {"id": "validation_Art_Theory_12",
                         "question": "... <image 1> ...", "options": ["...", ...] or "['...', ...]",
                         "answer": "B" (an open question: its text, or "['1.5', '1.50']"),
                         "question_type": "multiple-choice" | "open", "subfield": "...",
                         "image_1": "images/validation_Art_Theory_12_1.png", "image_2": null, ...}
    images/...         (``image_k`` paths are relative to root; ``.json`` holding a list works too)

2. The hub release (``MMMU/MMMU``) as downloaded, one folder per subject; needs pyarrow::

    <Subject>/validation-00000-of-00001.parquet
        columns: id, question, options (a Python list written as a string), answer,
        question_type, subfield, image_1 .. image_7 ({"bytes": <image file>, "path"} or null),
        explanation, img_type, topic_difficulty

The validation split has 900 questions. The subject is read from the id
(``validation_<Subject>_<n>``). Only ``image_1`` is shown to the model, as in the
official repository's LLaVA evaluation; questions that refer to more images (or
to images as options) are asked with the first one alone.

Prompt (lmms-eval ``tasks/mmmu``, ``mmmu_val``, not interleaved): multiple choice
-> the question, the options as ``A. ...`` lines, an empty line and "Answer with
the option's letter from the given choices directly."; open -> the question, an
empty line and "Answer the question using a single word or phrase.". The
``<image k>`` placeholders stay in the text as written, as lmms-eval leaves them
when it does not interleave images; 16 new tokens at most.

Score: accuracy under the official MMMU rules (``eval_utils.py``). Multiple
choice (``parse_mmmu_choice``), on the options exactly as released (``<image 2>``
and all): after the marks ``, . ! ? ; : '`` are stripped from the ends of the
reply, letters in parentheses (``"(B)"``), else letters standing alone between
spaces (``"B"``, ``"The answer is C."``, an article ``"A"`` too), else, only in
replies of more than five words, the options whose text occurs in the reply; of
several candidates the one that occurs last wins. Where nothing parses the
official code picks an option at random; here the draw is seeded by the item id
(``random.Random("mmmu/<id>")``), so scores are reproducible and such a reply is
right about once in #options. Open (``parse_mmmu_open``, ``mmmu_open_match``):
numbers equal after rounding to two decimals, or a gold text inside a parsed
answer; a gold written as a Python list accepts any entry. Sub-scores:
``subject/<name>``, ``discipline/<name>`` (MMMU's six),
``question_type/{multiple-choice,open}``, and ``unparsed``, the share of replies
that fell to the random draw or were blank.
"""

from __future__ import annotations

import ast
import base64
import random
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sweep.errors import SweepError
from sweep.evals.benchmarks.base import (
    LETTER_ANSWER,
    SHORT_ANSWER,
    Benchmark,
    EvalItem,
    aligned,
    grouped_accuracy,
    lettered,
    mean,
)
from sweep.evals.scoring import blank

QUESTION_TYPES = ("multiple-choice", "open")
# MMMU's DOMAIN_CAT2SUB_CAT (data_utils.py of the official repository), inverted.
DISCIPLINES = {
    subject: discipline
    for discipline, subjects in {
        "Art and Design": ["Art", "Art_Theory", "Design", "Music"],
        "Business": ["Accounting", "Economics", "Finance", "Manage", "Marketing"],
        "Science": ["Biology", "Chemistry", "Geography", "Math", "Physics"],
        "Health and Medicine": [
            "Basic_Medical_Science", "Clinical_Medicine", "Diagnostics_and_Laboratory_Medicine", "Pharmacy",
            "Public_Health",
        ],
        "Humanities and Social Science": ["History", "Literature", "Sociology", "Psychology"],
        "Tech and Engineering": [
            "Agriculture", "Architecture_and_Engineering", "Computer_Science", "Electronics", "Energy_and_Power",
            "Materials", "Mechanical_Engineering",
        ],
    }.items()  # fmt: skip
    for subject in subjects
}
_PARQUET_COLUMNS = ("id", "question", "options", "answer", "question_type", "subfield", "image_1")
_SUBJECT = re.compile(r"(?:dev|validation|test)_(.+)_\d+")
MC_PROMPT = "{question}\n{choices}\n\n" + LETTER_ANSWER
OPEN_PROMPT = "{question}\n\n" + SHORT_ANSWER


def _letters(n: int) -> list[str]:
    return [chr(ord("A") + i) for i in range(n)]


# ---- the official rules (eval_utils.py) -----------------------------------------------------

_EDGE_MARKS = (",", ".", "!", "?", ";", ":", "'")


def parse_mmmu_choice(text: str, options: Sequence[str]) -> str | None:
    """The option letter MMMU's ``parse_multi_choice_response`` reads, or None where it draws at random.

    ``options`` are the option texts, lettered A, B, ...; see the module docstring
    for the rules.
    """
    choices = {letter: str(text) for letter, text in zip(_letters(len(options)), options)}
    reply = text
    for mark in _EDGE_MARKS:
        reply = reply.strip(mark)
    reply = f" {reply} "
    candidates = [k for k in choices if f"({k})" in reply]
    if candidates:
        positions = [reply.rfind(f"({k})") for k in candidates]
    else:
        candidates = [k for k in choices if f" {k} " in reply]
        positions = [reply.rfind(f" {k} ") for k in candidates]
    if not candidates and len(reply.split()) > 5:
        lowered = reply.lower()
        candidates = [k for k, v in choices.items() if v.lower() in lowered]
        positions = [lowered.rfind(choices[k].lower()) for k in candidates]
    if not candidates:
        return None
    return candidates[positions.index(max(positions))]


# Number patterns of MMMU's extract_numbers: with thousands commas, scientific, plain.
_NUM_COMMAS = re.compile(r"-?\b\d{1,3}(?:,\d{3})+\b")
_NUM_SCIENTIFIC = re.compile(r"-?\d+(?:\.\d+)?[eE][+-]?\d+")
_NUM_SIMPLE = re.compile(r"-?(?:\d+\.\d+|\.\d+|\d+\b)(?![eE][+-]?\d+)(?![,\d])")
_KEY_PHRASES = ("could be ", "so ", "is ", "thus ", "therefore ", "final ", "answer ", "result ")
_TRIVIAL_TAILS = frozenset({":", ",", ".", "!", "?", ";", "'"})


def _mmmu_normalize(text: str) -> list[str | float]:
    """MMMU's normalize_str: a number (commas dropped) becomes a float rounded to two
    decimals; other text is lower-cased, and a single character becomes ``" x"`` and
    ``"x "`` so that it only matches at a word edge."""
    text = text.strip()
    try:
        return [round(float(text.replace(",", "")), 2)]
    except ValueError:
        pass
    text = text.lower()
    return [f" {text}", f"{text} "] if len(text) == 1 else [text]


def parse_mmmu_open(text: str) -> list[str | float]:
    """The candidate answers MMMU's ``parse_open_response`` reads from a reply.

    The reply is stripped, its end periods dropped, lower-cased and cut into lines
    (the official split at ". " before a capital never fires after the
    lower-casing; kept so). From each line the text after a key phrase (``is``,
    ``so``, ``thus``, ``therefore``, ``final``, ``answer``, ``result``, ``could
    be``, and ``=`` in the last line) is kept, the shortest such tail of the line;
    with no key phrase anywhere the whole reply is the one candidate. Each
    candidate and each number in it (``1,000``, ``1e-3``, ``-2.5``) is normalised:
    numbers to floats rounded to two decimals, text lower-cased.
    """
    response = text.strip().strip(".").lower()
    lines = re.split(r"\.\s(?=[A-Z])|\n", response)
    keys: list[str] = []
    for index, line in enumerate(lines):
        phrases = _KEY_PHRASES + (("=",) if index == len(lines) - 1 else ())
        shortest: str | None = None
        for phrase in phrases:
            if phrase in line:
                tail = line.split(phrase)[-1].strip()
                # As the official loop: an empty tail so far is replaced by any later one.
                if not shortest or len(tail) < len(shortest):
                    shortest = tail
        if shortest and shortest.strip() not in _TRIVIAL_TAILS:
            keys.append(shortest)
    if not keys:
        keys = [response]
    candidates = list(keys)
    for key in keys:
        candidates += _NUM_COMMAS.findall(key) + _NUM_SCIENTIFIC.findall(key) + _NUM_SIMPLE.findall(key)
    return list(dict.fromkeys(value for c in candidates for value in _mmmu_normalize(c)))


def mmmu_open_match(answers: str | Sequence[str], parsed: Sequence[str | float]) -> bool:
    """MMMU's eval_open: right when a parsed number equals a gold number (both rounded
    to two decimals) or a gold text occurs inside a parsed text."""
    golds = [answers] if isinstance(answers, str) else list(answers)
    normalised = [value for gold in golds for value in _mmmu_normalize(str(gold))]
    for pred in parsed:
        if isinstance(pred, str):
            if any(isinstance(gold, str) and gold in pred for gold in normalised):
                return True
        elif pred in normalised:
            return True
    return False


class MMMU(Benchmark):
    """MMMU validation split, from a JSON-lines export or the hub's parquet files."""

    name = "mmmu"
    prompt_template = f"multiple-choice: {MC_PROMPT}\nopen: {OPEN_PROMPT}"
    prompt_source = "lmms-eval tasks/mmmu (mmmu_val.yaml, utils.py construct_prompt, interleaved_format false)"
    reference = "MMMU eval_utils.py (parse_multi_choice_response, parse_open_response, eval_open)"
    max_new_tokens = 16
    path_options = frozenset({"annotations"})

    def __init__(self, root: str | Path, annotations: str = "validation.jsonl", split: str = "validation") -> None:
        super().__init__(root)
        self.annotations, self.split = annotations, split

    def _rows(self) -> list[tuple[str, Any]]:
        """(where, row) for every question, from the JSON export or else the parquet files."""
        parquet = sorted(self.root.glob(f"*/{self.split}-*.parquet"))
        if (self.root / self.annotations).is_file() or not parquet:
            if self.annotations.endswith(".jsonl"):
                rows = self._read_jsonl(self.annotations)
                return [(f"{self.annotations} line {i + 1}", row) for i, row in enumerate(rows)]
            data = self._read_json(self.annotations)
            if not isinstance(data, list):
                raise self._bad(self.annotations, "is not a list of questions")
            return [(f"{self.annotations}[{i}]", row) for i, row in enumerate(data)]
        try:
            import pyarrow.parquet as pq
        except ImportError as err:
            raise SweepError(
                "eval.mmmu.root",
                f"{self.root} holds MMMU parquet files and pyarrow is not installed",
                f"pip install pyarrow, or export the rows to {self.annotations} (see sweep/evals/benchmarks/mmmu.py)",
            ) from err
        out = []
        for path in parquet:
            rel = path.relative_to(self.root).as_posix()
            try:
                file = pq.ParquetFile(path)
                names = set(file.schema_arrow.names)
                table = file.read(columns=[c for c in _PARQUET_COLUMNS if c in names])
            except (OSError, ValueError) as err:
                raise self._bad(rel, f"is not a readable parquet file ({err})") from err
            out += [(f"{rel} row {i}", row) for i, row in enumerate(table.to_pylist())]
        return out

    def _options(self, row: Any, where: str) -> list[str]:
        if isinstance(row, Mapping) and "options" not in row:
            return []  # fine for an open question; a multiple-choice one is rejected by the caller
        value = self._get(row, "options", (list, str), where)
        if isinstance(value, str):
            try:
                value = ast.literal_eval(value)
            except (ValueError, SyntaxError) as err:
                raise self._bad(f"{where}.options", f"is {value[:60]!r}, not a list written as a string") from err
            if not isinstance(value, list):
                raise self._bad(f"{where}.options", f"is a string holding {type(value).__name__}, expected a list")
        return [str(v) for v in value]

    def _open_answers(self, row: Any, where: str) -> list[str]:
        answer = self._get(row, "answer", (str, int, float, list), where)
        if isinstance(answer, str) and answer.strip().startswith("["):
            try:
                answer = ast.literal_eval(answer.strip())
            except (ValueError, SyntaxError):
                pass  # a gold text that merely starts with "["
        golds = [str(a) for a in answer] if isinstance(answer, list) else [str(answer)]
        if not golds:
            raise self._bad(f"{where}.answer", "is an empty list")
        return golds

    def _image(self, row: Mapping[str, Any], where: str) -> dict[str, Any]:
        """EvalItem image arguments for ``image_1``: a path, inline bytes (parquet), or none."""
        image = row.get("image_1")
        if image is None:
            return {}
        if isinstance(image, str):
            return {"image_path": self.root / image}
        if isinstance(image, Mapping) and isinstance(image.get("bytes"), (bytes, bytearray)):
            return {"image_b64": base64.b64encode(image["bytes"]).decode("ascii")}
        raise self._bad(f"{where}.image_1", f"is {type(image).__name__}: neither a path under root nor image bytes")

    def load(self) -> list[EvalItem]:
        items = []
        for where, row in self._rows():
            qid = self._get(row, "id", str, where)
            question = self._get(row, "question", str, where)
            qtype = self._get(row, "question_type", str, where)
            if qtype not in QUESTION_TYPES:
                raise self._bad(f"{where}.question_type", f"is {qtype!r}, not one of {QUESTION_TYPES}")
            options = self._options(row, where)
            if qtype == "multiple-choice":
                if len(options) < 2:
                    problem = f"has {len(options)} options; a multiple-choice question needs two"
                    raise self._bad(f"{where}.options", problem)
                target: str | list[str] = self._get(row, "answer", str, where).strip()
                if target not in _letters(len(options)):
                    raise self._bad(f"{where}.answer", f"is {target!r}, not one of the {len(options)} option letters")
                prompt = MC_PROMPT.format(question=question, choices=lettered(options))
            else:
                target = self._open_answers(row, where)
                prompt = OPEN_PROMPT.format(question=question)
            subject = _SUBJECT.fullmatch(qid)
            items.append(
                EvalItem(
                    id=qid,
                    prompt=prompt,
                    target=target,
                    meta={
                        "question_type": qtype,
                        "options": options,
                        "subject": subject.group(1) if subject else "unknown",
                        "subfield": str(row.get("subfield") or ""),
                    },
                    **self._image(row, where),
                )
            )
        return items

    def score(self, items: Sequence[EvalItem], predictions: Mapping[str, str] | Sequence[str]) -> dict[str, float]:
        pairs = aligned(items, predictions)
        hits, unparsed = [], []
        for it, pred in pairs:
            if it.meta["question_type"] == "multiple-choice":
                letter = parse_mmmu_choice(pred, it.meta["options"])
                unparsed.append(letter is None)
                if letter is None:  # the official random pick, seeded per item
                    letter = random.Random(f"mmmu/{it.id}").choice(_letters(len(it.meta["options"])))
                hits.append((it, letter == it.target))
            else:
                unparsed.append(blank(pred))
                hits.append((it, mmmu_open_match(it.target, parse_mmmu_open(pred))))
        scores = {"score": mean([h for _, h in hits]), "n": float(len(hits)), "unparsed": mean(unparsed)}
        scores.update(grouped_accuracy([(it.meta["question_type"], h) for it, h in hits], "question_type"))
        scores.update(grouped_accuracy([(it.meta["subject"], h) for it, h in hits], "subject"))
        disciplines = [(DISCIPLINES[it.meta["subject"]], h) for it, h in hits if it.meta["subject"] in DISCIPLINES]
        scores.update(grouped_accuracy(disciplines, "discipline"))
        return scores
