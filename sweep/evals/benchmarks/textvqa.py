"""TextVQA (validation): questions that need reading text in the image, VQA accuracy.

Layout under ``root`` (the files of the official TextVQA 0.5.1 release)::

    TextVQA_0.5.1_val.json    {"data": [{"question_id", "question", "image_id",
                                          "answers": [10 human answers], ...}, ...]}
    TextVQA_Rosetta_OCR_v0.2_val.json   {"data": [{"image_id", "ocr_tokens": [...], ...}, ...]}
    train_images/<image_id>.jpg   (the validation images ship in the train folder)

Prompt (LLaVA-1.5, ``playground/data/eval/textvqa/llava_textvqa_val_v051_ocr.jsonl``):
the question, ``Reference OCR token: `` followed by the image's OCR tokens joined
by ``", "`` (nothing after it when there are none), and "Answer the question using
a single word or phrase.", one per line; 128 new tokens at most (LLaVA's
``model_vqa_loader.py`` default). The question is the annotation file's (LLaVA's
own file has its first letter capitalised; its evaluator matches questions
case-insensitively). A row's own ``ocr_tokens`` (the hub's copies
carry them) win over the OCR file. ``ocr_tokens=False`` asks without that line,
as lmms-eval's ``textvqa_val`` does; that is a different prompt and a different id.

Score: mean VQA accuracy as TextVQA's m4c evaluator computes it (LLaVA's
``llava/eval/m4c_evaluator.py``, ``vqa_accuracy``): reply and the ten human
answers are normalised (``sweep.evals.normalize``), then for each human answer in
turn the prediction scores min(#other humans giving it / 3, 1), averaged. The
evaluator passes ``re.UNICODE`` where ``re.sub`` expects its count, so it drops
at most 32 periods from an answer; we drop all of them, the behaviour it intends.
``unparsed`` is the share of blank replies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from sweep.errors import SweepError
from sweep.evals.benchmarks.base import SHORT_ANSWER, Benchmark, EvalItem, aligned, mean
from sweep.evals.normalize import normalize_vqa_answer
from sweep.evals.scoring import blank

OCR_LINE = "Reference OCR token: "


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """VQA accuracy of one prediction against the human answers (usually ten).

    For each human answer in turn, the other answers vote: the prediction scores
    min(#others equal to it / 3, 1); the result is the mean over the answers. With
    ten answers, a prediction that k humans gave scores 0.3, 0.6, 0.9, 1.0 for
    k = 1, 2, 3, >= 4.
    """
    if not answers:
        raise ValueError("vqa_accuracy needs at least one human answer")
    pred = normalize_vqa_answer(prediction)
    humans = [normalize_vqa_answer(a) for a in answers]
    agree = sum(h == pred for h in humans)
    # Leaving out a matching answer removes one vote; leaving out another keeps all.
    total = sum(min((agree - (h == pred)) / 3.0, 1.0) for h in humans)
    return total / len(humans)


class TextVQA(Benchmark):
    """TextVQA validation split (5,000 questions)."""

    name = "textvqa"
    prompt_template = "{question}\n[" + OCR_LINE + "{ocr_tokens joined by ', '}\n]" + SHORT_ANSWER
    prompt_source = "LLaVA-1.5 playground/data/eval/textvqa/llava_textvqa_val_v051_ocr.jsonl, llava/eval/model_vqa_loader.py"
    reference = "TextVQA m4c evaluator (LLaVA llava/eval/m4c_evaluator.py), VQA accuracy"
    max_new_tokens = 128
    path_options = frozenset({"annotations", "images", "ocr"})

    def __init__(
        self,
        root: str | Path,
        annotations: str = "TextVQA_0.5.1_val.json",
        images: str = "train_images",
        ocr: str = "TextVQA_Rosetta_OCR_v0.2_val.json",
        ocr_tokens: bool = True,
    ) -> None:
        super().__init__(root)
        self.annotations, self.images, self.ocr, self.ocr_tokens = annotations, images, ocr, bool(ocr_tokens)

    def _ocr_by_image(self, rows: list) -> dict[str, list[str]]:
        """Image id -> OCR tokens, from the OCR file (only read when a row lacks its own tokens)."""
        if not self.ocr_tokens or all(isinstance(r, Mapping) and "ocr_tokens" in r for r in rows):
            return {}
        if not (self.root / self.ocr).is_file():
            raise SweepError(
                "eval.textvqa.ocr",
                f"{self.root / self.ocr} is missing, and LLaVA-1.5's TextVQA prompt lists each image's OCR tokens",
                f"put the TextVQA Rosetta OCR file ({self.ocr}) in {self.root}, "
                "or set eval.benchmarks.textvqa.ocr_tokens=false for the prompt without them",
            )
        entries = self._get(self._read_json(self.ocr), "data", list, self.ocr)
        out = {}
        for i, entry in enumerate(entries):
            where = f"{self.ocr}.data[{i}]"
            tokens = self._get(entry, "ocr_tokens", list, where)
            out[str(self._get(entry, "image_id", str, where))] = [str(t) for t in tokens]
        return out

    def load(self) -> list[EvalItem]:
        data = self._get(self._read_json(self.annotations), "data", list, self.annotations)
        by_image = self._ocr_by_image(data)
        items = []
        for i, row in enumerate(data):
            where = f"{self.annotations}.data[{i}]"
            answers = self._get(row, "answers", list, where)
            if not answers:
                raise self._bad(f"{where}.answers", "is empty; the validation split has 10 answers per question")
            image_id = self._get(row, "image_id", str, where)
            question = self._get(row, "question", str, where)
            if not self.ocr_tokens:
                prompt = f"{question}\n{SHORT_ANSWER}"
            else:
                if "ocr_tokens" in row:
                    tokens = [str(t) for t in self._get(row, "ocr_tokens", list, where)]
                elif image_id in by_image:
                    tokens = by_image[image_id]
                else:
                    raise self._bad(where, f"image {image_id!r} has no OCR tokens in the row or in {self.ocr}")
                prompt = f"{question}\n{OCR_LINE}{', '.join(tokens)}\n{SHORT_ANSWER}"
            items.append(
                EvalItem(
                    id=str(self._get(row, "question_id", (int, str), where)),
                    prompt=prompt,
                    target=[str(a) for a in answers],
                    image_path=self.root / self.images / f"{image_id}.jpg",
                )
            )
        return items

    def score(self, items: Sequence[EvalItem], predictions: Mapping[str, str] | Sequence[str]) -> dict[str, float]:
        pairs = aligned(items, predictions)
        return {
            "score": mean([vqa_accuracy(pred, it.target) for it, pred in pairs]),
            "n": float(len(pairs)),
            "unparsed": mean([blank(pred) for _, pred in pairs]),
        }
